// DDL steps against the real server: a step queued behind a long transaction gives the lock queue
// back every lock_timeout (application sessions never wait on it for long) and succeeds once the
// blocker ends; retry_for runs out with the attempt count; a failed CREATE INDEX CONCURRENTLY
// leaves no INVALID index of its own behind and leaves other people's alone; the caller's record
// commits or rolls back with the step; the NOT NULL contract steps end to end.
#include "pgbackfill/expand/ddl.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "pgbackfill/pg/connection.h"
#include "pgbackfill/pg/error.h"
#include "support/lock_wait_watch.h"
#include "support/run_helpers.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill::expand {
namespace {

using ::testing::HasSubstr;
using testing::Eventually;
using testing::TestDatabase;

constexpr char kTable[] =
    "CREATE TABLE t (id int PRIMARY KEY, v text);"
    "INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 1000) g;";

class DdlTest : public ::testing::Test {
 protected:
  // A session of its own (for the DDL, as the phases use; a blocker; an application).
  absl::StatusOr<pg::Connection> Connect() { return pg::Connection::Connect(db_.dsn()); }

  std::string Value(const std::string& sql) {
    absl::StatusOr<std::string> value = db_.QueryValue(sql);
    EXPECT_OK(value);
    return value.ok() ? *value : "";
  }

  bool ColumnExists(const std::string& table, const std::string& column) {
    return Value(absl::StrCat("SELECT count(*) FROM pg_attribute WHERE attrelid = '", table,
                              "'::regclass AND attname = '", column, "' AND NOT attisdropped")) ==
           "1";
  }

  // Fast retries for tests; the seed keeps the jitter reproducible.
  static DdlOptions Options(absl::Duration lock_timeout, absl::Duration retry_for) {
    DdlOptions options;
    options.lock_timeout = lock_timeout;
    options.retry_for = retry_for;
    options.backoff_base = absl::Milliseconds(50);
    options.backoff_max = absl::Milliseconds(500);
    options.seed = 42;
    return options;
  }

