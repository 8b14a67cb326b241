// A move between clusters that follows its source (follow: true): pgbench inserts, updates,
// deletes and moves keys on the source through the copy and the follow; `pgbackfill cutover`
// then leaves the target equal to the source's rows (compared row for row, both ways) and the
// source refusing writes with a message naming the target. Also: kill -9 in the copy and in the
// follow, a TOASTed value an UPDATE leaves out, a large source transaction, TRUNCATE, a transform
// that does not compile on the target, and what rollback leaves on the source (nothing).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "pgbackfill/events/events.h"
#include "support/run_events.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill {
namespace {

using testing::CommandResult;
using ::testing::HasSubstr;
using testing::Process;
using testing::RunPgbackfill;
using testing::SpawnPgbackfill;
using testing::TestDatabase;

// Every 50th body is 3,200 bytes stored out of line uncompressed (STORAGE EXTERNAL): an UPDATE
// that does not touch it sends it as "unchanged".
constexpr char kSource[] =
    "CREATE TABLE items (id bigserial PRIMARY KEY, qty int NOT NULL, name text, body text);"
    "ALTER TABLE items ALTER body SET STORAGE EXTERNAL;"
    "INSERT INTO items (qty, name, body) SELECT g % 97, 'item ' || g,"
    "  CASE WHEN g % 50 = 0 THEN repeat(md5(g::text), 100) END FROM generate_series(1, 20000) g;"
    "ANALYZE items;";
// qty is bigint here (a text stream) and label the transform of name.
constexpr char kTarget[] =
    "CREATE TABLE items (id bigserial PRIMARY KEY, qty bigint NOT NULL, label text, body text);";
constexpr char kSourceRows[] = "SELECT ROW(id, qty::bigint, upper(name), body)::text FROM items";
constexpr char kTargetRows[] = "SELECT ROW(id, qty, label, body)::text FROM items";

// Each transaction: an update (of a TOASTed row, one time in 50), an insert, a delete, a key
// moved out of the random range (so each row moves once), a TOASTed row's key moved.
constexpr char kWrites[] =
    "\\set id random(1, 21000)\n"
    "UPDATE items SET qty = qty + 1 WHERE id = :id;\n"
    "UPDATE items SET qty = qty + 1 WHERE id = (:id / 50) * 50;\n"
    "INSERT INTO items (qty, name) VALUES (:id % 97, 'new ' || :id);\n"
    "DELETE FROM items WHERE id = :id + 3;\n"
    "UPDATE items SET id = id + 1000000 WHERE id = :id + 5;\n"
    "UPDATE items SET id = id + 2000000, qty = 0 WHERE id = (:id / 50) * 50 + 50;\n";

std::string Plan(const TestDatabase& source, const TestDatabase& target, const std::string& name,
                 const std::string& label = "upper(name)") {
  // 4,000 rows/s in 500-row batches: the copy of 20,000 rows takes ~5 s, long enough for writes
  // (and kills) to land in it.
  return absl::StrCat("version: 1\nname: ", name, "\nsource_dsn: ", source.dsn(),
                      "\ntarget_dsn: ", target.dsn(),
                      "\ntable: items\ninto: items\nfollow: true\ncolumns:\n  id: id\n"
                      "  qty: qty\n  label: ",
                      label,
                      "\n  body: body\n"
                      "batch: { rows: 500, min_rows: 500, max_rows: 500 }\nworkers: 2\n"
                      "throttle: { application: off, max_replica_lag: 0, "
                      "max_rows_per_second: 4000 }\n");
}

// The rows of `sql` (one text column), sorted: two sides compared as sets, both ways.
std::vector<std::string> Rows(TestDatabase& db, const std::string& sql) {
  std::vector<std::string> rows;
  absl::StatusOr<pg::Result> result = db.Exec(sql);
  EXPECT_OK(result);
  if (!result.ok()) return rows;
  for (int row = 0; row < result->Rows(); ++row) rows.emplace_back(result->Get(row, 0));
  std::sort(rows.begin(), rows.end());
  return rows;
}

void ExpectEqualTables(TestDatabase& source, TestDatabase& target) {
  const std::vector<std::string> want = Rows(source, kSourceRows);
  const std::vector<std::string> got = Rows(target, kTargetRows);
  std::vector<std::string> missing, extra;
  std::set_difference(want.begin(), want.end(), got.begin(), got.end(),
                      std::back_inserter(missing));
  std::set_difference(got.begin(), got.end(), want.begin(), want.end(), std::back_inserter(extra));
  EXPECT_TRUE(missing.empty()) << missing.size() << " source row(s) not on the target, e.g. "
                               << missing.front().substr(0, 200);
  EXPECT_TRUE(extra.empty()) << extra.size() << " target row(s) not on the source, e.g. "
                             << extra.front().substr(0, 200);
  EXPECT_GT(want.size(), 10000u);
}

std::string SlotsOf(TestDatabase& source) {
  absl::StatusOr<std::string> slots = source.QueryValue(absl::StrCat(
      "SELECT count(*) FROM pg_replication_slots WHERE database = '", source.name(), "'"));
  EXPECT_OK(slots);
  return slots.ok() ? *slots : "?";
}

class FollowTest : public ::testing::Test {
 protected:
  FollowTest() : source_("source"), target_("target", testing::SecondClusterDsn()) {}

