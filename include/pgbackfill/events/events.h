// What a running job reports: one struct per event kind, all in one variant, `Event`. The engine
// emits them to an EventSink; the CLI renders them as JSON Lines (--json, through ToJson, the one
// encoder), an updating progress line on a terminal, or plain log lines; tests read the JSON back
// with FromJson. README.md ("Output") documents every kind and its fields: JSON keys are the
// field names, std::nullopt is null.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "nlohmann/json.hpp"

namespace pgbackfill::events {

struct JobStarted {
  static constexpr char kType[] = "job_started";
  std::string job;
  std::string table;
  std::string key;
  int64_t estimated_rows = 0;
  int ranges_total = 0;
  int ranges_pending = 0;
  int workers = 0;
  bool resumed = false;
  int64_t rows_done_before = 0;
  // Copy between databases only (null otherwise).
  std::optional<bool> moves_between_databases;
  std::optional<std::string> copy_format;  // binary or text
  std::optional<bool> through_stage;
};

// One signal of what the application feels, as the throttle last read it (seconds for latencies,
// a count for sessions).
struct ThrottleSignal {
  std::string name;  // statement_latency, statement_tail, commit_latency, active_sessions,
                     // cpu_pressure (a share, 0 to 1), command
  double value = 0;
  std::optional<double> baseline;  // null until measured
  double limit = 0;
};

// A numeric veto signal (replica lag, lock waiters, WAL rate, ...) as the throttle last read it,
// in base units (seconds, bytes, bytes/s, a count). Over its limit, it holds all work.
struct ThrottleLimit {
  std::string name;  // replica_lag, replica_lag_bytes, lock_waiters, wal_bytes_per_second,
                     // canary_latency, slot_wal_bytes, archive_pending_bytes
  std::optional<std::string> object;  // the replica or slot; null for the others
  double value = 0;
  double limit = 0;
};

struct Progress {
  static constexpr char kType[] = "progress";
  std::string job;
  int64_t rows_done = 0;
  int64_t estimated_rows = 0;
  double percent = 0;
  int64_t rows_per_second = 0;  // over the last 10 s
  std::optional<int64_t> eta_seconds;
  int workers = 0;
  int64_t batch_rows = 0;
  int ranges_done = 0;
  int ranges_total = 0;
  int64_t retries = 0;
  std::optional<std::string> throttle;  // why work is held
  std::optional<int64_t> pace_rows_per_second;  // the throttle's rows/s cap; null: none
  std::vector<ThrottleSignal> signals;          // empty unless application signals are checked
  std::vector<ThrottleLimit> limits;            // the veto signals checked and read
};

// One committed batch. For in-process sinks (metrics/): --json and the terminal leave it out,
// since a run commits many batches a second; `progress` and `job_finished` carry the totals.
struct Batch {
  static constexpr char kType[] = "batch";
  int worker = 0;
  int range = 0;
  int64_t rows = 0;
  double seconds = 0;  // the round trip of its transaction
};

struct RangeDone {
  static constexpr char kType[] = "range_done";
  int range = 0;
  int64_t rows = 0;
};

// A worker left without a range split one another worker holds (ranges/split.h): `range` now
// ends at `at` and `new_range` takes the rest, `estimated_rows` of them by the split's probe.
struct RangeSplit {
  static constexpr char kType[] = "range_split";
  int worker = 0;
  int range = 0;
  int new_range = 0;
  std::string at;  // the split point, e.g. "(1500000)"
  int64_t estimated_rows = 0;
};

// A batch failed with a retryable error (pg::ErrorClass::kRetry) and runs again after `wait_ms`.
struct Retry {
  static constexpr char kType[] = "retry";
  int worker = 0;
  int range = 0;
  std::string sqlstate;
  std::string error;
  int64_t wait_ms = 0;
  int64_t batch_rows = 0;
};

// A batch lost its connection (pg::ErrorClass::kReconnect); the worker reconnects.
struct Reconnect {
  static constexpr char kType[] = "reconnect";
  int worker = 0;
  int range = 0;
  std::string sqlstate;
  std::string error;
};

struct Reconnected {
  static constexpr char kType[] = "reconnected";
  int worker = 0;
};

struct Signal {
  static constexpr char kType[] = "signal";
  std::string signal;  // SIGINT or SIGTERM
  std::string action;
};

// Sent when the held state changes.
struct Throttle {
  static constexpr char kType[] = "throttle";
  std::string state;  // held or running
  std::optional<std::string> reason;
};

struct Concurrency {
  static constexpr char kType[] = "concurrency";
  int active_workers = 0;
  int max_workers = 0;
  std::optional<int64_t> pace_rows_per_second;
  std::optional<std::string> pressure;  // the signals near their limits
};

// An operator's pause, resume or abort, seen.
struct Control {
  static constexpr char kType[] = "control";
  std::string control;  // run, pause, abort
  std::string by;
  std::string at;
};

struct Settings {
  static constexpr char kType[] = "settings";
  std::map<std::string, std::string> settings;  // the `set` overrides in force
  int workers = 0;
};

struct Vacuum {
  static constexpr char kType[] = "vacuum";
  std::string table;
  double seconds = 0;
  int64_t every_rows = 0;
  std::optional<int64_t> table_bytes;
};

// The data mover exported a source snapshot (again, when `generation` > 1).
struct Snapshot {
  static constexpr char kType[] = "snapshot";
  std::string id;
  int generation = 0;
};

struct Warning {
  static constexpr char kType[] = "warning";
  std::string message;
};

struct PhaseStarted {
  static constexpr char kType[] = "phase_started";
  std::string job;
  std::string phase;
};

struct PhaseDone {
  static constexpr char kType[] = "phase_done";
  std::string job;
  std::string phase;
  bool skipped = false;  // it had already run
  std::string message;
};

struct Ddl {
  static constexpr char kType[] = "ddl";
  std::string step;  // expand[0], triggers, not_null.col[1], contract[0], ...
  std::string sql;   // the first 300 bytes
};

struct DdlRetry {
  static constexpr char kType[] = "ddl_retry";
  std::string step;
  int attempt = 0;
  std::string sql;
  std::string sqlstate;
  std::string error;
  int64_t wait_ms = 0;
};

struct RangeRowsDiff {
  int range = 0;
  int64_t rows = 0;
  std::vector<std::string> first_keys;
};

// verify in one database: rows whose written columns differ from what the plan computes.
struct Verified {
  static constexpr char kType[] = "verify";
  std::string job;
  int64_t differing_rows = 0;
  int ranges_checked = 0;
  std::vector<std::string> first_keys;
  std::vector<RangeRowsDiff> ranges;
};

struct RangeCountDiff {
  int range = 0;
  int64_t source_rows = 0;
  int64_t target_rows = 0;
  bool repaired = false;
};

// verify between databases: ranges whose counts or row hashes differ. Also "verify" in JSON; it
// is the one with `differing_ranges`.
struct MoveVerified {
  static constexpr char kType[] = "verify";
  std::string job;
  int ranges_checked = 0;
  int differing_ranges = 0;
  int repaired_ranges = 0;
  std::vector<RangeCountDiff> ranges;
};

// The follow phase, about once a second: what the target has of the source's changes and how far
// behind it is (bytes of source WAL not yet applied, and the age of the last change applied).
struct Following {
  static constexpr char kType[] = "following";
  std::string job;
  std::string applied_lsn;
  std::string source_lsn;  // the source's WAL end as the stream last said
  int64_t lag_bytes = 0;
  double lag_seconds = 0;    // now - the commit time of the last source transaction applied
  int64_t changes = 0;       // applied since the follow began (all runs)
  int64_t transactions = 0;  // applied by this run
  int64_t spool_bytes = 0;   // received, not yet applied, on disk
  int64_t spool_records = 0;
};

// `pgbackfill cutover`: the source table took writes again only to refuse them, and the target
// has every change. `write_block_ms` is how long application writes waited.
struct CutOver {
  static constexpr char kType[] = "cutover";
  std::string job;
  std::string applied_lsn;
  int64_t write_block_ms = 0;
  int lock_attempts = 0;
  std::vector<std::string> sequences;  // target sequences set from the source's
};

// The last event of a phase command. `rows` and the counts below it are zero when the command
// failed before it could run.
struct JobFinished {
  static constexpr char kType[] = "job_finished";
  std::string job;
  std::string phase;    // the phase that ended the command
  std::string outcome;  // done, interrupted, failed, aborted, refused, verify_failed
  int exit_code = 0;
  std::string message;
  int64_t rows = 0;        // this run
  int64_t total_rows = 0;  // all runs
  int64_t batches = 0;
  int64_t retries = 0;
  int64_t reconnects = 0;
  int64_t vacuums = 0;
  int64_t bytes = 0;
  double seconds = 0;
  int64_t rows_per_second = 0;
  bool resumed = false;
};

struct BatchMillis {
  std::optional<double> p50;
  std::optional<double> p95;
  std::optional<double> p99;
  std::optional<double> max;
};

// The last event of `bench --json`.
struct BenchFinished {
  static constexpr char kType[] = "bench_finished";
  std::string table;
  std::string scratch_table;
  int64_t scratch_rows = 0;
  bool whole_table = false;
  double copy_seconds = 0;
  std::string outcome;  // done or incomplete
  std::string message;
  int64_t rows = 0;
  double seconds = 0;
  int64_t rows_per_second = 0;
  int64_t batches = 0;
  BatchMillis batch_ms;
  int64_t retries = 0;
  int64_t reconnects = 0;
  double held_seconds = 0;
  int64_t vacuums = 0;
  int64_t production_rows = 0;
  std::string production_rows_source;
  std::optional<double> production_seconds;
};

using Event = std::variant<JobStarted, Progress, Batch, RangeDone, RangeSplit, Retry, Reconnect,
                           Reconnected, Signal, Throttle, Concurrency, Control, Settings, Vacuum,
                           Snapshot, Warning, PhaseStarted, PhaseDone, Ddl, DdlRetry, Verified,
                           MoveVerified, Following, CutOver, JobFinished, BenchFinished>;

// The event's "event" name.
std::string_view TypeName(const Event& event);

// RFC 3339 UTC with milliseconds: the "time" of an event emitted now.
std::string NowText();

// The JSON object of `event`: its fields, "event" and "time".
nlohmann::json ToJson(const Event& event, std::string_view time);

// The event a JSON object stands for (missing fields keep their defaults), or nullopt when its
// "event" names no known kind or a field has the wrong type.
std::optional<Event> FromJson(const nlohmann::json& object);

// The throttle's state as the job store keeps it for `status` (jobs.throttle_state): not an event,
// but the same fields as progress and concurrency carry, in the same JSON.
struct ThrottleState {
  int active_workers = 0;
  std::optional<int64_t> pace_rows_per_second;
  std::vector<ThrottleSignal> signals;
};
nlohmann::json ToJson(const ThrottleState& state);
// nullopt when `object` is not such an object.
std::optional<ThrottleState> ThrottleStateFromJson(const nlohmann::json& object);

// Receives events on the emitting thread, in order. Implementations must not block for long.
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void Emit(const Event& event) = 0;
};

}  // namespace pgbackfill::events