  TestDatabase db_;
};

// `BEGIN; SELECT * FROM t` holds ACCESS SHARE until the step has timed out kRetriesWhileBlocked
// times (at least 1.5 s). ADD COLUMN needs ACCESS EXCLUSIVE, so it queues, and every application
// SELECT queues behind it. With lock_timeout 300ms the step gives its place up again and again; a
// probing session measures how long any session waited on the DDL session's pid the whole time.
TEST_F(DdlTest, BlockedStepRetriesWithoutMakingTheAppWait) {
  ASSERT_OK(db_.ExecScript(kTable));
  ASSERT_OK_AND_ASSIGN(pg::Connection blocker, Connect());
  ASSERT_OK(blocker.ExecScript("BEGIN; SELECT * FROM t LIMIT 1"));
  ASSERT_OK_AND_ASSIGN(pg::Connection ddl, Connect());
  const int ddl_pid = ddl.BackendPid();
  ASSERT_OK_AND_ASSIGN(pg::Result before, ddl.Exec("SELECT current_setting('lock_timeout')"));
  const std::string session_lock_timeout(before.Get(0, 0));

  std::atomic<bool> done{false};
  std::atomic<int> app_reads{0};
  std::thread app([&] {
    ASSERT_OK_AND_ASSIGN(pg::Connection conn, Connect());
    while (!done) {
      if (conn.Exec("SELECT count(*) FROM t").ok()) ++app_reads;
    }
  });
  testing::LockWaitWatch watch(db_.dsn(), absl::StrCat("ARRAY[", ddl_pid, "]"));

  constexpr int kRetriesWhileBlocked = 5;
  std::vector<DdlAttempt> retries;
  std::atomic<int> retried{0};  // retries is the step thread's until it is joined
  absl::Status status;
  std::thread step([&] {
    status = RunDdlStep(ddl, "ALTER TABLE t ADD COLUMN c int",
                        Options(absl::Milliseconds(300), absl::Seconds(60)), nullptr,
                        [&](const DdlAttempt& attempt) {
                          retries.push_back(attempt);
                          ++retried;
                        });
  });
  // Several timeouts and retries while the app keeps reading.
  EXPECT_TRUE(Eventually([&] { return retried >= kRetriesWhileBlocked && app_reads > 0; }))
      << retried << " retries, " << app_reads << " application reads";
  EXPECT_OK(blocker.ExecScript("COMMIT"));  // not ASSERT: the threads must be joined
  step.join();
  done = true;
  app.join();
  const double max_wait_seconds = watch.max_wait_seconds();

  ASSERT_OK(status);
  EXPECT_TRUE(ColumnExists("t", "c"));
  ASSERT_GE(retries.size(), static_cast<size_t>(kRetriesWhileBlocked))
      << "the step should have timed out on the lock and retried";
  for (size_t i = 0; i < retries.size(); ++i) {
    EXPECT_EQ(retries[i].sqlstate, "55P03") << retries[i].error;
    EXPECT_EQ(retries[i].attempt, static_cast<int>(i) + 1);
    EXPECT_EQ(retries[i].sql, "ALTER TABLE t ADD COLUMN c int");
    EXPECT_GT(retries[i].wait, absl::ZeroDuration());
  }
  EXPECT_GT(app_reads.load(), 0);
  // lock_timeout (0.3 s) plus the probe's 20 ms granularity and scheduling on a busy machine.
  // Without lock_timeout this would be the blocker's whole hold (at least 1.5 s).
  EXPECT_LT(max_wait_seconds, 1.0)
      << "an application session waited on the DDL session for " << max_wait_seconds << " s";
  // SET LOCAL: the session's own setting is untouched.
  ASSERT_OK_AND_ASSIGN(pg::Result setting, ddl.Exec("SELECT current_setting('lock_timeout')"));
  EXPECT_EQ(setting.Get(0, 0), session_lock_timeout);
}

TEST_F(DdlTest, GivesUpWhenRetryForIsSpentWithTheAttemptCount) {
  ASSERT_OK(db_.ExecScript(kTable));
  ASSERT_OK_AND_ASSIGN(pg::Connection blocker, Connect());
  ASSERT_OK(blocker.ExecScript("BEGIN; SELECT * FROM t LIMIT 1"));
  ASSERT_OK_AND_ASSIGN(pg::Connection ddl, Connect());

  std::vector<DdlAttempt> retries;
  const absl::Status status = RunDdlStep(
      ddl, "ALTER TABLE t ADD COLUMN c int", Options(absl::Milliseconds(100), absl::Seconds(1)),
      nullptr, [&](const DdlAttempt& attempt) { retries.push_back(attempt); });
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(pg::SqlStateOf(status), "55P03") << status;
  EXPECT_EQ(pg::Classify(status), pg::ErrorClass::kRetry);
  EXPECT_THAT(status.message(),
              HasSubstr(absl::StrCat("gave up after ", retries.size() + 1, " attempts in")));
  EXPECT_THAT(status.message(), HasSubstr("lock_timeout 100ms, retry_for 1s"));
  EXPECT_THAT(status.message(), HasSubstr("lock timeout"));  // the server's own message
  EXPECT_GE(retries.size(), 2u);

  // No retries at all with retry_for 0.
  retries.clear();
  const absl::Status once = RunDdlStep(
      ddl, "ALTER TABLE t ADD COLUMN c int", Options(absl::Milliseconds(100), absl::ZeroDuration()),
      nullptr, [&](const DdlAttempt& attempt) { retries.push_back(attempt); });
  EXPECT_THAT(once.message(), HasSubstr("gave up after 1 attempt in"));
  EXPECT_TRUE(retries.empty());

  ASSERT_OK(blocker.ExecScript("COMMIT"));
  EXPECT_FALSE(ColumnExists("t", "c"));
  // The DDL session is idle again, not stuck in an aborted transaction.
  EXPECT_OK(ddl.Exec("SELECT 1"));
}

// A unique index over duplicates: the build fails after creating the index entry, which stays
// behind INVALID unless dropped. The name and schema need quoting and are off the search_path.
TEST_F(DdlTest, FailedConcurrentIndexBuildLeavesNoInvalidIndex) {
  ASSERT_OK(db_.ExecScript(
      "CREATE SCHEMA \"App\"; CREATE TABLE \"App\".\"Items\" (id int PRIMARY KEY, v int);"
      "INSERT INTO \"App\".\"Items\" SELECT g, g % 10 FROM generate_series(1, 1000) g;"));
  ASSERT_OK_AND_ASSIGN(pg::Connection ddl, Connect());
  ASSERT_OK(ddl.ExecScript("SET lock_timeout = '7s'"));

  const std::string build = "CREATE UNIQUE INDEX CONCURRENTLY \"Items_V\" ON \"App\".\"Items\" (v)";
  ASSERT_TRUE(NeedsNoTransaction(build));
  const absl::Status status =
      RunDdlStep(ddl, build, Options(absl::Seconds(1), absl::Seconds(10)), nullptr, nullptr);
  EXPECT_EQ(pg::SqlStateOf(status), "23505") << status;
  EXPECT_EQ(Value("SELECT count(*) FROM pg_index WHERE indrelid = '\"App\".\"Items\"'::regclass"
                  " AND NOT indisvalid"),
            "0");
  EXPECT_EQ(Value("SELECT count(*) FROM pg_class WHERE relname = 'Items_V'"), "0");
  // The session's own lock_timeout is back.
  ASSERT_OK_AND_ASSIGN(pg::Result setting, ddl.Exec("SELECT current_setting('lock_timeout')"));
  EXPECT_EQ(setting.Get(0, 0), "7s");

  // With the duplicates gone the same step succeeds, and the caller's record commits after it.
  ASSERT_OK(db_.ExecScript("UPDATE \"App\".\"Items\" SET v = id; CREATE TABLE done (step text)"));
  EXPECT_OK(RunDdlStep(
      ddl, build, Options(absl::Seconds(1), absl::Seconds(10)),
      [](pg::Connection& conn) { return conn.Exec("INSERT INTO done VALUES ('index')").status(); },
      nullptr));
  EXPECT_EQ(Value("SELECT count(*) FROM pg_index WHERE indexrelid = '\"App\".\"Items_V\"'::regclass"
                  " AND indisvalid"),
            "1");
  EXPECT_EQ(Value("SELECT count(*) FROM done"), "1");
}

// CREATE INDEX CONCURRENTLY waits, after building, for transactions with older snapshots; under
// lock_timeout that wait fails (55P03) and leaves the finished index INVALID. Each failed attempt's
// index is dropped, so the retry (IF NOT EXISTS) builds a new one instead of keeping the INVALID
// one, and the step succeeds once the old transaction ends.
TEST_F(DdlTest, ConcurrentIndexBuildTimingOutIsDroppedAndRetried) {
  ASSERT_OK(db_.ExecScript(kTable));
  ASSERT_OK_AND_ASSIGN(pg::Connection blocker, Connect());
  ASSERT_OK(blocker.ExecScript("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1"));
  ASSERT_OK_AND_ASSIGN(pg::Connection ddl, Connect());
  const std::string build = "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_v ON t (v)";

  std::vector<DdlAttempt> retries;
  std::atomic<int> retried{0};  // retries is the step thread's until it is joined
  absl::Status status;
  std::thread step([&] {
    status = RunDdlStep(ddl, build, Options(absl::Milliseconds(300), absl::Seconds(60)), nullptr,
                        [&](const DdlAttempt& attempt) {
                          retries.push_back(attempt);
                          ++retried;
                        });
  });
  // Two timed-out builds: the second attempt ran after the first one's index was dropped.
  EXPECT_TRUE(Eventually([&] { return retried >= 2; })) << retried << " retries";
  EXPECT_OK(blocker.ExecScript("COMMIT"));  // not ASSERT: the thread must be joined
  step.join();

  ASSERT_OK(status);
  ASSERT_GE(retries.size(), 1u) << "the build should have timed out waiting for the snapshot";
  for (const DdlAttempt& retry : retries) EXPECT_EQ(retry.sqlstate, "55P03") << retry.error;
  EXPECT_EQ(
      Value("SELECT count(*) FROM pg_index WHERE indrelid = 't'::regclass AND NOT indisvalid"),
      "0");
  EXPECT_EQ(
      Value("SELECT count(*) FROM pg_index WHERE indexrelid = 't_v'::regclass AND indisvalid"),
      "1");
}

TEST_F(DdlTest, SomeoneElsesInvalidIndexIsLeftAlone) {
  ASSERT_OK(db_.ExecScript(kTable));
  ASSERT_OK(db_.ExecScript("UPDATE t SET v = 'same' WHERE id <= 2"));
  // Another session's failed build: an INVALID index t_v_key that pgbackfill did not make.
  EXPECT_FALSE(db_.ExecScript("CREATE UNIQUE INDEX CONCURRENTLY t_v_key ON t (v)").ok());
  const std::string invalid =
      "SELECT count(*) FROM pg_index WHERE indexrelid = 't_v_key'::regclass AND NOT indisvalid";
  ASSERT_EQ(Value(invalid), "1");

  ASSERT_OK_AND_ASSIGN(pg::Connection ddl, Connect());
  const DdlOptions options = Options(absl::Seconds(1), absl::Seconds(10));
  // IF NOT EXISTS: the server keeps the INVALID index and reports success; the step must not.
  const absl::Status kept =
      RunDdlStep(ddl, "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_v_key ON t (v)", options,
                 nullptr, nullptr);
  EXPECT_EQ(kept.code(), absl::StatusCode::kFailedPrecondition) << kept;
  EXPECT_THAT(kept.message(), HasSubstr("\"public\".\"t_v_key\" exists but is INVALID"));
  EXPECT_EQ(Value(invalid), "1");
  // Without IF NOT EXISTS: "already exists", and still not dropped.
  const absl::Status exists = RunDdlStep(ddl, "CREATE UNIQUE INDEX CONCURRENTLY t_v_key ON t (v)",
                                         options, nullptr, nullptr);
  EXPECT_EQ(pg::SqlStateOf(exists), "42P07") << exists;
  EXPECT_EQ(Value(invalid), "1");
}

TEST_F(DdlTest, RecordCommitsOrRollsBackWithTheStep) {
  ASSERT_OK(db_.ExecScript(
      "CREATE TABLE a (x int); CREATE TABLE c (y int); CREATE TABLE done (step text);"));
  ASSERT_OK_AND_ASSIGN(pg::Connection ddl, Connect());
  const DdlOptions options = Options(absl::Seconds(1), absl::Seconds(10));
  const std::string swap = "ALTER TABLE a RENAME TO b; ALTER TABLE c RENAME TO a";
  auto record = [](pg::Connection& conn) {
    return conn.Exec("INSERT INTO done VALUES ('swap')").status();
  };

  // The record fails: the two renames are undone with it.
  const absl::Status failed = RunDdlStep(
      ddl, swap, options,
      [](pg::Connection&) { return absl::InternalError("job store unavailable"); }, nullptr);
  EXPECT_THAT(failed.message(), HasSubstr("job store unavailable"));
  EXPECT_EQ(Value("SELECT to_regclass('b') IS NULL AND to_regclass('c') IS NOT NULL"), "t");
  // A failing statement inside the record: the same.
  const absl::Status sql_failed = RunDdlStep(
      ddl, swap, options,
      [](pg::Connection& conn) {
        return conn.Exec("INSERT INTO no_such_table VALUES (1)").status();
      },
      nullptr);
  EXPECT_EQ(pg::SqlStateOf(sql_failed), "42P01") << sql_failed;
  EXPECT_EQ(Value("SELECT to_regclass('b') IS NULL AND to_regclass('c') IS NOT NULL"), "t");
  EXPECT_OK(ddl.Exec("SELECT 1"));  // idle, not in an aborted transaction

  ASSERT_OK(RunDdlStep(ddl, swap, options, record, nullptr));
  EXPECT_EQ(Value("SELECT to_regclass('b') IS NOT NULL AND to_regclass('c') IS NULL"), "t");
  EXPECT_TRUE(ColumnExists("a", "y"));
  EXPECT_EQ(Value("SELECT count(*) FROM done"), "1");

  // Refused before anything runs.
  const absl::Status refused =
      RunDdlStep(ddl, "BEGIN; ALTER TABLE a ADD COLUMN z int; COMMIT", options, record, nullptr);
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument) << refused;
  EXPECT_FALSE(ColumnExists("a", "z"));
}