  void SetUp() override {
    ASSERT_OK(source_.ExecScript(kSource));
    ASSERT_OK(target_.ExecScript(kTarget));
  }

  // pgbench writing to the source at `rate` transactions/s until stopped (or until the source
  // refuses writes after cutover, which ends its clients).
  Process StartWrites(int rate = 100, int seconds = 120) {
    absl::StatusOr<Process> writes = Process::Spawn(
        {testing::PgBinary("pgbench"), "-n", "-c", "2", "-j", "1", "-R", std::to_string(rate), "-T",
         std::to_string(seconds), "-f", "-", source_.dsn()},
        {}, std::string(kWrites));
    EXPECT_OK(writes);
    return std::move(writes).value();
  }

  CommandResult Cutover(const std::string& job) {
    return RunPgbackfill({"cutover", job, "--dsn", target_.dsn()});
  }

  // Waits for the run to follow, lets some changes through, cuts over and waits for the run.
  CommandResult FollowThenCutOver(Process& run, const std::string& job) {
    EXPECT_OK(run.WaitForOutput("\"event\":\"following\"", absl::Seconds(120)))
        << run.StdoutSoFar() << run.StderrSoFar();
    absl::SleepFor(absl::Seconds(2));
    CommandResult cutover = Cutover(job);
    EXPECT_EQ(cutover.exit_code, 0) << cutover.out << cutover.err;
    return run.Wait();
  }

  void ExpectSourceRefusesWrites(const std::string& job) {
    absl::Status refused = source_.ExecScript("INSERT INTO items (qty) VALUES (1)");
    EXPECT_FALSE(refused.ok());
    EXPECT_THAT(std::string(refused.message()),
                HasSubstr(absl::StrCat("was moved by pgbackfill job ", job, " to \"public\".")));
    EXPECT_EQ(SlotsOf(source_), "0") << "the slot outlived the cutover";
  }

