// The backfill phase: plans ranges (first run) or loads them (resume), then runs `workers`
// coroutines, one AsyncConnection each, on one io_context thread. Every batch is one pipelined
// transaction that also advances its range's checkpoint, so an interruption at any moment loses at
// most the uncommitted batch and a rerun continues exactly where committed work ended.
//
// Lifetime: RunBackfill blocks until the job finishes, fails, or is interrupted. Signals: the first
// SIGINT/SIGTERM stops handing out batches and lets in-flight ones commit; the second cancels
// in-flight statements (PQcancel). Both end with kInterrupted (exit code 3).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pgbackfill/checkpoint/job_store.h"
#include "pgbackfill/events/events.h"
#include "pgbackfill/exec/latency_histogram.h"
#include "pgbackfill/plan/plan.h"

namespace pgbackfill::exec {

struct RunOptions {
  std::string dsn;       // overrides plan.dsn when not empty
  bool restart = false;  // drop the job's saved progress (also when the plan changed) and start over
  bool handle_signals = true;
  // `pgbackfill bench`: the table is a scratch copy no application writes, so a copy-mode plan
  // needs no sync trigger (no expand phase) before its batches.
  bool scratch = false;
  // `pgbackfill verify --repair` (copy between databases): copy the differing ranges again.
  bool repair = false;
};

enum class Outcome {
  kDone,
  kInterrupted,  // by a signal; resumable
  kFailed,       // a fatal error; the message says which SQL, SQLSTATE and range
  kAborted,      // by an operator
  kRefused,      // preflight problems or a changed plan: nothing was done
  kVerifyFailed,  // verify found rows that differ from what the plan computes
};

struct RunSummary {
  Outcome outcome = Outcome::kFailed;
  std::string phase = "backfill";  // the phase that ended the run (exec/phases.h)
  std::string message;  // why, for anything but kDone
  int64_t rows = 0;     // rows updated by this run
  int64_t total_rows = 0;  // rows updated by the job over all runs
  int64_t batches = 0;
  int64_t retries = 0;
  int64_t reconnects = 0;
  int64_t bytes = 0;    // COPY bytes streamed by this run (data mover)
  int64_t vacuums = 0;  // bloat control's VACUUMs that completed (plan key vacuum_every)
  absl::Duration elapsed;
  absl::Duration held;  // time the throttle or an operator held new batches
  LatencyHistogram batch_latency;  // of this run's committed batches, round trip included
  bool resumed = false;
};

// Returns an error Status only when the job could not be run at all (server unreachable).
// Whether `runner` ran on this host, in this pid namespace, in a process that is gone (killed,
// crashed): its lease may still hold, but nothing renews it. False for any other host's runner,
// whose process this one cannot see. A run started here expires such leases at once; `status`
// shows them as gone.
bool RunnerProcessGone(const checkpoint::RunnerRecord& runner);

absl::StatusOr<RunSummary> RunBackfill(const plan::Plan& plan, const RunOptions& options,
                                       events::EventSink& events);

}  // namespace pgbackfill::exec
