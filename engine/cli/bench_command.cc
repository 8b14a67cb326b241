#include "pgbackfill/cli/bench_command.h"

#include <unistd.h>

#include <ostream>

#include "absl/strings/str_format.h"
#include "pgbackfill/cli/cli.h"
#include "pgbackfill/cli/metrics_endpoint.h"
#include "pgbackfill/cli/output.h"
#include "pgbackfill/plan/parse.h"
#include "pgbackfill/staging/scratch.h"

namespace pgbackfill::cli {
namespace {

std::optional<double> Millis(const std::optional<absl::Duration>& value) {
  if (!value.has_value()) return std::nullopt;
  return absl::ToDoubleMilliseconds(*value);
}

events::BenchFinished Finished(const staging::BenchReport& report) {
  const exec::RunSummary& run = report.run;
  return events::BenchFinished{
      .table = plan::QuoteQualified(report.source),
      .scratch_table = plan::QuoteQualified(report.scratch.table),
      .scratch_rows = report.scratch_rows,
      .whole_table = report.whole_table,
      .copy_seconds = absl::ToDoubleSeconds(report.copy_time),
      .outcome = run.outcome == exec::Outcome::kDone ? "done" : "incomplete",
      .message = run.message,
      .rows = run.rows,
      .seconds = absl::ToDoubleSeconds(run.elapsed),
      .rows_per_second = static_cast<int64_t>(report.rows_per_second),
      .batches = run.batches,
      .batch_ms = {.p50 = Millis(run.batch_latency.Percentile(0.50)),
                   .p95 = Millis(run.batch_latency.Percentile(0.95)),
                   .p99 = Millis(run.batch_latency.Percentile(0.99)),
                   .max = Millis(run.batch_latency.count() > 0
                                     ? std::optional(run.batch_latency.max())
                                     : std::nullopt)},
      .retries = run.retries,
      .reconnects = run.reconnects,
      .held_seconds = absl::ToDoubleSeconds(run.held),
      .vacuums = run.vacuums,
      .production_rows = report.production_rows,
      .production_rows_source = report.production_estimate_source,
      .production_seconds = report.production_time.has_value()
                                ? std::optional(absl::ToDoubleSeconds(*report.production_time))
                                : std::nullopt};
}

std::string HumanDuration(absl::Duration d) {
  const int64_t seconds = absl::ToInt64Seconds(d);
  if (seconds >= 3600) return absl::StrFormat("%dh%02dm", seconds / 3600, seconds % 3600 / 60);
  if (seconds >= 60) return absl::StrFormat("%dm%02ds", seconds / 60, seconds % 60);
  return absl::StrFormat("%.1fs", absl::ToDoubleSeconds(d));
}

std::string Ms(const std::optional<absl::Duration>& value) {
  return value.has_value() ? absl::StrFormat("%.0f ms", absl::ToDoubleMilliseconds(*value)) : "-";
}

void PrintReport(const staging::BenchReport& report, std::ostream& out) {
  const exec::RunSummary& run = report.run;
  out << absl::StrFormat("bench of %s on a scratch copy (%s): %d rows%s, copied in %s\n",
                         plan::QuoteQualified(report.source),
                         plan::QuoteQualified(report.scratch.table), report.scratch_rows,
                         report.whole_table ? " (the whole table)" : " (a sample of its pages)",
                         HumanDuration(report.copy_time));
  if (run.outcome != exec::Outcome::kDone) {
    out << "the backfill did not finish: " << run.message << "\n";
  }
  out << absl::StrFormat("  rows/s            %.0f (%d rows in %s, %d batches)\n",
                         report.rows_per_second, run.rows, HumanDuration(run.elapsed),
                         run.batches);
  out << absl::StrFormat("  batch latency     p50 %s, p95 %s, p99 %s, max %s\n",
                         Ms(run.batch_latency.Percentile(0.50)),
                         Ms(run.batch_latency.Percentile(0.95)),
                         Ms(run.batch_latency.Percentile(0.99)),
                         run.batch_latency.count() > 0 ? Ms(run.batch_latency.max()) : "-");
  out << absl::StrFormat("  retries           %d (reconnects %d)\n", run.retries, run.reconnects);
  out << absl::StrFormat("  throttle held     %s\n", HumanDuration(run.held));
  if (run.vacuums > 0) out << absl::StrFormat("  VACUUMs           %d\n", run.vacuums);
  if (report.production_time.has_value()) {
    out << absl::StrFormat(
        "estimate for %s: %d rows (%s) at this rate: %s\n"
        "  (rows/s measured on %d rows under today's load and throttle; a table much larger than "
        "memory reads more from disk and runs slower)\n",
        plan::QuoteQualified(report.source), report.production_rows,
        report.production_estimate_source, HumanDuration(*report.production_time),
        report.scratch_rows);
  }
}

}  // namespace

int RunBenchCommand(const BenchCommandOptions& options, std::ostream& out, std::ostream& err) {
  auto plan = plan::LoadPlanFile(options.plan_path, plan::ProcessEnv());
  if (!plan.ok()) {
    err << "pgbackfill: " << plan.status().message() << "\n";
    return kExitBadInput;
  }
  if (options.rows < 1) {
    err << "pgbackfill: --rows must be at least 1\n";
    return kExitBadInput;
  }
  // The backfill's own events: JSON Lines on stdout with --json, progress on stderr otherwise.
  auto metered = WithMetrics(
      options.metrics, plan->name,
      options.json ? MakeJsonLinesSink(out) : MakeHumanSink(err, isatty(STDERR_FILENO) == 1), err);
  if (!metered.ok()) {
    err << "pgbackfill: " << metered.status().message() << "\n";
    return kExitBadInput;
  }
  std::unique_ptr<events::EventSink> sink = std::move(metered->all);
  staging::BenchOptions bench_options;
  bench_options.dsn = options.dsn;
  bench_options.rows = options.rows;
  bench_options.keep = options.keep;
  absl::StatusOr<staging::BenchReport> report = staging::RunBench(*plan, bench_options, *sink);
  if (!report.ok()) {
    sink.reset();
    err << "pgbackfill: bench: " << report.status().message() << "\n";
    return report.status().code() == absl::StatusCode::kFailedPrecondition ? kExitBadInput
                                                                             : kExitError;
  }
  if (options.json) {
    sink->Emit(Finished(*report));
  } else {
    sink.reset();
    PrintReport(*report, out);
  }
  switch (report->run.outcome) {
    case exec::Outcome::kDone:
      return kExitOk;
    case exec::Outcome::kInterrupted:
      return kExitInterrupted;
    case exec::Outcome::kRefused:
      return kExitBadInput;
    default:
      return kExitError;
  }
}

}  // namespace pgbackfill::cli
