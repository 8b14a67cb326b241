// `--metrics-addr HOST:PORT` of the long-running commands (run, the phases, bench): the command's
// events go to its renderer and to a metrics registry (metrics/registry.h) served at
// http://HOST:PORT/metrics while the command runs.
#pragma once

#include <iosfwd>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "pgbackfill/events/events.h"

namespace pgbackfill::cli {

struct MetricsOptions {
  std::string address;  // --metrics-addr HOST:PORT; empty = no endpoint
  // --metrics-linger: how long serving goes on after the command's last event, so that a last
  // scrape sees its outcome (pgbackfill_job_outcome) and final counters.
  std::string linger = "0s";
};

// A command's events: `all` goes to the renderer and the registry; `metrics_only` (owned by `all`,
// null without --metrics-addr) to the registry alone, for an event the renderer reports in its own
// way (a run that failed before it started prints a plain error line).
struct CommandSinks {
  std::unique_ptr<events::EventSink> all;
  events::EventSink* metrics_only = nullptr;
};

// `renderer` alone when `options.address` is empty. Otherwise the renderer teed into the registry
// of `job`; serving stops when `all` is destroyed, after the linger. Writes one line to `log`,
// which tests and scripts read to find a port 0 address: "pgbackfill: metrics at
// http://HOST:PORT/metrics". An address that does not parse or cannot be bound is an error (exit
// code 2: the caller's configuration).
absl::StatusOr<CommandSinks> WithMetrics(const MetricsOptions& options, std::string job,
                                         std::unique_ptr<events::EventSink> renderer,
                                         std::ostream& log);

}  // namespace pgbackfill::cli
