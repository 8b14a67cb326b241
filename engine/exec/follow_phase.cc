// The follow phase: the slot's change stream, received into a spool and applied to the target in
// source commit order, many source transactions per target transaction, each target transaction
// also moving the job's applied position (exactly once: a restarted run starts the stream there,
// and skips a transaction that ends before it). The slot's confirmed position follows the target's
// commits, never the receipt. `pgbackfill cutover` ends it (Cutover below).
#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "follow_internal.h"
#include "pgbackfill/catalog/catalog.h"
#include "pgbackfill/follow/pgoutput.h"
#include "pgbackfill/follow/spool.h"
#include "pgbackfill/move/move_sql.h"
#include "pgbackfill/pg/dsn.h"
#include "pgbackfill/pg/error.h"
#include "pgbackfill/pg/lsn.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/sql/names.h"
#include "pgbackfill/util/backoff.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::exec::internal {
namespace {

// A target transaction ends at the first source commit past either bound.
constexpr int64_t kChangesPerTransaction = 5000;
constexpr absl::Duration kTransactionTime = absl::Milliseconds(200);
constexpr absl::Duration kStatusEvery = absl::Seconds(1);
constexpr absl::Duration kControlEvery = absl::Seconds(1);
constexpr absl::Duration kProgressEvery = absl::Seconds(1);
// How many frames one receive turn takes before applying some.
constexpr int kFramesPerTurn = 20000;
constexpr char kMarkerPrefix[] = "pgbackfill";
// How long a cutover waits for the stream to bring its marker while writes are blocked.
constexpr absl::Duration kDrainLimit = absl::Seconds(60);

RunSummary Ended(Outcome outcome, std::string message) {
  RunSummary summary;
  summary.outcome = outcome;
  summary.phase = "follow";
  summary.message = std::move(message);
  return summary;
}

class Follower {
 public:
  explicit Follower(const FollowInputs& in)
      : in_(in), job_(in.plan.name), spec_(ApplySpecFor(in.report)), signals_(io_) {}

  absl::StatusOr<RunSummary> Run() {
    ASSIGN_OR_RETURN(std::optional<checkpoint::FollowRecord> record, in_.store.LoadFollow(job_));
    if (!record.has_value()) {
      return Ended(Outcome::kRefused,
                   absl::StrCat("job ", job_,
                                " has no slot on the source: its copy ran without "
                                "follow; run the backfill with this plan first"));
    }
    record_ = *record;
    RETURN_IF_ERROR(OpenSessions());
    if (in_.options.handle_signals) {
      signals_.add(SIGINT);
      signals_.add(SIGTERM);
      signals_.async_wait([this](const boost::system::error_code& error, int number) {
        if (!error) signal_ = number;
      });
    }
    // Crashed after the source refused writes and before the target recorded it: nothing can
    // have changed since, so the stream has nothing left but what was applied.
    ASSIGN_OR_RETURN(bool refusing, SourceRefusesWrites());
    while (true) {
      RETURN_IF_ERROR(Turn());
      if (signal_ != 0) {
        RETURN_IF_ERROR(CommitApplied());
        return Ended(Outcome::kInterrupted,
                     absl::StrCat("interrupted by ", signal_ == SIGINT ? "SIGINT" : "SIGTERM",
                                  "; run again to go on following"));
      }
      if (absl::Now() - last_control_ < kControlEvery) continue;
      last_control_ = absl::Now();
      ASSIGN_OR_RETURN(checkpoint::JobControl control, in_.store.LoadControl(job_));
      if (control.control == "abort") {
        RETURN_IF_ERROR(CommitApplied());
        return Ended(Outcome::kAborted,
                     absl::StrCat("aborted by ",
                                  control.control_by.empty() ? "an operator" : control.control_by,
                                  "; the slot stays (it holds WAL on the source) until the job "
                                  "runs again or is rolled back"));
      }
      if (control.control == "cutover" || refusing) return Cutover(refusing);
    }
  }

