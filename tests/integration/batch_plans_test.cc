// Every batch walks the key's index, whatever the key's shape: composite, text and uuid keys, in
// UPDATE and copy mode. The server's own count of sequential scans of the table proves it over a
// whole run, and `check` shows the plan of one batch. Before the write had a scalar range on the
// key's first column, the first range of these keys scanned the table once per batch (the
// planner estimated a third of the table behind the batch's bound).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "support/run_helpers.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill {
namespace {

using testing::CommandResult;
using testing::Eventually;
using testing::RunPgbackfill;

// Enough rows that a scan of the table is the planner's choice when its estimate is wrong (it was
// at 100k), and a batch size that makes 75 batches.
constexpr int64_t kRows = 150000;
constexpr int kBatchRows = 2000;

struct KeyShape {
  const char* name;
  const char* columns;     // the table's key columns with types
  const char* key;         // the key column list
  const char* key_values;  // the key values from generate_series' g
};

constexpr KeyShape kShapes[] = {
    {"composite", "tenant text NOT NULL, id uuid NOT NULL", "tenant, id",
     "'tenant ' || lpad((g % 97)::text, 3, '0'), md5(g::text)::uuid"},
    {"text", "name text NOT NULL", "name", "md5(g::text)"},
    {"uuid", "id uuid NOT NULL", "id", "md5(g::text)::uuid"},
};

class BatchPlansTest : public testing::RunTest {
 protected:
  void CreateTable(const std::string& table, const KeyShape& shape, int64_t rows = kRows) {
    ASSERT_OK(db_.ExecScript(absl::StrCat("CREATE TABLE ", table, " (", shape.columns,
                                          ", n int NOT NULL DEFAULT 0, pad text,"
                                          " PRIMARY KEY (",
                                          shape.key,
                                          "));"
                                          "INSERT INTO ",
                                          table, " SELECT ", shape.key_values,
                                          ", 0, repeat('x', 40)"
                                          "  FROM generate_series(1, ",
                                          rows,
                                          ") g;"
                                          "ANALYZE ",
                                          table, ";")));
  }

  // pg_stat_user_tables of `table`: sequential scans so far. This session's own counters (the
  // table's creation) are flushed first: a backend otherwise sends them up to 10 s later, and
  // they would land between the test's two readings.
  int64_t SeqScans(const std::string& table) {
    EXPECT_OK(db_.Exec("SELECT pg_catalog.pg_stat_force_next_flush()").status());
    auto value = db_.QueryValue(
        "SELECT seq_scan FROM pg_catalog.pg_stat_user_tables WHERE relname = $1", {table});
    EXPECT_OK(value);
    return value.ok() ? std::stoll(*value) : -1;
  }

  // Waits until the server's statistics show `count` rows written by `column` (n_tup_upd,
  // n_tup_ins) of `table`: the run's backends have flushed their counters, seq_scan among them.
  void WaitForStats(const std::string& table, const std::string& column, int64_t count) {
    EXPECT_TRUE(Eventually([&] {
      auto value =
          db_.QueryValue(absl::StrCat("SELECT ", column,
                                      " FROM pg_catalog.pg_stat_user_tables WHERE relname = $1"),
                         {table});
      return value.ok() && std::stoll(*value) >= count;
    })) << "the statistics of "
        << table << " never showed " << count << " rows in " << column;
  }

  void ExpectCheckShowsIndexScans(const std::string& plan_path) {
    CommandResult check = RunPgbackfill({"check", plan_path, "--dsn", db_.dsn(), "--json"});
    ASSERT_EQ(check.exit_code, 0) << check.out << check.err;
    const nlohmann::json report = nlohmann::json::parse(check.out);
    ASSERT_EQ(report["batch_scans"].size(), 2u) << check.out;
    for (const nlohmann::json& scan : report["batch_scans"]) {
      EXPECT_FALSE(scan["whole_table"].get<bool>()) << scan.dump();
      EXPECT_THAT(scan["node"].get<std::string>(), ::testing::HasSubstr("_pkey")) << scan.dump();
    }
  }

