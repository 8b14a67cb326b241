// Bloat control (`vacuum_every`) end to end through the binary: the VACUUMs happen and keep the
// table smaller than the same backfill without them, an interruption while one runs loses and
// doubles nothing, and preflight refuses a role that may not VACUUM the table.
//
// The plans use `n = n + 1`: a row touched twice would show n = 2, one skipped n = 0.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "support/run_events.h"
#include "support/run_helpers.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"
#include "pgbackfill/events/events.h"
#include "pgbackfill/pg/connection.h"

namespace pgbackfill {
namespace {

using ::testing::HasSubstr;
using testing::CommandResult;
using testing::RunPgbackfill;
using testing::SpawnPgbackfill;

constexpr int64_t kRows = 40000;

// Full pages (fillfactor 100, as a table loaded once and never updated has) and no autovacuum, so
// that only the plan's VACUUMs can make room for the new row versions.
std::string TableSql(const std::string& name) {
  return absl::StrCat(
      "CREATE TABLE ", name, " (id int PRIMARY KEY, n int NOT NULL DEFAULT 0, c bigint,",
      "  pad text) WITH (autovacuum_enabled = false);",
      "INSERT INTO ", name, " (id, pad) SELECT g, repeat('x', 40) FROM generate_series(1, ",
      kRows, ") g;");
}

std::string Plan(const std::string& table, const std::string& vacuum_every,
                 const std::string& extra = "") {
  return absl::StrCat(
      "version: 1\nthrottle: { application: off }\nname: ", table, "\ntable: ", table,
      "\nset:\n  n: n + 1\n  c: id * 100\n", extra,
      "batch: { rows: 2000, min_rows: 2000, max_rows: 2000 }\nworkers: 1\n",
      vacuum_every.empty() ? "" : absl::StrCat("vacuum_every: ", vacuum_every, "\n"));
}

class BloatControlTest : public testing::RunTest {
 protected:
  // The table, vacuumed and analysed like one loaded long ago (VACUUM cannot share a script's
  // implicit transaction).
  void CreateTable(const std::string& name) {
    ASSERT_OK(db_.ExecScript(TableSql(name)));
    ASSERT_OK(db_.Exec("VACUUM ANALYZE " + name).status());
  }

  int64_t TableBytes(const std::string& table) {
    auto bytes = db_.QueryValue(absl::StrCat("SELECT pg_table_size('", table, "')"));
    EXPECT_OK(bytes);
    return bytes.ok() ? std::stoll(*bytes) : 0;
  }

