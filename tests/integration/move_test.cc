// The data mover end to end through the binary: copies between two databases of one cluster and
// between two clusters (int and composite keys, a transform in `columns:`, binary and text
// streams), exactly-once under kill -9 (with and without a target primary key) and restarts of
// either server, the type check of preflight, and verify / verify --repair.
//
// Every test ends by comparing the target with the plan's transform of the source, row for row:
// count and a sum of row hashes on each side, plus no key twice.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "pgbackfill/events/events.h"
#include "support/run_events.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill {
namespace {

using testing::ClusterDisruption;
using testing::CommandResult;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::Process;
using testing::RunPgbackfill;
using testing::SpawnPgbackfill;
using testing::TestDatabase;

// An int8 key with gaps; qty is int on the source and bigint in the target (a text stream).
constexpr char kItemsSource[] =
    "CREATE TABLE items (id bigint PRIMARY KEY, qty int NOT NULL, name text);"
    "INSERT INTO items SELECT g * 3 - 9000, g % 97, 'item ' || g FROM generate_series(1, 20000) g"
    "  WHERE g % 7 <> 0;"
    "ANALYZE items;";
constexpr int64_t kItemsRows = 17143;
constexpr char kItemsTarget[] =
    "CREATE TABLE items_copy (id bigint PRIMARY KEY, qty bigint NOT NULL, label text);";
constexpr char kItemsTargetNoKey[] =
    "CREATE TABLE items_copy (id bigint NOT NULL, qty bigint NOT NULL, label text);";
// What the target must hold, as the same row text on both sides.
constexpr char kItemsSourceRows[] = "SELECT ROW(id, qty::bigint, upper(name))::text FROM items";
constexpr char kItemsTargetRows[] = "SELECT ROW(id, qty, label)::text FROM items_copy";

// A composite (text, uuid) key; the same types on both sides (a binary stream).
constexpr char kAccountsSource[] =
    "CREATE TABLE accounts (tenant text NOT NULL, id uuid NOT NULL, balance numeric(12,2),"
    "  PRIMARY KEY (tenant, id));"
    "INSERT INTO accounts SELECT 'tenant ' || (g % 13), md5(g::text)::uuid, g / 7.0"
    "  FROM generate_series(1, 12000) g;"
    "ANALYZE accounts;";
constexpr char kAccountsTarget[] =
    "CREATE TABLE accounts_copy (tenant text NOT NULL, id uuid NOT NULL, balance numeric(12,2),"
    "  note text, PRIMARY KEY (tenant, id));";
constexpr char kAccountsSourceRows[] =
    "SELECT ROW(tenant, id, balance, tenant || '/' || id)::text FROM accounts";
constexpr char kAccountsTargetRows[] =
    "SELECT ROW(tenant, id, balance, note)::text FROM accounts_copy";

// One sub-select per COPY: each batch takes 10 ms more, so that a run can be interrupted.
constexpr char kSlowBatches[] = "where: (SELECT pg_catalog.pg_sleep(0.01)) IS NOT NULL\n";

std::string ItemsPlan(const TestDatabase& source, const TestDatabase& target, int batch_rows,
                      bool slow) {
  return absl::StrCat("version: 1\nname: items-move\nsource_dsn: ", source.dsn(),
                      "\ntarget_dsn: ", target.dsn(),
                      "\ntable: items\ninto: items_copy\ncolumns:\n  id: id\n  qty: qty\n"
                      "  label: upper(name)\n",
                      slow ? kSlowBatches : "", "batch: { rows: ", batch_rows,
                      ", min_rows: ", batch_rows, ", max_rows: ", batch_rows,
                      " }\nworkers: 2\nthrottle: { application: off, max_replica_lag: 0 }\n");
}

std::string AccountsPlan(const TestDatabase& source, const TestDatabase& target, int batch_rows,
                         bool slow) {
  return absl::StrCat("version: 1\nname: accounts-move\nsource_dsn: ", source.dsn(),
                      "\ntarget_dsn: ", target.dsn(),
                      "\ntable: accounts\ninto: accounts_copy\ncolumns:\n  tenant: tenant\n"
                      "  id: id\n  balance: balance\n  note: tenant || '/' || id\n",
                      slow ? kSlowBatches : "", "batch: { rows: ", batch_rows,
                      ", min_rows: ", batch_rows, ", max_rows: ", batch_rows,
                      " }\nworkers: 2\nthrottle: { application: off, max_replica_lag: 0 }\n");
}

// count(*) and an order-independent sum of row hashes of `rows_sql` (one text column).
std::string Fingerprint(TestDatabase& db, const std::string& rows_sql) {
  auto value = db.QueryValue(absl::StrCat(
      "SELECT count(*) || ' rows, hash ' || COALESCE(sum(hashtextextended(r, 0)), 0) FROM (",
      rows_sql, ") AS s(r)"));
  EXPECT_OK(value);
  return value.ok() ? *value : "";
}

void ExpectCopied(TestDatabase& source, const std::string& source_rows, TestDatabase& target,
                  const std::string& target_rows) {
  EXPECT_EQ(Fingerprint(target, target_rows), Fingerprint(source, source_rows));
}

CommandResult RunPlan(const std::string& plan, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"run", plan, "--json"};
  args.insert(args.end(), extra.begin(), extra.end());
  return RunPgbackfill(args);
}

