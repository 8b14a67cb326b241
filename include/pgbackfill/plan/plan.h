// The plan file model (YAML, `version: 1`). A Plan is plain data: parsing and validation live in
// plan/parse.h, and nothing here talks to a database. docs/plan-reference.md documents every key.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace pgbackfill::plan {

// A schema-qualified relation name as the catalog spells it (already case-folded and unquoted).
// An empty `schema` means "resolve through search_path" at preflight.
struct QualifiedName {
  std::string schema;
  std::string name;

  bool operator==(const QualifiedName&) const = default;
};

// `column: expression`, with the line it came from so later checks can point at it.
struct Assignment {
  std::string column;      // catalog spelling (case-folded / unquoted)
  std::string expression;  // SQL text, trusted operator input; compiled in preflight
  int line = 0;            // 1-based line in the plan file
};

enum class Mode {
  kUpdate,  // `set:` fills columns of `table` in place
  kCopy,    // `into:` + `columns:` fill another table from `table`
};

enum class OnConflict { kError, kSkip, kUpdate };

// Whether the rows the batches write fire the written table's own triggers (`triggers:`).
enum class Triggers {
  kFire,  // as any write does: an updated_at touch or an audit trigger runs for every row
  // Each batch transaction sets session_replication_role = replica (transaction-local): triggers
  // enabled as usual (and foreign keys' checks) do not fire; ENABLE ALWAYS and ENABLE REPLICA
  // ones do. Needs superuser or SET on that parameter (checked in preflight).
  kSkip,
};

struct Batch {
  int64_t rows = 5000;  // first batch size
  absl::Duration target = absl::Milliseconds(200);  // adaptive sizing aims at this batch time
  int64_t min_rows = 100;
  int64_t max_rows = 100000;
};

// A limit on a throttle signal: absolute (`50ms`, `8`), or relative to the signal's baseline,
// the level the run measures before its first batch and again while it is held (`2x`,
// `1.25x + 2ms`). The offset is in the signal's unit: seconds for latencies, sessions for session
// counts. Neither set: not checked.
struct Limit {
  double factor = 0;  // times the baseline; 0 = absolute
  double offset = 0;
  bool enabled() const { return factor > 0 || offset > 0; }
  bool relative() const { return factor > 0; }
  double Of(double baseline) const { return factor * baseline + offset; }
  bool operator==(const Limit&) const = default;
};

struct Throttle {
  absl::Duration interval = absl::Seconds(1);  // probe sampling period
  absl::Duration max_replica_lag = absl::Seconds(5);  // 0 = not checked
  int64_t max_replica_lag_bytes = 0;                  // 0 = not checked
  std::vector<std::string> replicas;                  // extra standby DSNs probed directly
  int max_lock_waiters = 0;  // application sessions blocked by our backends
  absl::Duration lock_timeout = absl::Milliseconds(200);
  absl::Duration statement_timeout = absl::Seconds(30);
  double max_rows_per_second = 0;     // 0 = unlimited
  int64_t max_wal_bytes_per_second = 0;  // 0 = unlimited
  absl::Duration max_canary_latency = absl::ZeroDuration();  // 0 = not checked
  std::string canary;  // SQL timed every interval; empty = key lookup on the table
  std::string query;   // custom throttle query (true or >= 1 means hold); empty = none
  bool hold_on_autovacuum = false;  // hold while autovacuum works on `table` (GitLab's signal)

  // What the application feels (docs/plan-reference.md), each against its baseline when given
  // relatively. On by default with relative limits; `application: off` drops the defaults (the
  // limits set explicitly still apply).
  bool application = true;
  // The mean latency of the application's statements (pg_stat_statements). No offset: means of
  // ~10 us are common (key reads, small updates), and any fixed one hides their slowdown.
  Limit max_statement_latency{.factor = 1.25, .offset = 0};
  // Their tail: the mean plus 3 standard deviations of the calls of each interval. Where the
  // application's latency is made of a few calls that waited (a CPU, a row lock), the mean of
  // thousands of quick ones barely moves, the tail does. 2x, not 1.5x, since CPU pressure watches
  // the CPU queueing: at 1.5x it cut tpcb-like at two thirds of the rate its p99 allowed.
  Limit max_statement_tail{.factor = 2, .offset = 0};
  // A tiny write + COMMIT in the job store, timed.
  Limit max_commit_latency{.factor = 2, .offset = 0.002};
  // Active application backends.
  Limit max_active_sessions{.factor = 2, .offset = 1};
  // The share of the time a runnable task waited for a CPU on the database server (Linux PSI).
  // A batch's CPU burst queues the application's backends behind it long before their statement
  // tail shows it. An offset over the baseline, not a factor of it: a factor gives the most room
  // where the application already waits the most (bench/README.md: 1.25x of 26-29% at 50%).
  Limit max_cpu_pressure{.factor = 1, .offset = 0.05};
  // How long the baselines are measured before the first batch.
  absl::Duration baseline = absl::Seconds(5);
  int64_t max_slot_wal = 0;         // WAL any replication slot may retain; 0 = not checked
  int64_t max_archive_pending = 0;  // WAL waiting for the archiver; 0 = not checked
  std::string command;  // run every interval: a non-zero exit, or a printed true/>= 1, holds

  // Whether a limit reads pg_stat_statements.
  bool ReadsStatements() const {
    return max_statement_latency.enabled() || max_statement_tail.enabled();
  }
};

