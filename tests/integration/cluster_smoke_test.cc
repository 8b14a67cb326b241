// The test support library itself: per-test databases, the standby, and the command runner. If
// these fail, every other integration test result is meaningless, so they are kept small.
#include <signal.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill::testing {
namespace {

using ::testing::HasSubstr;

TEST(ClusterSmokeTest, TestDatabaseHoldsData) {
  TestDatabase db;
  ASSERT_OK(db.ExecScript(
      "CREATE TABLE t (id bigint PRIMARY KEY, v text);"
      "INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 1000) g;"));
  ASSERT_OK_AND_ASSIGN(std::string count, db.QueryValue("SELECT count(*) FROM t"));
  EXPECT_EQ(count, "1000");
  ASSERT_OK_AND_ASSIGN(std::string current, db.QueryValue("SELECT current_database()"));
  EXPECT_EQ(current, db.name());
  EXPECT_LE(db.name().size(), 63u);
}

TEST(ClusterSmokeTest, DatabasesAreSeparateAndDroppedAfterUse) {
  std::string first_name;
  {
    TestDatabase first;
    TestDatabase second("second");
    first_name = first.name();
    EXPECT_NE(first.name(), second.name());
    ASSERT_OK(first.ExecScript("CREATE TABLE only_in_first (id int)"));
    ASSERT_OK_AND_ASSIGN(
        std::string visible,
        second.QueryValue("SELECT count(*) FROM pg_catalog.pg_class WHERE relname = 'only_in_first'"));
    EXPECT_EQ(visible, "0");
  }
  TestDatabase observer;
  ASSERT_OK_AND_ASSIGN(
      std::string left,
      observer.QueryValue("SELECT count(*) FROM pg_catalog.pg_database WHERE datname = $1",
                          {first_name}));
  EXPECT_EQ(left, "0") << first_name << " should have been dropped";
}

TEST(ClusterSmokeTest, TcpDsnReachesThePrimary) {
  TestDatabase db;
  auto conn = pg::Connection::Connect(db.DsnFor(TcpDsn()));
  ASSERT_OK(conn);
  ASSERT_OK_AND_ASSIGN(pg::Result result, conn->Exec("SELECT current_database()"));
  EXPECT_EQ(result.Get(0, 0), db.name());
}

TEST(ClusterSmokeTest, StandbyIsInRecoveryAndReplicates) {
  std::optional<std::string> standby = StandbyDsn();
  if (!standby) GTEST_SKIP() << "cluster started without --standby (scripts/test always has one)";
  TestDatabase db;
  ASSERT_OK(db.ExecScript("CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2), (3);"));
  ASSERT_OK(WaitForStandbyCatchUp());

  auto conn = pg::Connection::Connect(db.DsnFor(*standby));
  ASSERT_OK(conn);
  ASSERT_OK_AND_ASSIGN(pg::Result recovery, conn->Exec("SELECT pg_catalog.pg_is_in_recovery()"));
  EXPECT_EQ(recovery.Get(0, 0), "t");
  ASSERT_OK_AND_ASSIGN(pg::Result count, conn->Exec("SELECT count(*) FROM t"));
  EXPECT_EQ(count.Get(0, 0), "3");
}

TEST(ClusterSmokeTest, PrimaryRestartKeepsDataAndReconnects) {
  TestDatabase db;
  ASSERT_OK(db.ExecScript("CREATE TABLE t (id int); INSERT INTO t VALUES (1);"));
  ASSERT_OK(db.QueryValue("SELECT 1"));
  {
    ClusterDisruption disruption;
    ASSERT_OK(ClusterCtl({"restart", "primary"}));
  }
  // The old session died with the server; a new one sees the committed row.
  auto conn = pg::Connection::Connect(db.dsn());
  ASSERT_OK(conn);
  ASSERT_OK_AND_ASSIGN(pg::Result count, conn->Exec("SELECT count(*) FROM t"));
  EXPECT_EQ(count.Get(0, 0), "1");
}

TEST(ClusterSmokeTest, StoppedStandbyIsStartedAgainAfterDisruption) {
  std::optional<std::string> standby = StandbyDsn();
  if (!standby) GTEST_SKIP() << "cluster started without --standby (scripts/test always has one)";
  {
    ClusterDisruption disruption;
    ASSERT_OK(ClusterCtl({"stop-node", "standby"}));
    EXPECT_FALSE(pg::Connection::Connect(*standby).ok());
  }
  auto conn = pg::Connection::Connect(*standby);
  ASSERT_OK(conn);
  ASSERT_OK_AND_ASSIGN(pg::Result recovery, conn->Exec("SELECT pg_catalog.pg_is_in_recovery()"));
  EXPECT_EQ(recovery.Get(0, 0), "t");
}

TEST(ClusterSmokeTest, RunCommandCapturesBothStreamsAndExitCode) {
  CommandResult result = RunCommand({"/bin/sh", "-c", "echo hi; echo err >&2; exit 3"});
  EXPECT_EQ(result.exit_code, 3);
  EXPECT_EQ(result.out, "hi\n");
  EXPECT_EQ(result.err, "err\n");
}

TEST(ClusterSmokeTest, RunCommandPassesStdinAndEnvironment) {
  CommandResult result = RunCommand({"sh", "-c", "cat; printf %s \"$PGBF_SMOKE\""},
                                    {{"PGBF_SMOKE", "from env"}}, "from stdin\n");
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "from stdin\nfrom env");
}

TEST(ClusterSmokeTest, RunCommandDoesNotDeadlockOnLargeOutput) {
  // Far more than a pipe buffer (64 KiB) on both streams at once.
  CommandResult result = RunCommand(
      {"sh", "-c", "head -c 1000000 /dev/zero; head -c 1000000 /dev/zero >&2"});
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.out.size(), 1000000u);
  EXPECT_EQ(result.err.size(), 1000000u);
}

TEST(ClusterSmokeTest, RunCommandReportsMissingProgram) {
  CommandResult result = RunCommand({"/nonexistent/program"});
  EXPECT_EQ(result.exit_code, 127);
  EXPECT_THAT(result.err, HasSubstr("/nonexistent/program"));
}

TEST(ClusterSmokeTest, SpawnedProcessCanBeSignalledMidRun) {
  ASSERT_OK_AND_ASSIGN(
      Process process,
      Process::Spawn({"sh", "-c", "echo ready; exec sleep 60"}));
  ASSERT_OK(process.WaitForOutput("ready"));
  ASSERT_OK(process.Signal(SIGTERM));
  CommandResult result = process.Wait();
  EXPECT_EQ(result.term_signal, SIGTERM);
  EXPECT_EQ(result.exit_code, 128 + SIGTERM);
}

TEST(ClusterSmokeTest, PgbackfillHelpExitsZero) {
  CommandResult result = RunPgbackfill({"--help"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr("pgbackfill"));
}

}  // namespace
}  // namespace pgbackfill::testing