// Starts a run and returns once it has committed some batches.
Process StartAndWaitForProgress(const std::string& plan) {
  auto process = SpawnPgbackfill({"run", plan, "--json"});
  EXPECT_OK(process);
  EXPECT_OK(process->WaitForOutput("\"event\":\"progress\"", absl::Seconds(60)))
      << process->StderrSoFar();
  return std::move(process).value();
}

// Each test's two databases: `source` on the first cluster unless asked otherwise, `target` on
// the first or the second cluster.
class MoveTest : public ::testing::Test {
 protected:
  enum class Where { kSameCluster, kTargetOnSecond, kSourceOnSecond };

  void Make(const char* source_ddl, const char* target_ddl, Where where = Where::kSameCluster) {
    if (where == Where::kSourceOnSecond) {
      source_.emplace("source", testing::SecondClusterDsn());
    } else {
      source_.emplace("source");
    }
    if (where == Where::kTargetOnSecond) {
      target_.emplace("target", testing::SecondClusterDsn());
    } else {
      target_.emplace("target");
    }
    ASSERT_OK(source_->ExecScript(source_ddl));
    ASSERT_OK(target_->ExecScript(target_ddl));
  }

  // Runs the items plan and restarts the second cluster (where `restarted` lives) once batches
  // have committed; the run must reconnect and finish. Its events go to `events`.
  void RunThroughSecondClusterRestart(TestDatabase& restarted, std::vector<events::Event>* events) {
    ClusterDisruption disruption;
    Process process =
        StartAndWaitForProgress(testing::WriteTestFile(ItemsPlan(*source_, *target_, 40, true)));
    ASSERT_OK(testing::SecondClusterCtl({"restart"}));
    restarted.Reconnect();
    CommandResult result = process.Wait();
    ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
    *events = testing::ReadEvents(result.out);
    EXPECT_TRUE(testing::FirstEvent<events::Reconnected>(*events).has_value()) << result.out;
  }

  std::optional<TestDatabase> source_;
  std::optional<TestDatabase> target_;
};