// Bloat control: VACUUM the table being written each time this much more was written, so the
// space of the row versions already replaced is reused instead of the table growing by the whole
// backfill. One of the two is set, or neither (never).
struct VacuumEvery {
  double fraction = 0;  // of the table's estimated rows at the start of the run
  int64_t rows = 0;
  bool enabled() const { return fraction > 0 || rows > 0; }
  bool operator==(const VacuumEvery&) const = default;
};

struct Plan {
  std::string file;    // path the plan was read from (for messages)
  // The file as read, its DSNs' passwords replaced by pg::kRedacted (same lines otherwise): kept
  // in the job store so `status` can show what ran.
  std::string text;
  int version = 1;
  std::string name;    // job id, unique per database
  std::string dsn;     // libpq URI or key=value string, ${ENV} already expanded; may be empty
  QualifiedName table;
  std::vector<std::string> key;  // empty = the table's primary key (or a usable unique index)
  Mode mode = Mode::kUpdate;

  // UPDATE mode.
  std::vector<Assignment> set;
  std::string where;  // optional extra filter over the row; empty = none
  bool dual_write = false;

  // Copy mode.
  std::optional<QualifiedName> into;
  std::vector<Assignment> columns;  // target column -> expression over the source row
  OnConflict on_conflict = OnConflict::kError;
  std::string source_dsn;
  std::string target_dsn;
  // Between databases: carry the source's changes after the copy through a logical replication
  // slot until `pgbackfill cutover` (follow phase). `follow: true`, or a mapping of the limits on
  // the WAL the job's slot keeps on the source (which then also means true). Tuning: not part of
  // PlanHash beyond `follow` itself.
  bool follow = false;
  struct FollowLimits {
    int64_t warn_slot_wal = int64_t{1} << 30;  // past this the run warns, once per crossing
    int64_t max_slot_wal = int64_t{16} << 30;  // past this the run drops its slot and stops
  } follow_limits;

  // Expand/contract DDL, each entry one step (expand/ddl.h), run with a short lock_timeout and
  // retried.
  std::vector<std::string> expand;
  std::vector<std::string> contract;
  std::vector<std::string> rollback;
  // Columns of `table` (catalog spelling) made NOT NULL by the contract phase without a long
  // ACCESS EXCLUSIVE scan (expand::NotNullSteps).
  std::vector<std::string> not_null;

  // How DDL steps wait for locks. Tuning: not part of PlanHash.
  struct Ddl {
    absl::Duration lock_timeout = absl::Seconds(1);  // per attempt; >= 1ms
    absl::Duration retry_for = absl::Minutes(10);    // lock timeouts retried this long, then fail
  } ddl;

  // Operator commands run on the job's events (`hooks:`), by hook name: on_start, before_<phase>,
  // after_<phase>, on_hold, on_resume, on_done, on_failure. Not part of PlanHash.
  struct Hook {
    std::string command;  // run with /bin/sh -c, the event as JSON on stdin
    absl::Duration timeout = absl::Seconds(30);
    bool stop_on_failure = false;  // `on_failure: stop`, before_<phase> hooks only
    int line = 0;
  };
  std::map<std::string, Hook> hooks;

  Batch batch;
  int workers = 4;
  Throttle throttle;
  bool verify = true;
  VacuumEvery vacuum_every;  // tuning: not part of PlanHash
  // How long a runner's lease on the job and its ranges lasts without a heartbeat; another
  // runner takes a silent runner's ranges after it. Tuning: not part of PlanHash.
  absl::Duration lease_timeout = absl::Seconds(30);
  // Not part of PlanHash: it decides what the table's triggers do, not which values the batches
  // write, and a job stopped because its triggers fired may go on with them skipped.
  Triggers triggers = Triggers::kFire;

  // 1-based line of every key the file set, by dotted path ("table", "batch.rows", "set.x"), so
  // checks after parsing (preflight) can report `file:line: key:` too. Filled by the parser.
  std::map<std::string, int> key_lines;
};

// A stable hash (hex) of everything that decides which rows get which values: table, key, mode,
// set/where, dual_write, into/columns/on_conflict. Tuning knobs (batch, workers, throttle, ddl)
// and connection strings are left out so they can change between runs of one job, and so is the
// schema work around the backfill (expand, contract, rollback, not_null: idempotent phases that do
// not change which values the batches write); anything else changing under the same job name
// must be refused. Stable across processes, builds and machines.
std::string PlanHash(const Plan& plan);

// Copy mode between databases (the data mover): `source_dsn` or `target_dsn` is given. The rows
// then travel as a COPY stream from a source session to a target session, the job store lives on
// the target, and no trigger can follow later writes to `table`.
bool MovesBetweenDatabases(const Plan& plan);
// Where a run connects. `dsn` is the operator's `--dsn` when given, else the plan's `dsn`; it is
// the default of both sides. The home database holds the job store (its lock, control row and
// checkpoints) and the written table: the target when moving, else `dsn`.
std::string HomeDsn(const Plan& plan, const std::string& dsn);
std::string SourceDsn(const Plan& plan, const std::string& dsn);

// SQL spelling of a name: each part quoted only where needed is NOT done here; this always
// quotes, e.g. "public"."users". The schema part is omitted when empty.
std::string QuoteQualified(const QualifiedName& name);

}  // namespace pgbackfill::plan
