// The runner's class and the parts it owns (RangeQueue, ThrottleState, MoverState, VacuumState),
// shared by the files that implement it: runner.cc (preparing the job, progress, signals, the
// run), worker.cc (the workers and their steps), throttle_loop.cc (the probe round, the governor
// and the operator's live control), move_batch.cc (the data mover's batches) and vacuum_loop.cc
// (bloat control). Private to engine/exec; the public entry point is RunBackfill (runner.h).
#pragma once

#include <boost/asio/signal_set.hpp>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "lease.h"
#include "pgbackfill/batch/batch_sql.h"
#include "pgbackfill/checkpoint/job_store.h"
#include "pgbackfill/events/events.h"
#include "pgbackfill/exec/batch_sizer.h"
#include "pgbackfill/exec/runner.h"
#include "pgbackfill/move/move_sql.h"
#include "pgbackfill/pg/async_connection.h"
#include "pgbackfill/pg/connection.h"
#include "pgbackfill/pg/replication.h"
#include "pgbackfill/plan/plan.h"
#include "pgbackfill/preflight/preflight.h"
#include "pgbackfill/ranges/key_range.h"
#include "pgbackfill/ranges/sampler.h"
#include "pgbackfill/throttle/clock.h"
#include "pgbackfill/throttle/governor.h"
#include "pgbackfill/throttle/probes.h"
#include "pgbackfill/util/asio.h"
#include "pgbackfill/util/backoff.h"

namespace pgbackfill::exec::internal {

struct RangeState {
  int id = 0;
  std::optional<ranges::KeyValue> lower;
  std::optional<ranges::KeyValue> upper;  // as the job store has it; nullopt: open above
  // A range open above ends, for this run, at the largest key present when the run started
  // (EndOpenRangesAtLargestKey): appends cannot keep a run from ending.
  std::optional<ranges::KeyValue> end_of_run;
  std::optional<ranges::KeyValue> done_upto;
  int64_t rows_done = 0;
  bool done = false;
  bool held = false;  // a worker of this runner walks it

  // Batches start after the checkpoint, or after the range's own lower bound at first.
  const std::optional<ranges::KeyValue>& start() const { return done_upto ? done_upto : lower; }
  // Where this run's batches of the range end.
  const std::optional<ranges::KeyValue>& end() const { return upper ? upper : end_of_run; }
  std::string Describe() const;
};

// A range row of the job store as TakeRangeSql and ForeignRangesSql return it (range_id, lower,
// upper, done_upto, ...): its id and bounds, the rest as in a new RangeState.
absl::StatusOr<RangeState> ReadStoredRange(const pg::Result& result, int row);

// What one batch did, whichever way it ran.
struct BatchOutcome {
  absl::Status status;  // not OK: nothing committed, or it is unknown whether it did (reload)
  bool stale = false;   // the checkpoint was not where this worker thought; nothing was changed
  int64_t rows = 0;
  std::optional<ranges::KeyValue> done_upto;
  bool done = false;
  int64_t bytes = 0;  // COPY bytes streamed (data mover)
};

// A data-mover worker's own sessions besides its target connection: the source, and whether each
// side's session settings are made (after a reconnect they are made again).
struct MoverSession {
  std::unique_ptr<pg::AsyncConnection> source;
  bool source_ready = false;
  bool target_ready = false;
};

// The job's ranges as this runner knows them. Workers take ranges from the job store
// (checkpoint::TakeRangeSql), which is the queue all runners share; `pending` is what this runner
// has not seen done at the start, for its first event. `all` is a deque: a take or a split
// appends a range while workers hold pointers to the others.
struct RangeQueue {
  std::deque<RangeState> all;
  std::deque<RangeState*> pending;
  // Ranges this runner owns in the store that no worker of it holds (a parked worker's), taken
  // again before any other: the store does not know which worker holds a range.
  std::deque<RangeState*> given_back;

