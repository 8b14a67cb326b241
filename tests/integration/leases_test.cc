// One job, many runners: `pgbackfill run` processes share a job through leases in the job store
// (checkpoint/job_store.h: runners, ranges.owner), a killed runner's ranges are taken over after
// its lease, and nothing depends on session state, so runs work through a transaction-pooling
// pgbouncer (scripts/pg-pooler, started by scripts/test). Every row once (`n = n + 1`).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "pgbackfill/events/events.h"
#include "support/run_events.h"
#include "support/run_helpers.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill {
namespace {

using nlohmann::json;
using testing::CommandResult;
using testing::Eventually;
using ::testing::HasSubstr;
using testing::Process;
using testing::RunPgbackfill;
using testing::SpawnPgbackfill;
using testing::TestDatabase;

constexpr int64_t kRows = 120000;
constexpr char kCreateItems[] =
    "CREATE TABLE items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);"
    "INSERT INTO items (id) SELECT g FROM generate_series(1, 120000) g; ANALYZE items;";
// The lease the tests' runners hold: short, so that a takeover is quick to see.
constexpr absl::Duration kLease = absl::Seconds(3);

// Each process at most 15,000 rows/s (the limiter is per process): the job lasts long enough for
// a second process to join and for a kill to land mid-run.
std::string ItemsPlan(const std::string& name, const std::string& lease = "3s",
                      int rows_per_second = 15000) {
  return absl::StrCat("version: 1\nname: ", name,
                      "\ntable: items\nset:\n  n: n + 1\nverify: false\nworkers: 2\n"
                      "lease_timeout: ",
                      lease,
                      "\nbatch: { rows: 500, max_rows: 500 }\n"
                      "throttle: { application: off, max_rows_per_second: ",
                      rows_per_second, " }\n");
}

// The job_finished event of a `run --json`.
std::optional<events::JobFinished> Finished(const std::string& out) {
  return testing::FirstEvent<events::JobFinished>(testing::ReadEvents(out));
}

class LeasesTest : public testing::RunTest {
 protected:
  void SetUp() override { ASSERT_OK(db_.ExecScript(kCreateItems)); }

  // Waits for two runs of a job; both must exit 0.
  void WaitBothDone(Process& first, Process& second, CommandResult& one, CommandResult& two) {
    one = first.Wait(absl::Seconds(60));
    two = second.Wait(absl::Seconds(60));
    ASSERT_EQ(one.exit_code, 0) << one.out << one.err;
    ASSERT_EQ(two.exit_code, 0) << two.out << two.err;
  }

  // The job's runners whose lease holds, by id.
  std::set<std::string> LiveRunners(const std::string& job) {
    absl::StatusOr<pg::Result> rows = db_.Exec(
        "SELECT runner_id FROM pgbackfill.runners WHERE job_name = $1 AND kind = 'run'"
        " AND lease_until > clock_timestamp()",
        {job});
    std::set<std::string> ids;
    if (!rows.ok()) return ids;  // no store yet
    for (int i = 0; i < rows->Rows(); ++i) ids.insert(std::string(rows->Get(i, 0)));
    return ids;
  }

  // The ranges not done that `runner` owns.
  std::set<int> Owned(const std::string& job, const std::string& runner) {
    absl::StatusOr<pg::Result> rows = db_.Exec(
        "SELECT range_id FROM pgbackfill.ranges WHERE job_name = $1 AND owner = $2"
        " AND state <> 'done'",
        {job, runner});
    std::set<int> ids;
    if (!rows.ok()) return ids;
    for (int i = 0; i < rows->Rows(); ++i) ids.insert(std::stoi(std::string(rows->Get(i, 0))));
    return ids;
  }

