// What the throttle probes measured in one round (one `throttle.interval`). Plain data: probes
// fill it, the Governor judges it. Each reading is an absl::StatusOr so that "could not be read"
// carries the probe's own error to the user; a reading the probes did not fill is NotMeasured().
// Which readings matter is the governor's configuration, not the sample's: a reading the
// configuration does not check is ignored whatever it holds, and a checked reading that is an
// error (including NotMeasured) holds all work (fail closed, design brief invariant 4).
#pragma once

#include <cstdint>
#include <optional>
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

// What the application's statements took over one interval, from pg_stat_statements deltas
// (calls and total execution time per statement since the previous round), in this database,
// without pgbackfill's own statements.
struct StatementLatency {
  int64_t calls = 0;          // application calls that finished in the interval
  absl::Duration mean;        // total execution time / calls, over every application statement
  // mean + 3 standard deviations of the interval's calls: a few calls that waited (for a CPU, a
  // row lock) move it long before they move the mean of thousands of ~20 us reads.
  absl::Duration tail;
  absl::Duration worst_busy;  // the highest mean among the busiest statements (most calls)
  std::string worst_query;    // that statement's text, cut to 80 bytes, for the reason
};

// How many application backends were active, averaged over several looks at pg_stat_activity in
// the interval (PostgreSQL's form of MySQL's Threads_running), split by what they waited on.
// pgbackfill's own sessions are not counted.
struct SessionLoad {
  double active = 0;  // all active application backends
  double cpu = 0;     // active with no wait event: on a CPU or in its run queue
  double lock = 0;    // wait_event_type Lock (heavyweight locks: rows, tables)
  double lwlock = 0;  // LWLock (WAL insertion, buffer mapping, ...)
  double io = 0;      // IO
  int looks = 0;      // how many looks the averages are over
  // The most application backends one look saw busy within the interval (active, in a
  // transaction, or idle since less than an interval): 0 means nobody to protect.
  int recent = 0;
};

// One replication slot and the WAL it keeps on the primary.
struct SlotWal {
  std::string slot;
  int64_t retained_bytes = 0;  // current WAL position minus the slot's restart_lsn
  std::string wal_status;      // reserved, extended, unreserved, lost
  std::optional<int64_t> safe_wal_size;  // bytes before max_slot_wal_keep_size bites; none = no cap
};

// The WAL archiver: how far archiving is behind, and whether it is failing.
struct ArchiverState {
  bool archiving = false;     // archive_mode is on
  int64_t pending_bytes = 0;  // WAL segments waiting to be archived (.ready), in bytes
  bool failing = false;       // the last attempt failed (last_failed_time > last_archived_time)
  std::string last_failed_wal;
};

// `throttle.command` run once: its exit status and the first line it printed.
struct CommandResult {
  int exit_code = 0;
  std::string output;
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
  // What the application feels. statement_latency is a FailedPrecondition error when
  // pg_stat_statements is not installed in this database (the governor then leaves it out and
  // says so once), and an error like any other when it is installed but could not be read.
  absl::StatusOr<StatementLatency> statement_latency = NotMeasured();
  absl::StatusOr<SessionLoad> session_load = NotMeasured();
  // One tiny write + COMMIT in the job store (the heartbeat row), timed: it feels WAL flush and
  // lock pressure that a read misses.
  absl::StatusOr<absl::Duration> commit_latency = NotMeasured();
  // The share of the interval (0 to 1) in which a runnable task waited for a CPU on the database
  // server (Linux PSI "some", /proc/pressure/cpu). nullopt: the first count, no interval yet.
  // FailedPrecondition when the server has no such file or the role may not read it (the governor
  // leaves it out, as statement_latency's).
  absl::StatusOr<std::optional<double>> cpu_pressure = NotMeasured();
  absl::StatusOr<std::vector<SlotWal>> slots = NotMeasured();
  absl::StatusOr<ArchiverState> archiver = NotMeasured();
  absl::StatusOr<CommandResult> command = NotMeasured();  // `throttle.command`
  // The primary's WAL timeline (8 hex digits). It changes when a standby is promoted: the run
  // now writes to another server, whose standbys are other ones (Governor rule 2).
  absl::StatusOr<std::string> primary_timeline = NotMeasured();
};

}  // namespace pgbackfill::throttle
