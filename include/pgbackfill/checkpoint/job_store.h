// The job store: what pgbackfill knows about its jobs, kept in schema `pgbackfill` of the target
// database itself, so a resume, `status` or `abort` from any host sees the same state, and the
// range checkpoints commit in the same transaction as the batches they cover (exec/batch_sql.h
// writes `pgbackfill.ranges` directly).
//
// Tables (schema version 7; follows, version 6: below):
//   store_version (version)                one row: the last schema step applied
//   jobs   (name PK, plan_hash, plan_text, plan_file, state, phase, estimated_rows, rows_done,
//           retries, errors, last_error, throttle_reason, throttle_state, pid, host,
//           created_at, started_at, updated_at, finished_at,
//           control, control_by, control_at, settings)     (control .. settings: version 2)
//          control (run | pause | abort, from `pgbackfill pause/resume/abort`) is what operators
//          ask of the job from any host, settings the plan values they changed (`pgbackfill set`:
//          a jsonb object of settable key -> value text as written), control_by/control_at who
//          asked last and when; the process running the job polls them.
//   ranges (job_name -> jobs ON DELETE CASCADE, range_id, lower, upper, done_upto, rows_done,
//           state, updated_at; PK (job_name, range_id))
//   steps  (job_name -> jobs ON DELETE CASCADE, step, done_at; PK (job_name, step))  (version 3)
//          the phase steps done: `expand[0]`, `triggers`, `phase:expand`, ...; version 3 also
//          allows state rolled_back
//   heartbeat (job_name PK, beat_at)  (version 4) one row per job, upserted by the throttle's
//          commit latency probe every interval (throttle/probes.h)
//   runners (job_name, runner_id PK, kind, host, pid, started_at, heartbeat_at, lease_until)
//          (version 7) every process working on a job: `pgbackfill run` (kind run) or a phase
//          (kind expand, verify, contract, rollback); its heartbeat moves lease_until on.
//          Version 7 also adds ranges.owner: the runner whose workers walk the range. A range
//          belongs to its owner while the owner's lease lasts; then any runner may take it.
// Key values are text[] (one element per key column, cast back with the key's type); NULL
// lower/upper is an open end, NULL done_upto means nothing of the range is done yet.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pgbackfill/pg/connection.h"
#include "pgbackfill/ranges/key_range.h"

namespace pgbackfill::checkpoint {

// A row of `pgbackfill.jobs`. Empty strings and zeros stand for NULL. Timestamps are UTC in
// RFC 3339 form ("2024-05-01T12:00:00.123456Z"), "" when NULL.
struct JobRecord {
  std::string name;
  std::string plan_hash;
  std::string plan_text;
  std::string plan_file;
  std::string state;  // pending | running | interrupted | done | failed | aborted
  std::string phase;  // "backfill" when empty at creation
  std::string last_error;
  std::string throttle_reason;
  std::string host;
  int64_t estimated_rows = 0;
  int64_t rows_done = 0;  // sum of the ranges' rows_done as of the last RecordProgress/FinishJob
  int64_t retries = 0;
  int64_t errors = 0;
  int pid = 0;
  std::string created_at;
  std::string started_at;
  std::string updated_at;
  std::string finished_at;
  // Live control (schema v2; a v1 store reads as the defaults).
  std::string control = "run";  // run | pause | abort | cutover
  std::string control_by;       // who asked last: "user@host pid N" of the CLI process
  std::string control_at;
  std::map<std::string, std::string> settings;  // plan/settings.h key -> value as written
  // The throttle's last state (schema v5): a JSON object with pace_rows_per_second,
  // active_workers and signals, as the runner wrote it; "" when NULL.
  std::string throttle_state;
};

// A move that follows its source's changes (store version 6): the logical slot and publication
// on the source, where the stream started (the copy's snapshot) and the last source commit whose
// changes the target has (the end of its commit record), with how many changes that was.
struct FollowRecord {
  std::string slot;
  std::string publication;
  uint64_t start_lsn = 0;
  uint64_t applied_lsn = 0;
  int64_t changes = 0;
};

// What operators asked of a job: the control columns of its row.
struct JobControl {
  std::string control = "run";  // run | pause | abort | cutover
  std::map<std::string, std::string> settings;
  std::string control_by;
  std::string control_at;
};

// A row of `pgbackfill.ranges`.
struct RangeRecord {
  int id = 0;
  std::optional<ranges::KeyValue> lower;      // exclusive; nullopt = open
  std::optional<ranges::KeyValue> upper;      // inclusive; nullopt = open
  std::optional<ranges::KeyValue> done_upto;  // last key done; nullopt = nothing done
  int64_t rows_done = 0;
  std::string state;  // pending | running | done
  std::string owner;  // the runner id that took it last; "" when none (or a store before v7)
};

// A row of `pgbackfill.runners` (schema v7): one process working on a job. Timestamps as in
// JobRecord.
struct RunnerRecord {
  std::string id;
  std::string kind = "run";  // run | expand | verify | contract | rollback
  std::string host;
  int pid = 0;
  std::string started_at;
  std::string heartbeat_at;
  std::string lease_until;
  bool live = false;  // its lease had not expired when the server read it
};

// One step of the store's schema history: the SQL (one or more statements) that takes the store
// from version - 1 to `version`. Steps run in order inside one transaction.
struct SchemaStep {
  int version = 0;
  std::string sql;
};

// The steps this build knows, version 1 first. A new version appends a step; a released step
// never changes, because stores in the field have already applied it.
const std::vector<SchemaStep>& SchemaSteps();

// Blocking access to the job store over a connection the store does not own (it must outlive the
// store). Every statement is schema-qualified, with values as bind parameters; operators resolve
// through the session's search_path, so a caller facing hostile schemas hardens the session first
// (catalog::Catalog::Harden). Transactions are the store's own: do not call it inside a
// transaction of the caller's.
//
// Thread-compatible: like the pg::Connection under it, one thread at a time.
class JobStore {
 public:
  explicit JobStore(pg::Connection& conn);
  // A store that knows `steps` (versions 1..n in order) instead of SchemaSteps(): lets tests prove
  // the migration path from an older store.
  JobStore(pg::Connection& conn, std::vector<SchemaStep> steps);