TEST_F(DdlTest, NotNullStepsEndToEnd) {
  ASSERT_OK(db_.ExecScript(kTable));
  ASSERT_OK_AND_ASSIGN(pg::Connection ddl, Connect());
  const DdlOptions options = Options(absl::Seconds(1), absl::Seconds(10));
  const plan::QualifiedName table{.schema = "public", .name = "t"};
  const std::string not_null =
      "SELECT attnotnull FROM pg_attribute WHERE attrelid = 't'::regclass"
      " AND attname = 'v'";
  const std::string checks =
      "SELECT count(*) FROM pg_constraint WHERE conrelid = 't'::regclass AND contype = 'c'";

  // Step 1 again while its constraint exists: a rerun after a crash right after it.
  const std::vector<std::string> steps = NotNullSteps(table, "v", "job");
  ASSERT_OK(RunDdlStep(ddl, steps[0], options, nullptr, nullptr));
  ASSERT_OK(RunDdlStep(ddl, steps[0], options, nullptr, nullptr));
  EXPECT_EQ(Value(checks), "1");
  // Twice: every step can run again (a rerun after a crash between steps).
  for (int round = 0; round < 2; ++round) {
    for (const std::string& step : NotNullSteps(table, "v", "job")) {
      ASSERT_OK(RunDdlStep(ddl, step, options, nullptr, nullptr)) << step;
    }
    EXPECT_EQ(Value(not_null), "t");
    EXPECT_EQ(Value(checks), "0");
  }
}

