#include "pgbackfill/cli/cli.h"

#include <iostream>

#include <CLI/CLI.hpp>

#include "pgbackfill/cli/check_command.h"
#include "pgbackfill/cli/run_command.h"

namespace pgbackfill::cli {

int Main(int argc, char** argv) {
  CLI::App app{"pgbackfill: online large-table backfills for PostgreSQL"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "pgbackfill 0.1.0");

  CheckOptions check;
  CLI::App* check_cmd = app.add_subcommand(
      "check", "Preflight a plan without changing anything: target, key, privileges, "
               "expressions, estimated rows, and the exact SQL of a batch");
  check_cmd->add_option("plan", check.plan_path, "Plan file (YAML)")->required();
  check_cmd->add_option("--dsn", check.dsn,
                        "Connection string or URI; overrides the plan's dsn (PG* variables and "
                        "~/.pgpass fill the rest)");
  check_cmd->add_flag("--json", check.json, "Print the report as one JSON object");

  RunCommandOptions run;
  CLI::App* run_cmd = app.add_subcommand(
      "run", "Run the plan's backfill: preflight, then batches over key ranges with a checkpoint "
             "committed in every batch. Running it again resumes where committed work ended");
  run_cmd->add_option("plan", run.plan_path, "Plan file (YAML)")->required();
  run_cmd->add_option("--dsn", run.dsn, "Connection string or URI; overrides the plan's dsn");
  run_cmd->add_flag("--json", run.json, "Print JSON Lines events on stdout");
  run_cmd->add_flag("--restart", run.restart,
                    "Forget the job's saved progress (also after a plan change) and start over");

  StatusOptions status;
  CLI::App* status_cmd =
      app.add_subcommand("status", "Show jobs recorded in a database's job store (any host)");
  status_cmd->add_option("job", status.job, "Job name (default: every job)");
  status_cmd->add_option("--dsn", status.dsn, "Connection string or URI");
  status_cmd->add_flag("--json", status.json, "Print one JSON object");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitBadInput;
  }
  if (check_cmd->parsed()) return RunCheck(check, std::cout, std::cerr);
  if (run_cmd->parsed()) return RunRun(run, std::cout, std::cerr);
  if (status_cmd->parsed()) return RunStatus(status, std::cout, std::cerr);
  return kExitBadInput;
}

}  // namespace pgbackfill::cli
