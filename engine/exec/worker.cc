// The workers: each walks ranges batch by batch on its own session (two when moving between
// databases), asking the throttle before every batch, and handles what a batch can end with:
// committed, stale (another run moved the checkpoint), retryable, lost connection, fatal.
#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "pgbackfill/pg/error.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/util/strings.h"
#include "runner_internal.h"

namespace pgbackfill::exec::internal {
namespace {

// A retryable error (lock timeout, deadlock, statement timeout) this many times in a row on one
// batch means something holds the rows for good: stop and say so rather than spin forever.
constexpr int kMaxConsecutiveRetries = 100;
// Reconnects in a row with no committed batch in between before the job stops.
constexpr int kMaxReconnectsWithoutProgress = 5;
// How long a worker keeps trying to reconnect (a server restart, a failover) before giving up.
constexpr absl::Duration kReconnectDeadline = absl::Minutes(5);
constexpr char kReadOnlySqlState[] = "25006";

}  // namespace

RangeState& RangeQueue::Taken(int id) {
  auto known = std::find_if(all.begin(), all.end(),
                            [id](const RangeState& range) { return range.id == id; });
  RangeState& range = known != all.end() ? *known : all.emplace_back();
  range.id = id;
  range.held = true;
  std::erase(pending, &range);
  return range;
}

std::vector<RangeState*> RangeQueue::Held() {
  std::vector<RangeState*> held;
  for (RangeState& range : all) {
    if (!range.done && range.held) held.push_back(&range);
  }
  return held;
}

RangeState* RangeQueue::TakeGivenBack() {
  while (!given_back.empty()) {
    RangeState* range = given_back.front();
    given_back.pop_front();
    if (range->done || range->held) continue;
    range->held = true;
    return range;
  }
  return nullptr;
}

int RangeQueue::Done() const {
  return static_cast<int>(
      std::count_if(all.begin(), all.end(), [](const RangeState& range) { return range.done; }));
}

Runner::WorkerState::WorkerState(Runner& owner, int worker_index)
    : runner(owner),
      index(worker_index),
      sizer(BatchSizerConfig{owner.live_.batch.rows, owner.live_.batch.min_rows,
                             owner.live_.batch.max_rows,
                             owner.BatchTarget()}),
      gate(owner.io_) {
  runner.sizers_.push_back(&sizer);
  runner.gates_.push_back(&gate);
}

Runner::WorkerState::~WorkerState() {
  if (range != nullptr && !range->done) runner.queue_.GiveBack(range);
  if (conn != nullptr) std::erase(runner.connections_, conn.get());
  if (mover.source != nullptr) std::erase(runner.source_connections_, mover.source.get());
  std::erase(runner.sizers_, &sizer);
  std::erase(runner.gates_, &gate);
}

std::vector<pg::AsyncConnection*> Runner::WorkerState::Sessions() const {
  std::vector<pg::AsyncConnection*> sessions{conn.get()};
  if (mover.source != nullptr) sessions.push_back(mover.source.get());
  return sessions;
}

asio::awaitable<void> Runner::Worker(int index) {
  WorkerState worker(*this, index);
  const bool connected = co_await ConnectWorker(worker);
  if (!connected) co_return;
  while (!stopping_) {
    const Turn turn = co_await NextTurn(worker);
    if (turn == Turn::kFinished) break;
    if (turn == Turn::kWait) continue;
    const int64_t rows = BatchRows(worker);
    const absl::Time start = absl::Now();
    // Not a conditional expression: GCC 12 mis-builds co_await inside ?: (garbage results).
    BatchOutcome outcome;
    if (moves_) {
      outcome = co_await MoveBatch(*worker.conn, worker.mover, *worker.range, rows);
    } else {
      outcome = co_await SqlBatch(*worker.conn, *worker.range, rows);
    }
    const absl::Duration elapsed = absl::Now() - start;
    if (outcome.stale) {
      // The checkpoint was not where this worker thought (a batch of a killed earlier run
      // committed late); nothing was changed. Continue from what the job store says.
      absl::Status reloaded = co_await ReloadCheckpoint(*worker.conn, *worker.range);
      if (!reloaded.ok()) {
        Fail(absl::StrCat("could not read the checkpoint of ", worker.range->Describe(), ": ",
                          reloaded.message()));
        break;
      }
      continue;
    }
    if (outcome.status.ok()) {
      Committed(worker, std::move(outcome), rows, elapsed);
      continue;
    }
    const bool go_on = co_await NotCommitted(worker, outcome.status);
    if (!go_on) break;
  }
}

asio::awaitable<bool> Runner::ConnectWorker(WorkerState& worker) {
  auto connected = co_await pg::AsyncConnection::Connect(dsn_);
  if (!connected.ok()) {
    Fail(absl::StrCat("worker ", worker.index, " could not connect: ",
                      connected.status().message()));
    co_return false;
  }
  worker.conn = std::move(connected).value();
  connections_.push_back(worker.conn.get());
  if (!moves_) co_return true;
  auto source = co_await pg::AsyncConnection::Connect(source_dsn_);
  if (!source.ok()) {
    Fail(absl::StrCat("worker ", worker.index, " could not connect to the source: ",
                      source.status().message()));
    co_return false;
  }
  worker.mover.source = std::move(source).value();
  source_connections_.push_back(worker.mover.source.get());
  co_return true;
}

int64_t Runner::BatchRows(const WorkerState& worker) const {
  return CapRowsToPace(worker.sizer.rows(), live_.batch.min_rows,
                       throttle_.decision.rate_limit_rows_per_second, live_.throttle.interval);
}

asio::awaitable<Runner::Turn> Runner::NextTurn(WorkerState& worker) {
  // The throttle: the governor and the operator are asked before every batch, so a hold stops
  // new batches at once while the ones in flight commit.
  if (const std::string held = HoldReason(worker.index); !held.empty()) {
    if (Parked(worker.index) && worker.range != nullptr && !worker.range->done) {
      // Parked by the concurrency limit: hand the range to a worker that may run.
      queue_.GiveBack(worker.range);
      worker.range = nullptr;
    }
    // Nothing left that this worker could do: no range to take or wait for, and none another
    // worker holds that it could split once it may run.
    if (worker.range == nullptr && nothing_left_ && queue_.Held().empty()) {
      co_return Turn::kFinished;
    }
    co_await WaitForGate(worker.gate, live_.throttle.interval);
    co_return Turn::kWait;
  }
  if (worker.range != nullptr && worker.range->done) {
    worker.range->held = false;
    worker.range = nullptr;
  }
  if (worker.range == nullptr) {
    absl::StatusOr<RangeState*> taken = co_await TakeRange(worker);
    if (!taken.ok()) co_return co_await StoreFailed(worker, taken.status());
    worker.range = *taken;
  }
  if (worker.range == nullptr) {
    // None free: split one that another worker holds, rather than leave the job's end to it.
    SplitOutcome split = co_await SplitLargest(worker);
    if (!split.status.ok()) {
      events_.Emit(events::Warning{
          absl::StrCat("worker ", worker.index,
                       " could not split a range and stops: ", split.status.message())});
      co_return Turn::kFinished;
    }
    if (split.retry) {
      co_await WaitForGate(worker.gate, live_.throttle.interval);
      co_return Turn::kWait;
    }
    if (split.range == nullptr) {
      // Ranges other runners own are waited for: when their runner dies, its lease expires and
      // they are free for this one. The job is done for all only when every range is.
      absl::StatusOr<bool> others = co_await OthersUnfinished(worker);
      if (!others.ok()) co_return co_await StoreFailed(worker, others.status());
      if (!*others) {
        nothing_left_ = true;
        WakeWorkers();  // parked workers without a range end too
        co_return Turn::kFinished;
      }
      co_await WaitForGate(worker.gate, live_.throttle.interval);
      co_return Turn::kWait;
    }
    worker.range = split.range;
  }
  // The rate limiter's reservation for the next batch (when it may start) is kept across waits,
  // so a worker that was held while it waited does not take its tokens twice.
  if (throttle_.limiter.rate() <= 0) {
    worker.reserved_until.reset();
    co_return Turn::kGo;
  }
  const absl::Time now = throttle_.clock.Now();
  if (!worker.reserved_until.has_value()) {
    worker.reserved_until = now + throttle_.limiter.Acquire(BatchRows(worker), now);
    worker.reserved_rate = throttle_.limiter.rate();
  } else if (worker.reserved_rate != throttle_.limiter.rate() && now < *worker.reserved_until) {
    // The pace changed while this worker waited: the rows still owed are paid at the new rate,
    // or a wait reserved at the pace's floor would outlast the recovery.
    worker.reserved_until =
        now + (*worker.reserved_until - now) * (worker.reserved_rate / throttle_.limiter.rate());
    worker.reserved_rate = throttle_.limiter.rate();
  }
  if (now < *worker.reserved_until) {
    // Waits in pieces of at most one interval, on the gate, and asks the throttle again after
    // each: a hold, a pause or a stop that comes while it waits must stop this batch.
    co_await WaitForGate(worker.gate,
                         std::min(*worker.reserved_until - now, live_.throttle.interval));
    co_return Turn::kWait;
  }
  worker.reserved_until.reset();
  co_return Turn::kGo;
}

asio::awaitable<absl::StatusOr<RangeState*>> Runner::TakeRange(WorkerState& worker) {
  // A range taken may turn out to have no row left (open above, nothing past its checkpoint):
  // then it is done, and the next one is taken.
  for (int attempt = 0; attempt < 100 && !stopping_; ++attempt) {
    // One of this runner's own first: no other runner takes it while this one's lease holds,
    // and only memory knows whether a worker holds it (the store knows whose, not which worker).
    RangeState* range = queue_.TakeGivenBack();
    if (range == nullptr) {
      CO_ASSIGN_OR_RETURN(range, co_await TakeFromStore(worker));
      if (range == nullptr) co_return nullptr;
    }
    if (range->upper.has_value() || range->end_of_run.has_value() || moves_) co_return range;
    CO_ASSIGN_OR_RETURN(bool rows_left, EndOpenRange(*range));
    if (rows_left) co_return range;
    range->held = false;
    if (!range->done) queue_.GiveBack(range);  // a batch moved its checkpoint: look again later
  }
  co_return nullptr;
}

asio::awaitable<absl::StatusOr<RangeState*>> Runner::TakeFromStore(WorkerState& worker) {
  std::vector<pg::Param> params;
  params.emplace_back(plan_.name);
  params.emplace_back(lease_->id());
  auto taken = co_await worker.conn->Exec(checkpoint::TakeRangeSql(), std::move(params));
  if (!taken.ok()) co_return taken.status();
  if (taken->Rows() == 0) co_return nullptr;
  absl::StatusOr<RangeState> stored = ReadStoredRange(*taken, 0);
  if (!stored.ok()) co_return stored.status();
  // The store's checkpoint, not memory's: another runner may have walked it since.
  RangeState& range = queue_.Taken(stored->id);
  range.lower = std::move(stored->lower);
  range.upper = std::move(stored->upper);
  range.done_upto = std::move(stored->done_upto);
  range.rows_done = std::stoll(std::string(taken->Get(0, 4)));
  range.done = taken->Get(0, 5) == "done";
  co_return &range;
}

absl::StatusOr<RangeState> ReadStoredRange(const pg::Result& result, int row) {
  RangeState range;
  range.id = std::stoi(std::string(result.Get(row, 0)));
  auto lower = checkpoint::ParseTextArray(result.GetOptional(row, 1));
  auto upper = checkpoint::ParseTextArray(result.GetOptional(row, 2));
  auto done_upto = checkpoint::ParseTextArray(result.GetOptional(row, 3));
  if (!lower.ok() || !upper.ok() || !done_upto.ok()) {
    return absl::InternalError(
        absl::StrCat("unreadable bounds of range ", range.id, " in the job store"));
  }
  range.lower = *std::move(lower);
  range.upper = *std::move(upper);
  range.done_upto = *std::move(done_upto);
  return range;
}

absl::StatusOr<bool> Runner::EndOpenRange(RangeState& range) {
  RETURN_IF_ERROR(EnsureControl());
  ASSIGN_OR_RETURN(std::optional<std::vector<std::string>> largest,
                   catalog::Catalog(*control_).KeyBound(*report_.table, *report_.key,
                                                        /*smallest=*/false, range.start()));
  if (largest.has_value()) {
    range.end_of_run = *std::move(largest);
    return true;
  }
  ASSIGN_OR_RETURN(bool finished, store_->FinishRangeAt(plan_.name, range.id, range.done_upto));
  // Not finished: a batch moved its checkpoint meanwhile; the next take reads it again.
  range.done = finished;
  return false;
}

asio::awaitable<absl::StatusOr<bool>> Runner::OthersUnfinished(WorkerState& worker) {
  std::vector<pg::Param> params;
  params.emplace_back(plan_.name);
  params.emplace_back(lease_->id());
  auto counted = co_await worker.conn->Exec(checkpoint::OthersUnfinishedSql(), std::move(params));
  if (!counted.ok()) co_return counted.status();
  co_return counted->Get(0, 0) != "0";
}

asio::awaitable<Runner::Turn> Runner::StoreFailed(WorkerState& worker, const absl::Status& failed) {
  if (stopping_) co_return Turn::kFinished;
  if (pg::Classify(failed) == pg::ErrorClass::kFatal) {
    Fail(absl::StrCat("worker ", worker.index,
                      " could not take a range from the job store: ", failed.message()));
    co_return Turn::kFinished;
  }
  if (pg::Classify(failed) == pg::ErrorClass::kReconnect) {
    ReportReconnect(worker, 0, failed);
    const bool reconnected = co_await ReconnectWorker(worker);
    if (!reconnected) co_return Turn::kFinished;
    co_return Turn::kWait;
  }
  co_await WaitForGate(worker.gate, live_.throttle.interval);
  co_return Turn::kWait;
}

void Runner::ReportReconnect(const WorkerState& worker, int range, const absl::Status& failed) {
  events_.Emit(events::Reconnect{.worker = worker.index,
                                 .range = range,
                                 .sqlstate = pg::SqlStateOf(failed),
                                 .error = std::string(Utf8Prefix(ToStd(failed.message()), 300))});
}

void Runner::ReportRetry(const WorkerState& worker, int range, const absl::Status& failed,
                         absl::Duration wait) {
  events_.Emit(events::Retry{.worker = worker.index,
                             .range = range,
                             .sqlstate = pg::SqlStateOf(failed),
                             .error = std::string(Utf8Prefix(ToStd(failed.message()), 300)),
                             .wait_ms = absl::ToInt64Milliseconds(wait),
                             .batch_rows = worker.sizer.rows()});
}

void Runner::Committed(WorkerState& worker, BatchOutcome outcome, int64_t rows,
                       absl::Duration elapsed) {
  RangeState& range = *worker.range;
  const int64_t updated = outcome.rows;
  range.done_upto = std::move(outcome.done_upto);
  range.rows_done += updated;
  range.done = outcome.done;
  summary_.rows += updated;
  summary_.bytes += outcome.bytes;
  ++summary_.batches;
  summary_.batch_latency.Add(elapsed);
  worker.sizer.OnSuccess(rows, elapsed);
  worker.backoff.Reset();
  worker.consecutive_retries = 0;
  worker.consecutive_reconnects = 0;
  worker.read_only_since.reset();
  rate_window_.emplace_back(absl::Now(), updated);
  if (throttle_.governor.has_value()) throttle_.governor->ReportRows(updated);
  CountForVacuum(updated);
  events_.Emit(events::Batch{.worker = worker.index,
                             .range = range.id,
                             .rows = updated,
                             .seconds = absl::ToDoubleSeconds(elapsed)});
  if (range.done) events_.Emit(events::RangeDone{.range = range.id, .rows = range.rows_done});
}

asio::awaitable<bool> Runner::NotCommitted(WorkerState& worker, const absl::Status& failed) {
  // The batch did not commit (or we cannot tell: ReloadCheckpoint settles it).
  RangeState& range = *worker.range;
  const pg::ErrorClass error_class = pg::Classify(failed);
  if (stopping_) co_return false;  // a second signal cancelled it; the checkpoint is where it was
  const std::string sqlstate = pg::SqlStateOf(failed);
  if (error_class == pg::ErrorClass::kFatal) {
    Fail(absl::StrCat("batch failed on ", range.Describe(), " with SQLSTATE ",
                      sqlstate.empty() ? "none" : sqlstate, ": ", failed.message()));
    co_return false;
  }
  ++summary_.retries;
  if (error_class == pg::ErrorClass::kRetry) {
    if (++worker.consecutive_retries > kMaxConsecutiveRetries) {
      Fail(absl::StrCat("batch on ", range.Describe(), " failed ", kMaxConsecutiveRetries,
                        " times in a row, last with SQLSTATE ", sqlstate, ": ", failed.message()));
      co_return false;
    }
    worker.sizer.OnRetryableFailure();
    throttle_.governor->ReportRetries(1);
    const absl::Duration wait = worker.backoff.Next();
    ReportRetry(worker, range.id, failed, wait);
    co_await Sleep(wait);
  } else {
    // A read-only server is waited for, for as long as a lost one: a failover promotes a
    // standby within that, and a multi-host DSN's new session finds it.
    const bool read_only = sqlstate == kReadOnlySqlState;
    if (read_only && !worker.read_only_since.has_value()) worker.read_only_since = absl::Now();
    if (read_only && absl::Now() - *worker.read_only_since > kReconnectDeadline) {
      Fail(absl::StrCat("the server has refused writes (SQLSTATE 25006: read-only) for more than ",
                        absl::FormatDuration(kReconnectDeadline), " on ", range.Describe(),
                        ": it is a standby, or a primary set read-only. After a failover, list "
                        "every host in the DSN with target_session_attrs=read-write so that a "
                        "new session finds the new primary. Server said: ",
                        failed.message()));
      co_return false;
    }
    // A batch that loses its session every time (it crashes the backend, or gets it killed)
    // would otherwise be sent again forever.
    if (!read_only && ++worker.consecutive_reconnects > kMaxReconnectsWithoutProgress) {
      Fail(absl::StrCat("the batch on ", range.Describe(), " lost its connection ",
                        kMaxReconnectsWithoutProgress,
                        " times in a row without committing; it may be crashing or killing its "
                        "server backend. Last error: ",
                        failed.message()));
      co_return false;
    }
    ReportReconnect(worker, range.id, failed);
    const bool reconnected = co_await ReconnectWorker(worker);
    if (!reconnected) co_return false;
  }
  if (stopping_) co_return false;
  absl::Status reloaded = co_await ReloadCheckpoint(*worker.conn, range);
  if (!reloaded.ok()) {
    if (pg::Classify(reloaded) == pg::ErrorClass::kReconnect) co_return true;  // next round
    Fail(absl::StrCat("could not read the checkpoint of ", range.Describe(), ": ",
                      reloaded.message()));
    co_return false;
  }
  co_return true;
}

std::vector<pg::Statement> Runner::BatchStatements(const RangeState& range, int64_t rows) {
  const sql::RangeEnds ends{range.start().has_value(), range.end().has_value()};
  std::string& sql = batch_sql_[{ends.has_lower, ends.has_upper}];
  if (sql.empty()) {
    sql = plan_.mode == plan::Mode::kCopy ? batch::BuildCopyBatch(copy_spec_, ends)
                                          : batch::BuildUpdateBatch(spec_, ends);
  }

  std::vector<pg::Param> params;
  if (ends.has_lower) params.insert(params.end(), range.start()->begin(), range.start()->end());
  if (ends.has_upper) params.insert(params.end(), range.end()->begin(), range.end()->end());
  params.emplace_back(std::to_string(rows));
  params.emplace_back(plan_.name);
  params.emplace_back(std::to_string(range.id));
  params.push_back(checkpoint::TextArrayLiteral(range.done_upto));
  params.push_back(checkpoint::TextArrayLiteral(range.upper));

  std::vector<pg::Statement> statements;
  for (std::string& text : batch::BatchTransaction(live_.throttle, plan_.triggers, sql)) {
    statements.push_back(pg::Statement{std::move(text), {}});
  }
  statements[batch::kBatchStatementIndex].params = std::move(params);
  return statements;
}

asio::awaitable<BatchOutcome> Runner::SqlBatch(pg::AsyncConnection& conn, const RangeState& range,
                                               int64_t rows) {
  BatchOutcome out;
  pg::PipelineResult result = co_await conn.Pipeline(BatchStatements(range, rows));
  if (!result.ok()) {
    out.status = std::move(result.status);
    co_return out;
  }
  const pg::Result& batch = result.results[batch::kBatchStatementIndex];
  if (batch.Rows() != 1) {
    out.stale = true;
    co_return out;
  }
  auto done_upto = checkpoint::ParseTextArray(batch.GetOptional(0, 1));
  if (!done_upto.ok()) {
    out.status = absl::InternalError(done_upto.status().message());
    co_return out;
  }
  out.rows = std::stoll(std::string(batch.Get(0, 0)));
  out.done_upto = *done_upto;
  out.done = batch.Get(0, 2) == "t";
  co_return out;
}

asio::awaitable<absl::Status> Runner::ReloadCheckpoint(pg::AsyncConnection& conn,
                                                       RangeState& range) {
  // After a failure we cannot know from the client side whether COMMIT went through (the reply
  // may be what was lost). The job store knows: continue from what it says, never from memory.
  // Parameters built outside the co_await: GCC 12 rejects initializer lists in coroutine frames.
  std::vector<pg::Param> params;
  params.emplace_back(plan_.name);
  params.emplace_back(std::to_string(range.id));
  auto result = co_await conn.Exec(
      "SELECT done_upto, rows_done, state, upper FROM \"pgbackfill\".\"ranges\""
      " WHERE job_name = $1 AND range_id = $2::int",
      std::move(params));
  if (!result.ok()) co_return result.status();
  if (result->Rows() != 1) {
    co_return absl::NotFoundError(absl::StrCat("the checkpoint row of ", range.Describe(),
                                               " is gone from the job store"));
  }
  auto done_upto = checkpoint::ParseTextArray(result->GetOptional(0, 0));
  if (!done_upto.ok()) co_return done_upto.status();
  // The upper bound too: a split (SplitRange) may have moved it down since this range was read.
  auto upper = checkpoint::ParseTextArray(result->GetOptional(0, 3));
  if (!upper.ok()) co_return upper.status();
  range.done_upto = *done_upto;
  range.upper = *upper;
  const int64_t stored = std::stoll(std::string(result->Get(0, 1)));
  // Rows the store has and we did not count: a batch whose COMMIT went through while its reply
  // was lost (or, after a kill -9, an earlier run's batch that committed late). They are done
  // and in no other count, so the run's totals take them here.
  if (const int64_t unseen = stored - range.rows_done; unseen > 0) {
    summary_.rows += unseen;
    rate_window_.emplace_back(absl::Now(), unseen);
  }
  range.rows_done = stored;
  range.done = result->Get(0, 2) == "done";
  co_return absl::OkStatus();
}

asio::awaitable<bool> Runner::ReconnectWorker(WorkerState& worker) {
  // Out of the lists the second signal cancels and the probes watch until they are back.
  std::erase(connections_, worker.conn.get());
  if (moves_) std::erase(source_connections_, worker.mover.source.get());
  worker.mover.source_ready = false;
  worker.mover.target_ready = false;
  const std::vector<pg::AsyncConnection*> conns = worker.Sessions();
  // The sessions that broke; when none shows it (the error came first), all of them.
  std::vector<pg::AsyncConnection*> broken;
  for (pg::AsyncConnection* conn : conns) {
    if (!conn->IsOpen()) broken.push_back(conn);
  }
  if (broken.empty()) broken = conns;
  const absl::Time deadline = absl::Now() + kReconnectDeadline;
  while (!stopping_) {
    co_await Sleep(worker.backoff.Next());
    absl::Status status;
    while (!broken.empty()) {
      status = co_await broken.back()->Reconnect();
      if (!status.ok()) break;
      broken.pop_back();
    }
    if (status.ok()) {
      ++summary_.reconnects;
      events_.Emit(events::Reconnected{.worker = worker.index});
      connections_.push_back(worker.conn.get());
      if (moves_) source_connections_.push_back(worker.mover.source.get());
      co_return true;
    }
    if (absl::Now() > deadline) {
      Fail(absl::StrCat("worker ", worker.index, " could not reconnect for ",
                        absl::FormatDuration(kReconnectDeadline), ": ", status.message()));
      co_return false;
    }
  }
  co_return false;
}

void Runner::SpawnWorkers(int count) {
  // As many workers as asked while any range is unfinished: a worker left without a range
  // splits one another worker holds (split_range.cc), or ends when none is worth splitting.
  const int unfinished = static_cast<int>(queue_.all.size()) - queue_.Done();
  const int target = unfinished > 0 ? count : 0;
  while (workers_running_ < target) {
    const int index = next_worker_index_++;
    ++workers_running_;
    live_workers_.insert(index);
    asio::co_spawn(io_, GuardedWorker(index), asio::detached);
  }
}

bool Runner::AdoptOrphanedRanges() {
  // A take whose reply was lost with its connection, after the server committed it, leaves a
  // range this runner owns in the store and no worker knows of: no other runner takes it while
  // our lease holds, and our own takes skip ranges we own. With the last worker out no take is
  // in flight, so each such range is one of those. A few rounds at most: a range that comes back
  // again and again is left to the end's report.
  constexpr int kMaxOrphanRounds = 3;
  if (stopping_ || failure_.has_value() || throttle_.aborted_by.has_value() || lease_ == nullptr ||
      orphan_rounds_ >= kMaxOrphanRounds || !EnsureControl().ok()) {
    return false;
  }
  absl::StatusOr<std::vector<checkpoint::RangeRecord>> ranges = store_->LoadRanges(plan_.name);
  if (!ranges.ok()) return false;
  int adopted = 0;
  for (const checkpoint::RangeRecord& record : *ranges) {
    if (record.state == "done" || record.owner != lease_->id()) continue;
    RangeState& range = queue_.Taken(record.id);
    range.lower = record.lower;
    range.upper = record.upper;
    range.done_upto = record.done_upto;
    range.rows_done = record.rows_done;
    range.done = false;
    queue_.GiveBack(&range);
    ++adopted;
  }
  if (adopted == 0) return false;
  ++orphan_rounds_;
  events_.Emit(events::Warning{
      absl::StrCat(adopted,
                   " range(s) this run owns in the job store were held by no worker (a take whose "
                   "answer was lost with its connection); taking them again")});
  SpawnWorkers(live_.workers);
  return workers_running_ > 0;
}

asio::awaitable<void> Runner::GuardedWorker(int index) {
  // Workers are spawned detached, where an exception would vanish and leave the run waiting for a
  // worker that is gone. Turn it into a failed job instead.
  try {
    co_await Worker(index);
  } catch (const std::exception& e) {
    Fail(absl::StrCat("worker ", index, " stopped on an internal error: ", e.what()));
  }
  WorkerFinished(index);
}

void Runner::WorkerFinished(int index) {
  live_workers_.erase(index);
  if (--workers_running_ > 0) return;
  if (AdoptOrphanedRanges()) return;
  // Last worker out: stop the ticker, the throttle loop and the signal watch so io_.run()
  // returns.
  if (ticker_.has_value()) ticker_->cancel();
  if (throttle_timer_.has_value()) throttle_timer_->cancel();
  if (throttle_.prober != nullptr) throttle_.prober->Cancel();
  StopVacuum();
  boost::system::error_code ignored;
  signals_.cancel(ignored);
  // Back to the default disposition: a signal during the last bookkeeping ends the process, as
  // the user asked, instead of being swallowed by a set nobody waits on.
  signals_.clear(ignored);
}

}  // namespace pgbackfill::exec::internal