  TestDatabase source_;
  TestDatabase target_;
};

TEST_F(FollowTest, WritesDuringTheCopyAndTheFollowReachTheTargetAndCutoverFreezesTheSource) {
  Process writes = StartWrites();
  auto run = SpawnPgbackfill(
      {"run", testing::WriteTestFile(Plan(source_, target_, "follow-all")), "--json"});
  ASSERT_OK(run);
  CommandResult finished = FollowThenCutOver(*run, "follow-all");
  ASSERT_EQ(finished.exit_code, 0) << finished.out << finished.err;
  (void)writes.Wait();
  const std::vector<events::Event> seen = testing::ReadEvents(finished.out);
  const std::optional<events::CutOver> cutover = testing::FirstEvent<events::CutOver>(seen);
  ASSERT_TRUE(cutover.has_value()) << finished.out;
  EXPECT_GE(cutover->lock_attempts, 1);
  EXPECT_THAT(cutover->sequences, ::testing::ElementsAre("public.items_id_seq"));
  const std::vector<events::Following> following = testing::EventsOf<events::Following>(seen);
  ASSERT_FALSE(following.empty());
  EXPECT_GT(following.back().changes, 0) << "the writes never reached the follow";
  // The verify phase after the cutover compares the frozen source with the target.
  const std::optional<events::MoveVerified> verified =
      testing::FirstEvent<events::MoveVerified>(seen);
  ASSERT_TRUE(verified.has_value()) << finished.out;
  EXPECT_EQ(verified->differing_ranges, 0);
  ExpectEqualTables(source_, target_);
  ExpectSourceRefusesWrites("follow-all");
  // The target's sequence continues where the source's stopped.
  ASSERT_OK_AND_ASSIGN(std::string next, target_.QueryValue("SELECT nextval('items_id_seq') > "
                                                            "(SELECT max(id) FROM items "
                                                            "WHERE id < 1000000)"));
  EXPECT_EQ(next, "t");
}

TEST_F(FollowTest, KillNineInTheCopyAndInTheFollowLosesAndDoublesNothing) {
  Process writes = StartWrites();
  const std::string plan = testing::WriteTestFile(Plan(source_, target_, "follow-kill"));
  {
    auto run = SpawnPgbackfill({"run", plan, "--json"});
    ASSERT_OK(run);
    ASSERT_OK(run->WaitForOutput("\"event\":\"progress\"")) << run->StderrSoFar();
    ASSERT_OK(run->Signal(SIGKILL));
    (void)run->Wait();
  }
  for (int kill = 0; kill < 2; ++kill) {  // in the catch-up, then in steady following
    auto run = SpawnPgbackfill({"run", plan, "--json"});
    ASSERT_OK(run);
    ASSERT_OK(run->WaitForOutput("\"event\":\"following\"", absl::Seconds(120)))
        << run->StdoutSoFar() << run->StderrSoFar();
    if (kill == 1) absl::SleepFor(absl::Seconds(3));
    ASSERT_OK(run->Signal(SIGKILL));
    (void)run->Wait();
  }
  auto run = SpawnPgbackfill({"run", plan, "--json"});
  ASSERT_OK(run);
  CommandResult finished = FollowThenCutOver(*run, "follow-kill");
  ASSERT_EQ(finished.exit_code, 0) << finished.out << finished.err;
  (void)writes.Wait();
  ExpectEqualTables(source_, target_);
  ExpectSourceRefusesWrites("follow-kill");
}

TEST_F(FollowTest, AnUpdateThatLeavesAToastedValueOutKeepsItOnTheTarget) {
  // label reads the TOASTed body: an UPDATE that leaves body out must not touch label either.
  const std::string plan =
      testing::WriteTestFile(Plan(source_, target_, "follow-toast", "upper(left(body, 8))"));
  auto run = SpawnPgbackfill({"run", plan, "--json"});
  ASSERT_OK(run);
  ASSERT_OK(run->WaitForOutput("\"event\":\"following\"", absl::Seconds(120)))
      << run->StderrSoFar();
  ASSERT_OK(source_.ExecScript(
      "UPDATE items SET qty = qty + 1000 WHERE body IS NOT NULL;"
      "UPDATE items SET id = id + 5000000 WHERE id IN (100, 200);"  // new key, body left out
      "UPDATE items SET body = 'short' WHERE id = 300;"));
  CommandResult cutover = Cutover("follow-toast");
  ASSERT_EQ(cutover.exit_code, 0) << cutover.out << cutover.err;
  CommandResult finished = run->Wait();
  ASSERT_EQ(finished.exit_code, 0) << finished.out << finished.err;
  ASSERT_OK_AND_ASSIGN(
      std::string target_rows,
      target_.QueryValue("SELECT string_agg(ROW(id, qty, label, md5(body))::text, ' ' ORDER BY "
                         "id) FROM items WHERE body IS NOT NULL AND id % 100 = 0"));
  ASSERT_OK_AND_ASSIGN(
      std::string source_rows,
      source_.QueryValue("SELECT string_agg(ROW(id, qty::bigint, upper(left(body, 8)), "
                         "md5(body))::text, ' ' ORDER BY id) FROM items WHERE body IS NOT NULL "
                         "AND id % 100 = 0"));
  EXPECT_EQ(target_rows, source_rows);
  EXPECT_THAT(target_rows, HasSubstr("(5000100,"));
}

TEST_F(FollowTest, OneLargeSourceTransactionIsAppliedWhole) {
  auto run = SpawnPgbackfill(
      {"run", testing::WriteTestFile(Plan(source_, target_, "follow-large")), "--json"});
  ASSERT_OK(run);
  ASSERT_OK(run->WaitForOutput("\"event\":\"following\"", absl::Seconds(120)))
      << run->StderrSoFar();
  // 20,000 updates and 30,000 inserts in one transaction: more than the spool keeps in memory.
  ASSERT_OK(source_.ExecScript(
      "BEGIN; UPDATE items SET qty = qty + 7, name = name || ' and more';"
      "INSERT INTO items (qty, name) SELECT g, repeat('y', 200) FROM generate_series(1, 30000) g;"
      "COMMIT;"));
  CommandResult cutover = Cutover("follow-large");
  ASSERT_EQ(cutover.exit_code, 0) << cutover.out << cutover.err;
  CommandResult finished = run->Wait();
  ASSERT_EQ(finished.exit_code, 0) << finished.out << finished.err;
  ExpectEqualTables(source_, target_);
}

TEST_F(FollowTest, TruncateOnTheSourceStopsTheFollowWithTheReasonAndRollbackCleansUp) {
  const std::string plan = testing::WriteTestFile(Plan(source_, target_, "follow-truncate"));
  auto run = SpawnPgbackfill({"run", plan, "--json"});
  ASSERT_OK(run);
  ASSERT_OK(run->WaitForOutput("\"event\":\"following\"", absl::Seconds(120)))
      << run->StderrSoFar();
  ASSERT_OK(source_.ExecScript("TRUNCATE items"));
  CommandResult stopped = run->Wait();
  EXPECT_NE(stopped.exit_code, 0);
  EXPECT_THAT(stopped.out + stopped.err, HasSubstr("was truncated; a move cannot follow"));
  // The slot stays for the operator to decide, and `status` says so; rollback removes it and
  // the publication.
  EXPECT_EQ(SlotsOf(source_), "1");
  CommandResult status = RunPgbackfill({"status", "follow-truncate", "--dsn", target_.dsn()});
  EXPECT_EQ(status.exit_code, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr("the slot holds WAL on the source"));
  CommandResult status_json =
      RunPgbackfill({"status", "follow-truncate", "--json", "--dsn", target_.dsn()});
  EXPECT_THAT(status_json.out, HasSubstr("\"slot_left\":true"));
  CommandResult rolled_back = RunPgbackfill({"rollback", plan});
  ASSERT_EQ(rolled_back.exit_code, 0) << rolled_back.out << rolled_back.err;
  EXPECT_EQ(SlotsOf(source_), "0");
  ASSERT_OK_AND_ASSIGN(std::string publications,
                       source_.QueryValue("SELECT count(*) FROM pg_publication"));
  EXPECT_EQ(publications, "0");
}

TEST_F(FollowTest, ATransformThatDoesNotCompileOnTheTargetIsRefusedBeforeAnySlot) {
  // The function exists on the source only: the copy evaluates it there, the follow could not.
  ASSERT_OK(source_.ExecScript(
      "CREATE FUNCTION source_only(text) RETURNS text LANGUAGE sql AS 'SELECT upper($1)'"));
  CommandResult run = RunPgbackfill(
      {"run", testing::WriteTestFile(Plan(source_, target_, "follow-bad", "source_only(name)")),
       "--json"});
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.out + run.err, HasSubstr("cannot be applied on the target"));
  EXPECT_THAT(run.out + run.err, HasSubstr("source_only"));
  EXPECT_EQ(SlotsOf(source_), "0");
  ASSERT_OK_AND_ASSIGN(std::string copied, target_.QueryValue("SELECT count(*) FROM items"));
  EXPECT_EQ(copied, "0");
}

}  // namespace
}  // namespace pgbackfill
