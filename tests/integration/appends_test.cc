// Termination under heavy inserts (issue 16, item 5; pgroll#583): the application appends past the
// end of the key space faster than the job writes, and the run still ends, having written every
// row that was there when it started exactly once.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "pgbackfill/pg/connection.h"
#include "support/run_helpers.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill {
namespace {

using testing::CommandResult;
using testing::Process;

constexpr int64_t kRowsBefore = 20'000;

// Appends rows at the end of items' key space, in autocommitted statements, until stopped.
class Appender {
 public:
  explicit Appender(const std::string& dsn) : thread_([this, dsn] { Loop(dsn); }) {}
  Appender(const Appender&) = delete;
  Appender& operator=(const Appender&) = delete;
  ~Appender() { Stop(); }

  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int64_t rows() const { return rows_; }
  const std::string& error() const { return error_; }

 private:
  void Loop(const std::string& dsn) {
    absl::StatusOr<pg::Connection> conn = pg::Connection::Connect(dsn);
    if (!conn.ok()) {
      error_ = std::string(conn.status().message());
      return;
    }
    while (!stop_) {
      absl::StatusOr<pg::Result> inserted =
          conn->Exec("INSERT INTO items (n) SELECT 0 FROM generate_series(1, 500)");
      if (!inserted.ok()) {
        error_ = std::string(inserted.status().message());
        return;
      }
      rows_ += 500;
    }
  }

  std::atomic<bool> stop_ = false;
  std::atomic<int64_t> rows_ = 0;
  std::string error_;
  std::thread thread_;
};

class AppendsTest : public testing::RunTest {};

TEST_F(AppendsTest, ARunEndsWhileTheApplicationAppendsFasterThanItWrites) {
  ASSERT_OK(db_.ExecScript(
      absl::StrCat("CREATE TABLE items (id bigserial PRIMARY KEY, n int NOT NULL DEFAULT 0);"
                   "INSERT INTO items (n) SELECT 0 FROM generate_series(1, ",
                   kRowsBefore, ");")));
  // 5,000 rows/s: the appender adds several times that, so a last range that followed the
  // largest key present would never end.
  const std::string plan = testing::WriteTestFile(
      "version: 1\nname: appends\ntable: items\nset:\n  n: n + 1\nworkers: 2\nverify: false\n"
      "batch: { rows: 500, min_rows: 500, max_rows: 500 }\n"
      "throttle: { application: off, max_rows_per_second: 5000 }\n");
  Appender appender(db_.dsn());
  ASSERT_OK_AND_ASSIGN(Process run, testing::SpawnPgbackfill(RunArgs(plan)));
  CommandResult result = run.Wait(absl::Seconds(90));
  appender.Stop();
  ASSERT_TRUE(appender.error().empty()) << appender.error();
  ASSERT_EQ(result.exit_code, 0) << "the run did not end under appends\n"
                                 << result.out << result.err;

  // The run ended at the largest id present when it started: every row up to it written once
  // (those created before the appender among them), none past it.
  ASSERT_OK_AND_ASSIGN(std::string end,
                       db_.QueryValue("SELECT max(done_upto[1]::bigint) FROM pgbackfill.ranges "
                                      "WHERE job_name = 'appends'"));
  EXPECT_GE(std::stoll(end), kRowsBefore);
  ASSERT_OK_AND_ASSIGN(
      std::string wrong,
      db_.QueryValue(absl::StrCat("SELECT count(*) FROM items WHERE n <> CASE WHEN id <= ", end,
                                  " THEN 1 ELSE 0 END")));
  EXPECT_EQ(wrong, "0") << "rows up to " << end << " must be written once, none after";
  // The appender outran the job: more rows were appended during the run than it wrote.
  ASSERT_OK_AND_ASSIGN(std::string written,
                       db_.QueryValue("SELECT count(*) FROM items WHERE n = 1"));
  EXPECT_GT(appender.rows(), std::stoll(written)) << "the appends did not outpace the job";
  ASSERT_OK_AND_ASSIGN(std::string state,
                       db_.QueryValue("SELECT state FROM pgbackfill.jobs WHERE name = 'appends'"));
  EXPECT_EQ(state, "done");
}

// A table with no row when the run starts: nothing to write, and rows arriving meanwhile do not
// keep the run going: the run ends without a batch.
TEST_F(AppendsTest, ARunOnATableEmptyAtItsStartEndsWhileRowsArrive) {
  ASSERT_OK(
      db_.ExecScript("CREATE TABLE items (id bigserial PRIMARY KEY, n int NOT NULL DEFAULT 0)"));
  const std::string plan = testing::WriteTestFile(
      "version: 1\nname: empty\ntable: items\nset:\n  n: n + 1\nworkers: 1\nverify: false\n"
      "batch: { rows: 500, min_rows: 500, max_rows: 500 }\n"
      "throttle: { application: off, max_rows_per_second: 5000 }\n");
  ASSERT_OK_AND_ASSIGN(Process run, testing::SpawnPgbackfill(RunArgs(plan)));
  // The rows start arriving once the run has planned its work on the empty table.
  ASSERT_OK(run.WaitForOutput("\"event\":\"job_started\"")) << run.StderrSoFar();
  Appender appender(db_.dsn());
  CommandResult result = run.Wait(absl::Seconds(60));
  appender.Stop();
  ASSERT_TRUE(appender.error().empty()) << appender.error();
  ASSERT_EQ(result.exit_code, 0) << "the run did not end under appends\n"
                                 << result.out << result.err;
  ASSERT_OK_AND_ASSIGN(std::string twice, db_.QueryValue("SELECT count(*) FROM items WHERE n > 1"));
  EXPECT_EQ(twice, "0");
  // Done when the run started, not by a batch that happened to find no row yet (which rows
  // arriving first would have kept going).
  EXPECT_THAT(result.out, ::testing::HasSubstr("\"batches\":0,")) << result.out;
}

}  // namespace
}  // namespace pgbackfill