  // The range a worker took: its entry in `all` (a new one for a range this runner has not seen),
  // held from now on.
  RangeState& Taken(int id);
  // A worker leaves a range: still owned by this runner in the store (a parked worker's), the
  // next take of any of its workers gets it back first.
  void GiveBack(RangeState* range) {
    range->held = false;
    given_back.push_front(range);
  }
  // The first range given back and not done since, now held; nullptr when none is.
  RangeState* TakeGivenBack();
  int Done() const;
  // Unfinished ranges a worker holds: those a worker left without one may split.
  std::vector<RangeState*> Held();
};

// Throttling and live control: the governor's verdict as of the last round, the pace, the
// probes, and what the operator asked through the control row.
struct ThrottleState {
  throttle::MonotonicClock clock;
  std::optional<throttle::Governor> governor;
  throttle::RateLimiter limiter{0};
  std::unique_ptr<throttle::Prober> prober;
  throttle::Decision decision;
  std::string operator_hold;  // "paused by ..." while an operator's pause stands
  std::optional<std::string> aborted_by;
  std::string control_seen = "run";
  std::string run_requested_at;  // server time just before this run took its lease
  std::map<std::string, std::string> settings_applied;
  absl::Duration batch_target;  // the batch sizers' target as last set (BatchTarget)
  std::string reason;  // why work is held, shown in progress, the job row and `status`
  bool was_held = false;
  std::optional<absl::Time> held_since;  // while held: since when (summary_.held)
  int active_reported = 0;
  double pace_reported = 0;
};

// The data mover's run-wide state. The exporter's session holds the snapshot every source
// session imports.
struct MoverState {
  move::MoveSpec spec;
  std::map<std::pair<bool, bool>, std::string> batch_end_sql;  // by (has_lower, has_upper)
  bool staged = false;  // `into` was not empty at the start: through the stage and ON CONFLICT
  std::unique_ptr<pg::AsyncConnection> exporter;
  // `follow`: the walsender session that made the job's slot; it idles while its exported
  // snapshot is the one the copy reads (a resumed copy exports its own, which is as good).
  std::optional<pg::ReplicationConnection> slot_session;
  std::string snapshot_id;
  int snapshot_generation = 0;
  bool snapshot_renewing = false;
};

// Bloat control (plan key vacuum_every).
struct VacuumState {
  int64_t rows_since = 0;
  bool running = false;
  std::unique_ptr<pg::AsyncConnection> conn;
};

// One run of one job. Everything runs on the single thread of io_: workers, the ticker, the signal
// watch and the throttle loop are coroutines on it, so the members need no locks.
class Runner {
 public:
  Runner(const plan::Plan& plan, const RunOptions& options, events::EventSink& events);

  absl::StatusOr<RunSummary> Run();

 private:
  // runner.cc
  absl::StatusOr<std::optional<RunSummary>> PrepareJob();
  // The data mover's refusal when either side is behind a transaction-pooling pooler
  // (pg/pooler.h); nullopt when neither is.
  absl::StatusOr<std::optional<std::string>> TransactionPooled();
  absl::Status LoadRanges();
  absl::Status EndOpenRangesAtLargestKey();
  asio::awaitable<void> Ticker();
  asio::awaitable<void> WatchSignals();
  asio::awaitable<void> Sleep(absl::Duration duration);
  void Fail(std::string message);
  void EmitProgress();
  // The governor's last decision as progress events and `status` show it.
  events::ThrottleState CurrentThrottleState() const;
  void RefreshStore();
  absl::Status EnsureControl();
  // Ranges the job store does not have as done; nullopt when it cannot be read.
  std::optional<int> UnfinishedInStore();
  // The job's state at this run's end, and this run's summary outcome and message.
  std::string EndState();
  // Records the run's end in the job row, unless other runners go on with the job.
  void RecordEnd(const std::string& state);