TEST_F(MoveTest, TwoDatabasesIntKeyWithTransformAsText) {
  Make(kItemsSource, kItemsTarget);
  TestDatabase& source = *source_;
  TestDatabase& target = *target_;
  const std::string plan = testing::WriteTestFile(ItemsPlan(source, target, 3000, false));

  CommandResult checked = RunPgbackfill({"check", plan});
  ASSERT_EQ(checked.exit_code, 0) << checked.out << checked.err;
  EXPECT_THAT(checked.out, HasSubstr("the COPY stream is text, because column \"qty\": integer "
                                     "on the source, bigint in the target"));

  CommandResult result = RunPlan(plan);
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  const std::vector<events::Event> events = testing::ReadEvents(result.out);
  const std::optional<events::JobStarted> started = testing::FirstEvent<events::JobStarted>(events);
  ASSERT_TRUE(started.has_value()) << result.out;
  EXPECT_EQ(started->copy_format, "text");
  EXPECT_EQ(started->through_stage, false);
  const std::optional<events::JobFinished> finished =
      testing::FirstEvent<events::JobFinished>(events);
  ASSERT_TRUE(finished.has_value());
  EXPECT_EQ(finished->total_rows, kItemsRows);
  EXPECT_GT(finished->bytes, 0);
  ExpectCopied(source, kItemsSourceRows, target, kItemsTargetRows);
  // The job store is the target's; the source has none.
  ASSERT_OK_AND_ASSIGN(std::string state, target.QueryValue("SELECT state FROM pgbackfill.jobs"));
  EXPECT_EQ(state, "done");
  ASSERT_OK_AND_ASSIGN(
      std::string stores,
      source.QueryValue("SELECT count(*) FROM pg_namespace WHERE nspname = 'pgbackfill'"));
  EXPECT_EQ(stores, "0");
}

TEST_F(MoveTest, TwoClustersCompositeKeyAsBinary) {
  Make(kAccountsSource, kAccountsTarget, Where::kTargetOnSecond);
  TestDatabase& source = *source_;
  TestDatabase& target = *target_;
  CommandResult result = RunPlan(testing::WriteTestFile(AccountsPlan(source, target, 1000, false)));
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  const std::optional<events::JobStarted> started =
      testing::FirstEvent<events::JobStarted>(testing::ReadEvents(result.out));
  ASSERT_TRUE(started.has_value()) << result.out;
  EXPECT_EQ(started->copy_format, "binary");
  ExpectCopied(source, kAccountsSourceRows, target, kAccountsTargetRows);
}

// A target that already has rows goes through the stage and on_conflict; here skip keeps them.
TEST_F(MoveTest, NonEmptyTargetGoesThroughTheStage) {
  Make(kItemsSource, kItemsTarget);
  TestDatabase& source = *source_;
  TestDatabase& target = *target_;
  ASSERT_OK(
      target.ExecScript("INSERT INTO items_copy SELECT id, qty, upper(name) FROM"
                        " (SELECT g * 3 - 9000 AS id, g % 97 AS qty, 'item ' || g AS name"
                        "    FROM generate_series(1, 20000, 11) g WHERE g % 7 <> 0) s"));
  const std::string plan = testing::WriteTestFile(
      absl::StrCat(ItemsPlan(source, target, 2000, false), "on_conflict: skip\n"));
  CommandResult result = RunPlan(plan);
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  const std::optional<events::JobStarted> started =
      testing::FirstEvent<events::JobStarted>(testing::ReadEvents(result.out));
  ASSERT_TRUE(started.has_value());
  EXPECT_EQ(started->through_stage, true);
  ExpectCopied(source, kItemsSourceRows, target, kItemsTargetRows);
}

void KillNineTenTimes(const std::string& plan, TestDatabase& target) {
  std::mt19937 random(20261122);  // fixed: a failure reproduces
  std::uniform_int_distribution<int> delay_ms(100, 900);
  int landed = 0;
  for (int i = 0; i < 10; ++i) {
    auto process = SpawnPgbackfill({"run", plan, "--json"});
    ASSERT_OK(process);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(random)));
    ASSERT_OK(process->Signal(SIGKILL));
    CommandResult killed = process->Wait();
    landed += killed.term_signal == SIGKILL ? 1 : 0;
    ASSERT_OK_AND_ASSIGN(std::string doubled,
                         target.QueryValue("SELECT count(*) - count(DISTINCT id) FROM items_copy"));
    ASSERT_EQ(doubled, "0") << "after kill " << i;
  }
  EXPECT_GE(landed, 5) << "most kills should hit a running job; make the job longer";
  CommandResult finished = RunPlan(plan);
  ASSERT_EQ(finished.exit_code, 0) << finished.out << finished.err;
}

