#include "pgbackfill/cli/cli.h"

#include <CLI/CLI.hpp>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "pgbackfill/cli/bench_command.h"
#include "pgbackfill/cli/check_command.h"
#include "pgbackfill/cli/control_command.h"
#include "pgbackfill/cli/metrics_endpoint.h"
#include "pgbackfill/cli/run_command.h"
#include "pgbackfill/cli/version.h"

namespace pgbackfill::cli {
namespace {

// pause, resume, abort and set: JOB, --dsn and --json, as `status` takes them.
CLI::App* AddControlCommand(CLI::App& app, const std::string& action,
                            const std::string& description, ControlOptions& options) {
  options.action = action;
  CLI::App* command = app.add_subcommand(action, description);
  command->add_option("job", options.job, "Job name (the plan's name)")->required();
  command->add_option("--dsn", options.dsn,
                      "Connection string or URI of the job's database (PG* variables and "
                      "~/.pgpass fill the rest)");
  command->add_flag("--json", options.json, "Print one JSON object");
  return command;
}

// check, run, bench and the phases: PLAN and --dsn (each adds its own flags).
CLI::App* AddPlanCommand(CLI::App& app, const std::string& name, const std::string& description,
                         std::string& plan_path, std::string& dsn) {
  CLI::App* command = app.add_subcommand(name, description);
  command->add_option("plan", plan_path, "Plan file (YAML)")->required();
  command->add_option("--dsn", dsn,
                      "Connection string or URI; overrides the plan's dsn (PG* variables and "
                      "~/.pgpass fill the rest)");
  return command;
}

// The long-running commands serve their metrics while they run (README "Metrics").
void AddMetricsOptions(CLI::App& command, MetricsOptions& options) {
  command.add_option("--metrics-addr", options.address,
                     "Serve Prometheus metrics at http://HOST:PORT/metrics while it runs (port 0: "
                     "any free port, printed on stderr)");
  command.add_option("--metrics-linger", options.linger,
                     "With --metrics-addr: keep serving this long after the end (e.g. 30s), so a "
                     "last scrape sees the outcome (default 0s)");
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{"pgbackfill: online large-table backfills for PostgreSQL"};
  app.require_subcommand(1);
  app.set_version_flag("--version", VersionLine());

  CheckOptions check;
  CLI::App* check_cmd = AddPlanCommand(
      app, "check",
      "Preflight a plan without changing anything: target, key, privileges, expressions, "
      "estimated rows, and the exact SQL of a batch",
      check.plan_path, check.dsn);
  check_cmd->add_flag("--json", check.json, "Print the report as one JSON object");

  RunCommandOptions run;
  CLI::App* run_cmd = AddPlanCommand(
      app, "run",
      "expand, backfill and verify (and contract with --contract): preflight, the plan's DDL and "
      "triggers, then batches over key ranges with a checkpoint committed in every batch. "
      "Running it again resumes where committed work ended",
      run.plan_path, run.dsn);
  run_cmd->add_flag("--json", run.json, "Print JSON Lines events on stdout");
  run_cmd->add_flag("--restart", run.restart,
                    "Forget the job's saved progress (also after a plan change) and start over");
  run_cmd->add_flag("--contract", run.contract, "Contract after a verified backfill");
  AddMetricsOptions(*run_cmd, run.metrics);

  // One command per phase, each idempotent (exec/phases.h). They share run's options.
  struct PhaseCommand {
    exec::Phase phase;
    const char* help;
    RunCommandOptions options;
    CLI::App* app = nullptr;
  };
  std::vector<PhaseCommand> phase_commands = {
      {exec::Phase::kExpand, "Run the plan's expand DDL and install the job's triggers", {}},
      {exec::Phase::kBackfill,
       "Run (or resume) the backfill only; needs expand when the plan has "
       "expand statements, dual_write or copy mode",
       {}},
      {exec::Phase::kVerify,
       "Count rows whose filled columns differ from the plan's "
       "expressions, under one snapshot (between databases: counts and "
       "row hashes per range); exit 4 when any do",
       {}},
      {exec::Phase::kContract,
       "not_null columns, the plan's contract DDL, and the job's "
       "triggers dropped with the last contract statement",
       {}},
      {exec::Phase::kFollow,
       "A move with follow: true: apply the source's changes to the target "
       "until `pgbackfill cutover`",
       {}},
      {exec::Phase::kRollback,
       "From any phase: drop the job's triggers, run the plan's rollback "
       "DDL, mark the job rolled back",
       {}},
  };
  for (PhaseCommand& command : phase_commands) {
    command.options.phase = command.phase;
    command.app = AddPlanCommand(app, exec::PhaseName(command.phase), command.help,
                                 command.options.plan_path, command.options.dsn);
    command.app->add_flag("--json", command.options.json, "Print JSON Lines events on stdout");
    AddMetricsOptions(*command.app, command.options.metrics);
    if (command.phase == exec::Phase::kVerify) {
      command.app->add_flag("--repair", command.options.repair,
                            "Copy between databases: copy the ranges that differ again");
    }
    if (command.phase == exec::Phase::kExpand || command.phase == exec::Phase::kBackfill) {
      command.app->add_flag("--restart", command.options.restart,
                            "Forget the job's saved progress and start over");
    }
  }

  BenchCommandOptions bench;
  CLI::App* bench_cmd = AddPlanCommand(
      app, "bench",
      "Measure the plan's backfill on a scratch copy of its table (for staging): rows/s, batch "
      "latency, retries, throttle time, and an estimate for the real table. Only reads the "
      "original",
      bench.plan_path, bench.dsn);
  bench_cmd->add_option("--rows", bench.rows,
                        "Rows in the scratch copy: the whole table when it has fewer, else a "
                        "sample of its pages (default 1000000)");
  bench_cmd->add_flag("--keep", bench.keep, "Keep the scratch tables and the bench's job");
  bench_cmd->add_flag("--json", bench.json,
                      "JSON Lines events on stdout, ending with one bench_finished event");
  AddMetricsOptions(*bench_cmd, bench.metrics);

  StatusOptions status;
  CLI::App* status_cmd =
      app.add_subcommand("status", "Show jobs recorded in a database's job store (any host)");
  status_cmd->add_option("job", status.job, "Job name (default: every job)");
  status_cmd->add_option("--dsn", status.dsn, "Connection string or URI");
  status_cmd->add_flag("--json", status.json, "Print one JSON object");

  // Live control through the job store: the process running the job polls its row, so these
  // work from any host that reaches the database.
  ControlOptions pause_options, resume_options, abort_options, set_options, cutover_options;
  CLI::App* pause_cmd = AddControlCommand(
      app, "pause", "Pause a job: its workers finish their batch and wait (any host)",
      pause_options);
  CLI::App* resume_cmd =
      AddControlCommand(app, "resume", "Resume a paused job (any host)", resume_options);
  CLI::App* abort_cmd = AddControlCommand(
      app, "abort",
      "Stop a job for good: committed work is kept, the job is marked aborted (any host)",
      abort_options);
  CLI::App* cutover_cmd = AddControlCommand(
      app, "cutover",
      "A move that follows its source (follow: true): block writes to the source table, apply "
      "the last changes, make the source refuse writes from then on, and let the run finish "
      "(any host)",
      cutover_options);
  CLI::App* set_cmd = AddControlCommand(
      app, "set",
      "Change tuning of a job while it runs: workers, batch.target, vacuum_every, throttle limits "
      "and timeouts "
      "(any host)",
      set_options);
  set_cmd
      ->add_option("settings", set_options.settings, "key=value, e.g. throttle.max_replica_lag=10s")
      ->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitBadInput;
  }
  if (check_cmd->parsed()) return RunCheck(check, std::cout, std::cerr);
  if (run_cmd->parsed()) return RunRun(run, std::cout, std::cerr);
  if (bench_cmd->parsed()) return RunBenchCommand(bench, std::cout, std::cerr);
  for (const PhaseCommand& command : phase_commands) {
    if (command.app->parsed()) return RunRun(command.options, std::cout, std::cerr);
  }
  if (status_cmd->parsed()) return RunStatus(status, std::cout, std::cerr);
  for (auto [command, options] :
       {std::pair{pause_cmd, &pause_options}, std::pair{resume_cmd, &resume_options},
        std::pair{abort_cmd, &abort_options}, std::pair{set_cmd, &set_options},
        std::pair{cutover_cmd, &cutover_options}}) {
    if (command->parsed()) return RunControl(*options, std::cout, std::cerr);
  }
  return kExitBadInput;
}

}  // namespace pgbackfill::cli