TEST_F(DdlTest, NotNullValidationFailsOnANullRowAndLeavesOnlyTheCheck) {
  ASSERT_OK(db_.ExecScript(kTable));
  ASSERT_OK(db_.ExecScript("UPDATE t SET v = NULL WHERE id = 500"));
  ASSERT_OK_AND_ASSIGN(pg::Connection ddl, Connect());
  const DdlOptions options = Options(absl::Seconds(1), absl::Seconds(10));
  const plan::QualifiedName table{.schema = "", .name = "t"};
  const std::vector<std::string> steps = NotNullSteps(table, "v", "job");

  ASSERT_OK(RunDdlStep(ddl, steps[0], options, nullptr, nullptr));
  const absl::Status validate = RunDdlStep(ddl, steps[1], options, nullptr, nullptr);
  EXPECT_EQ(pg::SqlStateOf(validate), "23514") << validate;
  EXPECT_EQ(Value("SELECT attnotnull FROM pg_attribute WHERE attrelid = 't'::regclass"
                  " AND attname = 'v'"),
            "f");
  const std::string name = NotNullConstraintName("job", "v");
  EXPECT_EQ(
      Value(absl::StrCat("SELECT convalidated FROM pg_constraint WHERE conname = '", name, "'")),
      "f");
  // Why the caller must clean up: the NOT VALID check already refuses new NULLs.
  const absl::Status insert = db_.ExecScript("INSERT INTO t VALUES (5000, NULL)");
  EXPECT_EQ(pg::SqlStateOf(insert), "23514") << insert;

  ASSERT_OK(RunDdlStep(ddl, NotNullCleanupStep(table, "v", "job"), options, nullptr, nullptr));
  EXPECT_EQ(Value(absl::StrCat("SELECT count(*) FROM pg_constraint WHERE conname = '", name, "'")),
            "0");
  EXPECT_OK(db_.ExecScript("INSERT INTO t VALUES (5000, NULL)"));
}

}  // namespace
}  // namespace pgbackfill::expand