  static std::string PlanHead(const std::string& name, const std::string& table,
                              int batch_rows = kBatchRows) {
    return absl::StrCat("version: 1\nname: ", name, "\ntable: ", table,
                        "\nworkers: 1\nverify: false\nthrottle: { application: off }\n"
                        "batch: { rows: ",
                        batch_rows, ", min_rows: ", batch_rows, ", max_rows: ", batch_rows, " }\n");
  }
};

TEST_F(BatchPlansTest, UpdateBatchesOfEveryKeyShapeNeverScanTheTable) {
  for (const KeyShape& shape : kShapes) {
    SCOPED_TRACE(shape.name);
    const std::string table = absl::StrCat("upd_", shape.name);
    CreateTable(table, shape);
    const std::string plan =
        testing::WriteTestFile(absl::StrCat(PlanHead(table, table), "set:\n  n: n + 1\n"));
    ExpectCheckShowsIndexScans(plan);
    const int64_t before = SeqScans(table);
    CommandResult run = RunPgbackfill(RunArgs(plan));
    ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
    WaitForStats(table, "n_tup_upd", kRows);
    EXPECT_EQ(SeqScans(table), before) << "a batch scanned the whole table";
    ExpectEveryRowOnce(table, kRows);  // (reads the table: after the count)
  }
}

TEST_F(BatchPlansTest, CopyBatchesOfEveryKeyShapeNeverScanTheSource) {
  for (const KeyShape& shape : kShapes) {
    SCOPED_TRACE(shape.name);
    const std::string table = absl::StrCat("src_", shape.name);
    const std::string into = absl::StrCat("dst_", shape.name);
    CreateTable(table, shape);
    ASSERT_OK(
        db_.ExecScript(absl::StrCat("CREATE TABLE ", into, " (LIKE ", table, " INCLUDING ALL)")));
    const std::string plan =
        testing::WriteTestFile(absl::StrCat(PlanHead(table, table), "into: ", into, "\n"));
    ExpectCheckShowsIndexScans(plan);
    const int64_t before = SeqScans(table);
    CommandResult run = RunPgbackfill(RunArgs(plan));
    ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
    WaitForStats(into, "n_tup_ins", kRows);
    EXPECT_EQ(SeqScans(table), before) << "a batch scanned the whole source table";
    ASSERT_OK_AND_ASSIGN(
        std::string differ,
        db_.QueryValue(absl::StrCat("SELECT count(*) FROM ((TABLE ", table, " EXCEPT TABLE ", into,
                                    ") UNION ALL (TABLE ", into, " EXCEPT TABLE ", table, ")) d")));
    EXPECT_EQ(differ, "0");
  }
}

// The size the issue was seen at: a million rows under a (text, uuid) key, 100 batches, every
// one of them (the first range's included, where a third of the table was estimated behind the
// bound) an index range scan.
TEST_F(BatchPlansTest, AMillionRowCompositeKeyIsWrittenWithoutATableScan) {
  constexpr int64_t kMillion = 1'000'000;
  CreateTable("million", kShapes[0], kMillion);
  const std::string plan = testing::WriteTestFile(
      absl::StrCat(PlanHead("million", "million", 10000), "set:\n  n: n + 1\n"));
  ExpectCheckShowsIndexScans(plan);
  const int64_t before = SeqScans("million");
  CommandResult run = RunPgbackfill(RunArgs(plan));
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  WaitForStats("million", "n_tup_upd", kMillion);
  EXPECT_EQ(SeqScans("million"), before) << "a batch scanned the whole table";
  ExpectEveryRowOnce("million", kMillion);
}

// A server whose planner may not use the index (here: told not to) makes every batch read the
// table; `check` says so before anything runs.
TEST_F(BatchPlansTest, CheckWarnsWhenABatchWouldScanTheTable) {
  CreateTable("noindex", kShapes[0]);
  ASSERT_OK(db_.ExecScript(absl::StrCat("ALTER DATABASE ", db_.name(),
                                        " SET enable_indexscan = off;"
                                        "ALTER DATABASE ",
                                        db_.name(), " SET enable_bitmapscan = off;")));
  const std::string plan =
      testing::WriteTestFile(absl::StrCat(PlanHead("noindex", "noindex"), "set:\n  n: n + 1\n"));
  CommandResult check = RunPgbackfill({"check", plan, "--dsn", db_.dsn()});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  EXPECT_THAT(check.out, ::testing::HasSubstr("first batch reaches its rows by Seq Scan"));
  EXPECT_THAT(check.out, ::testing::HasSubstr("warning   a first batch would scan the whole of "
                                              "\"public\".\"noindex\""));
}

}  // namespace
}  // namespace pgbackfill
