// The throttle's signals of what the application feels, end to end through the binary against
// the real primary: an outside command, a replication slot retaining WAL, a failing archiver,
// active application sessions, the application's statement latency and the server's CPU pressure
// under pgbench, each
// holding or slowing the job and letting it finish once the cause is gone, with every row written
// once. The job's own statements never count as the application's.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "pgbackfill/events/events.h"
#include "support/run_events.h"
#include "support/run_helpers.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill {
namespace {

using ::testing::HasSubstr;
using testing::Eventually;
using testing::Process;
using testing::SpawnPgbackfill;

constexpr int64_t kRows = 20000;

// 200-row batches of 20 ms each: a job of about 100 batches, long enough to be held mid-run.
// Each test checks the signal it names: the default application limits are off.
std::string Plan(const std::string& name, const std::string& throttle) {
  return absl::StrCat("version: 1\nname: ", name,
                      "\ntable: items\nset:\n  n: n + 1\n"
                      "where: (SELECT pg_catalog.pg_sleep(0.02)) IS NOT NULL\n"
                      "batch: { rows: 200, min_rows: 200, max_rows: 200 }\nworkers: 2\n"
                      "throttle: { application: off, interval: 200ms, max_replica_lag: 0, "
                      "max_lock_waiters: 100, ",
                      throttle, " }\n");
}

class AppSignalsTest : public testing::RunTest {
 protected:
  void SetUp() override {
    ASSERT_OK(db_.ExecScript(absl::StrCat(
        "CREATE TABLE items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);"
        "INSERT INTO items (id) SELECT g FROM generate_series(1, ", kRows, ") g; ANALYZE items;")));
  }

  // Starts the job and waits until it is held with a reason containing `needle`.
  Process StartHeld(const std::string& plan, const std::string& needle) {
    absl::StatusOr<Process> job = SpawnPgbackfill(RunArgs(testing::WriteTestFile(plan)));
    EXPECT_OK(job);
    EXPECT_OK(job->WaitForOutput(needle)) << job->StdoutSoFar() << job->StderrSoFar();
    return std::move(job).value();
  }

  // While held, nothing commits beyond the batches that were in flight.
  void ExpectNoProgressWhileHeld() {
    ASSERT_TRUE(Eventually([&] {
      const int64_t before = RowsCommitted();
      absl::SleepFor(absl::Milliseconds(300));
      return RowsCommitted() == before;
    }));
    EXPECT_LT(RowsCommitted(), kRows);
  }