 private:
  absl::Status OpenSessions() {
    const std::string source_dsn = plan::SourceDsn(in_.plan, in_.options.dsn);
    ASSIGN_OR_RETURN(pg::Connection apply,
                     pg::Connection::Connect(plan::HomeDsn(in_.plan, in_.options.dsn)));
    apply.TagStatements();
    RETURN_IF_ERROR(apply.ExecScript(move::VerifySessionSettings()));
    apply_.emplace(std::move(apply));
    ASSIGN_OR_RETURN(pg::Connection source, pg::Connection::Connect(source_dsn));
    source.TagStatements();
    RETURN_IF_ERROR(catalog::Catalog(source).Harden().status());
    // Rows read here (CompleteFromSource) print as the stream's do.
    RETURN_IF_ERROR(source.ExecScript(move::VerifySessionSettings()));
    source_.emplace(std::move(source));
    // The spool's directory is the job's own on this host; what an earlier process left there is
    // removed (the stream is read again from the applied position).
    const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                      absl::StrCat("pgbackfill-follow-", FollowSlotName(job_));
    ASSIGN_OR_RETURN(follow::Spool spool, follow::Spool::Open(dir.string()));
    spool_.emplace(std::move(spool));
    ASSIGN_OR_RETURN(pg::ReplicationConnection stream,
                     pg::ReplicationConnection::Connect(source_dsn));
    stream_.emplace(std::move(stream));
    applied_ = record_.applied_lsn;
    confirmed_ = applied_;
    // messages: the cutover's marker (pg_logical_emit_message) comes through the same stream.
    return stream_->StartLogical(
        record_.slot, applied_,
        {{"proto_version", "1"}, {"publication_names", record_.publication}, {"messages", "true"}});
  }

  absl::StatusOr<bool> SourceRefusesWrites() {
    ASSIGN_OR_RETURN(
        pg::Result found,
        source_->Exec("SELECT 1 FROM pg_catalog.pg_trigger WHERE tgname = $1 AND "
                      "tgrelid = $2::regclass",
                      {MovedTriggerName(job_), plan::QuoteQualified(in_.report.table->name)}));
    return found.Rows() > 0;
  }

  // One turn: receive what has come (waiting a little when there is nothing to do), apply what
  // the spool holds, answer the server, report.
  absl::Status Turn() {
    io_.poll();
    const bool idle = spool_->records() == 0;
    RETURN_IF_ERROR(Receive(idle ? absl::Milliseconds(100) : absl::ZeroDuration()));
    RETURN_IF_ERROR(ApplySpooled());
    if (status_due_ || absl::Now() - last_status_ >= kStatusEvery) RETURN_IF_ERROR(SendStatus());
    if (absl::Now() - last_progress_ >= kProgressEvery) RETURN_IF_ERROR(Progress());
    return absl::OkStatus();
  }

  absl::Status Receive(absl::Duration first_wait) {
    for (int i = 0; i < kFramesPerTurn; ++i) {
      ASSIGN_OR_RETURN(std::optional<std::string> frame,
                       stream_->Receive(i == 0 ? first_wait : absl::ZeroDuration()));
      if (!frame.has_value()) return absl::OkStatus();
      ASSIGN_OR_RETURN(follow::ServerFrame decoded, follow::DecodeServerFrame(*frame));
      if (const auto* data = std::get_if<follow::XLogData>(&decoded)) {
        server_lsn_ = std::max(server_lsn_, data->wal_end);
        RETURN_IF_ERROR(spool_->Append(data->wal_start, data->payload));
      } else {
        const auto& keepalive = std::get<follow::Keepalive>(decoded);
        server_lsn_ = std::max(server_lsn_, keepalive.wal_end);
        status_due_ = status_due_ || keepalive.reply_requested;
        // The walsender has decoded up to wal_end and sent every transaction of ours before it;
        // with all of those applied, WAL up to there is not needed by us: confirming it lets the
        // source recycle it while the table itself is quiet.
        if (spool_->records() == 0 && !in_source_txn_ && !batch_open_) {
          caught_up_to_ = std::max(caught_up_to_, keepalive.wal_end);
          confirmed_ = std::max(confirmed_, keepalive.wal_end);
        }
      }
    }
    return absl::OkStatus();
  }

