// The throttle probes: one Prober per job reads, once per `throttle.interval`, everything the
// Governor (governor.h) judges, and hands it over as Samples (sample.h). The SQL is in
// probe_sql.h, the row-to-reading rules in probe_readings.h.
//
// Connections: one monitoring session on the primary, and one session per directly probed
// standby (`throttle.replicas`). They are separate from the workers' sessions so that a probe
// never waits behind a batch. In a round the primary and the standbys are probed concurrently;
// on the primary one pipelined round trip carries the catalog readings (WAL position, walsenders,
// lock waiters, autovacuum, slots, archiver, the first look at the session load, where
// pg_stat_statements is) and the custom query, then the canary runs on its own so its latency is
// its own, then, when asked, pg_stat_statements and the heartbeat commit, each on its own round
// trip. The other session load looks run between rounds on the same session, spread over the
// interval (never while a round uses it; a round waits for a look in flight). throttle.command
// runs on a thread of its own, in parallel with the servers' probes.
//
// The probes never measure themselves: every statement they send starts with a
// `/* pgbackfill */` comment, which pg_stat_statements keeps and the statement latency reading
// leaves out (like the batches, which name the job store schema); the session load leaves out
// `our_pids`, the probing session and every session whose application_name starts with
// "pgbackfill" (the default of pgbackfill's connections).
//
// Bounded rounds: every probe statement runs under statement_timeout = max(2 * interval, 1s),
// connects give up after the same time, and a round returns at the latest shortly after that
// (RoundBudget()) even when a server does not answer at all (a network partition that only TCP
// keepalives would notice): what did not answer in time is an error reading, and the late probe
// finishes in the background; its server is skipped (an error again) until it has.
//
// Threading and lifetime: a Prober belongs to the io_context of the coroutine that created it,
// which must be run by one thread (pg::AsyncConnection's rule). Sample() must not be called
// again before the previous call returned. Cancel() may be called from any thread. The io_context
// must outlive the Prober; a probe still running in the background when the Prober is destroyed
// keeps its own connection alive until it finishes (at most the connect timeout, or TCP
// keepalive detection for a partitioned server), so io_context::run() can take that long to
// return after a partition. The session load looks between rounds end with the next round, the
// Prober's destruction, or (within interval / session_looks) after Cancel(); a throttle.command
// still running ends within its time limit, its process group killed.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pgbackfill/plan/plan.h"
#include "pgbackfill/throttle/latency_window.h"
#include "pgbackfill/throttle/probe_readings.h"
#include "pgbackfill/throttle/sample.h"
#include "pgbackfill/util/asio.h"

namespace pgbackfill::throttle {

struct ProbeConfig {
  std::string dsn;                        // the target (primary) database
  std::vector<std::string> replica_dsns;  // plan throttle.replicas, probed directly
  plan::QualifiedName table;              // the target table, schema-qualified (catalog spelling)
  std::vector<std::string> key_columns;   // its key, for the default canary
  std::string canary_sql;                 // plan throttle.canary; empty = default key lookup
  std::string custom_sql;                 // plan throttle.query; empty = none
  bool check_autovacuum = false;          // plan throttle.hold_on_autovacuum
  absl::Duration interval = absl::Seconds(1);
  size_t canary_window = LatencyWindow::kDefaultSize;  // timings the canary's p99 is taken over

  // What the application feels (sample.h); each reading is only taken when switched on.
  bool statement_latency = false;  // pg_stat_statements deltas between rounds
  bool session_load = false;       // active backends, looked at `session_looks` times an interval
  int session_looks = 4;
  bool commit_latency = false;  // the job's heartbeat row upserted and committed, timed
  std::string job;              // the heartbeat row's key (the plan's job name)
  bool slots = false;           // pg_replication_slots and the WAL each retains
  bool archiver = false;        // pg_stat_archiver and the WAL waiting for it
  bool cpu_pressure = false;    // the server's /proc/pressure/cpu, between rounds
  std::string command;          // plan throttle.command, run by /bin/sh -c; empty = none
};

// The probes a plan asks for, on `table` (resolved by preflight) with its key. `dsn` is the
// database the backfill writes to: the plan's `dsn`, or `target_dsn` in copy mode when set.
ProbeConfig ProbeConfigFromPlan(const plan::Plan& plan, const plan::QualifiedName& table,
                                std::vector<std::string> key_columns);

class Prober {
 public:
  // Opens the monitoring connection on the calling coroutine's executor and reads the WAL
  // position once, so that the first round already has a WAL rate. An error when the primary
  // cannot be reached, is a standby, or a replica DSN does not parse (the message names the
  // entry, never its text, which may hold a password).
  static asio::awaitable<absl::StatusOr<std::unique_ptr<Prober>>> Create(ProbeConfig config);

  Prober(const Prober&) = delete;
  Prober& operator=(const Prober&) = delete;
  ~Prober();

  // One probe round. Never fails as a whole: a reading that could not be taken is an error status
  // inside Samples (the governor holds on it). Broken connections are reconnected at the start of
  // later rounds. `our_pids`: the backend pids of the backfill's worker sessions (for lock
  // waiters, empty = 0 waiters; and left out of the session load until the next round). `taken`
  // becomes Samples::taken.
  asio::awaitable<Samples> Sample(absl::Time taken, std::vector<int> our_pids);

  // The names the direct replica probes report, in throttle.replicas order (for
  // GovernorConfig::expected_replicas). Stable for the Prober's life.
  std::vector<std::string> DirectReplicaNames() const;

  // Asks every server to cancel the probe statement in flight (PQcancel), for shutdown. Thread-
  // safe, like pg::AsyncConnection::Cancel; a cancelled reading is an error in its round.
  void Cancel();

  // The longest a round waits for a server before reporting it as not answering.
  absl::Duration RoundBudget() const { return round_budget_; }

  // Opaque, shared with probes still running in the background (engine/throttle/probes.cc).
  struct Target;
  struct SessionLooks;
  struct PrimaryReadings;

 private:
  Prober(ProbeConfig config, asio::any_io_executor executor);
  // The session load looks until the next round, on the primary's session.
  void StartLooks(const std::string& timeout);
  // The readings of what the application feels from the primary's probe into `samples`.
  void TakeAppReadings(const PrimaryReadings& primary, std::vector<SessionLook> looks,
                       Samples& samples);

  ProbeConfig config_;
  asio::any_io_executor executor_;
  std::string canary_sql_;
  absl::Duration statement_timeout_;
  absl::Duration round_budget_;
  std::shared_ptr<Target> primary_;
  std::shared_ptr<Target> command_;  // not a server: only its busy flag, for throttle.command
  std::shared_ptr<SessionLooks> looks_;
  // pg_stat_statements' counters at the last reading; none before the first (which primes).
  std::optional<StatementBaseline> statements_;
  std::optional<CpuStallCount> cpu_stalls_;        // the last round's, for the next round's share
  std::vector<std::shared_ptr<Target>> replicas_;  // names disambiguated, in replica_dsns order
  LatencyWindow canary_window_;
  // The WAL insert position of the last successful reading and when it arrived (client time).
  uint64_t wal_lsn_ = 0;
  std::chrono::steady_clock::time_point wal_read_at_;
};

}  // namespace pgbackfill::throttle