  // Waits for the job; it must have finished with every row written once. Its output.
  testing::CommandResult ExpectFinished(Process& job) {
    testing::CommandResult result = job.Wait(absl::Minutes(3));
    EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
    ExpectEveryRowOnce("items", kRows);
    return result;
  }
};

TEST_F(AppSignalsTest, CommandThatExitsNonZeroHoldsUntilItSucceeds) {
  const std::string flag = testing::WriteTestFile("", ".hold");
  Process job = StartHeld(Plan("command-holds", absl::StrCat("command: \"test ! -f ", flag, "\"")),
                          "throttle command exited 1");
  ExpectNoProgressWhileHeld();
  std::filesystem::remove(flag);
  ExpectFinished(job);
}

TEST_F(AppSignalsTest, CommandPrintingABudgetRatioSlowsAboveOneAndHoldsFarAbove) {
  // The number is the application's latency over its budget: 2 is past the hold ratio (1.5).
  const std::string value = testing::WriteTestFile("2\n", ".value");
  Process job = StartHeld(Plan("command-prints", absl::StrCat("command: \"cat ", value, "\"")),
                          "throttle command printed 2");
  ExpectNoProgressWhileHeld();
  // Just over the budget: runs again, paced.
  std::ofstream(value) << "1.2\n";
  ASSERT_OK(job.WaitForOutput("\"name\":\"command\",\"value\":1.2")) << job.StdoutSoFar();
  std::ofstream(value) << "0.5\n";
  const testing::CommandResult run = ExpectFinished(job);
  bool paced_over_budget = false;
  for (const events::Progress& progress :
       testing::EventsOf<events::Progress>(testing::ReadEvents(run.out))) {
    for (const events::ThrottleSignal& signal : progress.signals) {
      // Running (the 2 intervals of resuming after the hold aside), at a pace.
      if (signal.name != "command" || signal.value != 1.2 || progress.throttle.has_value()) {
        continue;
      }
      paced_over_budget = paced_over_budget || progress.pace_rows_per_second.has_value();
    }
  }
  EXPECT_TRUE(paced_over_budget) << run.out;
}

TEST_F(AppSignalsTest, ReplicationSlotRetainingWalHoldsUntilDropped) {
  const std::string slot = absl::StrCat("pgbf_test_", getpid());
  ASSERT_OK(db_.Exec("SELECT pg_create_physical_replication_slot($1, true)", {slot}).status());
  // More WAL than the limit below behind the slot.
  ASSERT_OK(db_.ExecScript("CREATE TABLE wal_filler AS SELECT g, repeat('x', 200) AS pad "
                           "FROM generate_series(1, 20000) g"));
  Process job = StartHeld(Plan("slot-holds", "max_slot_wal: 1MB"),
                          absl::StrCat("replication slot ", slot, " retains"));
  ExpectNoProgressWhileHeld();
  ASSERT_OK(db_.Exec("SELECT pg_drop_replication_slot($1)", {slot}).status());
  ExpectFinished(job);
}

TEST_F(AppSignalsTest, ActiveApplicationSessionsHoldPastTheirLimit) {
  // Three application sessions busy in the server: over 1.5 times a limit of one.
  std::vector<Process> sleepers;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<Process> psql = Process::Spawn(
        {testing::PgBinary("psql"), "-X", "-q", "-d", db_.dsn(), "-c", "SELECT pg_sleep(600)"});
    ASSERT_OK(psql);
    sleepers.push_back(std::move(psql).value());
  }
  Process job = StartHeld(Plan("sessions-hold", "max_active_sessions: 1"),
                          "application active sessions");
  ExpectNoProgressWhileHeld();
  ASSERT_OK(db_.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE query = 'SELECT pg_sleep(600)'")
                .status());
  for (Process& sleeper : sleepers) sleeper.Wait();
  ExpectFinished(job);
}

// The application's statements: one session running a short query in a loop, all the time.
class App {
 public:
  explicit App(const std::string& dsn) {
    absl::StatusOr<Process> loop = Process::Spawn(
        {testing::PgBinary("pgbench"), "-n", "-c", "1", "-T", "600", "-f", "-", dsn}, {},
        std::string("SELECT count(*) FROM items WHERE id BETWEEN 1 AND 50;\n"));
    EXPECT_OK(loop);
    if (loop.ok()) process_.emplace(std::move(loop).value());
  }
  ~App() {
    if (process_.has_value()) (void)process_->Signal(SIGINT);
  }

 private:
  std::optional<Process> process_;
};

TEST_F(AppSignalsTest, TheJobsOwnSlowStatementsAreNotTheApplications) {
  ASSERT_OK(db_.ExecScript("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"));
  App app(db_.dsn());
  // Every batch sleeps 20 ms, a hundred times the application's statement: counted as the
  // application's, they would hold the job at once.
  absl::StatusOr<Process> job = SpawnPgbackfill(RunArgs(
      testing::WriteTestFile(Plan("own-statements", "max_statement_latency: 2x + 2ms"))));
  ASSERT_OK(job);
  const testing::CommandResult run = ExpectFinished(*job);
  const std::vector<events::Event> seen = testing::ReadEvents(run.out);
  bool judged = false;
  for (const events::Progress& progress : testing::EventsOf<events::Progress>(seen)) {
    for (const events::ThrottleSignal& signal : progress.signals) {
      if (signal.name != "statement_latency") continue;
      judged = true;
      EXPECT_LE(signal.value, signal.limit) << "the job's own statements counted";
    }
  }
  EXPECT_TRUE(judged) << "statement latency was never read\n" << run.out;
  for (const events::Throttle& change : testing::EventsOf<events::Throttle>(seen)) {
    EXPECT_THAT(change.reason.value_or(""), ::testing::Not(HasSubstr("statement latency")));
  }
}