  // The schema version this store knows (the last step's).
  int KnownVersion() const;

  // Creates the schema or applies the missing steps; a no-op when it is current. Safe to call from
  // several processes at once: the steps run in one transaction under a transaction-level advisory
  // lock, with `lock_timeout` 5s on the DDL. FailedPrecondition when the store is newer than this
  // build.
  absl::Status EnsureSchema();
  // The store's schema version, 0 when there is no store. Creates nothing.
  absl::StatusOr<int> Version();
  // Whether the store exists. Creates nothing (for `status` on a database never backfilled).
  absl::StatusOr<bool> Exists();

  absl::StatusOr<std::optional<JobRecord>> LoadJob(const std::string& name);
  // Every job, by name.
  absl::StatusOr<std::vector<JobRecord>> ListJobs();
  // Inserts the job and its ranges in one transaction. Takes name, plan_hash, plan_text,
  // plan_file, state ("pending" when empty), phase and estimated_rows from `job`; counters start
  // at 0 and created_at/updated_at at now. Ranges start pending with nothing done.
  // AlreadyExists when a job of that name exists (nothing is changed then).
  absl::Status CreateJob(const JobRecord& job, const std::vector<ranges::KeyRange>& ranges);
  // Ranges for a job that was created without them (by `expand`, before the backfill planned
  // any). AlreadyExists when the job has ranges.
  absl::Status AddRanges(const std::string& name, const std::vector<ranges::KeyRange>& ranges);
  // Deletes the job and (by cascade) its ranges. NotFound when there is no such job.
  absl::Status DeleteJob(const std::string& name);
  // The job's ranges by id; empty when the job does not exist.
  absl::StatusOr<std::vector<RangeRecord>> LoadRanges(const std::string& name);
  // Marks a range done without a batch (it had no row left when the run started), only while its
  // checkpoint is still `done_upto`: false when a batch of an earlier run moved it meanwhile.
  absl::StatusOr<bool> FinishRangeAt(const std::string& name, int range_id,
                                     const std::optional<ranges::KeyValue>& done_upto);

  // State transitions and bookkeeping. NotFound when the job does not exist.
  // state = running, pid/host = this process, started_at set on the first start only,
  // finished_at cleared.
  absl::Status MarkStarted(const std::string& name, int pid, const std::string& host);
  // `state` is one of done, failed, interrupted, aborted (InvalidArgument otherwise). rows_done
  // becomes the sum over the ranges, throttle_reason is cleared, last_error is set when `error`
  // is not empty, finished_at is set for done/failed/aborted (an interrupted job will go on).
  absl::Status FinishJob(const std::string& name, const std::string& state,
                         const std::string& error);
  // Adds to the retry and error counters, sets throttle_reason and throttle_state (a JSON object;
  // "" clears either), and refreshes rows_done (sum over the ranges) and updated_at.
  absl::Status RecordProgress(const std::string& name, int64_t retries_delta, int64_t errors_delta,
                              const std::string& throttle_reason,
                              const std::string& throttle_state = "");

