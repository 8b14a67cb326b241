// Expand-contract end to end through the binary: the phases with the application writing all
// the time (pgbench with a custom script doing INSERT, UPDATE of the source columns and DELETE),
// in UPDATE mode with the dual-write trigger and in copy mode with the sync trigger; rollback at
// every phase leaves the catalog as it was; phases run again are no-ops that say so.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <optional>

#include "absl/strings/str_cat.h"
#include "pgbackfill/events/events.h"
#include "support/run_events.h"
#include "support/run_helpers.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::CommandResult;
using testing::Process;
using testing::RunPgbackfill;
using testing::SpawnPgbackfill;
using testing::TestDatabase;

constexpr char kPeople[] =
    "CREATE TABLE people (id bigint PRIMARY KEY, first text NOT NULL, last text NOT NULL);"
    "INSERT INTO people SELECT g, 'f' || g, 'l' || g FROM generate_series(1, 60000) g;"
    "CREATE SEQUENCE people_new_id START 1000000;"
    "ANALYZE people;";

// The application: inserts, updates of the columns the backfill reads, deletes.
constexpr char kAppScript[] = R"(\set id random(1, 60000)
\set op random(1, 3)
\if :op = 1
INSERT INTO people (id, first, last) VALUES (nextval('people_new_id'), 'new' || :id, 'x');
\elif :op = 2
UPDATE people SET first = 'upd' || :id, last = last || '!' WHERE id = :id;
\else
DELETE FROM people WHERE id = :id;
\endif
)";

// The catalog of the test database that a migration can change, as one text: tables, columns,
// constraints, indexes, triggers, and functions in schema pgbackfill (the job store's tables are
// ours by design and stay; functions there would be the job's).
constexpr char kCatalogShape[] = R"sql(
SELECT string_agg(line, E'\n' ORDER BY line) FROM (
  SELECT 'col ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
         || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END AS line
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
   WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' AND a.attnum > 0
     AND NOT a.attisdropped
  UNION ALL
  SELECT 'con ' || conrelid::regclass || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
   WHERE connamespace = 'public'::regnamespace
  UNION ALL
  SELECT 'idx ' || indexrelid::regclass || ' ' || pg_get_indexdef(indexrelid) FROM pg_index
   WHERE indrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace)
  UNION ALL
  SELECT 'trg ' || tgrelid::regclass || ' ' || tgname FROM pg_trigger WHERE NOT tgisinternal
  UNION ALL
  SELECT 'fn ' || p.oid::regprocedure FROM pg_proc p
   WHERE p.pronamespace IN (SELECT oid FROM pg_namespace WHERE nspname IN ('public', 'pgbackfill'))
) lines
)sql";

class PhasesTest : public ::testing::Test {
 protected:
  std::vector<std::string> Args(const std::string& command, const std::string& plan) {
    return {command, plan, "--dsn", db_.dsn(), "--json"};
  }

  // pgbench running the application script against this test's database for `seconds`; returns
  // once the application has committed writes (an insert is one of every three).
  Process StartApp(int seconds) {
    const std::string script = testing::WriteTestFile(kAppScript, ".sql");
    auto app = Process::Spawn({testing::PgBinary("pgbench"), "-n", "-f", script, "-c", "2", "-j",
                               "2", "-T", std::to_string(seconds), db_.name()},
                              {{"PGDATABASE", db_.name()}});
    EXPECT_OK(app);
    EXPECT_TRUE(testing::Eventually([&] {
      return Count("SELECT count(*) FROM (SELECT FROM people WHERE id >= 1000000 LIMIT 1) s") ==
             "1";
    })) << "the application wrote nothing\n"
        << (app.ok() ? app->StderrSoFar() : "");
    return std::move(app).value();
  }

  std::string CatalogShape() {
    auto shape = db_.QueryValue(kCatalogShape);
    EXPECT_OK(shape);
    return shape.ok() ? *shape : "";
  }

  std::string Count(const std::string& sql) {
    auto value = db_.QueryValue(sql);
    EXPECT_OK(value) << sql;
    return value.ok() ? *value : "?";
  }

  TestDatabase db_;
};

