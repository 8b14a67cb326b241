// The libpq layer against the real server: one round trip per pipeline, abort and recovery
// mid-pipeline, cancel, and how each failure is classified (an unreachable server's, which needs
// no server, in tests/unit/pg_connect_test.cc).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "pgbackfill/pg/async_connection.h"
#include "pgbackfill/pg/connection.h"
#include "pgbackfill/pg/error.h"
#include "proxy/tcp_proxy.h"
#include "support/run_async.h"
#include "support/run_helpers.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill::pg {
namespace {

using ::testing::HasSubstr;
using proxy::TcpProxy;
using testing::RunAsync;
using testing::TestDatabase;

std::unique_ptr<AsyncConnection> ConnectAsync(const std::string& dsn) {
  auto conn = RunAsync(AsyncConnection::Connect(dsn));
  EXPECT_TRUE(conn.ok()) << conn.status();
  return conn.ok() ? std::move(conn).value() : nullptr;
}

std::string ProxyDsn(const TcpProxy& proxy, const TestDatabase& db) {
  return "host=127.0.0.1 port=" + std::to_string(proxy.port()) +
         " user=postgres dbname=" + db.name();
}

int64_t CountRows(Connection& conn, const std::string& table) {
  auto result = conn.Exec("SELECT count(*) FROM " + table);
  EXPECT_TRUE(result.ok()) << result.status();
  return result.ok() ? std::stoll(std::string(result->Get(0, 0))) : -1;
}

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(db_.conn()
                    .ExecScript("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);"
                                "INSERT INTO t SELECT g, 0 FROM generate_series(1, 100) g;")
                    .ok());
  }
  TestDatabase db_;
};

std::vector<Statement> BatchTransaction() {
  std::vector<Statement> statements = {{"BEGIN", {}}, {"SET LOCAL lock_timeout = '200ms'", {}}};
  for (int i = 0; i < 5; ++i) {
    statements.push_back({"UPDATE t SET v = v + 1 WHERE id BETWEEN $1 AND $2",
                          {std::to_string(i * 20 + 1), std::to_string(i * 20 + 20)}});
  }
  statements.push_back({"COMMIT", {}});
  return statements;
}

TEST_F(PipelineTest, WholeTransactionIsOneRoundTrip) {
  TcpProxy proxy({.upstream_port = testing::TcpPort()});
  auto conn = ConnectAsync(ProxyDsn(proxy, db_));
  ASSERT_NE(conn, nullptr);

  proxy.ResetCounters();
  PipelineResult result = RunAsync(conn->Pipeline(BatchTransaction()));
  ASSERT_TRUE(result.ok()) << result.status;
  EXPECT_EQ(proxy.client_turns(), 1);
  ASSERT_EQ(result.results.size(), 8u);
  for (size_t i = 2; i < 7; ++i) EXPECT_EQ(result.results[i].AffectedRows(), 20) << i;

  // The counter does see separate round trips: the same statements one at a time take eight.
  proxy.ResetCounters();
  for (Statement& statement : BatchTransaction()) {
    auto one = RunAsync(conn->Exec(statement.sql, statement.params));
    ASSERT_TRUE(one.ok()) << one.status();
  }
  EXPECT_EQ(proxy.client_turns(), 8);
  auto sum = db_.conn().Exec("SELECT sum(v) FROM t");
  ASSERT_TRUE(sum.ok());
  EXPECT_EQ(sum->Get(0, 0), "200");
}

TEST_F(PipelineTest, FailureAbortsTheRestAndTheConnectionStaysUsable) {
  auto conn = ConnectAsync(db_.dsn());
  ASSERT_NE(conn, nullptr);
  PipelineResult result = RunAsync(conn->Pipeline({
      {"BEGIN", {}},
      {"INSERT INTO t (id) VALUES (1001)", {}},
      {"INSERT INTO t (id) VALUES (1)", {}},  // duplicate key
      {"INSERT INTO t (id) VALUES (1002)", {}},
      {"COMMIT", {}},
  }));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.failed_index, 2);
  EXPECT_EQ(SqlStateOf(result.status), "23505");
  EXPECT_EQ(Classify(result.status), ErrorClass::kFatal);
  EXPECT_THAT(result.status.message(), HasSubstr("INSERT INTO t (id) VALUES (1)"));
  EXPECT_EQ(CountRows(db_.conn(), "t"), 100) << "nothing of the failed transaction may commit";

  // Not stuck in an aborted transaction: the next pipeline commits.
  PipelineResult next = RunAsync(conn->Pipeline({
      {"BEGIN", {}}, {"INSERT INTO t (id) VALUES (1003)", {}}, {"COMMIT", {}}}));
  ASSERT_TRUE(next.ok()) << next.status;
  EXPECT_EQ(CountRows(db_.conn(), "t"), 101);
}

TEST_F(PipelineTest, ImplicitTransactionFailureRollsBackEarlierStatements) {
  auto conn = ConnectAsync(db_.dsn());
  ASSERT_NE(conn, nullptr);
  // Without BEGIN, a pipeline up to its sync is one implicit transaction.
  PipelineResult result = RunAsync(conn->Pipeline({
      {"INSERT INTO t (id) VALUES (2001)", {}},
      {"SELECT 1 / 0", {}},
  }));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(SqlStateOf(result.status), "22012");
  EXPECT_EQ(CountRows(db_.conn(), "t"), 100);
  auto ok = RunAsync(conn->Exec("SELECT 42"));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->Get(0, 0), "42");
}