TEST_F(AppSignalsTest, WithoutPgStatStatementsCheckSaysSoAndTheRunUsesTheOtherSignals) {
  App app(db_.dsn());  // someone to protect: on an idle server the signals judge nothing
  const std::string plan = testing::WriteTestFile(
      Plan("no-statements", "max_statement_latency: 1.25x + 2ms, max_commit_latency: 5x + 50ms"));
  const testing::CommandResult check =
      testing::RunPgbackfill({"check", plan, "--dsn", db_.dsn()});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  EXPECT_THAT(check.out + check.err, HasSubstr("pg_stat_statements is not installed"));
  const testing::CommandResult run = testing::RunPgbackfill(RunArgs(plan));
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
  ExpectEveryRowOnce("items", kRows);
  bool commit_read = false;
  for (const events::Progress& progress :
       testing::EventsOf<events::Progress>(testing::ReadEvents(run.out))) {
    for (const events::ThrottleSignal& signal : progress.signals) {
      EXPECT_NE(signal.name, "statement_latency");
      commit_read = commit_read || signal.name == "commit_latency";
    }
  }
  EXPECT_TRUE(commit_read) << "commit latency was never read";
}

TEST_F(AppSignalsTest, StatementLatencyUnderSaturatingPgbenchSlowsTheJobThenItFinishes) {
  ASSERT_OK(db_.ExecScript("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"));
  App app(db_.dsn());
  absl::StatusOr<Process> job = SpawnPgbackfill(RunArgs(testing::WriteTestFile(
      // At most 2,000 rows/s: the job lasts about 10 s, long enough for the load to come.
      Plan("pgbench-slows",
           "max_statement_latency: 2x + 1ms, baseline: 1s, max_rows_per_second: 2000"))));
  ASSERT_OK(job);
  ASSERT_OK(job->WaitForOutput("\"event\":\"range_done\"")) << job->StdoutSoFar();
  // Saturate both cores with read-only application load on the job's own table. Each statement
  // reads the table five times (~100,000 rows): several milliseconds even on a quiet server, so
  // the mean is over the limit's absolute 1 ms however fast the machine (one read, ~20,000 rows,
  // came to 0.94 ms under this load in one CI run: under the limit, and the job was never slowed).
  absl::StatusOr<Process> load = Process::Spawn(
      {testing::PgBinary("pgbench"), "-n", "-c", "8", "-j", "2", "-T", "20", "-f", "-", db_.dsn()},
      {}, std::string("SELECT sum(n + g) FROM items, generate_series(1, 5) AS g;\n"));
  ASSERT_OK(load);
  // Under the load the application is over its budget: the job is paced or held.
  const absl::Status slowed = job->WaitForOutput("application statement latency");
  (void)load->Wait();
  EXPECT_OK(slowed) << job->StdoutSoFar();
  ExpectFinished(*job);
}

TEST_F(AppSignalsTest, TheStatementTailSlowsTheJobWhereTheMeanStaysInItsLimit) {
  ASSERT_OK(db_.ExecScript("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"));
  absl::StatusOr<Process> job = SpawnPgbackfill(
      RunArgs(testing::WriteTestFile(Plan("tail-slows",
                                          "max_statement_latency: 10ms, max_statement_tail: 10ms, "
                                          "max_rows_per_second: 2000"))));
  ASSERT_OK(job);
  ASSERT_OK(job->WaitForOutput("\"event\":\"range_done\"")) << job->StdoutSoFar();
  // One statement (one queryid): 1 call in 50 waits 50 ms, the others take microseconds. Its
  // mean is ~1 ms, a tenth of its limit; mean + 3 standard deviations is ~20 ms.
  absl::StatusOr<Process> load = Process::Spawn(
      {testing::PgBinary("pgbench"), "-n", "-c", "2", "-j", "2", "-T", "10", "-f", "-", db_.dsn()},
      {},
      std::string("\\set r random(1, 50)\n"
                  "SELECT CASE WHEN :r = 1 THEN pg_catalog.pg_sleep(0.05) END;\n"));
  ASSERT_OK(load);
  const absl::Status slowed = job->WaitForOutput("application statement tail");
  (void)load->Wait();
  EXPECT_OK(slowed) << job->StdoutSoFar();
  EXPECT_THAT(job->StdoutSoFar(), ::testing::Not(HasSubstr("application statement latency")));
  ExpectFinished(*job);
}