  absl::Status SendStatus() {
    const int64_t now = absl::ToUnixMicros(absl::Now());
    follow::StandbyStatus status;
    // Only what the target committed may be released; received is not applied.
    status.written = confirmed_;
    status.flushed = confirmed_;
    status.applied = confirmed_;
    status.client_time = follow::ToPgTimestamp(now);
    RETURN_IF_ERROR(stream_->Send(follow::EncodeStandbyStatus(status)));
    status_due_ = false;
    last_status_ = absl::Now();
    return absl::OkStatus();
  }

  // Once a second: the job's slot on the source (gone, lost, or past the plan's limits on the
  // WAL it keeps) and the follow's progress and lag.
  absl::Status Progress() {
    last_progress_ = absl::Now();
    ASSIGN_OR_RETURN(
        pg::Result slot,
        source_->Exec("SELECT pg_catalog.pg_current_wal_lsn()::text, COALESCE((pg_catalog."
                      "pg_current_wal_lsn() - restart_lsn)::bigint, 0), wal_status FROM "
                      "pg_catalog.pg_replication_slots WHERE slot_name = $1",
                      {record_.slot}));
    if (slot.Rows() == 0 || (!slot.IsNull(0, 2) && slot.Get(0, 2) == "lost")) {
      return absl::FailedPreconditionError(
          absl::StrCat("the job's replication slot ", record_.slot, " on the source is ",
                       slot.Rows() == 0 ? "gone" : "lost (past max_slot_wal_keep_size)",
                       ": changes since ", pg::FormatLsn(applied_),
                       " cannot be read any more. Roll the job back and move the table again"));
    }
    ASSIGN_OR_RETURN(uint64_t source_lsn, pg::ParseLsn(slot.Get(0, 0)));
    const int64_t retained = std::stoll(std::string(slot.Get(0, 1)));
    RETURN_IF_ERROR(WatchRetainedWal(retained));
    const uint64_t done = std::max(applied_, caught_up_to_);
    events::Following event;
    event.job = job_;
    event.applied_lsn = pg::FormatLsn(applied_);
    event.source_lsn = pg::FormatLsn(source_lsn);
    event.lag_bytes = source_lsn > done ? static_cast<int64_t>(source_lsn - done) : 0;
    // Behind while the walsender had not reached the source's position of the tick before.
    const bool behind = caught_up_to_ < previous_source_lsn_ || spool_->records() > 0;
    if (behind) {
      const int64_t since = applied_commit_time_ != 0 ? follow::ToUnixMicros(applied_commit_time_)
                                                      : absl::ToUnixMicros(started_);
      event.lag_seconds = static_cast<double>(absl::ToUnixMicros(absl::Now()) - since) / 1e6;
    }
    previous_source_lsn_ = source_lsn;
    event.changes = record_.changes + changes_;
    event.transactions = transactions_;
    event.spool_bytes = spool_->disk_bytes();
    event.spool_records = spool_->records();
    in_.events.Emit(event);
    return absl::OkStatus();
  }