  // worker.cc
  // One worker's own state, in its coroutine frame. Its destructor runs on every exit, also when
  // an exception unwinds the coroutine: the runner's lists never point into a finished frame, and
  // a range taken but not finished goes back to the queue, which stays the truth for the summary.
  struct WorkerState {
    WorkerState(Runner& owner, int worker_index);
    ~WorkerState();
    WorkerState(const WorkerState&) = delete;
    WorkerState& operator=(const WorkerState&) = delete;
    // Its sessions: the target (or only) one, and the mover's source.
    std::vector<pg::AsyncConnection*> Sessions() const;

    Runner& runner;
    const int index;
    Backoff backoff;
    BatchSizer sizer;
    asio::steady_timer gate;
    std::unique_ptr<pg::AsyncConnection> conn;
    MoverSession mover;  // the data mover's
    RangeState* range = nullptr;
    int consecutive_retries = 0;
    int consecutive_reconnects = 0;
    // Since when its batches meet a read-only server (SQLSTATE 25006) with no commit between.
    std::optional<absl::Time> read_only_since;
    // The rate limiter's reservation for the next batch: when it may start, at which rate.
    std::optional<absl::Time> reserved_until;
    double reserved_rate = 0;
  };
  // The rows of the worker's next batch: the sizer's, capped to one interval of the pace.
  int64_t BatchRows(const WorkerState& worker) const;
  // What a worker does next: run a batch, ask again (it waited), or end.
  enum class Turn { kGo, kWait, kFinished };

  void SpawnWorkers(int count);
  asio::awaitable<void> GuardedWorker(int index);
  // Connects, then loops over NextTurn and one batch, until there is nothing left or a stop.
  asio::awaitable<void> Worker(int index);
  asio::awaitable<bool> ConnectWorker(WorkerState& worker);
  // Asks the throttle, takes a range, pays the rate limiter.
  asio::awaitable<Turn> NextTurn(WorkerState& worker);
  // A range from the job store for `worker`: one free, or one whose runner's lease expired.
  // nullptr when none is.
  asio::awaitable<absl::StatusOr<RangeState*>> TakeRange(WorkerState& worker);
  // TakeRange's statement (checkpoint::TakeRangeSql): the range, as the store has it, now held.
  asio::awaitable<absl::StatusOr<RangeState*>> TakeFromStore(WorkerState& worker);
  // Whether ranges not done remain that other runners own: a worker with nothing to take waits
  // for them (their runner may die) rather than end.
  asio::awaitable<absl::StatusOr<bool>> OthersUnfinished(WorkerState& worker);
  // For a range taken open above, this run's end of it (EndOpenRangesAtLargestKey); false when
  // no row is left in it and it is now done.
  absl::StatusOr<bool> EndOpenRange(RangeState& range);
  // A failure of a job-store statement outside a batch: reconnect and wait a turn, or fail.
  asio::awaitable<Turn> StoreFailed(WorkerState& worker, const absl::Status& failed);
  // The reconnect and retry events of a worker's failure (range 0: outside a range's batch).
  void ReportReconnect(const WorkerState& worker, int range, const absl::Status& failed);
  void ReportRetry(const WorkerState& worker, int range, const absl::Status& failed,
                   absl::Duration wait);
  // Counts a committed batch everywhere it shows.
  void Committed(WorkerState& worker, BatchOutcome outcome, int64_t rows, absl::Duration elapsed);
  // A batch that did not commit (or may have): retry, reconnect or fail; false ends the worker.
  asio::awaitable<bool> NotCommitted(WorkerState& worker, const absl::Status& failed);
  asio::awaitable<bool> ReconnectWorker(WorkerState& worker);
  std::vector<pg::Statement> BatchStatements(const RangeState& range, int64_t rows);
  // One same-database batch: the pipeline of BatchStatements.
  asio::awaitable<BatchOutcome> SqlBatch(pg::AsyncConnection& conn, const RangeState& range,
                                         int64_t rows);
  asio::awaitable<absl::Status> ReloadCheckpoint(pg::AsyncConnection& conn, RangeState& range);