std::string UpdatePlan(const std::string& extra = "") {
  return absl::StrCat(
      "version: 1\nname: full_name\ntable: people\n"
      "expand:\n  - ALTER TABLE people ADD COLUMN IF NOT EXISTS full_name text\n"
      "set:\n  full_name: first || ' ' || last\n"
      "dual_write: true\n"
      "not_null: [full_name]\n"
      "rollback:\n  - ALTER TABLE people DROP COLUMN IF EXISTS full_name\n"
      "batch: { rows: 100, min_rows: 100, max_rows: 100 }\nworkers: 2\n"
      "throttle: { application: off, interval: 200ms, max_replica_lag: 0, max_lock_waiters: 100 "
      "}\n",
      extra);
}

TEST_F(PhasesTest, UpdateModeWithDualWritesUnderConcurrentWrites) {
  ASSERT_OK(db_.ExecScript(kPeople));
  const std::string plan = testing::WriteTestFile(UpdatePlan());
  Process app = StartApp(6);
  CommandResult run = RunPgbackfill(Args("run", plan));
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  CommandResult app_done = app.Wait();
  ASSERT_EQ(app_done.exit_code, 0) << app_done.out << app_done.err;
  EXPECT_THAT(app_done.out, HasSubstr("number of failed transactions: 0"));

  // Every row, also those the application wrote during and after the backfill, is filled.
  EXPECT_EQ(Count("SELECT count(*) FROM people WHERE full_name IS DISTINCT FROM first || ' ' || last"),
            "0");
  EXPECT_NE(Count("SELECT count(*) FROM people WHERE id >= 1000000"), "0")
      << "the application inserted nothing; the test proves little";
  CommandResult verify = RunPgbackfill(Args("verify", plan));
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;

  CommandResult contract = RunPgbackfill(Args("contract", plan));
  ASSERT_EQ(contract.exit_code, 0) << contract.out << contract.err;
  EXPECT_EQ(Count("SELECT attnotnull::text FROM pg_attribute WHERE attrelid = 'people'::regclass"
                  " AND attname = 'full_name'"),
            "true");
  EXPECT_EQ(Count("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'people'::regclass AND NOT tgisinternal"),
            "0");
  EXPECT_EQ(Count("SELECT count(*) FROM pg_proc WHERE pronamespace = 'pgbackfill'::regnamespace"),
            "0");
  EXPECT_EQ(Count("SELECT count(*) FROM pg_constraint WHERE conrelid = 'people'::regclass"
                  " AND contype = 'c'"),
            "0")
      << "the NOT NULL helper's check constraint is gone";

  // Again: every phase says it had already run, and changes nothing.
  CommandResult again = RunPgbackfill(Args("contract", plan));
  EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_THAT(again.out, HasSubstr("had already run"));
  CommandResult rerun = RunPgbackfill({"run", plan, "--dsn", db_.dsn(), "--json", "--contract"});
  EXPECT_EQ(rerun.exit_code, 0) << rerun.out << rerun.err;
}

TEST_F(PhasesTest, VerifyFindsARowChangedBehindTheTriggersBack) {
  ASSERT_OK(db_.ExecScript(kPeople));
  const std::string plan = testing::WriteTestFile(UpdatePlan());
  CommandResult run = RunPgbackfill(Args("run", plan));
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  ASSERT_OK(db_.ExecScript("ALTER TABLE people DISABLE TRIGGER USER;"
                           "UPDATE people SET first = 'changed' WHERE id IN (7, 9);"
                           "ALTER TABLE people ENABLE TRIGGER USER;"));
  CommandResult verify = RunPgbackfill(Args("verify", plan));
  EXPECT_EQ(verify.exit_code, 4) << verify.out << verify.err;
  const std::optional<events::Verified> found =
      testing::FirstEvent<events::Verified>(testing::ReadEvents(verify.out));
  ASSERT_TRUE(found.has_value()) << verify.out;
  EXPECT_EQ(found->differing_rows, 2);
  EXPECT_THAT(found->first_keys, ElementsAre("7", "9"));
  CommandResult contract = RunPgbackfill(Args("contract", plan));
  EXPECT_EQ(contract.exit_code, 2) << "contract needs a passed verify";
}

