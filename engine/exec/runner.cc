#include "pgbackfill/exec/runner.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <csignal>
#include <memory>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "pgbackfill/pg/error.h"
#include "pgbackfill/exec/phases.h"
#include "pgbackfill/ranges/sampler.h"
#include "runner_internal.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::exec {
namespace internal {
namespace {

using nlohmann::json;

// A retryable error (lock timeout, deadlock, statement timeout) this many times in a row on one
// batch means something holds the rows for good: stop and say so rather than spin forever.
constexpr int kMaxConsecutiveRetries = 100;
// Reconnects in a row with no committed batch in between before the job stops.
constexpr int kMaxReconnectsWithoutProgress = 5;
// How long a worker keeps trying to reconnect (a server restart, a failover) before giving up.
constexpr absl::Duration kReconnectDeadline = absl::Minutes(5);
// How often the job row is refreshed with totals (status from another host reads it).
constexpr absl::Duration kStoreRefresh = absl::Seconds(2);

}  // namespace

std::string NowText() {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
}

json Event(const char* type) { return json{{"event", type}, {"time", NowText()}}; }

namespace {

std::string KeyText(const std::optional<ranges::KeyValue>& key, const char* open) {
  if (!key.has_value()) return open;
  return absl::StrCat("(", absl::StrJoin(*key, ", "), ")");
}

std::string HostName() {
  std::array<char, 256> name{};
  if (gethostname(name.data(), name.size() - 1) != 0) return "";
  return name.data();
}

}  // namespace

std::string RangeState::Describe() const {
  return absl::StrCat("range ", id, " ", KeyText(lower, "(-inf"), " .. ", KeyText(upper, "+inf)"),
                      ", checkpoint ", KeyText(done_upto, "none"));
}

Runner::Runner(const plan::Plan& plan, const RunOptions& options, EventSink& events)
    : plan_(plan),
      live_(plan),
      options_(options),
      events_(events),
      dsn_(plan::HomeDsn(plan, options.dsn)),
      signals_(io_),
      moves_(plan::MovesBetweenDatabases(plan)),
      source_dsn_(plan::SourceDsn(plan, options.dsn)) {}

void Runner::Fail(std::string message) {
  if (!failure_.has_value()) failure_ = std::move(message);
  stopping_ = true;
  WakeWorkers();
}

absl::Status Runner::EnsureControl() {
  // The control session holds the job's advisory lock; if the server dropped it (restart), take a
  // new one and the lock again, or stop: another process may have taken the job over.
  if (lock_lost_) return absl::FailedPreconditionError("the job's lock is held by another process");
  if (control_.has_value() && control_->Exec("SELECT 1").ok()) return absl::OkStatus();
  store_.reset();
  ASSIGN_OR_RETURN(pg::Connection conn, pg::Connection::Connect(dsn_));
  control_.emplace(std::move(conn));
  // As preflight did for the first session: the job store's SQL must not meet a hostile
  // search_path's operators.
  RETURN_IF_ERROR(catalog::Catalog(*control_).Harden().status());
  store_.emplace(*control_);
  checkpoint::JobStore& store = *store_;
  ASSIGN_OR_RETURN(bool locked, store.TryLockJob(plan_.name));
  if (!locked) {
    Fail(absl::StrCat("job ", plan_.name,
                      " was taken over by another process while this one reconnected; stopping"));
    lock_lost_ = true;
    return absl::FailedPreconditionError(*failure_);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<RunSummary>> Runner::PrepareJob() {
  ASSIGN_OR_RETURN(pg::Connection conn, pg::Connection::Connect(dsn_));
  control_.emplace(std::move(conn));
  ASSIGN_OR_RETURN(report_, catalog::PreflightPlan(*control_, plan_, options_.dsn));
  auto refuse = [&](std::string message) {
    RunSummary refused;
    refused.outcome = Outcome::kRefused;
    refused.message = std::move(message);
    return std::optional<RunSummary>(std::move(refused));
  };
  if (!report_.ok()) {
    // A finished job stays finished: after contract the plan may no longer compile (a column it
    // reads was dropped, `into` was swapped in), and running it again must still be a no-op.
    checkpoint::JobStore peek(*control_);
    ASSIGN_OR_RETURN(bool store_exists, peek.Exists());
    if (store_exists) {
      ASSIGN_OR_RETURN(std::optional<checkpoint::JobRecord> job, peek.LoadJob(plan_.name));
      if (job.has_value() && job->state == "done" && job->plan_hash == report_.plan_hash) {
        RunSummary done;
        done.outcome = Outcome::kDone;
        done.message = "the job had already finished; nothing to do";
        done.total_rows = job->rows_done;
        return std::optional<RunSummary>(done);
      }
    }
    return refuse(absl::StrCat("preflight found ", report_.problems.size(), " problem(s):\n  ",
                               absl::StrJoin(report_.problems, "\n  ")));
  }

  store_.emplace(*control_);
  checkpoint::JobStore& store = *store_;
  RETURN_IF_ERROR(store.EnsureSchema());
  // An abort asked before this moment was meant for an earlier run (see ClearAbort below); one
  // asked after it is for this run, also when it lands before the lock is taken.
  ASSIGN_OR_RETURN(pg::Result now, control_->Exec("SELECT pg_catalog.clock_timestamp()::text"));
  run_requested_at_ = std::string(now.Get(0, 0));
  // Right after a `kill -9` the old process's session may take a moment to go away; give it that
  // moment before calling the job busy. (Correctness does not rest on this lock: every batch
  // claims its checkpoint row, see batch_sql.h.)
  bool locked = false;
  for (int attempt = 0; attempt < 50 && !locked; ++attempt) {
    if (attempt > 0) absl::SleepFor(absl::Milliseconds(200));
    ASSIGN_OR_RETURN(locked, store.TryLockJob(plan_.name));
  }
  if (!locked) {
    ASSIGN_OR_RETURN(int holder, store.LockHolderPid(plan_.name));
    return refuse(absl::StrCat("job ", plan_.name,
                               " is running in another pgbackfill process (its session is backend "
                               "pid ", holder, "); wait for it, or stop it first"));
  }
  ASSIGN_OR_RETURN(std::optional<checkpoint::JobRecord> job, store.LoadJob(plan_.name));
  const bool needs_expand = NeedsExpand(plan_) && !options_.scratch;
  if (job.has_value() && options_.restart) {
    if (needs_expand) {
      // Deleting the job would forget its expand steps while its trigger stays installed.
      return refuse(absl::StrCat("job ", plan_.name, " has expand steps; start it over with "
                                 "`pgbackfill run --restart`, which runs expand again first"));
    }
    RETURN_IF_ERROR(store.DeleteJob(plan_.name));
    job.reset();
  }
  if (job.has_value() && job->state == "rolled_back") {
    return refuse(absl::StrCat("job ", plan_.name,
                               " was rolled back; give --restart to start it over"));
  }
  if (needs_expand) {
    // Without the trigger, rows the application writes behind a checkpoint would never be
    // filled (or copied): no batch before `expand` has run.
    std::set<std::string> steps;
    if (job.has_value()) {
      ASSIGN_OR_RETURN(steps, store.StepsDone(plan_.name));
    }
    if (!steps.contains("phase:expand")) {
      return refuse(absl::StrCat("job ", plan_.name, " needs `pgbackfill expand` before its "
                                 "backfill (it has expand statements, a dual-write trigger or "
                                 "copies into another table); `pgbackfill run` does both"));
    }
  }
  if (job.has_value() && job->plan_hash != report_.plan_hash) {
    return refuse(absl::StrCat(
        "the plan of job ", plan_.name, " changed since the job started (plan hash ",
        job->plan_hash, ", now ", report_.plan_hash,
        "): resuming would mix two different backfills. Run it with the original plan, or give "
        "--restart to start this job over (rows already updated keep their values)"));
  }
  if (job.has_value() && job->state == "done") {
    RunSummary done;
    done.outcome = Outcome::kDone;
    done.message = "the job had already finished; nothing to do";
    done.total_rows = job->rows_done;
    return std::optional<RunSummary>(done);
  }
  // A job `expand` created has no ranges yet: this is its first backfill.
  std::vector<checkpoint::RangeRecord> existing;
  if (job.has_value()) {
    ASSIGN_OR_RETURN(existing, store.LoadRanges(plan_.name));
  }
  summary_.resumed = job.has_value() && !existing.empty();
  std::vector<ranges::KeyRange> planned;
  if (existing.empty()) {
    // The keys are the source's: between databases, sampled on a session of its own.
    std::optional<pg::Connection> source;
    if (moves_) {
      ASSIGN_OR_RETURN(pg::Connection opened, pg::Connection::Connect(source_dsn_));
      source.emplace(std::move(opened));
      RETURN_IF_ERROR(catalog::Catalog(*source).Harden().status());
      // The bounds are stored as text and cast back on both servers: one text form for them.
      RETURN_IF_ERROR(source->ExecScript(move::VerifySessionSettings()));
    }
    ASSIGN_OR_RETURN(planned, ranges::PlanRanges(source.has_value() ? *source : *control_,
                                                 *report_.table, *report_.key,
                                                 report_.estimate->rows, plan_.workers));
  }
  if (job.has_value() && existing.empty()) {
    RETURN_IF_ERROR(store.AddRanges(plan_.name, planned));
  } else if (!job.has_value()) {
    RETURN_IF_ERROR(store.CreateJob(NewJobRecord(plan_, report_, "backfill"), planned));
  } else {
    rows_before_ = job->rows_done;
  }
  RETURN_IF_ERROR(DecideStaging(existing.empty()));
  if (staged_ && report_.target_key_index.empty()) {
    // Nothing would stop a row that was there before the job from being inserted again.
    return refuse(absl::StrCat(
        plan::QuoteQualified(report_.target->name),
        " had rows when this job started and has no unique key over the columns the key is "
        "copied into (", absl::StrJoin(report_.target_key, ", "),
        "): rows already there could be copied twice. Empty it, or give it such a key (then "
        "on_conflict decides)"));
  }
  if (job.has_value()) {
    // An abort asked of an earlier run is not one of this run: starting the job again is the
    // operator's newer word. A pause stands (the job starts held) until `pgbackfill resume`.
    RETURN_IF_ERROR(store.ClearAbort(plan_.name, run_requested_at_));
  }
  return std::optional<RunSummary>();
}

absl::Status Runner::LoadRanges() {
  ASSIGN_OR_RETURN(std::vector<checkpoint::RangeRecord> records, store_->LoadRanges(plan_.name));
  ranges_.clear();
  ranges_.reserve(records.size());
  rows_before_ = 0;
  for (const checkpoint::RangeRecord& record : records) {
    RangeState range;
    range.id = record.id;
    range.lower = record.lower;
    range.upper = record.upper;
    range.done_upto = record.done_upto;
    range.rows_done = record.rows_done;
    range.done = record.state == "done";
    rows_before_ += record.rows_done;
    ranges_.push_back(std::move(range));
  }
  for (RangeState& range : ranges_) {
    if (!range.done) pending_.push_back(&range);
  }
  spec_.table = report_.table->name;
  for (const catalog::Column& column : report_.key->columns) {
    spec_.key.push_back(KeyColumn{column.name, column.type});
  }
  spec_.set = plan_.set;
  spec_.where = plan_.where;
  if (plan_.mode == plan::Mode::kCopy) {
    copy_spec_.source = spec_.table;
    copy_spec_.key = spec_.key;
    copy_spec_.target = report_.target->name;
    copy_spec_.columns = report_.copy_columns;
    copy_spec_.target_key = report_.target_key;
    copy_spec_.on_conflict = plan_.on_conflict;
    copy_spec_.where = plan_.where;
  }
  if (moves_) move_spec_ = catalog::MoveSpecFor(report_, plan_);
  return absl::OkStatus();
}

std::vector<pg::Statement> Runner::BatchStatements(const RangeState& range, int64_t rows) {
  const RangeEnds ends{range.start().has_value(), range.upper.has_value()};
  std::string& sql = batch_sql_[{ends.has_lower, ends.has_upper}];
  if (sql.empty()) {
    sql = plan_.mode == plan::Mode::kCopy ? BuildCopyBatch(copy_spec_, ends)
                                          : BuildUpdateBatch(spec_, ends);
  }

  std::vector<pg::Param> params;
  if (ends.has_lower) params.insert(params.end(), range.start()->begin(), range.start()->end());
  if (ends.has_upper) params.insert(params.end(), range.upper->begin(), range.upper->end());
  params.emplace_back(std::to_string(rows));
  params.emplace_back(plan_.name);
  params.emplace_back(std::to_string(range.id));
  params.push_back(checkpoint::TextArrayLiteral(range.done_upto));

  std::vector<pg::Statement> statements;
  for (std::string& text : BatchTransaction(live_.throttle, sql)) {
    statements.push_back(pg::Statement{std::move(text), {}});
  }
  statements[kBatchStatementIndex].params = std::move(params);
  return statements;
}

RangeState* Runner::NextRange() {
  if (pending_.empty()) return nullptr;
  RangeState* range = pending_.front();
  pending_.pop_front();
  return range;
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
      "SELECT done_upto, rows_done, state FROM \"pgbackfill\".\"ranges\""
      " WHERE job_name = $1 AND range_id = $2::int",
      std::move(params));
  if (!result.ok()) co_return result.status();
  if (result->Rows() != 1) {
    co_return absl::NotFoundError(absl::StrCat("the checkpoint row of ", range.Describe(),
                                               " is gone from the job store"));
  }
  auto done_upto = checkpoint::ParseTextArray(result->GetOptional(0, 0));
  if (!done_upto.ok()) co_return done_upto.status();
  range.done_upto = *done_upto;
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

asio::awaitable<bool> Runner::ReconnectWorker(std::vector<pg::AsyncConnection*> conns,
                                              Backoff& backoff, int index) {
  // The sessions that broke; when none shows it (the error came first), all of them.
  std::vector<pg::AsyncConnection*> broken;
  for (pg::AsyncConnection* conn : conns) {
    if (!conn->IsOpen()) broken.push_back(conn);
  }
  if (broken.empty()) broken = conns;
  const absl::Time deadline = absl::Now() + kReconnectDeadline;
  while (!stopping_) {
    co_await Sleep(backoff.Next());
    absl::Status status;
    while (!broken.empty()) {
      status = co_await broken.back()->Reconnect();
      if (!status.ok()) break;
      broken.pop_back();
    }
    if (status.ok()) {
      ++summary_.reconnects;
      json event = Event("reconnected");
      event["worker"] = index;
      events_.Emit(event);
      co_return true;
    }
    if (absl::Now() > deadline) {
      Fail(absl::StrCat("worker ", index, " could not reconnect for ",
                        absl::FormatDuration(kReconnectDeadline), ": ", status.message()));
      co_return false;
    }
  }
  co_return false;
}

asio::awaitable<BatchOutcome> Runner::SqlBatch(pg::AsyncConnection& conn, const RangeState& range,
                                               int64_t rows) {
  BatchOutcome out;
  pg::PipelineResult result = co_await conn.Pipeline(BatchStatements(range, rows));
  if (!result.ok()) {
    out.status = std::move(result.status);
    co_return out;
  }
  const pg::Result& batch = result.results[kBatchStatementIndex];
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

asio::awaitable<void> Runner::Worker(int index) {
  Backoff backoff;
  BatchSizer sizer(BatchSizerConfig{live_.batch.rows, live_.batch.min_rows, live_.batch.max_rows,
                                    live_.batch.target * batch_scale_});
  std::unique_ptr<pg::AsyncConnection> conn;
  MoverSession mover;  // the data mover's
  RangeState* range = nullptr;
  // Runs on every exit, also when an exception unwinds the coroutine: the shared lists must never
  // point into a finished frame, and a range taken but not finished goes back, so that `pending_`
  // stays the truth for the summary.
  asio::steady_timer gate(io_);
  struct Registration {
    Runner* runner;
    BatchSizer* sizer;
    asio::steady_timer* gate;
    std::unique_ptr<pg::AsyncConnection>* conn;
    MoverSession* mover;
    RangeState** range;
    ~Registration() {
      if (*range != nullptr && !(*range)->done) runner->pending_.push_front(*range);
      if (*conn != nullptr) std::erase(runner->connections_, conn->get());
      if (mover->source != nullptr) std::erase(runner->source_connections_, mover->source.get());
      std::erase(runner->sizers_, sizer);
      std::erase(runner->gates_, gate);
    }
  } registration{this, &sizer, &gate, &conn, &mover, &range};
  sizers_.push_back(&sizer);
  gates_.push_back(&gate);
  {
    auto connected = co_await pg::AsyncConnection::Connect(dsn_);
    if (!connected.ok()) {
      Fail(absl::StrCat("worker ", index, " could not connect: ", connected.status().message()));
      co_return;
    }
    conn = std::move(connected).value();
  }
  connections_.push_back(conn.get());
  if (moves_) {
    auto connected = co_await pg::AsyncConnection::Connect(source_dsn_);
    if (!connected.ok()) {
      Fail(absl::StrCat("worker ", index, " could not connect to the source: ",
                        connected.status().message()));
      co_return;
    }
    mover.source = std::move(connected).value();
    source_connections_.push_back(mover.source.get());
  }
  std::vector<pg::AsyncConnection*> sessions{conn.get()};
  if (moves_) sessions.push_back(mover.source.get());

  int consecutive_retries = 0;
  int consecutive_reconnects = 0;
  // The rate limiter's reservation for the next batch: when it may start. Kept across waits, so a
  // worker that was held while it waited does not take its tokens twice.
  std::optional<absl::Time> reserved_until;
  while (!stopping_) {
    // The throttle: the governor and the operator are asked before every batch, so a hold stops
    // new batches at once while the ones in flight commit.
    if (const std::string held = HoldReason(index); !held.empty()) {
      if (Parked(index) && range != nullptr && !range->done) {
        // Parked by the concurrency limit: hand the range to a worker that may run.
        pending_.push_front(range);
        range = nullptr;
      }
      if (range == nullptr && pending_.empty()) break;  // nothing left that this worker could do
      co_await WaitForGate(gate, live_.throttle.interval);
      continue;
    }
    if (range == nullptr || range->done) {
      range = NextRange();
      if (range == nullptr) break;
    }
    const int64_t rows = sizer.rows();
    if (limiter_.rate() <= 0) {
      reserved_until.reset();
    } else {
      const absl::Time now = clock_.Now();
      if (!reserved_until.has_value()) reserved_until = now + limiter_.Acquire(rows, now);
      if (now < *reserved_until) {
        // Waits in pieces of at most one interval, on the gate, and asks the throttle again
        // after each: a hold, a pause or a stop that comes while it waits must stop this batch.
        co_await WaitForGate(gate, std::min(*reserved_until - now, live_.throttle.interval));
        continue;
      }
      reserved_until.reset();
    }
    const absl::Time start = absl::Now();
    // Not a conditional expression: GCC 12 mis-builds co_await inside ?: (garbage results).
    BatchOutcome outcome;
    if (moves_) {
      outcome = co_await MoveBatch(*conn, mover, *range, rows);
    } else {
      outcome = co_await SqlBatch(*conn, *range, rows);
    }
    const absl::Duration elapsed = absl::Now() - start;

    if (outcome.stale) {
      // The checkpoint was not where this worker thought (a batch of a killed earlier run
      // committed late); nothing was changed. Continue from what the job store says.
      absl::Status reloaded = co_await ReloadCheckpoint(*conn, *range);
      if (!reloaded.ok()) {
        Fail(absl::StrCat("could not read the checkpoint of ", range->Describe(), ": ",
                          reloaded.message()));
        break;
      }
      continue;
    }
    if (outcome.status.ok()) {
      const int64_t updated = outcome.rows;
      range->done_upto = std::move(outcome.done_upto);
      range->rows_done += updated;
      range->done = outcome.done;
      summary_.rows += updated;
      summary_.bytes += outcome.bytes;
      ++summary_.batches;
      summary_.batch_latency.Add(elapsed);
      sizer.OnSuccess(rows, elapsed);
      backoff.Reset();
      consecutive_retries = 0;
      consecutive_reconnects = 0;
      rate_window_.emplace_back(absl::Now(), updated);
      if (governor_.has_value()) governor_->ReportRows(updated);
      CountForVacuum(updated);
      if (range->done) {
        json event = Event("range_done");
        event["range"] = range->id;
        event["rows"] = range->rows_done;
        events_.Emit(event);
      }
      continue;
    }

    // The batch did not commit (or we cannot tell: ReloadCheckpoint settles it).
    const absl::Status& failed = outcome.status;
    const pg::ErrorClass error_class = pg::Classify(failed);
    if (stopping_) break;  // a second signal cancelled it; the checkpoint is where it was
    const std::string sqlstate = pg::SqlStateOf(failed);
    if (error_class == pg::ErrorClass::kFatal) {
      Fail(absl::StrCat("batch failed on ", range->Describe(), " with SQLSTATE ",
                        sqlstate.empty() ? "none" : sqlstate, ": ", failed.message()));
      break;
    }
    ++summary_.retries;
    json event = Event(error_class == pg::ErrorClass::kRetry ? "retry" : "reconnect");
    event["worker"] = index;
    event["range"] = range->id;
    event["sqlstate"] = sqlstate;
    event["error"] = std::string(Utf8Prefix(ToStd(failed.message()), 300));
    if (error_class == pg::ErrorClass::kRetry) {
      if (++consecutive_retries > kMaxConsecutiveRetries) {
        Fail(absl::StrCat("batch on ", range->Describe(), " failed ", kMaxConsecutiveRetries,
                          " times in a row, last with SQLSTATE ", sqlstate, ": ",
                          failed.message()));
        break;
      }
      sizer.OnRetryableFailure();
      governor_->ReportRetries(1);
      const absl::Duration wait = backoff.Next();
      event["wait_ms"] = absl::ToInt64Milliseconds(wait);
      event["batch_rows"] = sizer.rows();
      events_.Emit(event);
      co_await Sleep(wait);
    } else {
      // A batch that loses its session every time (it crashes the backend, or gets it killed)
      // would otherwise be sent again forever.
      if (++consecutive_reconnects > kMaxReconnectsWithoutProgress) {
        Fail(absl::StrCat("the batch on ", range->Describe(), " lost its connection ",
                          kMaxReconnectsWithoutProgress,
                          " times in a row without committing; it may be crashing or killing its "
                          "server backend. Last error: ",
                          failed.message()));
        break;
      }
      events_.Emit(event);
      std::erase(connections_, conn.get());
      if (moves_) std::erase(source_connections_, mover.source.get());
      mover.source_ready = false;
      mover.target_ready = false;
      const bool reconnected = co_await ReconnectWorker(sessions, backoff, index);
      if (!reconnected) break;
      connections_.push_back(conn.get());
      if (moves_) source_connections_.push_back(mover.source.get());
    }
    if (stopping_) break;
    absl::Status reloaded = co_await ReloadCheckpoint(*conn, *range);
    if (!reloaded.ok()) {
      if (pg::Classify(reloaded) == pg::ErrorClass::kReconnect) continue;  // next round reconnects
      Fail(absl::StrCat("could not read the checkpoint of ", range->Describe(), ": ",
                        reloaded.message()));
      break;
    }
  }
}

asio::awaitable<void> Runner::Sleep(absl::Duration duration) {
  asio::steady_timer timer(io_, absl::ToChronoNanoseconds(duration));
  boost::system::error_code ignored;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
}

void Runner::SpawnWorkers(int count) {
  // Never more workers than unfinished ranges: a range is worked by one worker at a time.
  int unfinished = 0;
  for (const RangeState& range : ranges_) unfinished += range.done ? 0 : 1;
  const int target = std::min(count, unfinished);
  while (workers_running_ < target) {
    const int index = next_worker_index_++;
    ++workers_running_;
    live_workers_.insert(index);
    asio::co_spawn(io_, GuardedWorker(index), asio::detached);
  }
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
  // Last worker out: stop the ticker, the throttle loop and the signal watch so io_.run()
  // returns.
  if (ticker_.has_value()) ticker_->cancel();
  if (throttle_timer_.has_value()) throttle_timer_->cancel();
  if (prober_ != nullptr) prober_->Cancel();
  StopVacuum();
  boost::system::error_code ignored;
  signals_.cancel(ignored);
  // Back to the default disposition: a signal during the last bookkeeping ends the process, as
  // the user asked, instead of being swallowed by a set nobody waits on.
  signals_.clear(ignored);
}

void Runner::EmitProgress() {
  const absl::Time now = absl::Now();
  while (!rate_window_.empty() && now - rate_window_.front().first > absl::Seconds(10)) {
    rate_window_.pop_front();
  }
  int64_t window_rows = 0;
  for (const auto& [when, rows] : rate_window_) window_rows += rows;
  const double window_seconds =
      std::min(10.0, std::max(1.0, absl::ToDoubleSeconds(now - started_)));
  const double rate = static_cast<double>(window_rows) / window_seconds;
  const int64_t done = rows_before_ + summary_.rows;
  const int64_t estimated = std::max<int64_t>(report_.estimate->rows, done);
  int ranges_done = 0;
  for (const RangeState& range : ranges_) ranges_done += range.done ? 1 : 0;
  int64_t batch_rows = 0;
  for (const BatchSizer* sizer : sizers_) batch_rows += sizer->rows();

  json event = Event("progress");
  event["job"] = plan_.name;
  event["rows_done"] = done;
  event["estimated_rows"] = estimated;
  event["percent"] = estimated > 0 ? 100.0 * static_cast<double>(done) / static_cast<double>(estimated)
                                   : 100.0;
  event["rows_per_second"] = static_cast<int64_t>(rate);
  event["eta_seconds"] =
      rate > 0 ? json(static_cast<int64_t>(static_cast<double>(estimated - done) / rate)) : json();
  event["workers"] = throttle_reason_.empty()
                        ? std::min(decision_.active_workers, static_cast<int>(connections_.size()))
                        : 0;
  event["batch_rows"] = sizers_.empty() ? 0 : batch_rows / static_cast<int64_t>(sizers_.size());
  event["ranges_done"] = ranges_done;
  event["ranges_total"] = ranges_.size();
  event["retries"] = summary_.retries;
  event["throttle"] = throttle_reason_.empty() ? json() : json(throttle_reason_);
  events_.Emit(event);
}

void Runner::RefreshStore() {
  // Best effort: the batches carry the checkpoints; this only refreshes totals for `status`.
  if (!EnsureControl().ok()) return;
  if (store_->RecordProgress(plan_.name, summary_.retries - retries_reported_, 0, throttle_reason_)
          .ok()) {
    retries_reported_ = summary_.retries;
  }
}

asio::awaitable<void> Runner::Ticker() {
  absl::Time last_refresh = absl::Now();
  while (workers_running_ > 0) {
    ticker_->expires_after(std::chrono::seconds(1));
    boost::system::error_code ec;
    co_await ticker_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (ec || workers_running_ == 0) break;
    EmitProgress();
    if (absl::Now() - last_refresh >= kStoreRefresh) {
      RefreshStore();
      last_refresh = absl::Now();
    }
  }
}

asio::awaitable<void> Runner::WatchSignals() {
  while (workers_running_ > 0) {
    boost::system::error_code ec;
    const int signal_number =
        co_await signals_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    ++signals_seen_;
    json event = Event("signal");
    event["signal"] = signal_number == SIGINT ? "SIGINT" : "SIGTERM";
    if (signals_seen_ == 1) {
      // Graded shutdown: let in-flight batches commit, hand out no new ones.
      stopping_ = true;
      WakeWorkers();
      event["action"] = "finishing in-flight batches; send again to cancel them";
      events_.Emit(event);
    } else {
      event["action"] = "cancelling in-flight statements";
      events_.Emit(event);
      for (pg::AsyncConnection* conn : connections_) (void)conn->Cancel();
      for (pg::AsyncConnection* conn : source_connections_) (void)conn->Cancel();
    }
  }
}

absl::StatusOr<RunSummary> Runner::Run() {
  started_ = absl::Now();
  ASSIGN_OR_RETURN(std::optional<RunSummary> early, PrepareJob());
  if (early.has_value()) return *early;
  RETURN_IF_ERROR(LoadRanges());
  RETURN_IF_ERROR(store_->MarkStarted(plan_.name, static_cast<int>(getpid()), HostName()));

  json started = Event("job_started");
  started["job"] = plan_.name;
  started["table"] = plan::QuoteQualified(report_.table->name);
  started["key"] = report_.key->Describe();
  started["estimated_rows"] = report_.estimate->rows;
  started["ranges_total"] = ranges_.size();
  started["ranges_pending"] = pending_.size();
  started["workers"] = live_.workers;
  started["resumed"] = summary_.resumed;
  started["rows_done_before"] = rows_before_;
  if (moves_) {
    started["moves_between_databases"] = true;
    started["copy_format"] = move_spec_.binary ? "binary" : "text";
    started["through_stage"] = staged_;
  }
  events_.Emit(started);

  if (!pending_.empty()) {
    if (options_.handle_signals) {
      signals_.add(SIGINT);
      signals_.add(SIGTERM);
    }
    ticker_.emplace(io_);
    throttle_timer_.emplace(io_);
    governor_.emplace(GovernorConfigFor(live_), clock_);
    // Settings and a pause recorded while the job was not running apply from the first batch.
    ReadOperatorControl();
    SpawnWorkers(live_.workers);
    asio::co_spawn(io_, Ticker(), asio::detached);
    asio::co_spawn(io_, WatchSignals(), asio::detached);
    asio::co_spawn(io_, GuardedThrottleLoop(), asio::detached);
    io_.run();
  }
  summary_.elapsed = absl::Now() - started_;
  if (held_since_.has_value()) summary_.held += absl::Now() - *held_since_;
  summary_.total_rows = rows_before_ + summary_.rows;

  std::string state;
  if (failure_.has_value()) {
    summary_.outcome = Outcome::kFailed;
    summary_.message = *failure_;
    state = "failed";
  } else if (aborted_by_.has_value() && !pending_.empty()) {
    summary_.outcome = Outcome::kAborted;
    summary_.message = absl::StrCat("aborted by ", *aborted_by_, " with ", pending_.size(),
                                    " range(s) left; running the job again resumes it");
    state = "aborted";
  } else if (!pending_.empty()) {
    summary_.outcome = Outcome::kInterrupted;
    summary_.message = absl::StrCat("interrupted with ", pending_.size(),
                                    " range(s) left; run the same command again to resume");
    state = "interrupted";
  } else {
    summary_.outcome = Outcome::kDone;
    state = "done";
    if (EnsureControl().ok()) (void)store_->SetPhase(plan_.name, "backfill");
  }
  if (absl::Status control = EnsureControl(); control.ok()) {
    checkpoint::JobStore& store = *store_;
    (void)store.RecordProgress(plan_.name, summary_.retries - retries_reported_, 0, "");
    if (absl::Status finished = store.FinishJob(plan_.name, state, summary_.message); !finished.ok()) {
      json warning = Event("warning");
      warning["message"] = absl::StrCat("could not record the job's end: ",
                                        finished.message());
      events_.Emit(warning);
    }
    (void)store.UnlockJob(plan_.name);
  }
  return summary_;
}

}  // namespace internal

absl::StatusOr<RunSummary> RunBackfill(const plan::Plan& plan, const RunOptions& options,
                                       EventSink& events) {
  internal::Runner runner(plan, options, events);
  return runner.Run();
}

}  // namespace pgbackfill::exec