  // split_range.cc: a worker left without a range splits the largest one another worker holds,
  // of its own runner first, else of another runner (process).
  struct SplitOutcome {
    RangeState* range = nullptr;  // the new range, now this worker's
    bool retry = false;           // nothing split now, but later may (busy, lock timeout)
    absl::Status status;          // a failure other than those
  };
  asio::awaitable<SplitOutcome> SplitLargest(WorkerState& worker);
  // The largest remainder worth splitting among the ranges other runners own, read from the job
  // store: nullopt when there is none.
  asio::awaitable<absl::StatusOr<std::optional<RangeState>>> ForeignDonor(WorkerState& worker);
  // Where to split what is left after `start` up to `upper` (ranges/sampler.h's probe), on the
  // session that reads the table: the worker's own, or the mover's source.
  asio::awaitable<absl::StatusOr<std::optional<ranges::SplitChoice>>> ProbeSplit(
      WorkerState& worker, const std::optional<ranges::KeyValue>& start,
      const std::optional<ranges::KeyValue>& upper);
  // Under the donor's row lock in an open transaction on the worker's session: the split.
  asio::awaitable<SplitOutcome> SplitLocked(WorkerState& worker, RangeState& donor);
  void WorkerFinished(int index);
  // Once the last worker is out, ranges the store gives to this runner that no worker walked to
  // the end go back to the queue and workers start again; false when there are none.
  bool AdoptOrphanedRanges();

  // throttle_loop.cc
  // Every throttle.interval: one probe round into the governor, then the operator's control row
  // (pause/resume/abort/set). Runs while any worker does.
  asio::awaitable<void> ThrottleLoop();
  asio::awaitable<void> ProbeRound();
  void ReadOperatorControl();
  void ApplySettings(const std::map<std::string, std::string>& settings);
  void ApplyDecision();
  throttle::GovernorConfig GovernorConfigFor(const plan::Plan& plan) const;
  asio::awaitable<void> GuardedThrottleLoop();
  // The batch time target: the plan's (or `set`'s), shortened by the governor's decision.
  absl::Duration BatchTarget() const;
  // Why worker `index` must not start a batch now; empty when it may.
  std::string HoldReason(int index) const;
  // Whether worker `index` is beyond the governor's active-worker count. By rank among the live
  // workers, not by index: workers that ended leave no hole a waiting one could never fill.
  bool Parked(int index) const;
  // Waits on the worker's own gate timer until WakeWorkers() (the throttle loop changed
  // something, or a stop) or `at_most` passes.
  asio::awaitable<void> WaitForGate(asio::steady_timer& gate, absl::Duration at_most);
  void WakeWorkers();
  std::vector<int> WorkerPids() const;

  // move_batch.cc: the data mover (plan::MovesBetweenDatabases).
  // One batch: the span's end on the source, the claim on the target, the COPY stream between
  // them (pg/copy_stream.h, on threads of its own), then the checkpoint and COMMIT on the target.
  asio::awaitable<BatchOutcome> MoveBatch(pg::AsyncConnection& target, MoverSession& mover,
                                          const RangeState& range, int64_t rows);
  // MoveBatch once the source's batch transaction is open and its end query answered (`end`).
  asio::awaitable<BatchOutcome> MoveSpan(pg::AsyncConnection& target, MoverSession& mover,
                                         const RangeState& range, int64_t rows,
                                         const pg::Result& end);
  // Each side's session settings: the same client encoding and date/interval/float text forms on
  // both (text streams and key bounds travel as text), and on the source the timeouts and the
  // operator's search_path.
  asio::awaitable<absl::Status> PrepareSessions(pg::AsyncConnection& target, MoverSession& mover);
  // Opens the batch's transaction on the run's snapshot (exporting one first, or again when the
  // exporter's session was lost) and runs `end_sql` in it: its result.
  asio::awaitable<absl::StatusOr<pg::Result>> BeginSourceBatch(MoverSession& mover,
                                                               const std::string& end_sql,
                                                               std::vector<pg::Param> params);
  // A new exported snapshot unless one newer than `seen` exists already; one renewal at a time.
  asio::awaitable<absl::Status> RenewSnapshot(int seen);
  // At the first planning: whether `into` is empty, so that plain COPY can write it (recorded as
  // a step, so a resumed run knows too).
  absl::Status DecideStaging(bool first_planning);
  // `follow`, before the copy's first batch: the job's publication and slot on the source, whose
  // snapshot the copy then reads (follow_internal.h). Nothing when the job has its slot.
  absl::Status PrepareFollow();

