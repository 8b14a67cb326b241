// What a real PostgreSQL 15 sends through pgoutput (protocol version 1), decoded by
// follow/pgoutput.h: a logical slot of the test's own, changes of every kind (a NULL, an UPDATE
// that leaves a TOASTed value alone, a key change, REPLICA IDENTITY FULL, TRUNCATE), read back with
// pg_logical_slot_get_binary_changes. The test cluster runs at wal_level = logical
// (scripts/pg-cluster).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "pgbackfill/follow/pgoutput.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill::follow {
namespace {

using ::testing::Contains;

std::string FromHex(std::string_view text) {
  // bytea's text output: \x then two hex digits a byte.
  std::string out;
  for (size_t i = 2; i + 1 < text.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(std::string(text.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

// The slot is the cluster's, not the database's: dropped before the database, failure or not.
class PgoutputStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(std::string level, db_.QueryValue("SHOW wal_level"));
    ASSERT_EQ(level, "logical") << "start the cluster with scripts/pg-cluster (wal_level logical)";
    slot_ = absl::StrCat("pgbf_pgoutput_", getpid());  // slot names are cluster-wide, at most 63
    ASSERT_OK(
        db_.ExecScript("CREATE TABLE items (id bigint PRIMARY KEY, note text, big text);"
                       "ALTER TABLE items ALTER big SET STORAGE EXTERNAL;"
                       "CREATE PUBLICATION pgbf_pub FOR TABLE items;"));
    ASSERT_OK(db_.Exec("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                       "WHERE slot_name = $1 AND NOT active",
                       {slot_})
                  .status());
    ASSERT_OK(
        db_.Exec("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", {slot_}).status());
  }
  // A slot left behind keeps WAL and its database: dropped whether or not this test made it.
  void TearDown() override {
    EXPECT_OK(db_.Exec("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                       "WHERE slot_name = $1",
                       {slot_})
                  .status());
  }

  // Everything the slot has, decoded in order.
  std::vector<Message> Changes() {
    std::vector<Message> out;
    absl::StatusOr<pg::Result> rows = db_.Exec(
        "SELECT data FROM pg_logical_slot_get_binary_changes($1, NULL, NULL, "
        "'proto_version', '1', 'publication_names', 'pgbf_pub')",
        {slot_});
    EXPECT_OK(rows.status());
    if (!rows.ok()) return out;
    for (int row = 0; row < rows->Rows(); ++row) {
      absl::StatusOr<Message> message = DecodeMessage(FromHex(rows->Get(row, 0)));
      EXPECT_OK(message.status()) << "message " << row;
      if (message.ok()) out.push_back(*std::move(message));
    }
    return out;
  }

  template <typename T>
  std::vector<T> All(const std::vector<Message>& messages) {
    std::vector<T> out;
    for (const Message& message : messages) {
      if (const T* each = std::get_if<T>(&message)) out.push_back(*each);
    }
    return out;
  }

  testing::TestDatabase db_;
  std::string slot_;
};

TEST_F(PgoutputStreamTest, EveryKindOfChangeAServerSendsIsDecodedAsWritten) {
  ASSERT_OK_AND_ASSIGN(std::string big,
                       db_.QueryValue("SELECT string_agg(md5(i::text), '') "
                                      "FROM generate_series(1, 300) AS i"));  // 9,600 bytes
  ASSERT_OK(db_.Exec("INSERT INTO items VALUES (1, NULL, $1)", {big}).status());
  // One transaction each (a multi-statement string would be one implicit transaction).
  for (const char* statement : {
           "UPDATE items SET note = 'n' WHERE id = 1",  // big stays TOASTed and is not sent
           "UPDATE items SET id = 2 WHERE id = 1",      // the key changes: the old key comes first
           "DELETE FROM items WHERE id = 2",
           "ALTER TABLE items REPLICA IDENTITY FULL",
           "INSERT INTO items VALUES (3, 'a', 'b')",
           "UPDATE items SET note = 'c' WHERE id = 3",  // the whole old row comes first
           "TRUNCATE items",
       }) {
    ASSERT_OK(db_.ExecScript(statement)) << statement;
  }
  ASSERT_OK_AND_ASSIGN(std::string oid, db_.QueryValue("SELECT 'items'::regclass::oid"));

  const std::vector<Message> messages = Changes();
  ASSERT_FALSE(messages.empty());

  // Each change fits the relation described before it.
  RelationMap relations;
  for (const Message& message : messages) {
    if (const auto* relation = std::get_if<Relation>(&message)) relations.Remember(*relation);
    uint32_t id = 0;
    const Tuple* row = nullptr;
    if (const auto* insert = std::get_if<Insert>(&message)) {
      id = insert->relation;
      row = &insert->row;
    }
    if (const auto* update = std::get_if<Update>(&message)) {
      id = update->relation;
      row = &update->row;
    }
    if (row == nullptr) continue;
    ASSERT_OK_AND_ASSIGN(const Relation* relation, relations.Find(id));
    EXPECT_OK(CheckTupleFits(*relation, *row));
  }
  ASSERT_OK_AND_ASSIGN(const Relation* items,
                       relations.Find(static_cast<uint32_t>(std::stoul(oid))));
  EXPECT_EQ(items->name, "items");
  EXPECT_EQ(items->schema, "public");
  ASSERT_EQ(items->columns.size(), 3u);
  EXPECT_TRUE(items->columns[0].key);
  EXPECT_EQ(items->columns[0].type_oid, 20u);  // bigint

  const std::vector<Insert> inserts = All<Insert>(messages);
  ASSERT_EQ(inserts.size(), 2u);
  EXPECT_EQ(inserts[0].row[0].bytes, "1");
  EXPECT_TRUE(inserts[0].row[1].null());
  EXPECT_EQ(inserts[0].row[2].bytes, big);

  const std::vector<Update> updates = All<Update>(messages);
  ASSERT_EQ(updates.size(), 3u);
  EXPECT_FALSE(updates[0].old_kind.has_value());
  EXPECT_EQ(updates[0].row[1].bytes, "n");
  EXPECT_TRUE(updates[0].row[2].unchanged()) << "a TOASTed value the UPDATE left alone";
  EXPECT_EQ(updates[1].old_kind, 'K');
  EXPECT_EQ(updates[1].old_row[0].bytes, "1");
  EXPECT_EQ(updates[1].row[0].bytes, "2");
  EXPECT_EQ(updates[2].old_kind, 'O');
  EXPECT_EQ(updates[2].old_row[1].bytes, "a");
  EXPECT_EQ(updates[2].row[1].bytes, "c");

  const std::vector<Delete> deletes = All<Delete>(messages);
  ASSERT_EQ(deletes.size(), 1u);
  EXPECT_EQ(deletes[0].old_kind, 'K');
  EXPECT_EQ(deletes[0].old_row[0].bytes, "2");

  const std::vector<Truncate> truncates = All<Truncate>(messages);
  ASSERT_EQ(truncates.size(), 1u);
  EXPECT_THAT(truncates[0].relations, Contains(static_cast<uint32_t>(std::stoul(oid))));

  // One Begin and one Commit per transaction, commits in WAL order.
  const std::vector<Begin> begins = All<Begin>(messages);
  const std::vector<Commit> commits = All<Commit>(messages);
  EXPECT_EQ(begins.size(), commits.size());
  EXPECT_EQ(commits.size(), 7u);
  for (size_t i = 0; i < commits.size(); ++i) {
    EXPECT_EQ(begins[i].final_lsn, commits[i].commit_lsn);
    EXPECT_LT(commits[i].commit_lsn, commits[i].end_lsn);
    if (i > 0) {
      EXPECT_LT(commits[i - 1].end_lsn, commits[i].end_lsn);
    }
  }
}

}  // namespace
}  // namespace pgbackfill::follow