  // Rows the ranges `runner` owns have done.
  int64_t RowsOwnedBy(const std::string& job, const std::string& runner) {
    absl::StatusOr<std::string> rows = db_.QueryValue(
        "SELECT COALESCE(sum(rows_done), 0)::text FROM pgbackfill.ranges"
        " WHERE job_name = $1 AND owner = $2",
        {job, runner});
    return rows.ok() ? std::stoll(*rows) : 0;
  }
};

// Two processes run one job: each takes ranges of its own from the job store and commits rows,
// `status` lists both with their ranges and heartbeats, and every row is written exactly once.
TEST_F(LeasesTest, TwoProcessesShareOneJobAndEveryRowIsWrittenOnce) {
  const std::string plan = testing::WriteTestFile(ItemsPlan("shared"));
  absl::StatusOr<Process> first = SpawnPgbackfill(RunArgs(plan));
  ASSERT_OK(first);
  ASSERT_TRUE(Eventually([&] { return RowsCommitted("shared") > 0; }))
      << "the first process committed nothing";
  absl::StatusOr<Process> second = SpawnPgbackfill(RunArgs(plan));
  ASSERT_OK(second);
  ASSERT_TRUE(Eventually([&] { return LiveRunners("shared").size() == 2; }, absl::Seconds(30)))
      << "the second process did not join the job";
  std::set<std::string> runners = LiveRunners("shared");
  ASSERT_TRUE(Eventually(
      [&] {
        for (const std::string& runner : runners) {
          if (RowsOwnedBy("shared", runner) == 0) return false;
        }
        return true;
      },
      absl::Seconds(30)))
      << "both runners should walk ranges of their own";

  CommandResult status = RunPgbackfill({"status", "shared", "--dsn", db_.dsn(), "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  const json job = json::parse(status.out)["jobs"][0];
  int live = 0;
  std::set<std::string> owners;
  for (const json& runner : job["runners"]) {
    live += runner["live"].get<bool>() && runner["kind"] == "run" ? 1 : 0;
    EXPECT_FALSE(runner["heartbeat_at"].get<std::string>().empty());
    EXPECT_FALSE(runner["lease_until"].get<std::string>().empty());
  }
  for (const json& range : job["ranges"]) {
    if (range["owner"].is_string() && range["state"] != "done") owners.insert(range["owner"]);
  }
  EXPECT_EQ(live, 2) << status.out;
  EXPECT_EQ(owners, runners) << "status shows which runner owns which range: " << status.out;
  CommandResult text = RunPgbackfill({"status", "shared", "--dsn", db_.dsn()});
  EXPECT_THAT(text.out, HasSubstr("runner ")) << text.out;
  EXPECT_THAT(text.out, HasSubstr(", ranges ")) << text.out;

  CommandResult one = first->Wait();
  CommandResult two = second->Wait();
  ASSERT_EQ(one.exit_code, 0) << one.out << one.err;
  ASSERT_EQ(two.exit_code, 0) << two.out << two.err;
  const std::optional<events::JobFinished> one_done = Finished(one.out);
  const std::optional<events::JobFinished> two_done = Finished(two.out);
  ASSERT_TRUE(one_done.has_value() && two_done.has_value());
  EXPECT_GT(one_done->rows, 0);
  EXPECT_GT(two_done->rows, 0);
  EXPECT_EQ(one_done->rows + two_done->rows, kRows) << "each row in exactly one process's count:\n"
                                                    << one.out << "\n"
                                                    << two.out;
  ExpectEveryRowOnce("items", kRows);
  ASSERT_OK_AND_ASSIGN(std::string state,
                       db_.QueryValue("SELECT state FROM pgbackfill.jobs WHERE name = 'shared'"));
  EXPECT_EQ(state, "done") << "done for all";
  EXPECT_TRUE(LiveRunners("shared").empty()) << "both runners unregistered";
}

// Processes started at the same moment, as a deploy starts its replicas: the first to register
// runs expand, the others wait for it rather than refuse, then join the backfill; each ends done
// (each verifies, beside the others), and every row is written once.
TEST_F(LeasesTest, ProcessesStartedAtOnceAllJoinTheJob) {
  constexpr int kProcesses = 3;
  const std::string plan = testing::WriteTestFile(
      absl::StrReplaceAll(ItemsPlan("together", "3s", 5000), {{"verify: false", "verify: true"}}));
  std::vector<Process> runs;
  for (int i = 0; i < kProcesses; ++i) {
    absl::StatusOr<Process> run = SpawnPgbackfill(RunArgs(plan));
    ASSERT_OK(run);
    runs.push_back(*std::move(run));
  }
  int64_t rows = 0;
  for (Process& run : runs) {
    CommandResult ended = run.Wait(absl::Seconds(60));
    ASSERT_EQ(ended.exit_code, 0) << ended.out << ended.err;
    const std::optional<events::JobFinished> done = Finished(ended.out);
    ASSERT_TRUE(done.has_value()) << ended.out;
    EXPECT_EQ(done->outcome, "done") << ended.out;
    EXPECT_GT(done->rows, 0) << "every process took ranges of its own:\n" << ended.out;
    rows += done->rows;
  }
  EXPECT_EQ(rows, kRows) << "each row in exactly one process's count";
  ExpectEveryRowOnce("items", kRows);
}

// Everything the runs of a job send carries the statement tag (or names the job store), so the
// statement-latency signal never reads one runner's statements as the application's: two
// processes started at once (the job store's setup, leases, ranges and batches from both)
// leave no other entry in pg_stat_statements. Untagged, the job store's BEGIN and COMMIT held
// the second runner for an application baseline.
TEST_F(LeasesTest, TheRunsOfAJobLeaveNoStatementThatReadsAsTheApplications) {
  ASSERT_OK(db_.ExecScript("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"));
  ASSERT_OK(db_.Exec("SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database"
                     " WHERE datname = current_database()), 0)")
                .status());
  const std::string plan = testing::WriteTestFile(ItemsPlan("tagged", "3s", 0));
  absl::StatusOr<Process> first = SpawnPgbackfill(RunArgs(plan));
  ASSERT_OK(first);
  absl::StatusOr<Process> second = SpawnPgbackfill(RunArgs(plan));
  ASSERT_OK(second);
  CommandResult one, two;
  ASSERT_NO_FATAL_FAILURE(WaitBothDone(*first, *second, one, two));
  ASSERT_OK_AND_ASSIGN(
      std::string untagged,
      db_.QueryValue("SELECT coalesce(string_agg(calls || 'x ' || query, E'\\n'), '')"
                     " FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database"
                     " WHERE datname = current_database()) AND strpos(query, 'pgbackfill') = 0"
                     " AND query NOT LIKE '%pg_stat_statements%'"));
  EXPECT_EQ(untagged, "") << "statements of the job that read as the application's";
}

// A worker with nothing to take and nothing of its own process to split splits a range another
// process walks. Here every row lies in the first range (a skewed key: one id far above the
// others, so the arithmetic split leaves the other ranges empty), which the first process, with
// one worker, holds; the second can only get rows by splitting it across processes. Every row once.
TEST_F(LeasesTest, AProcessWithNothingLeftSplitsARangeAnotherProcessWalks) {
  ASSERT_OK(db_.ExecScript("INSERT INTO items (id) VALUES (1000000000000000); ANALYZE items;"));
  const std::string plan = testing::WriteTestFile(
      absl::StrReplaceAll(ItemsPlan("across", "3s", 5000), {{"workers: 2", "workers: 1"}}));
  absl::StatusOr<Process> first = SpawnPgbackfill(RunArgs(plan));
  ASSERT_OK(first);
  ASSERT_TRUE(Eventually([&] { return RowsCommitted("across") > 0; }));
  absl::StatusOr<Process> second = SpawnPgbackfill(RunArgs(plan));
  ASSERT_OK(second);
  CommandResult one, two;
  ASSERT_NO_FATAL_FAILURE(WaitBothDone(*first, *second, one, two));
  const std::optional<events::JobFinished> one_done = Finished(one.out);
  const std::optional<events::JobFinished> two_done = Finished(two.out);
  ASSERT_TRUE(one_done.has_value() && two_done.has_value());
  const std::optional<events::RangeSplit> split =
      testing::FirstEvent<events::RangeSplit>(testing::ReadEvents(two.out));
  ASSERT_TRUE(split.has_value()) << "the second process split no range:\n" << two.out;
  EXPECT_EQ(split->range, 1) << "the first process's range, the one with the rows";
  EXPECT_GT(two_done->rows, 1) << "more than the far range's one row:\n" << two.out;
  EXPECT_EQ(one_done->rows + two_done->rows, kRows + 1) << one.out << "\n" << two.out;
  ExpectEveryRowOnce("items", kRows + 1);
}

// kill -9 of one of two runners: its ranges stay its own until its lease expires (nobody else
// knows it died), then the other runner takes them and finishes the job.
TEST_F(LeasesTest, AKilledRunnersRangesAreTakenOverAfterItsLeaseAndTheJobFinishes) {
  const std::string plan = testing::WriteTestFile(ItemsPlan("takeover"));
  absl::StatusOr<Process> doomed = SpawnPgbackfill(RunArgs(plan));
  ASSERT_OK(doomed);
  ASSERT_TRUE(Eventually([&] { return RowsCommitted("takeover") > 0; }));
  absl::StatusOr<Process> survivor = SpawnPgbackfill(RunArgs(plan));
  ASSERT_OK(survivor);
  ASSERT_TRUE(Eventually([&] { return LiveRunners("takeover").size() == 2; }, absl::Seconds(30)));
  // The doomed runner registered first: its id is the one the survivor's lease is not.
  ASSERT_OK_AND_ASSIGN(std::string doomed_id,
                       db_.QueryValue("SELECT runner_id FROM pgbackfill.runners"
                                      " WHERE job_name = 'takeover' ORDER BY started_at LIMIT 1"));
  ASSERT_TRUE(Eventually([&] {
    return RowsOwnedBy("takeover", doomed_id) > 0 && !Owned("takeover", doomed_id).empty();
  })) << "the doomed runner should hold ranges when it is killed";

  ASSERT_OK(doomed->Signal(SIGKILL));
  const absl::Time killed_at = absl::Now();
  CommandResult killed = doomed->Wait();
  ASSERT_EQ(killed.term_signal, SIGKILL);
  const std::set<int> orphaned = Owned("takeover", doomed_id);
  ASSERT_FALSE(orphaned.empty()) << "the killed runner left no range to take over";

  // Taken over: none of them is the dead runner's any more.
  ASSERT_TRUE(
      Eventually([&] { return Owned("takeover", doomed_id).empty(); }, kLease + absl::Seconds(15)))
      << "the survivor never took the dead runner's ranges";
  const absl::Duration taken_after = absl::Now() - killed_at;
  // Its last heartbeat came at most a heartbeat period (kLease / 4) before the kill.
  EXPECT_GE(taken_after, kLease * 3 / 4 - absl::Milliseconds(100))
      << "a range was taken while the dead runner's lease still held";
  CommandResult finished = survivor->Wait(kLease + absl::Minutes(1));
  ASSERT_EQ(finished.exit_code, 0) << finished.out << finished.err;
  std::set<int> finished_ranges;
  for (const events::RangeDone& done :
       testing::EventsOf<events::RangeDone>(testing::ReadEvents(finished.out))) {
    finished_ranges.insert(done.range);
  }
  for (int range : orphaned) {
    EXPECT_TRUE(finished_ranges.contains(range)) << "range " << range << " was not finished";
  }
  ExpectEveryRowOnce("items", kRows);
  std::cout << "takeover " << absl::FormatDuration(taken_after) << " after the kill (lease "
            << absl::FormatDuration(kLease) << ")\n";
}

// The control row reaches every runner: one `pause` holds both, one `abort` stops both.
TEST_F(LeasesTest, PauseAndAbortReachEveryRunner) {
  const std::string plan = testing::WriteTestFile(ItemsPlan("controlled", "3s", 5000));
  absl::StatusOr<Process> first = SpawnPgbackfill(RunArgs(plan));
  ASSERT_OK(first);
  ASSERT_TRUE(Eventually([&] { return RowsCommitted("controlled") > 0; }));
  absl::StatusOr<Process> second = SpawnPgbackfill(RunArgs(plan));
  ASSERT_OK(second);
  ASSERT_TRUE(Eventually([&] { return LiveRunners("controlled").size() == 2; }, absl::Seconds(30)));
  ASSERT_TRUE(Eventually([&] {
    return second->StdoutSoFar().find("\"batch_rows\"") != std::string::npos;
  })) << "the second runner never reported progress";

  CommandResult paused = RunPgbackfill({"pause", "controlled", "--dsn", db_.dsn()});
  ASSERT_EQ(paused.exit_code, 0) << paused.out << paused.err;
  ASSERT_OK(first->WaitForOutput("paused by"));
  ASSERT_OK(second->WaitForOutput("paused by"));
  // Held: nothing commits for a few intervals (batches in flight have long finished by then).
  absl::SleepFor(absl::Seconds(1.5));
  const int64_t held_at = RowsCommitted("controlled");
  absl::SleepFor(absl::Seconds(2));
  EXPECT_EQ(RowsCommitted("controlled"), held_at) << "a runner went on while paused";

  CommandResult aborted = RunPgbackfill({"abort", "controlled", "--dsn", db_.dsn()});
  ASSERT_EQ(aborted.exit_code, 0) << aborted.out << aborted.err;
  CommandResult one = first->Wait(absl::Seconds(30));
  CommandResult two = second->Wait(absl::Seconds(30));
  EXPECT_EQ(one.exit_code, 5) << one.out << one.err;
  EXPECT_EQ(two.exit_code, 5) << two.out << two.err;
  ASSERT_OK_AND_ASSIGN(std::string twice, db_.QueryValue("SELECT count(*) FROM items WHERE n > 1"));
  EXPECT_EQ(twice, "0");
  ASSERT_OK_AND_ASSIGN(
      std::string state,
      db_.QueryValue("SELECT state FROM pgbackfill.jobs WHERE name = 'controlled'"));
  EXPECT_EQ(state, "aborted");

  // The same job at full speed (the rate is tuning, not part of the plan's hash).
  CommandResult resumed =
      RunPgbackfill(RunArgs(testing::WriteTestFile(ItemsPlan("controlled", "3s", 0))));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.out << resumed.err;
  ExpectEveryRowOnce("items", kRows);
}

// Phases that must not run beside a backfill look at the leases: contract waits one lease
// timeout for the runners, then refuses naming them; rollback asks every runner to abort, waits
// until their leases are gone, then rolls back.
TEST_F(LeasesTest, ContractRefusesAndRollbackStopsEveryRunnerOfARunningBackfill) {
  const std::string plan = testing::WriteTestFile(ItemsPlan("phased", "3s", 5000));
  absl::StatusOr<Process> first = SpawnPgbackfill(RunArgs(plan));
  ASSERT_OK(first);
  ASSERT_TRUE(Eventually([&] { return RowsCommitted("phased") > 0; }));
  absl::StatusOr<Process> second = SpawnPgbackfill(RunArgs(plan));
  ASSERT_OK(second);
  ASSERT_TRUE(Eventually([&] { return LiveRunners("phased").size() == 2; }, absl::Seconds(30)));

  CommandResult contract = RunPgbackfill({"contract", plan, "--dsn", db_.dsn(), "--json"});
  EXPECT_EQ(contract.exit_code, 2) << contract.out << contract.err;
  EXPECT_THAT(contract.out, HasSubstr("is being worked on by another pgbackfill process (run pid"));
  EXPECT_EQ(LiveRunners("phased").size(), 2u) << "contract stopped nobody";

  CommandResult rollback = RunPgbackfill({"rollback", plan, "--dsn", db_.dsn(), "--json"});
  EXPECT_EQ(rollback.exit_code, 0) << rollback.out << rollback.err;
  EXPECT_THAT(rollback.out, HasSubstr("asked it to abort"));
  CommandResult one = first->Wait(absl::Seconds(30));
  CommandResult two = second->Wait(absl::Seconds(30));
  EXPECT_EQ(one.exit_code, 5) << one.out << one.err;
  EXPECT_EQ(two.exit_code, 5) << two.out << two.err;
  ASSERT_OK_AND_ASSIGN(std::string state,
                       db_.QueryValue("SELECT state FROM pgbackfill.jobs WHERE name = 'phased'"));
  EXPECT_EQ(state, "rolled_back");
}

// A runner that finds its own lease expired (it stalled past the timeout; made here by ending the
// lease in the store) stops rather than race whoever took its ranges, and says so; run again, the
// job finishes with every row once.
TEST_F(LeasesTest, ARunnerWhoseLeaseExpiredStopsAndSaysSo) {
  const std::string plan = testing::WriteTestFile(ItemsPlan("stalled", "3s", 5000));
  absl::StatusOr<Process> run = SpawnPgbackfill(RunArgs(plan));
  ASSERT_OK(run);
  ASSERT_TRUE(Eventually([&] { return RowsCommitted("stalled") > 0; }));
  ASSERT_OK(db_.Exec("UPDATE pgbackfill.runners SET lease_until = clock_timestamp()"
                     " WHERE job_name = 'stalled'")
                .status());
  CommandResult stopped = run->Wait(absl::Seconds(30));
  EXPECT_EQ(stopped.exit_code, 1) << stopped.out << stopped.err;
  EXPECT_THAT(stopped.out, HasSubstr("this process's lease on job stalled expired"));
  EXPECT_THAT(stopped.out, HasSubstr("Run the job again to rejoin it"));
  CommandResult again =
      RunPgbackfill(RunArgs(testing::WriteTestFile(ItemsPlan("stalled", "3s", 0))));
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  ExpectEveryRowOnce("items", kRows);
}

// A run that found the job running elsewhere used to be refused; now it joins, and a run of a
// finished job is done at once for every process.
TEST_F(LeasesTest, ARunOfAFinishedJobIsDoneAtOnce) {
  const std::string plan = testing::WriteTestFile(ItemsPlan("finished", "3s", 0));
  CommandResult first = RunPgbackfill(RunArgs(plan));
  ASSERT_EQ(first.exit_code, 0) << first.out << first.err;
  CommandResult again = RunPgbackfill(RunArgs(plan));
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_THAT(again.out, HasSubstr("the job had already finished; nothing to do"));
  ExpectEveryRowOnce("items", kRows);
}

// The pooler the tests reach the primary through (scripts/pg-pooler: pgbouncer, pool_mode =
// transaction), pointed at `db`; nullopt when scripts/test did not start one.
std::optional<std::string> PoolerDsn(const TestDatabase& db) {
  const char* dsn = std::getenv("PGBACKFILL_TEST_POOLER_DSN");
  if (dsn == nullptr || *dsn == '\0') return std::nullopt;
  return db.DsnFor(dsn);
}

// Through pgbouncer in transaction pooling: no session advisory lock stays behind in a pooled
// server connection, so runs killed with -9 leave nothing that refuses or holds up the next one,
// and no setting of ours stays on the pooled server connections for the application to find.
TEST_F(LeasesTest, ThroughATransactionPoolerKilledRunsNeitherBlockTheNextNorLeaveSettings) {
  const std::optional<std::string> pooled = PoolerDsn(db_);
  if (!pooled.has_value()) GTEST_SKIP() << "PGBACKFILL_TEST_POOLER_DSN is not set (scripts/test)";
  // A lease far longer than the test: a run that waited on a dead one would time out.
  const std::string plan = testing::WriteTestFile(ItemsPlan("pooled", "10m", 8000));
  for (int kill = 0; kill < 3; ++kill) {
    const int64_t before = RowsCommitted("pooled");
    absl::StatusOr<Process> run = SpawnPgbackfill(testing::RunArgs(plan, *pooled));
    ASSERT_OK(run);
    ASSERT_TRUE(
        Eventually([&] { return RowsCommitted("pooled") > before + 1000; }, absl::Seconds(30)))
        << "run " << kill << " committed nothing: " << run->StdoutSoFar() << run->StderrSoFar();
    ASSERT_OK(run->Signal(SIGKILL));
    CommandResult killed = run->Wait();
    ASSERT_EQ(killed.term_signal, SIGKILL) << killed.out << killed.err;
    ASSERT_OK_AND_ASSIGN(std::string twice,
                         db_.QueryValue("SELECT count(*) FROM items WHERE n > 1"));
    ASSERT_EQ(twice, "0") << "after kill " << kill;
  }
  const absl::Time start = absl::Now();
  CommandResult last = RunPgbackfill(testing::RunArgs(plan, *pooled));
  ASSERT_EQ(last.exit_code, 0) << last.out << last.err;
  EXPECT_LT(absl::Now() - start, absl::Minutes(2)) << "the last run waited on a dead runner";
  ExpectEveryRowOnce("items", kRows);

  // Every server connection the pooler keeps for this database, each in a transaction of its
  // own at once (so that no two are the same), shows the server's defaults.
  constexpr int kServers = 8;
  std::vector<pg::Connection> sessions;
  for (int i = 0; i < kServers; ++i) {
    ASSERT_OK_AND_ASSIGN(pg::Connection conn, pg::Connection::Connect(*pooled));
    ASSERT_OK(conn.ExecScript("BEGIN"));
    ASSERT_OK_AND_ASSIGN(
        pg::Result settings,
        conn.Exec("SELECT current_setting('search_path'), current_setting('statement_timeout'),"
                  " current_setting('lock_timeout')"));
    EXPECT_EQ(settings.Get(0, 0), "\"$user\", public") << "server session " << i;
    EXPECT_EQ(settings.Get(0, 1), "0") << "server session " << i;
    EXPECT_EQ(settings.Get(0, 2), "0") << "server session " << i;
    sessions.push_back(std::move(conn));
  }
}

// The data mover between databases needs real sessions (an exported snapshot, session settings):
// through a transaction pooler it is refused before it changes anything, naming the pooler and
// the way out.
TEST_F(LeasesTest, TheMoverBetweenDatabasesIsRefusedThroughATransactionPooler) {
  const std::optional<std::string> pooled = PoolerDsn(db_);
  if (!pooled.has_value()) GTEST_SKIP() << "PGBACKFILL_TEST_POOLER_DSN is not set (scripts/test)";
  TestDatabase target("target");
  ASSERT_OK(target.ExecScript("CREATE TABLE items_copy (id bigint PRIMARY KEY, n int)"));
  const std::string plan = testing::WriteTestFile(
      absl::StrCat("version: 1\nname: move\nsource_dsn: ", *pooled, "\ntarget_dsn: ", target.dsn(),
                   "\ntable: items\ninto: items_copy\ncolumns:\n  id: id\n  n: n\n"
                   "throttle: { application: off, max_replica_lag: 0 }\n"));
  CommandResult refused = RunPgbackfill({"run", plan, "--json"});
  EXPECT_EQ(refused.exit_code, 2) << refused.out << refused.err;
  EXPECT_THAT(refused.out, HasSubstr("the source DSN"));
  EXPECT_THAT(refused.out, HasSubstr("transaction-pooling pooler such as pgbouncer"));
  EXPECT_THAT(refused.out, HasSubstr("Connect the mover directly to PostgreSQL, or through "
                                     "session pooling"));
  ASSERT_OK_AND_ASSIGN(std::string copied, target.QueryValue("SELECT count(*) FROM items_copy"));
  EXPECT_EQ(copied, "0");

  // Directly, the same plan runs.
  const std::string direct = testing::WriteTestFile(absl::StrCat(
      "version: 1\nname: move\nsource_dsn: ", db_.dsn(), "\ntarget_dsn: ", target.dsn(),
      "\ntable: items\ninto: items_copy\ncolumns:\n  id: id\n  n: n\n"
      "throttle: { application: off, max_replica_lag: 0 }\n"));
  CommandResult moved = RunPgbackfill({"run", direct, "--json"});
  EXPECT_EQ(moved.exit_code, 0) << moved.out << moved.err;
}

}  // namespace
}  // namespace pgbackfill