  // Every row updated once, with c set as well.
  void ExpectEveryRowFilled(const std::string& table) {
    ExpectEveryRowOnce(table, kRows);
    ASSERT_OK_AND_ASSIGN(std::string wrong,
                         db_.QueryValue(absl::StrCat("SELECT count(*) FROM ", table,
                                                     " WHERE c IS DISTINCT FROM id * 100")));
    EXPECT_EQ(wrong, "0") << "rows with a wrong c";
  }
};

TEST_F(BloatControlTest, VacuumsBetweenSlicesKeepTheTableSmaller) {
  CreateTable("plain");
  CreateTable("controlled");
  const int64_t before = TableBytes("plain");
  ASSERT_EQ(before, TableBytes("controlled"));

  CommandResult plain = RunPgbackfill(RunArgs(testing::WriteTestFile(Plan("plain", ""), ".plain.yaml")));
  ASSERT_EQ(plain.exit_code, 0) << plain.out << plain.err;
  CommandResult controlled =
      RunPgbackfill(RunArgs(testing::WriteTestFile(Plan("controlled", "4000"), ".vacuum.yaml")));
  ASSERT_EQ(controlled.exit_code, 0) << controlled.out << controlled.err;
  ExpectEveryRowFilled("plain");
  ExpectEveryRowFilled("controlled");

  const std::vector<events::Event> events = testing::ReadEvents(controlled.out);
  const std::vector<events::Vacuum> vacuums = testing::EventsOf<events::Vacuum>(events);
  ASSERT_FALSE(vacuums.empty()) << controlled.out;
  EXPECT_EQ(vacuums.front().table, "\"public\".\"controlled\"");
  EXPECT_EQ(vacuums.front().every_rows, 4000);
  EXPECT_GT(vacuums.front().table_bytes.value_or(0), 0) << "the table's size is known";
  const std::optional<events::JobFinished> finished =
      testing::FirstEvent<events::JobFinished>(events);
  ASSERT_TRUE(finished.has_value());
  EXPECT_EQ(finished->vacuums, static_cast<int64_t>(vacuums.size()));
  EXPECT_TRUE(testing::EventsOf<events::Vacuum>(testing::ReadEvents(plain.out)).empty());

  // Every row got a new version: without VACUUM they all went to new pages (the table about
  // doubles); with it most went into the space of versions an earlier slice replaced.
  const int64_t plain_after = TableBytes("plain");
  const int64_t controlled_after = TableBytes("controlled");
  EXPECT_GT(plain_after, before * 3 / 2) << "the backfill without VACUUM should have grown it";
  // Needs the cluster's xmin horizon to move: tests/CMakeLists.txt keeps the tests that hold it
  // (making a logical slot) from running beside this one.
  EXPECT_LT(controlled_after, plain_after)
      << "before " << before << ", without VACUUM " << plain_after << ", with " << controlled_after
      << " after " << vacuums.size() << " VACUUMs";
  // The statistics agree that VACUUM ran on the table (the events are not just words).
  ASSERT_OK_AND_ASSIGN(std::string vacuum_count,
                       db_.QueryValue("SELECT vacuum_count FROM pg_stat_user_tables "
                                      "WHERE relname = 'controlled'"));
  EXPECT_NE(vacuum_count, "0");
}

TEST_F(BloatControlTest, InterruptedWhileVacuumingResumesExactlyOnce) {
  CreateTable("interrupted");
  // 10 ms per batch (an uncommitted sub-select, evaluated once per batch) so the run lasts long
  // enough to be stopped between a VACUUM event and the end.
  const std::string plan = testing::WriteTestFile(
      Plan("interrupted", "2000", "where: (SELECT pg_catalog.pg_sleep(0.01)) IS NOT NULL\n"));
  for (int signal_number : {SIGTERM, SIGKILL}) {
    ASSERT_OK_AND_ASSIGN(testing::Process run, SpawnPgbackfill(RunArgs(plan)));
    ASSERT_OK(run.WaitForOutput("\"event\":\"vacuum\"", absl::Seconds(60))) << run.StderrSoFar();
    ASSERT_OK(run.Signal(signal_number));
    CommandResult stopped = run.Wait();
    if (signal_number == SIGTERM) {
      EXPECT_EQ(stopped.exit_code, 3) << stopped.out << stopped.err;
    }
  }
  CommandResult resumed = RunPgbackfill(RunArgs(plan));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.out << resumed.err;
  ExpectEveryRowFilled("interrupted");
}

// SKIP_LOCKED: while another session holds SHARE UPDATE EXCLUSIVE (as autovacuum or a
// CREATE INDEX CONCURRENTLY would), every round is skipped, said so, and not counted as done; the
// batches (ROW EXCLUSIVE) are not blocked.
TEST_F(BloatControlTest, ARoundSkippedByALockIsReportedNotCounted) {
  CreateTable("locked");
  ASSERT_OK_AND_ASSIGN(pg::Connection holder, pg::Connection::Connect(db_.dsn()));
  ASSERT_OK(holder.ExecScript("BEGIN; LOCK TABLE locked IN SHARE UPDATE EXCLUSIVE MODE"));
  CommandResult result =
      RunPgbackfill(RunArgs(testing::WriteTestFile(Plan("locked", "4000"))));
  ASSERT_OK(holder.ExecScript("COMMIT"));
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  ExpectEveryRowFilled("locked");
  const std::vector<events::Event> events = testing::ReadEvents(result.out);
  EXPECT_TRUE(testing::EventsOf<events::Vacuum>(events).empty()) << result.out;
  bool skipped = false;
  for (const events::Warning& warning : testing::EventsOf<events::Warning>(events)) {
    skipped |= warning.message.find("was skipped") != std::string::npos;
  }
  EXPECT_TRUE(skipped) << result.out;
  const std::optional<events::JobFinished> finished =
      testing::FirstEvent<events::JobFinished>(events);
  ASSERT_TRUE(finished.has_value());
  EXPECT_EQ(finished->vacuums, 0);
}

TEST_F(BloatControlTest, PreflightRefusesARoleThatMayNotVacuum) {
  CreateTable("owned");
  const std::string role = db_.name() + "_writer";
  ASSERT_OK(db_.ExecScript("CREATE ROLE \"" + role + "\" LOGIN;"
                           "GRANT SELECT, UPDATE ON owned TO \"" + role + "\";"
                           "GRANT CREATE ON DATABASE \"" + db_.name() + "\" TO \"" + role + "\";"));
  const std::string plan = testing::WriteTestFile(Plan("owned", "5%"));
  CommandResult refused =
      RunPgbackfill({"run", plan, "--dsn", db_.dsn() + " user=" + role});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.out + refused.err,
              AllOf(HasSubstr(plan + ":10: vacuum_every:"), HasSubstr("may not VACUUM"),
                    HasSubstr("\"public\".\"owned\"")));
  ASSERT_OK_AND_ASSIGN(std::string touched,
                       db_.QueryValue("SELECT count(*) FROM owned WHERE n <> 0"));
  EXPECT_EQ(touched, "0") << "a refused plan must change nothing";
  EXPECT_OK(db_.ExecScript("DROP OWNED BY \"" + role + "\"; DROP ROLE \"" + role + "\";"));
}

}  // namespace
}  // namespace pgbackfill
