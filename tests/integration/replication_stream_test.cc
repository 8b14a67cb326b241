// A logical slot made on a walsender session with an exported snapshot, then streamed from on
// another (pg/replication.h, decoded by follow/pgoutput.h): a transaction importing the snapshot
// sees exactly the rows committed before the slot, the stream carries exactly the ones after it,
// and a status update moves the slot's confirmed position. This is where a copy and its change
// stream meet without a gap or an overlap.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "pgbackfill/follow/pgoutput.h"
#include "pgbackfill/pg/lsn.h"
#include "pgbackfill/pg/replication.h"
#include "support/run_helpers.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill {
namespace {

using follow::Commit;
using follow::Insert;
using follow::Keepalive;
using follow::XLogData;
using ::testing::HasSubstr;

class ReplicationStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    slot_ = absl::StrCat("pgbf_stream_", getpid());  // slot names are cluster-wide, at most 63
    ASSERT_OK(db_.Exec("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                       "WHERE slot_name = $1 AND NOT active",
                       {slot_})
                  .status());
    ASSERT_OK(
        db_.ExecScript("CREATE TABLE items (id bigint PRIMARY KEY, note text);"
                       "INSERT INTO items SELECT i, 'before' FROM generate_series(1, 100) AS i;"
                       "CREATE PUBLICATION pgbf_pub FOR TABLE items;"));
  }
  // A slot left behind keeps WAL and its database: dropped whether or not this test made it (a
  // killed earlier process with the same pid may have).
  void TearDown() override {
    stream_.reset();  // an active slot cannot be dropped
    absl::Status dropped;
    for (int attempt = 0; attempt < 50; ++attempt) {  // the walsender may take a moment to exit
      dropped = db_.Exec(
                       "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                       "WHERE slot_name = $1",
                       {slot_})
                    .status();
      if (dropped.ok()) break;
      absl::SleepFor(absl::Milliseconds(100));
    }
    EXPECT_OK(dropped);
  }

  testing::TestDatabase db_;
  std::string slot_;
  std::optional<pg::ReplicationConnection> stream_;
};

// The copy reads under the snapshot for as long as it runs, while changes are already streamed
// (and spooled): one session makes the slot and then idles, keeping its snapshot importable, and
// another streams from the slot.
TEST_F(ReplicationStreamTest, TheExportedSnapshotAndTheStreamMeetAtTheSlotsConsistentPoint) {
  ASSERT_OK_AND_ASSIGN(pg::ReplicationConnection holder,
                       pg::ReplicationConnection::Connect(db_.dsn()));
  ASSERT_OK_AND_ASSIGN(pg::ReplicationConnection::Slot slot,
                       holder.CreateLogicalSlot(slot_, "pgoutput"));
  EXPECT_EQ(slot.name, slot_);

  // Written after the slot: in the stream, not in the snapshot.
  ASSERT_OK(db_.ExecScript("INSERT INTO items VALUES (101, 'after')"));
  ASSERT_OK_AND_ASSIGN(pg::ReplicationConnection conn,
                       pg::ReplicationConnection::Connect(db_.dsn()));
  stream_.emplace(std::move(conn));
  ASSERT_OK(stream_->StartLogical(slot_, slot.consistent_point,
                                  {{"proto_version", "1"}, {"publication_names", "pgbf_pub"}}));

  ASSERT_OK_AND_ASSIGN(pg::Connection reader, pg::Connection::Connect(db_.dsn()));
  ASSERT_OK(reader.ExecScript("BEGIN ISOLATION LEVEL REPEATABLE READ"));
  ASSERT_OK(reader.Exec(absl::StrCat("SET TRANSACTION SNAPSHOT '", slot.snapshot, "'")).status());
  ASSERT_OK_AND_ASSIGN(pg::Result seen, reader.Exec("SELECT count(*), max(id) FROM items"));
  EXPECT_EQ(seen.Get(0, 0), "100");
  EXPECT_EQ(seen.Get(0, 1), "100");
  ASSERT_OK(reader.ExecScript("COMMIT"));
  std::vector<Insert> inserts;
  std::optional<Commit> commit;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!commit.has_value() && absl::Now() < deadline) {
    ASSERT_OK_AND_ASSIGN(std::optional<std::string> frame,
                         stream_->Receive(absl::Milliseconds(500)));
    if (!frame.has_value()) continue;
    ASSERT_OK_AND_ASSIGN(follow::ServerFrame decoded, follow::DecodeServerFrame(*frame));
    const auto* data = std::get_if<XLogData>(&decoded);
    if (data == nullptr) continue;  // a keepalive
    ASSERT_OK_AND_ASSIGN(follow::Message message, follow::DecodeMessage(data->payload));
    if (const auto* insert = std::get_if<Insert>(&message)) inserts.push_back(*insert);
    if (const auto* each = std::get_if<Commit>(&message)) commit = *each;
  }
  ASSERT_TRUE(commit.has_value()) << "no transaction came through the stream in 30 s";
  ASSERT_EQ(inserts.size(), 1u) << "the rows before the slot must not be streamed";
  EXPECT_EQ(inserts[0].row[0].bytes, "101");
  EXPECT_EQ(inserts[0].row[1].bytes, "after");
  EXPECT_GE(commit->commit_lsn, slot.consistent_point);

  // What we report flushed becomes the slot's confirmed position.
  ASSERT_OK(stream_->Send(follow::EncodeStandbyStatus(
      {.written = commit->end_lsn,
       .flushed = commit->end_lsn,
       .applied = commit->end_lsn,
       .client_time = follow::ToPgTimestamp(absl::ToUnixMicros(absl::Now())),
       .reply_requested = false})));
  const std::string want = pg::FormatLsn(commit->end_lsn);
  std::string confirmed;
  for (int attempt = 0; attempt < 100 && confirmed != want; ++attempt) {
    (void)stream_->Receive(absl::Milliseconds(50));  // keeps reading what the server sends
    ASSERT_OK_AND_ASSIGN(confirmed, db_.QueryValue("SELECT confirmed_flush_lsn::text FROM "
                                                   "pg_replication_slots WHERE slot_name = $1",
                                                   {slot_}));
  }
  EXPECT_EQ(confirmed, want);
}