  // The slot keeps WAL on the source from its restart position on: past the warning limit the
  // run says so (once per crossing), past the hard limit it drops the slot and stops, so that a
  // follow that cannot keep up never fills the source's disk.
  absl::Status WatchRetainedWal(int64_t retained) {
    const plan::Plan::FollowLimits& limits = in_.plan.follow_limits;
    if (limits.max_slot_wal > 0 && retained > limits.max_slot_wal) {
      stream_.reset();
      RETURN_IF_ERROR(DropSlotAndPublication());
      return absl::ResourceExhaustedError(absl::StrCat(
          "the job's slot kept ", retained,
          " bytes of WAL on the source, past follow."
          "max_slot_wal (",
          limits.max_slot_wal,
          "): dropped it so that the source's disk does "
          "not fill. The target cannot follow any more: roll the job back and move the table "
          "again (with a higher limit, or when the source writes less)"));
    }
    if (limits.warn_slot_wal > 0 && retained > limits.warn_slot_wal && !warned_) {
      warned_ = true;
      in_.events.Emit(
          events::Warning{absl::StrCat("the job's slot keeps ", retained,
                                       " bytes of WAL on the source (follow.warn_slot_wal "
                                       "is ",
                                       limits.warn_slot_wal, "); at follow.max_slot_wal (",
                                       limits.max_slot_wal, ") the run drops the slot and stops")});
    } else if (retained < limits.warn_slot_wal / 2) {
      warned_ = false;
    }
    return absl::OkStatus();
  }

  // Applies the spool's records; a target transaction commits at a source commit past the
  // bounds, or when the spool runs dry (the rest of an open source transaction waits for more).
  absl::Status ApplySpooled() {
    while (true) {
      ASSIGN_OR_RETURN(std::optional<follow::SpoolRecord> record, spool_->Take());
      if (!record.has_value()) break;
      ASSIGN_OR_RETURN(follow::Message message, follow::DecodeMessage(record->payload));
      RETURN_IF_ERROR(Apply(message));
      if (batch_open_ && !in_source_txn_ &&
          (batch_changes_ >= kChangesPerTransaction ||
           absl::Now() - batch_started_ >= kTransactionTime)) {
        RETURN_IF_ERROR(CommitApplied());
      }
    }
    if (!in_source_txn_) RETURN_IF_ERROR(CommitApplied());
    return absl::OkStatus();
  }