TEST_F(AppSignalsTest, CpuPressureUnderSaturatingPgbenchSlowsTheJobThenItFinishes) {
  // The test cluster runs on this machine: its /proc is the server's.
  if (!std::filesystem::exists("/proc/pressure/cpu")) {
    GTEST_SKIP() << "this kernel has no /proc/pressure/cpu (PSI)";
  }
  App app(db_.dsn());
  const std::string plan = testing::WriteTestFile(
      Plan("cpu-slows", "max_cpu_pressure: 1.25x + 5%, baseline: 1s, max_rows_per_second: 2000"));
  const testing::CommandResult check = testing::RunPgbackfill({"check", plan, "--dsn", db_.dsn()});
  EXPECT_THAT(check.out + check.err, HasSubstr("reads how long runnable tasks wait for a CPU"));
  absl::StatusOr<Process> job = SpawnPgbackfill(RunArgs(plan));
  ASSERT_OK(job);
  ASSERT_OK(job->WaitForOutput("\"event\":\"range_done\"")) << job->StdoutSoFar();
  // Eight sessions of CPU-bound statements on two cores: most of the time a backend waits for a
  // CPU, whatever the share before.
  absl::StatusOr<Process> load = Process::Spawn(
      {testing::PgBinary("pgbench"), "-n", "-c", "8", "-j", "2", "-T", "15", "-f", "-", db_.dsn()},
      {}, std::string("SELECT sum(n + g) FROM items, generate_series(1, 5) AS g;\n"));
  ASSERT_OK(load);
  const absl::Status slowed = job->WaitForOutput("server CPU pressure");
  (void)load->Wait();
  EXPECT_OK(slowed) << job->StdoutSoFar();
  const testing::CommandResult run = ExpectFinished(*job);
  bool read = false;
  for (const events::Progress& progress :
       testing::EventsOf<events::Progress>(testing::ReadEvents(run.out))) {
    for (const events::ThrottleSignal& signal : progress.signals) {
      if (signal.name != "cpu_pressure") continue;
      read = true;
      EXPECT_GE(signal.value, 0);
      EXPECT_LE(signal.value, 1) << "a share of the time";
    }
  }
  EXPECT_TRUE(read) << run.out;
}

TEST_F(AppSignalsTest, ARoleThatMayNotReadCpuPressureIsToldWhatToGrantAndTheRunGoesOn) {
  App app(db_.dsn());
  const std::string role = db_.name() + "_nopsi";
  ASSERT_OK(db_.ExecScript("CREATE ROLE \"" + role +
                           "\" LOGIN;"
                           "GRANT SELECT, UPDATE ON items TO \"" +
                           role +
                           "\";"
                           "GRANT CREATE ON DATABASE \"" +
                           db_.name() + "\" TO \"" + role + "\";"));
  const std::string plan = testing::WriteTestFile(Plan(
      "cpu-denied", "max_cpu_pressure: 1.25x + 5%, max_commit_latency: 5x + 50ms, baseline: 1s"));
  const std::string dsn = db_.dsn() + " user=" + role;
  const testing::CommandResult check = testing::RunPgbackfill({"check", plan, "--dsn", dsn});
  EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  EXPECT_THAT(check.out + check.err, HasSubstr("may not read the server's /proc/pressure/cpu"));
  const testing::CommandResult run = testing::RunPgbackfill(testing::RunArgs(plan, dsn));
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
  ExpectEveryRowOnce("items", kRows);
  for (const events::Progress& progress :
       testing::EventsOf<events::Progress>(testing::ReadEvents(run.out))) {
    for (const events::ThrottleSignal& signal : progress.signals) {
      EXPECT_NE(signal.name, "cpu_pressure");
    }
  }
  EXPECT_OK(db_.ExecScript("DROP OWNED BY \"" + role + "\"; DROP ROLE \"" + role + "\";"));
}