// A transaction holding an xid (here an idle one) keeps the server from making a logical slot:
// the wait ends at the deadline with the reason, and no slot is left.
TEST_F(ReplicationStreamTest, ASlotThatCannotBeMadeInTimeSaysWhyAndLeavesNoSlot) {
  ASSERT_OK_AND_ASSIGN(pg::Connection open, pg::Connection::Connect(db_.dsn()));
  ASSERT_OK(open.ExecScript("BEGIN; INSERT INTO items VALUES (500, 'open')"));
  ASSERT_OK_AND_ASSIGN(pg::ReplicationConnection conn,
                       pg::ReplicationConnection::Connect(db_.dsn()));
  absl::StatusOr<pg::ReplicationConnection::Slot> slot =
      conn.CreateLogicalSlot(slot_, "pgoutput", absl::Seconds(2));
  EXPECT_EQ(slot.status().code(), absl::StatusCode::kDeadlineExceeded) << slot.status();
  EXPECT_THAT(slot.status().message(), HasSubstr("a long transaction on the server"));
  ASSERT_OK(open.ExecScript("ROLLBACK"));
  EXPECT_TRUE(testing::Eventually([&] {
    auto left =
        db_.QueryValue("SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", {slot_});
    return left.ok() && *left == "0";
  })) << "the cancelled slot stayed";
}

TEST_F(ReplicationStreamTest, ASlotNameOutsideTheSlotAlphabetIsRefusedBeforeTheServer) {
  ASSERT_OK_AND_ASSIGN(pg::ReplicationConnection conn,
                       pg::ReplicationConnection::Connect(db_.dsn()));
  EXPECT_THAT(conn.CreateLogicalSlot("x; DROP TABLE items", "pgoutput").status().message(),
              HasSubstr("lower-case letters, digits and underscores"));
  EXPECT_FALSE(pg::IsSlotName(""));
  EXPECT_FALSE(pg::IsSlotName(std::string(64, 'a')));
  EXPECT_TRUE(pg::IsSlotName("pgbackfill_job_1"));
}

}  // namespace
}  // namespace pgbackfill