  absl::Status Apply(const follow::Message& message) {
    if (const auto* begin = std::get_if<follow::Begin>(&message)) {
      in_source_txn_ = true;
      // A transaction whose commit lies before the applied position is on the target already
      // (the server resends from the slot's confirmed position, which may lag ours).
      skipping_ = begin->final_lsn < applied_;
      txn_changes_ = 0;
      return absl::OkStatus();
    }
    if (const auto* commit = std::get_if<follow::Commit>(&message)) {
      in_source_txn_ = false;
      if (skipping_) return absl::OkStatus();
      pending_end_ = commit->end_lsn;
      pending_commit_time_ = commit->commit_time;
      ++batch_transactions_;
      return absl::OkStatus();
    }
    if (const auto* relation = std::get_if<follow::Relation>(&message)) {
      relations_.Remember(*relation);
      return absl::OkStatus();
    }
    if (const auto* logical = std::get_if<follow::LogicalMessage>(&message)) {
      if (logical->prefix == kMarkerPrefix && !marker_.empty() && logical->content == marker_) {
        marker_seen_ = true;
      }
      return absl::OkStatus();
    }
    if (std::holds_alternative<follow::Truncate>(message)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the source table ", plan::QuoteQualified(in_.report.table->name),
          " was truncated; a move cannot follow a TRUNCATE (the target keeps its rows). Roll the "
          "job back and move the table again, or truncate the target and run `pgbackfill verify "
          "--repair`"));
    }
    if (!std::holds_alternative<follow::Insert>(message) &&
        !std::holds_alternative<follow::Update>(message) &&
        !std::holds_alternative<follow::Delete>(message)) {
      return absl::OkStatus();  // Origin, Type: nothing to apply
    }
    if (skipping_) return absl::OkStatus();
    const uint32_t id = std::visit(
        [](const auto& change) -> uint32_t {
          if constexpr (requires { change.relation; }) {
            return change.relation;
          } else {
            return 0;
          }
        },
        message);
    ASSIGN_OR_RETURN(const follow::Relation* relation, relations_.Find(id));
    ASSIGN_OR_RETURN(std::vector<follow::ChangeStatement> statements,
                     follow::ChangeStatements(spec_, *relation, message));
    RETURN_IF_ERROR(OpenBatch());
    for (const follow::ChangeStatement& statement : statements) {
      absl::StatusOr<pg::Result> result = apply_->Exec(statement.sql, statement.params);
      if (!result.ok()) {
        (void)apply_->ExecScript("ROLLBACK");
        batch_open_ = false;
        return WithMessage(result.status(), absl::StrCat("follow: applying a ",
                                                         std::string(follow::MessageName(message)),
                                                         " failed: ", result.status().message()));
      }
      if (statement.must_hold && (result->Rows() != 1 || result->Get(0, 0) != "t")) {
        RETURN_IF_ERROR(CompleteFromSource(*relation, std::get<follow::Update>(message)));
      }
    }
    ++txn_changes_;
    ++batch_changes_;
    return absl::OkStatus();
  }

  // A new key, a TOASTed value left out, and neither row on the target: a copy resumed under a
  // later snapshot read the old key's range after the change and the new key's before it. The
  // value is then taken from the source's row as it is now: a later change of that value is
  // still to come in the stream and overwrites it, and without one it is the value the change
  // left as it was. No such row now: a later change deleted or moved it, and brings that too.
  absl::Status CompleteFromSource(const follow::Relation& relation, const follow::Update& update) {
    std::vector<std::string> columns;
    for (const follow::RelationColumn& column : relation.columns) {
      columns.push_back(absl::StrCat(pg::QuoteIdent(column.name), "::text"));
    }
    std::vector<std::string> key;
    std::vector<pg::Param> params;
    for (size_t i = 0; i < relation.columns.size(); ++i) {
      const follow::RelationColumn& column = relation.columns[i];
      if (std::find(spec_.source_key.begin(), spec_.source_key.end(), column.name) ==
          spec_.source_key.end()) {
        continue;
      }
      params.push_back(update.row[i].bytes);
      key.push_back(absl::StrCat(pg::QuoteIdent(column.name), " = $", params.size(),
                                 "::", spec_.source_types.at(column.name)));
    }
    ASSIGN_OR_RETURN(pg::Result now,
                     source_->Exec(absl::StrCat("SELECT ", absl::StrJoin(columns, ", "), " FROM ",
                                                plan::QuoteQualified(in_.report.table->name),
                                                " WHERE ", absl::StrJoin(key, " AND ")),
                                   params));
    if (now.Rows() == 0) return absl::OkStatus();
    follow::Tuple row = update.row;
    for (size_t i = 0; i < row.size(); ++i) {
      if (!row[i].unchanged()) continue;
      const int column = static_cast<int>(i);
      row[i] = now.IsNull(0, column)
                   ? follow::Value{}
                   : follow::Value{follow::Value::Kind::kText, std::string(now.Get(0, column))};
    }
    ASSIGN_OR_RETURN(std::vector<follow::ChangeStatement> upsert,
                     follow::ChangeStatements(spec_, relation, follow::Insert{relation.id, row}));
    for (const follow::ChangeStatement& statement : upsert) {
      RETURN_IF_ERROR(apply_->Exec(statement.sql, statement.params).status());
    }
    return absl::OkStatus();
  }

  absl::Status OpenBatch() {
    if (batch_open_) return absl::OkStatus();
    RETURN_IF_ERROR(apply_->ExecScript("BEGIN"));
    // The expressions were written for the operator's search_path; for this transaction only.
    RETURN_IF_ERROR(apply_
                        ->Exec("SELECT pg_catalog.set_config('search_path', $1, true)",
                               {in_.report.user_search_path})
                        .status());
    batch_open_ = true;
    batch_started_ = absl::Now();
    batch_changes_ = 0;
    batch_transactions_ = 0;
    return absl::OkStatus();
  }

  // Commits the applied changes with the position of the last whole source transaction among
  // them. A run of transactions with no change for our table (pgoutput still sends their Begin
  // and Commit) moves the position on its own.
  absl::Status CommitApplied() {
    if (pending_end_ <= applied_) {
      if (batch_open_ && !in_source_txn_) {
        RETURN_IF_ERROR(apply_->ExecScript("COMMIT"));
        batch_open_ = false;
      }
      return absl::OkStatus();
    }
    RETURN_IF_ERROR(OpenBatch());
    ASSIGN_OR_RETURN(pg::Result moved, apply_->Exec(checkpoint::JobStore::AdvanceFollowSql(),
                                                    {job_, pg::FormatLsn(pending_end_),
                                                     std::to_string(batch_changes_)}));
    if (moved.Rows() != 1) {
      (void)apply_->ExecScript("ROLLBACK");
      batch_open_ = false;
      return absl::FailedPreconditionError(absl::StrCat("job ", job_, " applied past ",
                                                        pg::FormatLsn(pending_end_),
                                                        " in another process; stopping this one"));
    }
    RETURN_IF_ERROR(apply_->ExecScript("COMMIT"));
    batch_open_ = false;
    changes_ += batch_changes_;
    transactions_ += batch_transactions_;
    applied_ = pending_end_;
    applied_commit_time_ = pending_commit_time_;
    confirmed_ = applied_;
    status_due_ = true;
    return absl::OkStatus();
  }

  // Blocks writes on the source table, drains the stream to a marker written after the lock, sets
  // the target's sequences, and in the lock's transaction installs the trigger that refuses
  // writes from then on: no write after cutover can be lost. The verify phase after compares the
  // two tables with the source frozen.
  absl::StatusOr<RunSummary> Cutover(bool refusing) {
    pg::Connection& source = *source_;
    events::CutOver event;
    event.job = job_;
    absl::Time locked_at = absl::Now();
    if (!refusing) {
      ASSIGN_OR_RETURN(event.lock_attempts, LockSourceTable());
      locked_at = absl::Now();
    }
    // Every transaction that wrote the table committed before the lock was granted (or before
    // the trigger that refuses writes), so before this marker in the WAL; non-transactional, it
    // is decoded at once.
    marker_ = absl::StrCat(job_, " ", absl::ToUnixNanos(locked_at));
    absl::Status drained = Drain();
    if (drained.ok()) {
      absl::StatusOr<std::vector<std::string>> sequences = CopySequences();
      drained = sequences.status();
      if (sequences.ok()) event.sequences = *std::move(sequences);
    }
    if (drained.ok() && !refusing) drained = source.ExecScript(RefuseWritesSql());
    if (!drained.ok()) {
      if (!refusing) (void)source.ExecScript("ROLLBACK");
      return drained;
    }
    if (!refusing) RETURN_IF_ERROR(source.ExecScript("COMMIT"));
    event.write_block_ms = refusing ? 0 : absl::ToInt64Milliseconds(absl::Now() - locked_at);
    event.applied_lsn = pg::FormatLsn(applied_);
    RETURN_IF_ERROR(in_.store.MarkStep(job_, kCutOverStep));
    stream_.reset();  // its walsender holds the slot
    RETURN_IF_ERROR(DropSlotAndPublication());
    in_.events.Emit(event);
    return Ended(
        Outcome::kDone,
        absl::StrCat("cut over at ", pg::FormatLsn(applied_), " (", record_.changes + changes_,
                     " change(s) applied); writes to the source table are refused"));
  }

  // BEGIN and LOCK TABLE ... IN EXCLUSIVE MODE (reads go on, writes wait) under the plan's DDL
  // lock_timeout, retried with backoff for ddl.retry_for while the stream keeps being applied.
  // The attempts it took; the transaction stays open.
  absl::StatusOr<int> LockSourceTable() {
    pg::Connection& source = *source_;
    Backoff backoff(absl::Milliseconds(100), absl::Seconds(2), Fnv1a32(job_));
    const absl::Time give_up = absl::Now() + in_.plan.ddl.retry_for;
    for (int attempt = 1;; ++attempt) {
      RETURN_IF_ERROR(
          source.ExecScript(absl::StrCat("BEGIN; SET LOCAL lock_timeout = '",
                                         sql::TimeoutSetting(in_.plan.ddl.lock_timeout), "'")));
      absl::Status locked = source.ExecScript(absl::StrCat(
          "LOCK TABLE ", plan::QuoteQualified(in_.report.table->name), " IN EXCLUSIVE MODE"));
      if (locked.ok()) return attempt;
      (void)source.ExecScript("ROLLBACK");
      if (pg::Classify(locked) != pg::ErrorClass::kRetry || absl::Now() > give_up) {
        return WithMessage(
            locked, absl::StrCat("cutover: could not lock the source table: ", locked.message()));
      }
      const absl::Time until = absl::Now() + backoff.Next();
      while (absl::Now() < until) RETURN_IF_ERROR(Turn());
    }
  }

  // Applies the stream up to the marker and commits it.
  absl::Status Drain() {
    RETURN_IF_ERROR(source_
                        ->Exec("SELECT pg_catalog.pg_logical_emit_message(false, $1, $2)",
                               {std::string(kMarkerPrefix), marker_})
                        .status());
    const absl::Time give_up = absl::Now() + kDrainLimit;
    while (!marker_seen_ || in_source_txn_) {
      if (absl::Now() > give_up) {
        return absl::DeadlineExceededError(absl::StrCat(
            "cutover: the change stream did not reach its marker within ",
            absl::FormatDuration(kDrainLimit), " (applied ", pg::FormatLsn(applied_),
            ", the source at ", pg::FormatLsn(server_lsn_), "); the source takes writes again"));
      }
      RETURN_IF_ERROR(Turn());
    }
    return CommitApplied();
  }

  absl::Status DropSlotAndPublication() {
    for (int attempt = 0; attempt < 50; ++attempt) {
      absl::StatusOr<pg::Result> dropped = source_->Exec(
          "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM "
          "pg_catalog.pg_replication_slots WHERE slot_name = $1 AND NOT active",
          {record_.slot});
      RETURN_IF_ERROR(dropped.status());
      ASSIGN_OR_RETURN(pg::Result left,
                       source_->Exec("SELECT 1 FROM pg_catalog.pg_replication_slots WHERE "
                                     "slot_name = $1",
                                     {record_.slot}));
      if (left.Rows() == 0) break;
      absl::SleepFor(absl::Milliseconds(100));  // the walsender is still on its way out
    }
    return source_->ExecScript(
        absl::StrCat("DROP PUBLICATION IF EXISTS ", pg::QuoteIdent(record_.publication)));
  }

  // The target's sequences owned by a column of `into` take the value of the source's sequence
  // owned by the column of the same name.
  absl::StatusOr<std::vector<std::string>> CopySequences() {
    std::vector<std::string> set;
    ASSIGN_OR_RETURN(
        pg::Result owned,
        source_->Exec("SELECT a.attname, pg_catalog.pg_get_serial_sequence($1, a.attname) FROM "
                      "pg_catalog.pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 "
                      "AND NOT a.attisdropped",
                      {plan::QuoteQualified(in_.report.table->name)}));
    for (int row = 0; row < owned.Rows(); ++row) {
      if (owned.IsNull(row, 1)) continue;
      const std::string column(owned.Get(row, 0));
      ASSIGN_OR_RETURN(pg::Result value,
                       source_->Exec(absl::StrCat("SELECT last_value, is_called FROM ",
                                                  std::string(owned.Get(row, 1)))));
      ASSIGN_OR_RETURN(pg::Result target,
                       apply_->Exec("SELECT pg_catalog.pg_get_serial_sequence($1, $2)",
                                    {plan::QuoteQualified(in_.report.target->name), column}));
      if (target.Rows() != 1 || target.IsNull(0, 0)) continue;
      const std::string sequence(target.Get(0, 0));
      RETURN_IF_ERROR(
          apply_
              ->Exec("SELECT pg_catalog.setval($1::regclass, $2::bigint, $3::bool)",
                     {sequence, std::string(value.Get(0, 0)), std::string(value.Get(0, 1))})
              .status());
      set.push_back(sequence);
    }
    return set;
  }

  std::string RefuseWritesSql() const {
    const plan::QualifiedName& table = in_.report.table->name;
    const std::string name = MovedTriggerName(job_);
    const std::string function =
        absl::StrCat(pg::QuoteIdent(table.schema), ".", pg::QuoteIdent(name));
    absl::StatusOr<std::string> where = pg::DescribeDsn(plan::HomeDsn(in_.plan, in_.options.dsn));
    const std::string message =
        absl::StrCat("table ", plan::QuoteQualified(table), " was moved by pgbackfill job ", job_,
                     " to ", plan::QuoteQualified(in_.report.target->name), " on ",
                     where.ok() ? *where : std::string("the target server"), "; write there");
    return absl::StrCat(
        "CREATE OR REPLACE FUNCTION ", function,
        "() RETURNS trigger LANGUAGE plpgsql AS $pgbackfill$ BEGIN RAISE EXCEPTION USING "
        "ERRCODE = 'object_not_in_prerequisite_state', MESSAGE = ",
        pg::QuoteLiteral(message), "; END $pgbackfill$; CREATE TRIGGER ", pg::QuoteIdent(name),
        " BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON ", plan::QuoteQualified(table),
        " FOR EACH STATEMENT EXECUTE FUNCTION ", function, "()");
  }

  const FollowInputs& in_;
  const std::string job_;
  const follow::ApplySpec spec_;
  boost::asio::io_context io_;
  boost::asio::signal_set signals_;
  int signal_ = 0;

  checkpoint::FollowRecord record_;
  std::optional<pg::Connection> apply_;   // target: the apply's transactions
  std::optional<pg::Connection> source_;  // source: the cutover's lock, sequences, trigger
  std::optional<pg::ReplicationConnection> stream_;
  std::optional<follow::Spool> spool_;
  follow::RelationMap relations_;

  uint64_t applied_ = 0;      // committed on the target
  uint64_t confirmed_ = 0;    // told to the server
  uint64_t server_lsn_ = 0;   // the server's WAL end, as the stream said last
  uint64_t pending_end_ = 0;  // the end of the last source commit in the open target transaction
  follow::PgTimestamp pending_commit_time_ = 0;
  follow::PgTimestamp applied_commit_time_ = 0;
  bool in_source_txn_ = false;
  bool skipping_ = false;
  int64_t txn_changes_ = 0;
  bool batch_open_ = false;
  absl::Time batch_started_;
  int64_t batch_changes_ = 0;
  int64_t batch_transactions_ = 0;
  int64_t changes_ = 0;       // committed by this run
  int64_t transactions_ = 0;  // committed by this run
  bool status_due_ = false;
  absl::Time last_status_ = absl::InfinitePast();
  absl::Time last_progress_ = absl::InfinitePast();
  absl::Time last_control_ = absl::InfinitePast();
  std::string marker_;
  bool marker_seen_ = false;
  uint64_t caught_up_to_ = 0;         // a keepalive's position with nothing of ours before it
  uint64_t previous_source_lsn_ = 0;  // the source's WAL position at the tick before
  const absl::Time started_ = absl::Now();
  bool warned_ = false;
};

}  // namespace

absl::StatusOr<RunSummary> FollowChanges(const FollowInputs& in) {
  Follower follower(in);
  absl::StatusOr<RunSummary> summary = follower.Run();
  // Resumable from the applied position whatever went wrong: the run fails with the reason.
  if (!summary.ok()) return Ended(Outcome::kFailed, std::string(summary.status().message()));
  return summary;
}

}  // namespace pgbackfill::exec::internal