  // The job's follow record, nullopt before its slot was made.
  absl::StatusOr<std::optional<FollowRecord>> LoadFollow(const std::string& name);
  // Records a new slot (applied_lsn = start_lsn); AlreadyExists when the job has one.
  absl::Status StartFollow(const std::string& name, const FollowRecord& follow);
  // The statement that moves applied_lsn, inside the apply's target transaction with the changes
  // it covers: $1 job, $2 the new applied_lsn (pg_lsn text), $3 changes added (bigint). One row
  // when it moved; none when applied_lsn was already at or past $2 (another process applied it).
  static std::string AdvanceFollowSql();

  // Live control, from any host (`pgbackfill pause/resume/abort/set`) and polled by the process
  // running the job. NotFound when the job does not exist; FailedPrecondition on a store older
  // than version 2 (EnsureSchema upgrades it).
  absl::StatusOr<JobControl> LoadControl(const std::string& name);
  // `control` is run, pause or abort (InvalidArgument otherwise); `by` says who asked. Sets
  // control_at to now. Does not touch state: the running process acts on it. An abort stands:
  // a later pause or resume does not replace it (FailedPrecondition naming who aborted) until a
  // run of the job clears it (ClearAbort), so an abort cannot be lost to a resume sent within the
  // same interval.
  absl::Status SetControl(const std::string& name, const std::string& control,
                          const std::string& by);
  // Merges `settings` into the job's settings (jsonb ||: a key set again takes the new value),
  // and sets control_by/control_at. Values are stored as given: validate them first
  // (plan::ApplySetting).
  absl::Status MergeSettings(const std::string& name,
                             const std::map<std::string, std::string>& settings,
                             const std::string& by);
  // For `run` starting the job: control abort becomes run, so an aborted job can be run again;
  // pause stays (a paused job starts paused), and control_by/control_at keep the record of who
  // asked. With `requested_before` (a timestamptz text), only an abort asked before that moment
  // is cleared: one asked after it was meant for the run that is starting.
  absl::Status ClearAbort(const std::string& name, const std::string& requested_before = "");

  // Phase steps (`expand[0]`, `triggers`, `phase:expand`, ...) recorded as done, by name.
  absl::StatusOr<std::set<std::string>> StepsDone(const std::string& name);
  // The statement that records a step, with $1 = job and $2 = step, for a caller that runs it
  // inside its own transaction, next to the DDL the step covers. Idempotent.
  static std::string MarkStepSql();
  // The statement that forgets one step ($1 = job, $2 = step), for the same kind of caller.
  static std::string ForgetStepSql();
  absl::Status MarkStep(const std::string& name, const std::string& step);
  // Forgets the steps whose name starts with `prefix` (a phase done again after a rollback).
  absl::Status ClearSteps(const std::string& name, const std::string& prefix);
  // The furthest phase reached (jobs.phase): expand, backfill, verify, contract, rollback.
  absl::Status SetPhase(const std::string& name, const std::string& phase);
  // state = rolled_back, phase = rollback, finished_at = now.
  absl::Status MarkRolledBack(const std::string& name, const std::string& by);

  // Leases (schema v7). Nothing outlives a transaction (no session state, no session lock), so
  // they work through a transaction-pooling pgbouncer, and a process that dies leaves nothing
  // behind that outlives its lease.
  //
  // Registers `runner` (id, kind, host, pid) for job `name` with a lease of `lease` from now, and
  // forgets the job's runners whose lease expired long ago (an hour). The job row need not exist.
  // Registrations of one job are serialized (a transaction-level lock) and started_at grows with
  // each: whoever reads the runners after registering sees every earlier one, in that order.
  absl::Status RegisterRunner(const std::string& name, const RunnerRecord& runner,
                              absl::Duration lease);
  // The heartbeat: heartbeat_at = now, lease_until = now + `lease`, only while the lease still
  // holds. false when it had expired or the row is gone: others may have taken its ranges.
  absl::StatusOr<bool> RenewRunner(const std::string& name, const std::string& runner_id,
                                   absl::Duration lease);
  // Ends another runner's lease now (one known dead: its process is gone), so its ranges are free
  // at once rather than after its timeout.
  absl::Status ExpireRunner(const std::string& name, const std::string& runner_id);
  // Deletes the runner's row and gives its ranges back (owner NULL), for others to take at once.
  absl::Status UnregisterRunner(const std::string& name, const std::string& runner_id);
  // The job's runners, live and expired, oldest first; empty on a store before v7.
  absl::StatusOr<std::vector<RunnerRecord>> ListRunners(const std::string& name);

