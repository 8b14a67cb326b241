// What the throttle probes measured in one round (one `throttle.interval`). Plain data: probes
// fill it, the Governor judges it. Each reading is an absl::StatusOr so that "could not be read"
// carries the probe's own error to the user; a reading the probes did not fill is NotMeasured().
// Which readings matter is the governor's configuration, not the sample's: a reading the
// configuration does not check is ignored whatever it holds, and a checked reading that is an
// error (including NotMeasured) holds all work (fail closed, design brief invariant 4).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace pgbackfill::throttle {

// The default of every reading: the probe for it did not run or did not report.
inline absl::Status NotMeasured() { return absl::UnavailableError("not measured"); }

// One standby, from the primary's pg_stat_replication or probed directly (`throttle.replicas`).
struct ReplicaSample {
  // Stable across rounds (application_name or host:port; never a DSN, which may hold a password):
  // the governor tracks replicas by name to notice one that disappears.
  std::string name;
  absl::Status status;  // not OK: this standby could not be read (e.g. a direct probe failed)
  // Replay delay as PostgreSQL reports it (pg_stat_replication.replay_lag, or now() -
  // pg_last_xact_replay_timestamp() on the standby); absl::InfiniteDuration() is never used.
  absl::StatusOr<absl::Duration> replay_lag = NotMeasured();
  absl::StatusOr<int64_t> lag_bytes = NotMeasured();  // WAL written but not yet replayed
  // Replay has caught up (replayed position = the position compared against). A replay
  // timestamp then only says how long ago the primary last wrote, not how far behind the standby
  // is, so the governor ignores the time lag of an idle standby; its byte lag still counts.
  bool idle = false;
};

// One probe round.
struct Samples {
  absl::Time taken;  // when the round started; the governor's timeline for cooldowns
  // Every standby known this round. An error: the list itself could not be read.
  absl::StatusOr<std::vector<ReplicaSample>> replicas = NotMeasured();
  // Other sessions waiting on locks held by pgbackfill's backends (pg_blocking_pids).
  absl::StatusOr<int> lock_waiters = NotMeasured();
  absl::StatusOr<int64_t> wal_bytes_per_second = NotMeasured();  // WAL generation rate, all sessions
  absl::StatusOr<absl::Duration> canary_latency = NotMeasured();  // one timed canary query
  // First column of the first row of `throttle.query`, as text ("t", "1", "0.5"); the governor
  // interprets it (CustomQueryHolds). No row or NULL is an error status set by the probe.
  absl::StatusOr<std::string> custom = NotMeasured();
  // An autovacuum worker (not a manual VACUUM) is processing the target table, one of its
  // partitions or their TOAST tables (`throttle.hold_on_autovacuum`).
  absl::StatusOr<bool> autovacuum = NotMeasured();
};

}  // namespace pgbackfill::throttle