TEST_F(AppSignalsTest, APlanWithoutThrottleKeysSlowsUnderSaturatingLoadAndSpeedsUpAfter) {
  // Batches of 200 rows, 20 ms each, and not one throttle key: the defaults decide.
  const std::string plan = testing::WriteTestFile(
      "version: 1\nname: defaults\ntable: items\nset:\n  n: n + 1\n"
      "where: (SELECT pg_catalog.pg_sleep(0.02)) IS NOT NULL\n"
      "batch: { rows: 200, min_rows: 200, max_rows: 200 }\nworkers: 2\n");
  // A primary that serves while the baseline is measured (on an idle one it waits for someone);
  // gone before the load, so that what follows the load is the job's to speed up in.
  std::optional<App> app;
  app.emplace(db_.dsn());
  absl::StatusOr<Process> job = SpawnPgbackfill(RunArgs(plan));
  ASSERT_OK(job);
  ASSERT_OK(job->WaitForOutput("measuring the application's baseline")) << job->StdoutSoFar();
  // The baseline is the lightly loaded server's; the job then starts slowly and commits.
  ASSERT_TRUE(Eventually([&] { return RowsCommitted() > 0; })) << job->StdoutSoFar();
  // `status`, from any host, shows the pace and what the application feels.
  std::string status_out;
  EXPECT_TRUE(Eventually([&] {
    const testing::CommandResult status =
        testing::RunPgbackfill({"status", "defaults", "--json", "--dsn", db_.dsn()});
    const nlohmann::json jobs = nlohmann::json::parse(status.out, nullptr, false);
    status_out = status.out;
    if (jobs.is_discarded() || !jobs.contains("jobs") || jobs["jobs"].empty()) return false;
    const nlohmann::json& throttle = jobs["jobs"][0]["throttle"];
    if (!throttle.is_object()) return false;
    for (const nlohmann::json& signal : throttle["signals"]) {
      if (signal["name"] == "commit_latency" && signal["baseline"].is_number()) return true;
    }
    return false;
  })) << status_out;
  const testing::CommandResult text =
      testing::RunPgbackfill({"status", "defaults", "--dsn", db_.dsn()});
  EXPECT_THAT(text.out, HasSubstr("commit_latency ")) << text.out;
  app.reset();
  // Statements of ~100,000 rows each on 8 sessions: most of them active at any look, well over
  // the limit of 2x + 1 of the baseline's one busy session (pg_stat_statements is not installed
  // here, so sessions and commit latency are the signals). With 2,000-row statements the looks
  // saw 0.5-1.75 active sessions against a limit of 2.5, and one CI run was never slowed.
  absl::StatusOr<Process> load = Process::Spawn(
      {testing::PgBinary("pgbench"), "-n", "-c", "8", "-j", "2", "-T", "15", "-f", "-", db_.dsn()},
      {}, std::string("SELECT sum(n + g) FROM items, generate_series(1, 5) AS g;\n"));
  ASSERT_OK(load);
  // Under the load an application signal is over its limit: the job is paced or held for it.
  const absl::Status slowed = job->WaitForOutput("application ");
  (void)load->Wait();
  const int64_t during = RowsCommitted();  // rows done by the end of the load
  EXPECT_OK(slowed) << job->StdoutSoFar();
  const testing::CommandResult run = ExpectFinished(*job);
  bool speeds_up = false;
  std::optional<int64_t> slowest;
  for (const events::Progress& progress :
       testing::EventsOf<events::Progress>(testing::ReadEvents(run.out))) {
    if (progress.rows_done <= during) continue;
    if (progress.pace_rows_per_second.has_value()) {
      speeds_up = speeds_up || (slowest.has_value() && *progress.pace_rows_per_second > *slowest);
      slowest = std::min(slowest.value_or(*progress.pace_rows_per_second),
                         *progress.pace_rows_per_second);
    } else {
      speeds_up = true;  // pacing ended: full speed
    }
  }
  EXPECT_TRUE(speeds_up) << "the pace never rose after the load\n" << run.out;
}

}  // namespace
}  // namespace pgbackfill