TEST_F(MoveTest, KillNineTenTimesWithTargetKey) {
  Make(kItemsSource, kItemsTarget);
  TestDatabase& source = *source_;
  TestDatabase& target = *target_;
  KillNineTenTimes(testing::WriteTestFile(ItemsPlan(source, target, 25, true)), target);
  ExpectCopied(source, kItemsSourceRows, target, kItemsTargetRows);
}

// Without a primary key nothing in the target stops a row copied twice: only the checkpoint
// committed with the rows does.
TEST_F(MoveTest, KillNineTenTimesWithoutTargetKey) {
  Make(kItemsSource, kItemsTargetNoKey);
  TestDatabase& source = *source_;
  TestDatabase& target = *target_;
  KillNineTenTimes(testing::WriteTestFile(ItemsPlan(source, target, 25, true)), target);
  ExpectCopied(source, kItemsSourceRows, target, kItemsTargetRows);
}

// The source restarts: its sessions and the exported snapshot are gone. The workers reconnect,
// a new snapshot is exported (and the run says so), and the copy completes.
TEST_F(MoveTest, SourceServerRestartMidRun) {
  Make(kItemsSource, kItemsTarget, Where::kSourceOnSecond);
  std::vector<events::Event> events;
  ASSERT_NO_FATAL_FAILURE(RunThroughSecondClusterRestart(*source_, &events));
  int snapshots = 0;
  for (const events::Snapshot& snapshot : testing::EventsOf<events::Snapshot>(events)) {
    snapshots = std::max(snapshots, snapshot.generation);
  }
  EXPECT_EQ(snapshots, 2) << "a new snapshot after the restart";
  ExpectCopied(*source_, kItemsSourceRows, *target_, kItemsTargetRows);
}

// The target restarts: the job store, its lock and the open transactions are gone. The run takes
// its lock again, batches that did not commit are copied again, and none twice.
TEST_F(MoveTest, TargetServerRestartMidRun) {
  Make(kItemsSource, kItemsTarget, Where::kTargetOnSecond);
  std::vector<events::Event> events;
  ASSERT_NO_FATAL_FAILURE(RunThroughSecondClusterRestart(*target_, &events));
  ExpectCopied(*source_, kItemsSourceRows, *target_, kItemsTargetRows);
}

