// `pgbackfill bench PLAN`: the plan's backfill on a scratch copy of its table (staging/scratch.h),
// reported as rows/s, batch latency percentiles, retries and throttle time, with an estimate for
// the real table. Never writes the original table.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>

#include "pgbackfill/cli/metrics_endpoint.h"

namespace pgbackfill::cli {

struct BenchCommandOptions {
  std::string plan_path;
  std::string dsn;
  int64_t rows = 1'000'000;
  bool keep = false;
  bool json = false;
  MetricsOptions metrics;  // --metrics-addr, --metrics-linger
};

// Returns the process exit code (see cli.h).
int RunBenchCommand(const BenchCommandOptions& options, std::ostream& out, std::ostream& err);

}  // namespace pgbackfill::cli
