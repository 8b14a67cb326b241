#include "pgbackfill/cli/run_command.h"

#include <unistd.h>

#include <iostream>
#include <ostream>

#include "pgbackfill/cli/cli.h"
#include "pgbackfill/cli/metrics_endpoint.h"
#include "pgbackfill/cli/output.h"
#include "pgbackfill/exec/phases.h"
#include "pgbackfill/exec/runner.h"
#include "pgbackfill/plan/parse.h"

namespace pgbackfill::cli {
namespace {

const char* OutcomeName(exec::Outcome outcome) {
  switch (outcome) {
    case exec::Outcome::kDone:
      return "done";
    case exec::Outcome::kInterrupted:
      return "interrupted";
    case exec::Outcome::kFailed:
      return "failed";
    case exec::Outcome::kAborted:
      return "aborted";
    case exec::Outcome::kRefused:
      return "refused";
    case exec::Outcome::kVerifyFailed:
      return "verify_failed";
  }
  return "unknown";
}

int ExitCodeOf(exec::Outcome outcome) {
  switch (outcome) {
    case exec::Outcome::kDone:
      return kExitOk;
    case exec::Outcome::kInterrupted:
      return kExitInterrupted;
    case exec::Outcome::kFailed:
      return kExitError;
    case exec::Outcome::kAborted:
      return kExitAborted;
    case exec::Outcome::kRefused:
      return kExitBadInput;
    case exec::Outcome::kVerifyFailed:
      return kExitVerifyFailed;
  }
  return kExitError;
}

// The phases of `options` on `plan`, every event to `sinks`; the exit code.
int RunPhasesWith(const RunCommandOptions& options, const plan::Plan& plan, CommandSinks sinks,
                  std::ostream& err) {
  std::unique_ptr<events::EventSink> sink = std::move(sinks.all);
  // Between the run and the sinks, so that hooks see every event; reset before them, so that the
  // hooks still queued (on_done, on_failure) run before the command exits.
  std::unique_ptr<exec::Hooks> hooks =
      plan.hooks.empty() ? nullptr : std::make_unique<exec::Hooks>(plan, *sink);
  events::EventSink& events = hooks != nullptr ? *hooks : *sink;
  exec::RunOptions run_options;
  run_options.dsn = options.dsn;
  run_options.restart = options.restart;
  run_options.repair = options.repair;
  const std::vector<exec::Phase> phases =
      options.phase.has_value() ? std::vector<exec::Phase>{*options.phase}
                                : exec::RunPhases(options.contract, plan.verify, plan.follow);
  auto summary = exec::RunPhaseList(phases, plan, run_options, events, hooks.get());
  if (!summary.ok()) {
    events::JobFinished failed;
    failed.job = plan.name;
    failed.phase = options.phase.has_value() ? exec::PhaseName(*options.phase) : "run";
    failed.outcome = "failed";
    failed.exit_code = kExitError;
    failed.message = std::string(summary.status().message());
    // People get the plain error line below instead; the metrics get the outcome either way.
    if (options.json) {
      events.Emit(failed);
    } else {
      if (sinks.metrics_only != nullptr) sinks.metrics_only->Emit(failed);
      if (hooks != nullptr) hooks->Notify(failed);
    }
    hooks.reset();
    sink.reset();
    if (!options.json) err << "pgbackfill: " << summary.status().message() << "\n";
    return kExitError;
  }
  const double seconds = absl::ToDoubleSeconds(summary->elapsed);
  events.Emit(events::JobFinished{
      .job = plan.name,
      .phase = summary->phase,
      .outcome = OutcomeName(summary->outcome),
      .exit_code = ExitCodeOf(summary->outcome),
      .message = summary->message,
      .rows = summary->rows,
      .total_rows = summary->total_rows,
      .batches = summary->batches,
      .retries = summary->retries,
      .reconnects = summary->reconnects,
      .vacuums = summary->vacuums,
      .bytes = summary->bytes,
      .seconds = seconds,
      .rows_per_second =
          seconds > 0 ? static_cast<int64_t>(static_cast<double>(summary->rows) / seconds) : 0,
      .resumed = summary->resumed});
  hooks.reset();
  sink.reset();
  if (!options.json && summary->outcome == exec::Outcome::kInterrupted) {
    err << "resume with: pgbackfill "
        << (options.phase.has_value() ? exec::PhaseName(*options.phase) : "run") << " "
        << options.plan_path
        << (options.dsn.empty() ? "" : " --dsn ...") << "\n";
  }
  return ExitCodeOf(summary->outcome);
}

}  // namespace

int RunRun(const RunCommandOptions& options, std::ostream& out, std::ostream& err) {
  auto plan = plan::LoadPlanFile(options.plan_path, plan::ProcessEnv());
  if (!plan.ok()) {
    err << "pgbackfill: " << plan.status().message() << "\n";
    return kExitBadInput;
  }
  // Machines get JSON Lines on stdout; people get progress on stderr, where it does not mix with
  // output a script may capture.
  auto sinks = WithMetrics(
      options.metrics, plan->name,
      options.json ? MakeJsonLinesSink(out) : MakeHumanSink(err, isatty(STDERR_FILENO) == 1), err);
  if (!sinks.ok()) {
    err << "pgbackfill: " << sinks.status().message() << "\n";
    return kExitBadInput;
  }
  return RunPhasesWith(options, *plan, std::move(*sinks), err);
}

}  // namespace pgbackfill::cli