// Sessions killed on both servers while they stream: the workers reconnect (and import the
// snapshot again), and the batches whose COPY broke are copied again from their checkpoints.
TEST_F(MoveTest, TerminatedBackendsOnBothSidesReconnect) {
  Make(kItemsSource, kItemsTarget);
  TestDatabase& source = *source_;
  TestDatabase& target = *target_;
  Process process =
      StartAndWaitForProgress(testing::WriteTestFile(ItemsPlan(source, target, 40, true)));
  const std::string kill =
      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
      " WHERE datname = current_database() AND application_name = 'pgbackfill'"
      "   AND query LIKE 'COPY %' AND pid <> pg_backend_pid()";
  int killed = 0;
  for (int round = 0; round < 40 && killed < 4; ++round) {
    for (TestDatabase* db : {&source, &target}) {
      ASSERT_OK_AND_ASSIGN(std::string count, db->QueryValue(kill));
      killed += std::stoi(count);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CommandResult result = process.Wait();
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_GE(killed, 1) << "no COPY session was caught; make the job longer";
  const std::vector<events::Event> events = testing::ReadEvents(result.out);
  EXPECT_TRUE(testing::FirstEvent<events::Reconnected>(events).has_value()) << result.out;
  ExpectCopied(source, kItemsSourceRows, target, kItemsTargetRows);
}

// The first SIGINT lets the batches in flight commit; the second cancels them mid-stream on both
// servers. Either way the run ends interrupted and the next one completes the copy.
TEST_F(MoveTest, SignalsInterruptAndTheNextRunCompletes) {
  Make(kItemsSource, kItemsTarget);
  TestDatabase& source = *source_;
  TestDatabase& target = *target_;
  const std::string plan = testing::WriteTestFile(ItemsPlan(source, target, 40, true));
  for (const int signals : {1, 2}) {
    SCOPED_TRACE(signals);
    Process process = StartAndWaitForProgress(plan);
    for (int i = 0; i < signals; ++i) ASSERT_OK(process.Signal(SIGINT));
    CommandResult result = process.Wait();
    EXPECT_EQ(result.exit_code, 3) << result.out << result.err;
    ASSERT_OK_AND_ASSIGN(std::string doubled,
                         target.QueryValue("SELECT count(*) - count(DISTINCT id) FROM items_copy"));
    EXPECT_EQ(doubled, "0");
  }
  CommandResult finished = RunPlan(plan);
  ASSERT_EQ(finished.exit_code, 0) << finished.out << finished.err;
  ExpectCopied(source, kItemsSourceRows, target, kItemsTargetRows);
}

// The job store, and so the operator's control, is the target's: `pause` there holds the copy.
TEST_F(MoveTest, PauseAndResumeThroughTheTarget) {
  Make(kItemsSource, kItemsTarget, Where::kTargetOnSecond);
  TestDatabase& source = *source_;
  TestDatabase& target = *target_;
  Process process =
      StartAndWaitForProgress(testing::WriteTestFile(ItemsPlan(source, target, 40, true)));
  const size_t from = process.StdoutSoFar().size();
  CommandResult paused = RunPgbackfill({"pause", "items-move", "--dsn", target.dsn()});
  ASSERT_EQ(paused.exit_code, 0) << paused.out << paused.err;
  ASSERT_OK(process.WaitForStdout("paused by", from).status());
  CommandResult status = RunPgbackfill({"status", "items-move", "--dsn", target.dsn(), "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr("\"control\":\"pause\""));
  CommandResult resumed = RunPgbackfill({"resume", "items-move", "--dsn", target.dsn()});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.out << resumed.err;
  CommandResult result = process.Wait();
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  ExpectCopied(source, kItemsSourceRows, target, kItemsTargetRows);
}

// Each batch reads in a transaction of its own (importing the run's snapshot), so the source
// table's lock is held for one batch: DDL on the source gets through during a long copy.
TEST_F(MoveTest, SourceDdlIsNotBlockedForTheRun) {
  Make(kItemsSource, kItemsTarget);
  TestDatabase& source = *source_;
  TestDatabase& target = *target_;
  Process process =
      StartAndWaitForProgress(testing::WriteTestFile(ItemsPlan(source, target, 40, true)));
  ASSERT_OK(source.ExecScript("SET lock_timeout = '1s'; ALTER TABLE items ADD COLUMN extra int"));
  EXPECT_THAT(process.StdoutSoFar(), Not(HasSubstr("\"job_finished\"")))
      << "the run ended before the ALTER; make it longer";
  CommandResult result = process.Wait();
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  ExpectCopied(source, kItemsSourceRows, target, kItemsTargetRows);
}

// `where` filters on the source, and on_conflict: update overwrites the rows a target had before
// the job (through the stage). Verify then reports the rows the source does not explain, and
// refuses to repair: that would delete them.
TEST_F(MoveTest, WhereAndOnConflictUpdateIntoATargetWithRows) {
  Make(kItemsSource, kItemsTarget);
  TestDatabase& source = *source_;
  TestDatabase& target = *target_;
  // -8847 is a source row the copy takes (qty 51), -8997 one it leaves out (qty 1), 43 none.
  ASSERT_OK(target.ExecScript(
      "INSERT INTO items_copy VALUES (-8847, 0, 'stale'), (-8997, 0, 'stale'), (43, 1, 'mine')"));
  const std::string plan = testing::WriteTestFile(absl::StrCat(
      ItemsPlan(source, target, 500, false), "where: qty > 50\non_conflict: update\n"));
  CommandResult result = RunPlan(plan);
  EXPECT_EQ(result.exit_code, 4) << result.out << result.err;  // verify: the rows before
  EXPECT_THAT(result.out, HasSubstr("had rows before the job"));
  EXPECT_EQ(Fingerprint(target, kItemsTargetRows),
            Fingerprint(source,
                        "SELECT ROW(id, qty::bigint, upper(name))::text FROM items WHERE qty > 50"
                        " UNION ALL SELECT '(-8997,0,stale)' UNION ALL SELECT '(43,1,mine)'"));
  CommandResult repair = RunPgbackfill({"verify", plan, "--repair", "--json"});
  EXPECT_EQ(repair.exit_code, 2) << repair.out << repair.err;
  EXPECT_THAT(repair.out, HasSubstr("had rows before job items-move started"));
}

TEST_F(MoveTest, TheSameDatabaseTwiceIsRefused) {
  Make(kItemsSource, kItemsTarget);
  TestDatabase& source = *source_;
  ASSERT_OK(source.ExecScript(kItemsTarget));
  const std::string plan = testing::WriteTestFile(ItemsPlan(source, source, 500, false));
  CommandResult checked = RunPgbackfill({"check", plan});
  EXPECT_EQ(checked.exit_code, 2) << checked.out << checked.err;
  EXPECT_THAT(checked.out, HasSubstr(":4: target_dsn: source and target are the same database"));
}

TEST_F(MoveTest, MismatchedTargetTypeIsRefusedInPreflight) {
  Make(kItemsSource,
       "CREATE TABLE items_copy (id bigint PRIMARY KEY, qty boolean NOT NULL, label text);");
  TestDatabase& source = *source_;
  TestDatabase& target = *target_;
  const std::string plan = testing::WriteTestFile(ItemsPlan(source, target, 1000, false));
  CommandResult checked = RunPgbackfill({"check", plan});
  EXPECT_EQ(checked.exit_code, 2) << checked.out << checked.err;
  EXPECT_THAT(checked.out, HasSubstr(absl::StrCat(plan,
                                                  ":9: columns.qty: the source gives "
                                                  "integer and column \"qty\" of "
                                                  "\"public\".\"items_copy\" is boolean")));
  CommandResult ran = RunPlan(plan);
  EXPECT_EQ(ran.exit_code, 2) << ran.out << ran.err;
  ASSERT_OK_AND_ASSIGN(std::string copied, target.QueryValue("SELECT count(*) FROM items_copy"));
  EXPECT_EQ(copied, "0");
}

TEST_F(MoveTest, VerifyFindsAChangedTargetRowAndRepairFixesIt) {
  Make(kAccountsSource, kAccountsTarget, Where::kTargetOnSecond);
  TestDatabase& source = *source_;
  TestDatabase& target = *target_;
  const std::string plan = testing::WriteTestFile(AccountsPlan(source, target, 1000, false));
  ASSERT_EQ(RunPlan(plan).exit_code, 0);

  // Behind the copy's back: one value changed, one row gone, one row added.
  ASSERT_OK(target.ExecScript(
      "UPDATE accounts_copy SET balance = balance + 1 WHERE (tenant, id) IN"
      "  (SELECT tenant, id FROM accounts_copy ORDER BY tenant, id LIMIT 1);"
      "DELETE FROM accounts_copy WHERE (tenant, id) IN"
      "  (SELECT tenant, id FROM accounts_copy ORDER BY tenant DESC, id DESC LIMIT 1);"
      "INSERT INTO accounts_copy VALUES ('tenant 5', gen_random_uuid(), 1, 'stray');"));
  CommandResult found = RunPgbackfill({"verify", plan, "--json"});
  EXPECT_EQ(found.exit_code, 4) << found.out << found.err;
  // Between databases verify reports ranges (MoveVerified), not rows.
  const std::optional<events::MoveVerified> verified =
      testing::FirstEvent<events::MoveVerified>(testing::ReadEvents(found.out));
  ASSERT_TRUE(verified.has_value()) << found.out;
  EXPECT_GE(verified->differing_ranges, 2);
  EXPECT_EQ(verified->repaired_ranges, 0);

  CommandResult repaired = RunPgbackfill({"verify", plan, "--repair", "--json"});
  ASSERT_EQ(repaired.exit_code, 0) << repaired.out << repaired.err;
  ExpectCopied(source, kAccountsSourceRows, target, kAccountsTargetRows);
  CommandResult again = RunPgbackfill({"verify", plan, "--json"});
  EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
}

}  // namespace
}  // namespace pgbackfill
