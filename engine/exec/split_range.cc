// Ranges that split themselves: a worker left without a range takes the upper part of the largest
// unfinished range another worker holds (ranges/split.h), of its own process first, else of
// another process on the same job, so that neither a skewed key (every row in one planned range)
// nor the job's last range runs on one worker. The split is one job-store
// transaction on the worker's session; exactly-once rests on the donor's row lock and on every
// batch claiming the upper bound it was bounded by (checkpoint/job_store.h: LockRangeSql).
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "pgbackfill/catalog/catalog.h"
#include "pgbackfill/pg/error.h"
#include "pgbackfill/ranges/split.h"
#include "pgbackfill/sql/names.h"
#include "pgbackfill/util/status.h"
#include "runner_internal.h"

namespace pgbackfill::exec::internal {
namespace {

// Clears the runner's one-split-at-a-time flag on every exit of the coroutine.
struct SplitGuard {
  bool* flag;
  explicit SplitGuard(bool* splitting) : flag(splitting) { *flag = true; }
  ~SplitGuard() { *flag = false; }
  SplitGuard(const SplitGuard&) = delete;
  SplitGuard& operator=(const SplitGuard&) = delete;
};

std::string PointText(const ranges::KeyValue& point) {
  return absl::StrCat("(", absl::StrJoin(point, ", "), ")");
}

}  // namespace

asio::awaitable<absl::StatusOr<std::optional<ranges::SplitChoice>>> Runner::ProbeSplit(
    WorkerState& worker, const std::optional<ranges::KeyValue>& start,
    const std::optional<ranges::KeyValue>& upper) {
  pg::AsyncConnection& conn = moves_ ? *worker.mover.source : *worker.conn;
  const double percent = ranges::SplitSamplePercent(report_.estimate->rows);
  std::vector<pg::Param> params;
  if (start.has_value()) params.insert(params.end(), start->begin(), start->end());
  if (upper.has_value()) params.insert(params.end(), upper->begin(), upper->end());
  if (!report_.key->IsSingleInteger()) params.emplace_back(absl::StrCat(percent));
  auto probed = co_await conn.Exec(
      ranges::SplitProbeSql(*report_.table, *report_.key, start.has_value(), upper.has_value()),
      std::move(params));
  if (!probed.ok()) co_return probed.status();
  co_return ranges::ReadSplitProbe(*probed, *report_.key, percent);
}

asio::awaitable<Runner::SplitOutcome> Runner::SplitLargest(WorkerState& worker) {
  SplitOutcome out;
  // Each split takes the next free range id; one at a time keeps two from taking the same one
  // (and SplitLockSql between processes).
  if (splitting_) {
    out.retry = true;
    co_return out;
  }
  SplitGuard guard(&splitting_);
  if (moves_) {
    if (absl::Status prepared = co_await PrepareSessions(*worker.conn, worker.mover);
        !prepared.ok()) {
      out.status = std::move(prepared);
      co_return out;
    }
  }
  // The largest remainder, as the donors' checkpoints stood when this worker last heard: a guess
  // to pick the donor by, probed again under its lock.
  RangeState* donor = nullptr;
  int64_t largest = 0;
  for (RangeState* held : queue_.Held()) {
    auto choice = co_await ProbeSplit(worker, held->start(), held->end());
    if (!choice.ok()) {
      out.status = choice.status();
      co_return out;
    }
    if (choice->has_value() && (*choice)->estimated_rows > largest) {
      donor = held;
      largest = (*choice)->estimated_rows;
    }
  }
  // None of this runner's own worth it: one another runner (process) walks. Its RangeState is
  // this frame's; its owner learns of the split from its next batch's claim.
  std::optional<RangeState> foreign;
  if (donor == nullptr || !ranges::WorthSplitting(largest, BatchRows(worker))) {
    if (moves_) co_return out;  // each mover process copies from a snapshot of its own
    auto found = co_await ForeignDonor(worker);
    if (!found.ok()) {
      out.status = found.status();
      co_return out;
    }
    if (!found->has_value()) co_return out;
    foreign = std::move(*found);
    donor = &*foreign;
  }
  out = co_await SplitLocked(worker, *donor);
  if (!out.status.ok() && worker.conn->IsOpen()) (void)co_await worker.conn->Exec("ROLLBACK");
  // A lock wait that timed out (the donor's batch held its row) or a deadlock: try again later.
  if (!out.status.ok() && pg::Classify(out.status) == pg::ErrorClass::kRetry) {
    out.status = absl::OkStatus();
    out.retry = true;
  }
  co_return out;
}

asio::awaitable<absl::StatusOr<std::optional<RangeState>>> Runner::ForeignDonor(
    WorkerState& worker) {
  std::vector<pg::Param> params;
  params.emplace_back(plan_.name);
  params.emplace_back(lease_->id());
  auto listed = co_await worker.conn->Exec(checkpoint::ForeignRangesSql(), std::move(params));
  if (!listed.ok()) co_return listed.status();
  std::optional<RangeState> best;
  int64_t largest = 0;
  for (int row = 0; row < listed->Rows(); ++row) {
    absl::StatusOr<RangeState> stored = ReadStoredRange(*listed, row);
    if (!stored.ok()) co_return stored.status();
    RangeState& range = *stored;
    if (!range.upper) {
      // Open above: for this run it ends at the largest key present now, as its owner's does.
      if (absl::Status control = EnsureControl(); !control.ok()) co_return control;
      absl::StatusOr<std::optional<std::vector<std::string>>> last_key =
          catalog::Catalog(*control_).KeyBound(*report_.table, *report_.key, /*smallest=*/false,
                                               range.start());
      if (!last_key.ok()) co_return last_key.status();
      if (!last_key->has_value()) continue;  // nothing past its checkpoint: nothing to split
      range.end_of_run = *std::move(*last_key);
    }
    auto choice = co_await ProbeSplit(worker, range.start(), range.end());
    if (!choice.ok()) co_return choice.status();
    if (choice->has_value() && (*choice)->estimated_rows > largest) {
      largest = (*choice)->estimated_rows;
      best = std::move(range);
    }
  }
  if (!ranges::WorthSplitting(largest, BatchRows(worker))) co_return std::nullopt;
  co_return best;
}

asio::awaitable<Runner::SplitOutcome> Runner::SplitLocked(WorkerState& worker, RangeState& donor) {
  SplitOutcome out;
  // Built outside the co_await: GCC 12 rejects initializer lists in coroutine frames.
  std::vector<pg::Statement> lock;
  lock.push_back(pg::Statement{sql::Tagged("BEGIN"), {}});
  lock.push_back(
      pg::Statement{sql::SetLocalTimeout("lock_timeout", live_.throttle.lock_timeout), {}});
  // Runners in other processes split too: each split takes the next free range id.
  pg::Statement one_at_a_time{checkpoint::SplitLockSql(), {}};
  one_at_a_time.params.emplace_back(plan_.name);
  lock.push_back(std::move(one_at_a_time));
  pg::Statement row{checkpoint::LockRangeSql(), {}};
  row.params.emplace_back(plan_.name);
  row.params.emplace_back(std::to_string(donor.id));
  lock.push_back(std::move(row));
  pg::PipelineResult locked = co_await worker.conn->Pipeline(std::move(lock));
  if (!locked.ok()) {
    out.status = std::move(locked.status);
    co_return out;
  }
  const pg::Result& read = locked.results[3];
  if (read.Rows() != 1) {  // the donor finished meanwhile: look again
    (void)co_await worker.conn->Exec("ROLLBACK");
    out.retry = true;
    co_return out;
  }
  auto lower = checkpoint::ParseTextArray(read.GetOptional(0, 0));
  auto upper = checkpoint::ParseTextArray(read.GetOptional(0, 1));
  auto done_upto = checkpoint::ParseTextArray(read.GetOptional(0, 2));
  if (!lower.ok() || !upper.ok() || !done_upto.ok()) {
    out.status = absl::InternalError(absl::StrCat("unreadable bounds of ", donor.Describe()));
    co_return out;
  }
  // After the checkpoint as the store has it under the lock: nothing done can move.
  const std::optional<ranges::KeyValue>& start = done_upto->has_value() ? *done_upto : *lower;
  // Within this run's end of the range: a range open above ends at the run's largest key.
  const std::optional<ranges::KeyValue>& end = upper->has_value() ? *upper : donor.end_of_run;
  auto choice = co_await ProbeSplit(worker, start, end);
  if (!choice.ok()) {
    out.status = choice.status();
    co_return out;
  }
  if (!choice->has_value() ||
      !ranges::WorthSplitting((*choice)->estimated_rows, BatchRows(worker))) {
    (void)co_await worker.conn->Exec("ROLLBACK");
    co_return out;
  }
  std::vector<pg::Statement> apply;
  pg::Statement split{checkpoint::SplitRangeSql(), {}};
  split.params.emplace_back(plan_.name);
  split.params.emplace_back(std::to_string(donor.id));
  split.params.push_back(checkpoint::TextArrayLiteral((*choice)->point));
  split.params.push_back(checkpoint::TextArrayLiteral(*upper));
  split.params.push_back(checkpoint::TextArrayLiteral(*done_upto));
  split.params.emplace_back(lease_->id());
  apply.push_back(std::move(split));
  apply.push_back(pg::Statement{sql::Tagged("COMMIT"), {}});
  pg::PipelineResult applied = co_await worker.conn->Pipeline(std::move(apply));
  if (!applied.ok()) {
    out.status = std::move(applied.status);
    co_return out;
  }
  if (applied.results[0].Rows() != 1) {
    out.retry = true;
    co_return out;
  }
  // The donor's own RangeState keeps its old upper bound until its worker's next claim fails on
  // it and reloads the range: a batch in flight was bounded by the old one, and its claim must
  // say so.
  RangeState& taken = queue_.all.emplace_back();
  taken.id = std::stoi(std::string(applied.results[0].Get(0, 0)));
  taken.held = true;
  taken.lower = (*choice)->point;
  taken.upper = *upper;
  if (!taken.upper) taken.end_of_run = donor.end_of_run;
  events_.Emit(events::RangeSplit{.worker = worker.index,
                                  .range = donor.id,
                                  .new_range = taken.id,
                                  .at = PointText((*choice)->point),
                                  .estimated_rows = (*choice)->estimated_rows / 2});
  out.range = &taken;
  co_return out;
}

}  // namespace pgbackfill::exec::internal