 private:
  // Inserts `ranges` of job `name`, pending and with nothing done (inside the caller's
  // transaction).
  absl::Status InsertRanges(const std::string& name, const std::vector<ranges::KeyRange>& ranges);
  // Runs `body` between BEGIN and COMMIT; ROLLBACK (and body's status) when it fails.
  absl::Status InTransaction(const std::function<absl::Status()>& body);
  // Whether the store has the v2 control columns; asks the server until it has seen them (a
  // store is never downgraded, so that answer is kept).
  absl::StatusOr<bool> HasControlColumns();
  absl::Status RequireControlColumns();
  // The SELECT list of a JobRecord, with the v2 columns' defaults on a v1 store.
  absl::StatusOr<std::string> JobColumns();

  pg::Connection& conn_;
  std::vector<SchemaStep> steps_;
  int seen_version_ = 0;  // the highest store version seen by Version() or EnsureSchema()
};

// text[] literals <-> key values, for key values that travel as `$n::text[]` parameters and come
// back in the server's text output. nullopt (SQL NULL) maps to nullopt both ways. Key values never
// hold NULL elements, so an unquoted NULL element is an error, as are multi-dimensional arrays
// and malformed literals.
absl::StatusOr<std::optional<ranges::KeyValue>> ParseTextArray(std::optional<std::string> literal);
// Every element double-quoted with `"` and `\` escaped: valid for any text, including "", "NULL",
// braces, commas and whitespace.
std::optional<std::string> TextArrayLiteral(const std::optional<ranges::KeyValue>& value);

// A worker takes a range (schema v7): one statement, its own transaction. The first range not
// done (by id) whose owner is nobody or another runner whose lease expired is this runner's from
// then on. Its own ranges are never taken here: two of its workers taking at once would both get
// one that just became its own (the runner keeps those its workers gave back in memory). Rows
// locked by a batch in flight are skipped (FOR UPDATE SKIP LOCKED), so runners never wait on
// each other here; exactly-once still rests on each batch's claim of its checkpoint.
// Parameters: $1 job, $2 runner id. Result: range_id, lower, upper, done_upto, rows_done, state
// of the range taken; no row when none is free.
std::string TakeRangeSql();
// Whether ranges not done remain that another live runner owns, or that a dead one owned and
// are locked by its last batch still finishing: a worker with nothing to take waits for them
// rather than end the job's run. $1 job, $2 runner id. Result: one count.
std::string OthersUnfinishedSql();
// The ranges not done that other runners own, as donors of a split across processes: a worker
// with nothing to take or split of its own runner's takes the upper part of one (the split below;
// its owner's next batch claim fails on the moved bound, and it reloads). $1 job, $2 runner id.
// Result: range_id, lower, upper, done_upto, by range_id.
std::string ForeignRangesSql();

// A split at run time (ranges/split.h) is one transaction on the job store, run by the worker
// that takes the new range (exec/split_range.cc):
//   BEGIN; SplitLockSql (one split per job at a time, across runners: each takes the next free
//   range id); LockRangeSql (the donor's row FOR UPDATE: lower, upper, done_upto as text[]);
//   ranges/sampler.h's SplitProbeSql after that checkpoint, up to that upper bound;
//   SplitRangeSql; COMMIT.
// The lock orders the split with the donor's batches: a batch that claimed first commits first
// and the probe starts after its checkpoint; one that claims after finds the new upper bound and
// does nothing (batch/batch_sql.h and move/move_sql.h claim the upper bound too).
// Parameters: $1 job, $2 range id. No row when the range is done or gone.
std::string LockRangeSql();
// A transaction-level advisory lock on the job's splits. Parameter: $1 job.
std::string SplitLockSql();
// Moves the donor's upper bound to the split point and inserts the new range (point, old upper]
// pending, with the next free id; only when the donor's row still says what LockRangeSql read.
// Parameters: $1 job, $2 donor id, $3 the point (text[]), $4 the donor's upper bound as read
// (text[], NULL when open: the new range keeps the open end), $5 its done_upto as read, $6 the
// splitting runner's id (the new range's owner, so no other runner takes it). Result: the new
// range's id, no row when the donor changed.
std::string SplitRangeSql();

}  // namespace pgbackfill::checkpoint