TEST_F(PhasesTest, BackfillBeforeExpandIsRefused) {
  ASSERT_OK(db_.ExecScript(kPeople));
  CommandResult backfill = RunPgbackfill(Args("backfill", testing::WriteTestFile(UpdatePlan())));
  EXPECT_EQ(backfill.exit_code, 2) << backfill.out << backfill.err;
  EXPECT_THAT(backfill.out, HasSubstr("needs `pgbackfill expand`"));
}

// 20 ms asleep in every batch: long enough to be interrupted mid-backfill. (Also in the trigger,
// which evaluates `where` too: these tests run no application.)
constexpr char kSlowBatches[] = "where: (SELECT pg_catalog.pg_sleep(0.02)) IS NOT NULL\n";

TEST_F(PhasesTest, RollbackAfterExpandMidBackfillAndAfterBackfillRestoresTheCatalog) {
  ASSERT_OK(db_.ExecScript(kPeople));
  const std::string before = CatalogShape();
  const std::string plan = testing::WriteTestFile(UpdatePlan(kSlowBatches));

  // After expand.
  ASSERT_EQ(RunPgbackfill(Args("expand", plan)).exit_code, 0);
  EXPECT_NE(CatalogShape(), before) << "expand changed nothing; the test proves little";
  CommandResult rolled = RunPgbackfill(Args("rollback", plan));
  ASSERT_EQ(rolled.exit_code, 0) << rolled.out << rolled.err;
  EXPECT_EQ(CatalogShape(), before);
  EXPECT_EQ(Count("SELECT state FROM pgbackfill.jobs WHERE name = 'full_name'"), "rolled_back");
  CommandResult refused = RunPgbackfill(Args("run", plan));
  EXPECT_EQ(refused.exit_code, 2) << "a rolled-back job starts over only with --restart";

  // Mid-backfill: interrupted by SIGTERM after some batches, then rolled back.
  auto run = SpawnPgbackfill({"run", plan, "--dsn", db_.dsn(), "--json", "--restart"});
  ASSERT_OK(run);
  ASSERT_OK(run->WaitForOutput("\"event\":\"progress\"", absl::Seconds(60)));
  ASSERT_OK(run->Signal(SIGTERM));
  EXPECT_EQ(run->Wait().exit_code, 3);
  rolled = RunPgbackfill(Args("rollback", plan));
  ASSERT_EQ(rolled.exit_code, 0) << rolled.out << rolled.err;
  EXPECT_EQ(CatalogShape(), before);

  // After the backfill (and verify).
  CommandResult done = RunPgbackfill({"run", plan, "--dsn", db_.dsn(), "--json", "--restart"});
  ASSERT_EQ(done.exit_code, 0) << done.out << done.err;
  rolled = RunPgbackfill(Args("rollback", plan));
  ASSERT_EQ(rolled.exit_code, 0) << rolled.out << rolled.err;
  EXPECT_EQ(CatalogShape(), before);
  CommandResult again = RunPgbackfill(Args("rollback", plan));
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_THAT(again.out, HasSubstr("already been rolled back"));
}

TEST_F(PhasesTest, RollbackStopsARunningBackfillFirst) {
  ASSERT_OK(db_.ExecScript(kPeople));
  const std::string before = CatalogShape();
  const std::string plan = testing::WriteTestFile(UpdatePlan(kSlowBatches));
  auto run = SpawnPgbackfill(Args("run", plan));
  ASSERT_OK(run);
  ASSERT_OK(run->WaitForOutput("\"event\":\"progress\"", absl::Seconds(60)));
  CommandResult rolled = RunPgbackfill(Args("rollback", plan));
  ASSERT_EQ(rolled.exit_code, 0) << rolled.out << rolled.err;
  EXPECT_EQ(run->Wait().exit_code, 5) << "the running backfill was aborted";
  EXPECT_EQ(CatalogShape(), before);
}

