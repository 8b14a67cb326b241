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
#include "pgbackfill/exec/phases.h"
#include "pgbackfill/pg/dsn.h"
#include "pgbackfill/pg/error.h"
#include "pgbackfill/pg/pooler.h"
#include "pgbackfill/ranges/sampler.h"
#include "pgbackfill/sql/names.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/util/strings.h"
#include "runner_internal.h"

namespace pgbackfill::exec {
namespace internal {
namespace {
// How often the job row is refreshed with totals (status from another host reads it).
constexpr absl::Duration kStoreRefresh = absl::Seconds(2);

}  // namespace

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

Runner::Runner(const plan::Plan& plan, const RunOptions& options, events::EventSink& events)
    : plan_(plan),
      live_(plan),
      options_(options),
      events_(events),
      dsn_(plan::HomeDsn(plan, options.dsn)),
      moves_(plan::MovesBetweenDatabases(plan)),
      source_dsn_(plan::SourceDsn(plan, options.dsn)),
      signals_(io_) {}

void Runner::Fail(std::string message) {
  if (!failure_.has_value()) failure_ = std::move(message);
  stopping_ = true;
  WakeWorkers();
}

absl::Status Runner::EnsureControl() {
  // The control session holds no state the run relies on (the lease is the job store's): after a
  // lost connection (a server restart) a new one simply takes over.
  if (control_.has_value() && control_->Exec(sql::Tagged("SELECT 1")).ok()) return absl::OkStatus();
  store_.reset();
  ASSIGN_OR_RETURN(pg::Connection conn, pg::Connection::Connect(dsn_));
  conn.TagStatements();
  control_.emplace(std::move(conn));
  // As preflight did for the first session: the job store's SQL must not meet a hostile
  // search_path's operators.
  RETURN_IF_ERROR(catalog::Catalog(*control_).Harden().status());
  store_.emplace(*control_);
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> Runner::TransactionPooled() {
  ASSIGN_OR_RETURN(pg::Connection source, pg::Connection::Connect(source_dsn_));
  const std::pair<pg::Connection*, const std::string*> sides[] = {{&source, &source_dsn_},
                                                                  {&*control_, &dsn_}};
  for (const auto& [conn, dsn] : sides) {
    ASSIGN_OR_RETURN(bool pooled, pg::BehindTransactionPooler(*conn, *dsn));
    if (!pooled) continue;
    absl::StatusOr<std::string> server = pg::DescribeDsn(*dsn);
    return absl::StrCat(
        "the ", dsn == &dsn_ ? "target" : "source", " DSN (", server.ok() ? *server : "?",
        ") reaches PostgreSQL through a transaction-pooling pooler such as pgbouncer "
        "(pool_mode = transaction): one session's transactions run on different server "
        "connections there, and the data mover between databases needs real sessions (the "
        "source's exported snapshot, the text settings of both sides). Connect the mover "
        "directly to PostgreSQL, or through session pooling (pool_mode = session)");
  }
  return std::nullopt;
}

absl::StatusOr<std::optional<RunSummary>> Runner::PrepareJob() {
  ASSIGN_OR_RETURN(pg::Connection conn, pg::Connection::Connect(dsn_));
  conn.TagStatements();
  control_.emplace(std::move(conn));
  ASSIGN_OR_RETURN(report_, preflight::PreflightPlan(*control_, plan_, options_.dsn));
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

  if (moves_) {
    ASSIGN_OR_RETURN(std::optional<std::string> pooled, TransactionPooled());
    if (pooled.has_value()) return refuse(*std::move(pooled));
  }
  store_.emplace(*control_);
  checkpoint::JobStore& store = *store_;
  RETURN_IF_ERROR(store.EnsureSchema());
  // An abort asked before this moment was meant for an earlier run (see ClearAbort below); one
  // asked after it is for this run, also when it lands before the lock is taken.
  ASSIGN_OR_RETURN(pg::Result now, control_->Exec("SELECT pg_catalog.clock_timestamp()::text"));
  throttle_.run_requested_at = std::string(now.Get(0, 0));
  // This run's lease, then a look at the others': any number of runs share the job, but
  // contract and rollback must not run beside one (they look the other way, phases.cc).
  ASSIGN_OR_RETURN(lease_, Lease::Take(dsn_, plan_.name, "run", plan_.lease_timeout));
  for (const char* phase : {"contract", "rollback"}) {
    ASSIGN_OR_RETURN(std::string busy, lease_->OthersLive(phase));
    if (!busy.empty()) {
      return refuse(absl::StrCat("job ", plan_.name, " is in its ", phase,
                                 " phase in another pgbackfill process (", busy,
                                 "); wait for it to end"));
    }
  }
  ASSIGN_OR_RETURN(std::optional<checkpoint::JobRecord> job, store.LoadJob(plan_.name));
  const bool needs_expand = NeedsExpand(plan_) && !options_.scratch;
  if (job.has_value() && options_.restart) {
    if (needs_expand) {
      // Deleting the job would forget its expand steps while its trigger stays installed.
      return refuse(absl::StrCat("job ", plan_.name, " has expand steps; start it over with "
                                 "`pgbackfill run --restart`, which runs expand again first"));
    }
    // Others' workers walk ranges that would vanish under them.
    ASSIGN_OR_RETURN(std::string others, lease_->OthersLive("run"));
    if (!others.empty()) {
      return refuse(absl::StrCat("job ", plan_.name, " is running in other pgbackfill processes (",
                                 others, "); stop them before starting it over with --restart"));
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
  absl::Status created = absl::OkStatus();
  if (job.has_value() && existing.empty()) {
    created = store.AddRanges(plan_.name, planned);
  } else if (!job.has_value()) {
    created = store.CreateJob(NewJobRecord(plan_, report_, "backfill"), planned);
  } else {
    rows_before_ = job->rows_done;
  }
  if (created.code() == absl::StatusCode::kAlreadyExists) {
    // Another run planned the job at the same moment: join it, with its ranges.
    ASSIGN_OR_RETURN(job, store.LoadJob(plan_.name));
    if (!job.has_value() || job->plan_hash != report_.plan_hash) {
      return refuse(absl::StrCat("job ", plan_.name,
                                 " was created by another process with another plan meanwhile"));
    }
    summary_.resumed = true;
  } else {
    RETURN_IF_ERROR(created);
  }
  RETURN_IF_ERROR(DecideStaging(existing.empty()));
  if (mover_.staged && report_.target_key_index.empty()) {
    // Nothing would stop a row that was there before the job from being inserted again.
    return refuse(absl::StrCat(
        plan::QuoteQualified(report_.target->name),
        " had rows when this job started and has no unique key over the columns the key is "
        "copied into (", absl::StrJoin(report_.target_key, ", "),
        "): rows already there could be copied twice. Empty it, or give it such a key (then "
        "on_conflict decides)"));
  }
  if (moves_ && plan_.follow) RETURN_IF_ERROR(PrepareFollow());
  if (job.has_value()) {
    // An abort asked of an earlier run is not one of this run: starting the job again is the
    // operator's newer word. A pause stands (the job starts held) until `pgbackfill resume`.
    RETURN_IF_ERROR(store.ClearAbort(plan_.name, throttle_.run_requested_at));
  }
  return std::optional<RunSummary>();
}

absl::Status Runner::LoadRanges() {
  ASSIGN_OR_RETURN(std::vector<checkpoint::RangeRecord> records, store_->LoadRanges(plan_.name));
  queue_.all.clear();
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
    queue_.all.push_back(std::move(range));
  }
  for (RangeState& range : queue_.all) {
    if (!range.done) queue_.pending.push_back(&range);
  }
  RETURN_IF_ERROR(EndOpenRangesAtLargestKey());
  spec_.table = report_.table->name;
  for (const catalog::Column& column : report_.key->columns) {
    spec_.key.push_back(sql::KeyColumn{column.name, column.type});
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
  if (moves_) mover_.spec = preflight::MoveSpecFor(report_, plan_);
  return absl::OkStatus();
}

// A range open above would otherwise end only when a batch finds fewer rows past its checkpoint
// than it asks for, and an application appending faster than the job writes keeps that from ever
// happening (pgroll#583). So each ends, for this run, at the largest key past its checkpoint
// present now; one with no such row is done without a batch. Rows inserted past that key after
// the run started are the dual-write or copy trigger's, or the application's, to write. The data
// mover reads snapshots taken at its start, which bound the range already.
absl::Status Runner::EndOpenRangesAtLargestKey() {
  if (moves_) return absl::OkStatus();
  catalog::Catalog catalog(*control_);
  for (auto it = queue_.pending.begin(); it != queue_.pending.end();) {
    RangeState& range = **it;
    if (range.upper) {
      ++it;
      continue;
    }
    ASSIGN_OR_RETURN(
        std::optional<std::vector<std::string>> largest,
        catalog.KeyBound(*report_.table, *report_.key, /*smallest=*/false, range.start()));
    if (largest.has_value()) {
      range.end_of_run = std::move(largest);
      ++it;
      continue;
    }
    ASSIGN_OR_RETURN(bool finished, store_->FinishRangeAt(plan_.name, range.id, range.done_upto));
    if (!finished) {  // a batch of an earlier run moved it: a worker reloads and walks it
      ++it;
      continue;
    }
    range.done = true;
    it = queue_.pending.erase(it);
  }
  return absl::OkStatus();
}

asio::awaitable<void> Runner::Sleep(absl::Duration duration) {
  asio::steady_timer timer(io_, absl::ToChronoNanoseconds(duration));
  boost::system::error_code ignored;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
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
  const int ranges_done = queue_.Done();
  int64_t batch_rows = 0;
  for (const BatchSizer* sizer : sizers_) batch_rows += sizer->rows();

  events::Progress event;
  event.job = plan_.name;
  event.rows_done = done;
  event.estimated_rows = estimated;
  event.percent =
      estimated > 0 ? 100.0 * static_cast<double>(done) / static_cast<double>(estimated) : 100.0;
  event.rows_per_second = static_cast<int64_t>(rate);
  if (rate > 0) {
    event.eta_seconds = static_cast<int64_t>(static_cast<double>(estimated - done) / rate);
  }
  event.workers = throttle_.reason.empty()
                      ? std::min(throttle_.decision.active_workers, static_cast<int>(connections_.size()))
                      : 0;
  event.batch_rows = sizers_.empty() ? 0 : batch_rows / static_cast<int64_t>(sizers_.size());
  event.ranges_done = ranges_done;
  event.ranges_total = static_cast<int>(queue_.all.size());
  event.retries = summary_.retries;
  if (!throttle_.reason.empty()) event.throttle = throttle_.reason;
  events::ThrottleState state = CurrentThrottleState();
  event.pace_rows_per_second = state.pace_rows_per_second;
  event.signals = std::move(state.signals);
  for (const throttle::LimitReading& reading : throttle_.decision.limits) {
    event.limits.push_back(events::ThrottleLimit{
        .name = reading.name,
        .object = reading.object.empty() ? std::nullopt : std::optional(reading.object),
        .value = reading.value,
        .limit = reading.limit});
  }
  events_.Emit(event);
}

events::ThrottleState Runner::CurrentThrottleState() const {
  events::ThrottleState state;
  state.active_workers = throttle_.decision.hold ? 0 : throttle_.decision.active_workers;
  if (throttle_.decision.pace_rows_per_second > 0) {
    state.pace_rows_per_second = static_cast<int64_t>(throttle_.decision.pace_rows_per_second);
  }
  for (const throttle::SignalReading& signal : throttle_.decision.signals) {
    state.signals.push_back(events::ThrottleSignal{.name = signal.name,
                                                   .value = signal.value,
                                                   .baseline = signal.baseline,
                                                   .limit = signal.limit});
  }
  return state;
}

void Runner::RefreshStore() {
  // Best effort: the batches carry the checkpoints; this only refreshes totals for `status`.
  if (!EnsureControl().ok()) return;
  if (store_
          ->RecordProgress(plan_.name, summary_.retries - retries_reported_, 0, throttle_.reason,
                           events::ToJson(CurrentThrottleState()).dump())
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
    if (!lease_->Held() && !failure_.has_value()) {
      // Others may have taken this run's ranges by now; its batches would only race theirs
      // (safely: each claims its checkpoint) for nothing.
      Fail(absl::StrCat("this process's lease on job ", plan_.name, " expired (no heartbeat for ",
                        absl::FormatDuration(lease_->timeout()),
                        ": the process or its server stalled); other runners may have taken its "
                        "ranges. Run the job again to rejoin it"));
    }
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
    events::Signal event;
    event.signal = signal_number == SIGINT ? "SIGINT" : "SIGTERM";
    if (signals_seen_ == 1) {
      // Graded shutdown: let in-flight batches commit, hand out no new ones.
      stopping_ = true;
      WakeWorkers();
      event.action = "finishing in-flight batches; send again to cancel them";
      events_.Emit(event);
    } else {
      event.action = "cancelling in-flight statements";
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

  events::JobStarted started;
  started.job = plan_.name;
  started.table = plan::QuoteQualified(report_.table->name);
  started.key = report_.key->Describe();
  started.estimated_rows = report_.estimate->rows;
  started.ranges_total = static_cast<int>(queue_.all.size());
  started.ranges_pending = static_cast<int>(queue_.pending.size());
  started.workers = live_.workers;
  started.resumed = summary_.resumed;
  started.rows_done_before = rows_before_;
  if (moves_) {
    started.moves_between_databases = true;
    started.copy_format = mover_.spec.binary ? "binary" : "text";
    started.through_stage = mover_.staged;
  }
  events_.Emit(started);

  if (!queue_.pending.empty()) {
    // What `check` warned about (the table's own triggers, ...) is said again where the run is
    // watched: a run does not refuse for it.
    for (const std::string& warning : report_.warnings) events_.Emit(events::Warning{warning});
    if (options_.handle_signals) {
      signals_.add(SIGINT);
      signals_.add(SIGTERM);
    }
    ticker_.emplace(io_);
    throttle_timer_.emplace(io_);
    throttle_.governor.emplace(GovernorConfigFor(live_), throttle_.clock);
    // Settings and a pause recorded while the job was not running apply from the first batch.
    ReadOperatorControl();
    SpawnWorkers(live_.workers);
    asio::co_spawn(io_, Ticker(), asio::detached);
    asio::co_spawn(io_, WatchSignals(), asio::detached);
    asio::co_spawn(io_, GuardedThrottleLoop(), asio::detached);
    io_.run();
  }
  summary_.elapsed = absl::Now() - started_;
  if (throttle_.held_since.has_value()) summary_.held += absl::Now() - *throttle_.held_since;
  summary_.total_rows = rows_before_ + summary_.rows;

  RecordEnd(EndState());
  lease_.reset();  // gives back the ranges this run still owns, for the others to take at once
  return summary_;
}

std::optional<int> Runner::UnfinishedInStore() {
  if (!EnsureControl().ok()) return std::nullopt;
  absl::StatusOr<std::vector<checkpoint::RangeRecord>> ranges = store_->LoadRanges(plan_.name);
  if (!ranges.ok()) return std::nullopt;
  return static_cast<int>(
      std::count_if(ranges->begin(), ranges->end(),
                    [](const checkpoint::RangeRecord& range) { return range.state != "done"; }));
}

std::string Runner::EndState() {
  // The store, not memory, says what is left: other runners did ranges this one never saw end.
  // When it cannot be read, this run's own view stands in.
  const std::optional<int> in_store = UnfinishedInStore();
  const int left = in_store.value_or(static_cast<int>(queue_.all.size()) - queue_.Done());
  if (failure_.has_value()) {
    summary_.outcome = Outcome::kFailed;
    summary_.message = *failure_;
    return "failed";
  }
  if (left == 0) {
    summary_.outcome = Outcome::kDone;
    if (EnsureControl().ok()) (void)store_->SetPhase(plan_.name, "backfill");
    return "done";
  }
  if (throttle_.aborted_by.has_value()) {
    summary_.outcome = Outcome::kAborted;
    summary_.message = absl::StrCat("aborted by ", *throttle_.aborted_by, " with ", left,
                                    " range(s) left; running the job again resumes it");
    return "aborted";
  }
  summary_.outcome = Outcome::kInterrupted;
  if (stopping_ || !in_store.has_value()) {
    summary_.message = absl::StrCat("interrupted with ", left,
                                    " range(s) left; run the same command again to resume");
  } else {
    // The workers found nothing left to take, yet the store has ranges not done: a failover to
    // a standby that had not received the last commits loses a batch and its checkpoint
    // together, and its range is unfinished there again. A new run does those batches once.
    summary_.message =
        absl::StrCat("the job store has ", left,
                     " range(s) not done that this run finished (commits "
                     "lost in a failover?); run the same command again to finish them");
  }
  return "interrupted";
}

void Runner::RecordEnd(const std::string& state) {
  absl::Status control = EnsureControl();
  if (!control.ok()) return;
  checkpoint::JobStore& store = *store_;
  (void)store.RecordProgress(plan_.name, summary_.retries - retries_reported_, 0, "");
  if (state == "interrupted" || state == "failed") {
    // Other runners go on with the job: it is still running. (An abort reaches all of them, and
    // done is done for all.)
    absl::StatusOr<std::string> others = lease_->OthersLive("run");
    if (others.ok() && !others->empty()) {
      absl::StrAppend(&summary_.message, "; other pgbackfill processes go on with the job (",
                      *others, ")");
      return;
    }
  }
  if (absl::Status finished = store.FinishJob(plan_.name, state, summary_.message);
      !finished.ok()) {
    events_.Emit(
        events::Warning{absl::StrCat("could not record the job's end: ", finished.message())});
  }
}

}  // namespace internal

absl::StatusOr<RunSummary> RunBackfill(const plan::Plan& plan, const RunOptions& options,
                                       events::EventSink& events) {
  internal::Runner runner(plan, options, events);
  return runner.Run();
}

}  // namespace pgbackfill::exec
