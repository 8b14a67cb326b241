// The data mover's batches (plan::MovesBetweenDatabases): rows travel as one COPY stream per batch
// from the worker's source session to its target session, and the batch's checkpoint commits in
// the same target transaction as its rows.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "follow_internal.h"
#include "pgbackfill/catalog/catalog.h"
#include "pgbackfill/pg/copy_stream.h"
#include "pgbackfill/pg/error.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/sql/names.h"
#include "pgbackfill/util/offload.h"
#include "pgbackfill/util/status.h"
#include "runner_internal.h"

namespace pgbackfill::exec::internal {
namespace {

// SQLSTATE of SET TRANSACTION SNAPSHOT for a snapshot that no longer exists (its exporting
// transaction ended: the exporter's session was lost).
constexpr char kInvalidSnapshot[] = "22023";

std::vector<pg::Statement> Statements(std::vector<std::string> texts) {
  std::vector<pg::Statement> statements;
  for (std::string& text : texts) statements.push_back(pg::Statement{std::move(text), {}});
  return statements;
}

}  // namespace

absl::Status Runner::DecideStaging(bool first_planning) {
  if (!moves_) return absl::OkStatus();
  // `into` without a row at the first planning: every row it gets is then a committed batch's,
  // each at or below its range's checkpoint, so a batch never meets a row of its own span and a
  // plain COPY is exactly-once. Recorded, so that a resumed run (when `into` has our rows) knows.
  if (first_planning) {
    ASSIGN_OR_RETURN(pg::Result any,
                     control_->Exec(absl::StrCat("SELECT EXISTS (SELECT FROM ",
                                                 plan::QuoteQualified(report_.target->name), ")")));
    if (any.Get(0, 0) == "f") {
      RETURN_IF_ERROR(store_->MarkStep(plan_.name, move::kTargetWasEmptyStep));
    }
  }
  ASSIGN_OR_RETURN(std::set<std::string> steps, store_->StepsDone(plan_.name));
  mover_.staged = !steps.contains(move::kTargetWasEmptyStep);
  return absl::OkStatus();
}

absl::Status Runner::PrepareFollow() {
  ASSIGN_OR_RETURN(std::optional<checkpoint::FollowRecord> follow, store_->LoadFollow(plan_.name));
  // A resumed copy reads a newer snapshot: the stream from the slot's start brings every row to
  // its source state whichever snapshot its copy read (follow/apply.h).
  if (follow.has_value()) return absl::OkStatus();
  ASSIGN_OR_RETURN(MadeSlot made, MakeFollowSlot(plan_, source_dsn_, report_, *control_));
  checkpoint::FollowRecord record;
  record.slot = made.slot.name;
  record.publication = FollowPublicationName(plan_.name);
  record.start_lsn = made.slot.consistent_point;
  RETURN_IF_ERROR(store_->StartFollow(plan_.name, record));
  mover_.slot_session.emplace(std::move(made.session));
  mover_.snapshot_id = made.slot.snapshot;
  mover_.snapshot_generation = 1;
  events_.Emit(events::Snapshot{.id = mover_.snapshot_id, .generation = 1});
  return absl::OkStatus();
}

asio::awaitable<absl::Status> Runner::RenewSnapshot(int seen) {
  while (mover_.snapshot_renewing && !stopping_) co_await Sleep(absl::Milliseconds(20));
  if (stopping_) co_return absl::CancelledError("the run is stopping");
  if (mover_.snapshot_generation != seen) co_return absl::OkStatus();  // another worker renewed it
  mover_.snapshot_renewing = true;
  struct Done {
    bool* flag;
    ~Done() { *flag = false; }
  } done{&mover_.snapshot_renewing};

  if (mover_.exporter == nullptr) {
    // Bounded like the probes' connects: every worker waits for this one.
    auto connected = co_await pg::AsyncConnection::Connect(source_dsn_, absl::Seconds(30));
    if (!connected.ok()) co_return connected.status();
    mover_.exporter = std::move(connected).value();
  } else {
    // Its transaction is what keeps the snapshot importable; whatever ended it, start over.
    absl::Status reconnected = co_await mover_.exporter->Reconnect();
    if (!reconnected.ok()) co_return reconnected;
  }
  // Idle in its transaction for the whole run, on purpose: a server-side idle timeout would end
  // the snapshot under the workers.
  // Built outside the co_await: GCC 12 rejects initializer lists in coroutine frames.
  std::vector<std::string> texts;
  texts.emplace_back("SET idle_in_transaction_session_timeout = 0");
  texts.emplace_back("SET statement_timeout = 0");
  texts.emplace_back("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
  texts.emplace_back("SELECT pg_catalog.pg_export_snapshot()");
  pg::PipelineResult exported = co_await mover_.exporter->Pipeline(Statements(std::move(texts)));
  if (!exported.ok()) co_return exported.status;
  mover_.snapshot_id = std::string(exported.results[3].Get(0, 0));
  ++mover_.snapshot_generation;

  events_.Emit(events::Snapshot{.id = mover_.snapshot_id, .generation = mover_.snapshot_generation});
  // With `follow` the stream carries what changed in between, whatever snapshot a range read.
  if ((mover_.snapshot_generation > 1 || summary_.resumed) && !plan_.follow) {
    events_.Emit(events::Warning{absl::StrCat(
        mover_.snapshot_generation > 1
            ? "the source's exported snapshot was lost with its session (a restart of the "
              "source?); "
            : "this run resumes a copy that an earlier run began under another snapshot; ",
        "batches from now on read a newer snapshot, so rows the source changed in between are "
        "copied as they are now in the ranges still to do, and as they were in the ranges done. "
        "Stop writes to the source during a copy, or verify (and repair) after (README: what a "
        "copy guarantees)")});
  }
  co_return absl::OkStatus();
}

asio::awaitable<absl::Status> Runner::PrepareSessions(pg::AsyncConnection& target,
                                                      MoverSession& mover) {
  // Both sides in UTF8 whatever the servers' encodings, so the server that sends converts from its
  // encoding and the one that receives into its own (or says that a character has no equivalent
  // there); and one text form for dates, intervals and floats: a text stream is parsed on the
  // target, and key bounds stored as text are cast back on either side.
  auto common = [] {
    std::vector<pg::Statement> statements;
    for (const char* setting : {"SET client_encoding = 'UTF8'", "SET DateStyle = 'ISO, MDY'",
                                "SET IntervalStyle = 'postgres'", "SET extra_float_digits = 3"}) {
      statements.push_back(pg::Statement{setting, {}});
    }
    return statements;
  };
  if (!mover.target_ready) {
    pg::PipelineResult prepared = co_await target.Pipeline(common());
    if (!prepared.ok()) co_return prepared.status;
    mover.target_ready = true;
  }
  if (mover.source_ready) co_return absl::OkStatus();
  std::vector<pg::Statement> statements = common();
  statements.push_back(pg::Statement{
      absl::StrCat("SET statement_timeout = '",
                   sql::TimeoutSetting(live_.throttle.statement_timeout), "'"),
      {}});
  // A batch waits at most this long behind DDL on the source table, then is retried later.
  statements.push_back(pg::Statement{
      absl::StrCat("SET lock_timeout = '", sql::TimeoutSetting(live_.throttle.lock_timeout), "'"),
      {}});
  // The expressions were compiled under the operator's search_path; they run under it too.
  pg::Statement search_path;
  search_path.sql = "SELECT pg_catalog.set_config('search_path', $1, false)";
  search_path.params.emplace_back(report_.user_search_path);
  statements.push_back(std::move(search_path));
  pg::PipelineResult prepared = co_await mover.source->Pipeline(std::move(statements));
  if (!prepared.ok()) co_return prepared.status;
  mover.source_ready = true;
  co_return absl::OkStatus();
}

asio::awaitable<absl::StatusOr<pg::Result>> Runner::BeginSourceBatch(
    MoverSession& mover, const std::string& end_sql, std::vector<pg::Param> params) {
  // One REPEATABLE READ transaction per batch, each importing the run's snapshot: every batch
  // reads the same data, and the source table's ACCESS SHARE lock is held for one batch, not for
  // the whole run (DDL on the source would otherwise queue behind the run, and every query behind
  // the DDL).
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (mover_.snapshot_id.empty()) {
      absl::Status renewed = co_await RenewSnapshot(mover_.snapshot_generation);
      if (!renewed.ok()) co_return renewed;
    }
    const int generation = mover_.snapshot_generation;
    std::vector<pg::Statement> statements;
    // Outside a transaction ROLLBACK only warns; inside a failed batch's, it ends it.
    statements.push_back(pg::Statement{"ROLLBACK", {}});
    statements.push_back(pg::Statement{"BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", {}});
    statements.push_back(pg::Statement{
        absl::StrCat("SET TRANSACTION SNAPSHOT ", pg::QuoteLiteral(mover_.snapshot_id)), {}});
    statements.push_back(pg::Statement{end_sql, params});
    pg::PipelineResult begun = co_await mover.source->Pipeline(std::move(statements));
    if (begun.ok()) co_return std::move(begun.results[3]);
    // Only SET TRANSACTION SNAPSHOT's 22023 means the snapshot is gone.
    if (begun.failed_index != 2 || pg::SqlStateOf(begun.status) != kInvalidSnapshot) {
      co_return begun.status;
    }
    absl::Status renewed = co_await RenewSnapshot(generation);
    if (!renewed.ok()) co_return renewed;
  }
  co_return absl::UnavailableError("could not import the run's snapshot on the source");
}

asio::awaitable<BatchOutcome> Runner::MoveBatch(pg::AsyncConnection& target, MoverSession& mover,
                                                const RangeState& range, int64_t rows) {
  BatchOutcome out;
  if (absl::Status prepared = co_await PrepareSessions(target, mover); !prepared.ok()) {
    out.status = std::move(prepared);
    co_return out;
  }
  // Where this batch ends: `rows` keys past the checkpoint, in the snapshot.
  const sql::RangeEnds ends{range.start().has_value(), range.upper.has_value()};
  std::string& end_sql = mover_.batch_end_sql[{ends.has_lower, ends.has_upper}];
  if (end_sql.empty()) end_sql = move::BatchEndSql(mover_.spec, ends);
  std::vector<pg::Param> params;
  if (ends.has_lower) params.insert(params.end(), range.start()->begin(), range.start()->end());
  if (ends.has_upper) params.insert(params.end(), range.upper->begin(), range.upper->end());
  params.emplace_back(std::to_string(rows));
  auto end = co_await BeginSourceBatch(mover, end_sql, std::move(params));
  if (!end.ok()) {
    out.status = end.status();
    co_return out;
  }
  out = co_await MoveSpan(target, mover, range, rows, *end);
  // Whatever happened, the source's transaction (its snapshot and its lock on the table) ends
  // with the batch: nothing of the source is held while the worker waits for the next one.
  if (mover.source->IsOpen()) (void)co_await mover.source->Exec("ROLLBACK");
  co_return out;
}

asio::awaitable<BatchOutcome> Runner::MoveSpan(pg::AsyncConnection& target, MoverSession& mover,
                                               const RangeState& range, int64_t rows,
                                               const pg::Result& end) {
  BatchOutcome out;
  auto failed = [&](absl::Status status) {
    out.status = std::move(status);
    return out;
  };
  int64_t keys = 0;
  std::optional<ranges::KeyValue> last;
  if (end.Rows() == 1) {
    keys = std::stoll(std::string(end.Get(0, 0)));
    last.emplace();
    for (int column = 1; column < end.Columns(); ++column) {
      last->emplace_back(end.Get(0, column));
    }
  }
  // Fewer keys than asked: the range is done, up to its own end (or, for the open last range,
  // the last key there is). "Done" comes from the span, never from the rows copied.
  out.done = keys < rows;
  if (!out.done) {
    out.done_upto = last;
  } else if (range.upper.has_value()) {
    out.done_upto = range.upper;
  } else {
    out.done_upto = last.has_value() ? last : range.start();
  }

  move::TargetTransaction transaction = move::BuildTargetTransaction(
      mover_.spec, live_.throttle, plan_.triggers, mover_.staged && keys > 0);
  constexpr size_t kClaim = move::TargetTransaction::kClaimIndex;
  std::vector<pg::Statement> head = Statements(std::move(transaction.head));
  head[kClaim].params.emplace_back(plan_.name);
  head[kClaim].params.emplace_back(std::to_string(range.id));
  head[kClaim].params.push_back(checkpoint::TextArrayLiteral(range.done_upto));
  head[kClaim].params.push_back(checkpoint::TextArrayLiteral(range.upper));
  pg::PipelineResult claimed = co_await target.Pipeline(std::move(head));
  if (!claimed.ok()) co_return failed(claimed.status);
  if (claimed.results[kClaim].Rows() != 1) {
    (void)co_await target.Exec("ROLLBACK");
    out.stale = true;
    co_return out;
  }

  if (keys > 0) {
    const std::string copy_out = move::CopyOutSql(mover_.spec, range.start(), out.done_upto);
    const std::string& copy_in = transaction.copy_in;
    PGconn* source_conn = mover.source->Lend();
    PGconn* target_conn = target.Lend();
    pg::CopyStreamResult streamed;
    if (source_conn == nullptr || target_conn == nullptr) {
      streamed.status = pg::MakeError("", "a session was lost before the COPY started");
    } else {
      streamed = co_await OnOwnThread(
          [&] { return pg::StreamCopy(source_conn, copy_out, target_conn, copy_in); });
    }
    mover.source->Return();
    target.Return();
    if (!streamed.ok()) {
      if (target.IsOpen()) (void)co_await target.Exec("ROLLBACK");
      co_return failed(streamed.status);
    }
    if (streamed.rows_written != streamed.rows_read) {
      if (target.IsOpen()) (void)co_await target.Exec("ROLLBACK");
      co_return failed(absl::InternalError(
          absl::StrCat("the source sent ", streamed.rows_read, " rows and the target took ",
                       streamed.rows_written, " for ", range.Describe())));
    }
    out.rows = streamed.rows_written;
    out.bytes = streamed.bytes;
  }

  std::vector<pg::Statement> tail = Statements(std::move(transaction.tail));
  std::vector<pg::Param>& advance = tail[transaction.advance_index].params;
  advance.emplace_back(plan_.name);
  advance.emplace_back(std::to_string(range.id));
  advance.push_back(checkpoint::TextArrayLiteral(out.done_upto));
  advance.emplace_back(std::to_string(out.rows));
  advance.emplace_back(out.done ? "true" : "false");
  pg::PipelineResult committed = co_await target.Pipeline(std::move(tail));
  if (!committed.ok()) {
    // The Pipeline rolled back a failure inside the transaction; a lost COMMIT reply is settled
    // by the caller's reload of the checkpoint.
    if (target.IsOpen()) (void)co_await target.Exec("ROLLBACK");
    co_return failed(committed.status);
  }
  co_return out;
}

}  // namespace pgbackfill::exec::internal