// Copy mode into a new table, the classic bigint migration: expand creates the new table, the sync
// trigger keeps it in step with the application while the backfill copies the rest, and contract
// swaps the tables in one short transaction, dropping the trigger in it.
TEST_F(PhasesTest, CopyModeUnderConcurrentWritesThenSwap) {
  ASSERT_OK(db_.ExecScript(kPeople));
  const std::string plan = testing::WriteTestFile(
      "version: 1\nname: people_v2\ntable: people\ninto: people_v2\n"
      "expand:\n"
      "  - CREATE TABLE IF NOT EXISTS people_v2 (id bigint PRIMARY KEY, full_name text NOT NULL)\n"
      "columns:\n  id: id\n  full_name: first || ' ' || last\n"
      "on_conflict: update\n"
      "contract:\n"
      "  - ALTER TABLE people RENAME TO people_old; ALTER TABLE people_v2 RENAME TO people\n"
      "rollback:\n  - DROP TABLE IF EXISTS people_v2\n"
      "batch: { rows: 100, min_rows: 100, max_rows: 100 }\nworkers: 2\n"
      "throttle: { application: off, interval: 200ms, max_replica_lag: 0, max_lock_waiters: 100 "
      "}\n");
  Process app = StartApp(6);
  CommandResult run = RunPgbackfill(Args("run", plan));
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  CommandResult app_done = app.Wait();
  ASSERT_EQ(app_done.exit_code, 0) << app_done.out << app_done.err;
  EXPECT_THAT(app_done.out, HasSubstr("number of failed transactions: 0"));

  constexpr char kTransform[] = "SELECT id, first || ' ' || last FROM people";
  EXPECT_EQ(Count(absl::StrCat("SELECT count(*) FROM (", kTransform,
                               " EXCEPT SELECT id, full_name FROM people_v2) missing")),
            "0");
  EXPECT_EQ(Count(absl::StrCat("SELECT count(*) FROM (SELECT id, full_name FROM people_v2 EXCEPT ",
                               kTransform, ") ghosts")),
            "0");
  EXPECT_NE(Count("SELECT count(*) FROM people_v2 WHERE id >= 1000000"), "0");
  ASSERT_TRUE(testing::FirstEvent<events::Verified>(testing::ReadEvents(run.out)).has_value())
      << "run verifies copy mode too";

  // Two rows the application never touches (it stopped), copied by the trigger; then one target
  // row changed and one deleted behind the trigger's back: verify names both keys.
  ASSERT_OK(db_.ExecScript("INSERT INTO people VALUES (70001, 'a', 'b'), (70002, 'c', 'd');"
                           "UPDATE people_v2 SET full_name = 'x' WHERE id = 70001;"
                           "DELETE FROM people_v2 WHERE id = 70002;"));
  CommandResult verify = RunPgbackfill(Args("verify", plan));
  EXPECT_EQ(verify.exit_code, 4) << verify.out << verify.err;
  const std::optional<events::Verified> found =
      testing::FirstEvent<events::Verified>(testing::ReadEvents(verify.out));
  ASSERT_TRUE(found.has_value()) << verify.out;
  EXPECT_EQ(found->differing_rows, 2);
  EXPECT_THAT(found->first_keys, ElementsAre("70001", "70002"));
  // A no-op UPDATE through the trigger writes both rows again.
  ASSERT_OK(db_.ExecScript("UPDATE people SET first = first WHERE id IN (70001, 70002)"));
  CommandResult repaired = RunPgbackfill(Args("verify", plan));
  EXPECT_EQ(repaired.exit_code, 0) << repaired.out;

  CommandResult contract = RunPgbackfill(Args("contract", plan));
  ASSERT_EQ(contract.exit_code, 0) << contract.out << contract.err;
  EXPECT_EQ(Count("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal"), "0");
  EXPECT_EQ(Count("SELECT count(*) FROM people"), Count("SELECT count(*) FROM people_old"));
  EXPECT_EQ(Count("SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
                  " WHERE attrelid = 'people'::regclass AND attname = 'full_name'"),
            "text");
  // Every phase again, now that the plan no longer matches the swapped tables: all no-ops.
  CommandResult again = RunPgbackfill({"run", plan, "--dsn", db_.dsn(), "--json", "--contract"});
  EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
}

}  // namespace
}  // namespace pgbackfill