  // vacuum_loop.cc
  // The table the batches write: `into` in copy mode, else `table`.
  const plan::QualifiedName& WrittenTable() const;
  // Adds a committed batch's rows; starts a VACUUM when `vacuum_every` rows were written since the
  // last one started and none is running.
  void CountForVacuum(int64_t rows);
  asio::awaitable<void> GuardedVacuum();
  asio::awaitable<void> Vacuum();
  // Cancels a running VACUUM (the run is ending; the table is no worse for it).
  void StopVacuum();

  const plan::Plan& plan_;
  plan::Plan live_;  // plan_ with the operator's `pgbackfill set` overrides applied
  const RunOptions& options_;
  events::EventSink& events_;
  const std::string dsn_;         // the home database: job store, control, probes, target
  const bool moves_;              // copy between databases (plan::MovesBetweenDatabases)
  const std::string source_dsn_;  // the mover's source
  std::optional<pg::Connection> control_;  // preflight, job store, the operator's control row
  // This runner's lease on the job (lease.h): registered by PrepareJob, renewed on a thread of
  // its own, unregistered at the end of Run.
  std::unique_ptr<Lease> lease_;
  std::optional<checkpoint::JobStore> store_;  // on control_; remade when control_ reconnects

  preflight::PreflightReport report_;
  batch::UpdateBatchSpec spec_;
  batch::CopyBatchSpec copy_spec_;  // copy mode
  std::map<std::pair<bool, bool>, std::string> batch_sql_;  // by (has_lower, has_upper)
  RangeQueue queue_;
  RunSummary summary_;
  int64_t rows_before_ = 0;  // rows the job had updated in earlier runs
  int64_t retries_reported_ = 0;
  absl::Time started_;
  // Throughput over a sliding window for the rate and the ETA.
  std::deque<std::pair<absl::Time, int64_t>> rate_window_;

  asio::io_context io_;
  asio::signal_set signals_;
  std::optional<asio::steady_timer> ticker_;
  std::optional<asio::steady_timer> throttle_timer_;
  // Each worker's own gate timer (in its frame): WakeWorkers() cancels every wait at once. One
  // shared timer would not do: re-arming it cancels the other waiters' waits.
  std::vector<asio::steady_timer*> gates_;
  std::vector<pg::AsyncConnection*> connections_;  // for the second signal's cancel
  // The data mover's source sessions: cancelled by the second signal too, never probed (their
  // pids belong to another server).
  std::vector<pg::AsyncConnection*> source_connections_;
  std::vector<BatchSizer*> sizers_;
  std::set<int> live_workers_;  // indices of workers spawned and not finished
  int next_worker_index_ = 0;
  int workers_running_ = 0;
  int orphan_rounds_ = 0;  // AdoptOrphanedRanges that found some
  int signals_seen_ = 0;
  bool stopping_ = false;
  // No range is left that this runner could take or wait for: parked workers without one end.
  bool nothing_left_ = false;
  bool splitting_ = false;  // one split at a time: each takes the next free range id
  std::optional<std::string> failure_;

  ThrottleState throttle_;
  // After io_: their connections go before the io_context they live on.
  MoverState mover_;
  VacuumState vacuum_;
};

}  // namespace pgbackfill::exec::internal
