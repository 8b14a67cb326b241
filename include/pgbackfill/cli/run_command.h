// `pgbackfill run PLAN` and `pgbackfill status [JOB]`.
#pragma once

#include <iosfwd>
#include <optional>
#include <string>

#include "pgbackfill/cli/metrics_endpoint.h"
#include "pgbackfill/exec/phases.h"

namespace pgbackfill::cli {

struct RunCommandOptions {
  std::string plan_path;
  std::string dsn;
  bool json = false;
  bool restart = false;
  bool contract = false;  // `run --contract`: contract after a verified backfill
  bool repair = false;    // `verify --repair` (copy between databases)
  MetricsOptions metrics;  // --metrics-addr, --metrics-linger
  // One phase (`pgbackfill expand|backfill|verify|contract|rollback`); none = `run`.
  std::optional<exec::Phase> phase;
};

// Returns the process exit code (see cli.h).
int RunRun(const RunCommandOptions& options, std::ostream& out, std::ostream& err);

struct StatusOptions {
  std::string job;  // empty = every job
  std::string dsn;
  bool json = false;
};

int RunStatus(const StatusOptions& options, std::ostream& out, std::ostream& err);

}  // namespace pgbackfill::cli