TEST_F(PipelineTest, ParametersTravelAsValues) {
  auto conn = ConnectAsync(db_.dsn());
  ASSERT_NE(conn, nullptr);
  const std::string hostile = "'); DROP TABLE t; --\\ \"x\"";
  auto result = RunAsync(conn->Exec("SELECT $1::text, $2::text IS NULL", {hostile, std::nullopt}));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->Get(0, 0), hostile);
  EXPECT_EQ(result->Get(0, 1), "t");
  EXPECT_EQ(CountRows(db_.conn(), "t"), 100);
}

TEST_F(PipelineTest, SyntaxErrorIsFatal) {
  auto conn = ConnectAsync(db_.dsn());
  ASSERT_NE(conn, nullptr);
  auto result = RunAsync(conn->Exec("SELEC 1"));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(SqlStateOf(result.status()), "42601");
  EXPECT_EQ(Classify(result.status()), ErrorClass::kFatal);
}

TEST_F(PipelineTest, LockTimeoutIsRetryable) {
  ASSERT_OK_AND_ASSIGN(Connection holder, Connection::Connect(db_.dsn()));
  ASSERT_OK(holder.ExecScript("BEGIN; SELECT * FROM t WHERE id = 7 FOR UPDATE;"));
  auto conn = ConnectAsync(db_.dsn());
  ASSERT_NE(conn, nullptr);
  PipelineResult result = RunAsync(conn->Pipeline({
      {"BEGIN", {}},
      {"SET LOCAL lock_timeout = '50ms'", {}},
      {"UPDATE t SET v = 1 WHERE id = 7", {}},
      {"COMMIT", {}},
  }));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(SqlStateOf(result.status), "55P03");
  EXPECT_EQ(Classify(result.status), ErrorClass::kRetry);
  ASSERT_TRUE(holder.ExecScript("ROLLBACK").ok());
  PipelineResult retry = RunAsync(conn->Pipeline({
      {"BEGIN", {}}, {"UPDATE t SET v = 1 WHERE id = 7", {}}, {"COMMIT", {}}}));
  EXPECT_TRUE(retry.ok()) << retry.status;
}

TEST_F(PipelineTest, CancelStopsTheRunningStatement) {
  auto conn = ConnectAsync(db_.dsn());
  ASSERT_NE(conn, nullptr);
  const int pid = conn->BackendPid();
  // Cancel from another thread once the server reports the sleep as running: no timing guess.
  std::thread canceller([&] {
    absl::StatusOr<Connection> watcher = Connection::Connect(db_.dsn());
    EXPECT_OK(watcher);  // and cancel anyway: the statement must not run for its whole minute
    EXPECT_TRUE(testing::Eventually([&] {
      if (!watcher.ok()) return true;
      auto active = watcher->Exec(
          "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE pid = $1 AND state = 'active'"
          " AND wait_event = 'PgSleep'",
          {std::to_string(pid)});
      return active.ok() && active->Get(0, 0) == "1";
    }, absl::Seconds(20))) << "the sleep never showed as running";
    EXPECT_TRUE(conn->Cancel().ok());
  });
  auto result = RunAsync(conn->Exec("SELECT pg_catalog.pg_sleep(60)"));
  canceller.join();
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(SqlStateOf(result.status()), "57014");
  auto after = RunAsync(conn->Exec("SELECT 1"));
  EXPECT_TRUE(after.ok()) << after.status();
}

TEST_F(PipelineTest, TerminatedBackendClassifiesAsReconnect) {
  auto conn = ConnectAsync(db_.dsn());
  ASSERT_NE(conn, nullptr);
  const int old_pid = conn->BackendPid();
  auto killed = db_.conn().Exec("SELECT pg_catalog.pg_terminate_backend($1)",
                                {std::to_string(old_pid)});
  ASSERT_TRUE(killed.ok()) << killed.status();
  // Wait until the backend is gone so the next statement meets a closed session.
  EXPECT_TRUE(testing::Eventually([&] {
    auto left = db_.conn().Exec("SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE pid = $1",
                                {std::to_string(old_pid)});
    return left.ok() && left->Get(0, 0) == "0";
  }, absl::Seconds(30))) << "backend " << old_pid << " is still there";
  PipelineResult result = RunAsync(conn->Pipeline(BatchTransaction()));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(Classify(result.status), ErrorClass::kReconnect) << result.status;
  EXPECT_FALSE(conn->IsOpen());

  ASSERT_TRUE(RunAsync(conn->Reconnect()).ok());
  EXPECT_NE(conn->BackendPid(), old_pid);
  PipelineResult again = RunAsync(conn->Pipeline(BatchTransaction()));
  EXPECT_TRUE(again.ok()) << again.status;
}

TEST_F(PipelineTest, CutNetworkClassifiesAsReconnect) {
  TcpProxy proxy({.upstream_port = testing::TcpPort()});
  auto conn = ConnectAsync(ProxyDsn(proxy, db_));
  ASSERT_NE(conn, nullptr);
  proxy.CutAll();
  PipelineResult result = RunAsync(conn->Pipeline(BatchTransaction()));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(Classify(result.status), ErrorClass::kReconnect) << result.status;
  ASSERT_TRUE(RunAsync(conn->Reconnect()).ok());
  EXPECT_TRUE(RunAsync(conn->Pipeline(BatchTransaction())).ok());
}

}  // namespace
}  // namespace pgbackfill::pg
