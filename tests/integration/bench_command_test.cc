// `pgbackfill bench PLAN` through the binary: it measures the plan's backfill on a scratch copy,
// reports what it promises, cleans up after itself (also after a signal, and after a kill -9 at
// the next bench), and never writes the original table.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <csignal>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "pgbackfill/events/events.h"
#include "support/run_events.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill {
namespace {

using ::testing::HasSubstr;
using testing::CommandResult;
using testing::RunPgbackfill;
using testing::SpawnPgbackfill;
using testing::TestDatabase;

constexpr char kTable[] =
    "CREATE TABLE items (id bigint PRIMARY KEY, price int NOT NULL, cents bigint,"
    "  label text GENERATED ALWAYS AS ('item ' || id) STORED);"
    "CREATE INDEX items_price ON items (price);"
    "INSERT INTO items (id, price) SELECT g * 3, g % 1000 FROM generate_series(1, 30000) g;"
    "ANALYZE items;";
constexpr int64_t kRows = 30000;

std::string Plan(const std::string& extra = "") {
  return absl::StrCat(
      "version: 1\nthrottle: { application: off }\nname: items-cents\ntable: items\nset:\n  cents: "
      "price * 100\n",
      extra, "batch: { rows: 1000, min_rows: 1000, max_rows: 1000 }\nworkers: 2\n");
}

class BenchCommandTest : public ::testing::Test {
 protected:
  // Everything about the original that a write would change: its rows, its statistics' write
  // counters and its triggers.
  std::string Fingerprint() {
    auto rows = db_.QueryValue(
        "SELECT md5(string_agg(i::text, ',' ORDER BY id)) FROM items i");
    auto writes = db_.QueryValue(
        "SELECT n_tup_upd + n_tup_del + n_tup_hot_upd FROM pg_stat_user_tables "
        "WHERE relname = 'items'");
    auto triggers = db_.QueryValue(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass");
    EXPECT_OK(rows);
    EXPECT_OK(writes);
    EXPECT_OK(triggers);
    return absl::StrCat(rows.value_or("?"), "/", writes.value_or("?"), "/",
                        triggers.value_or("?"));
  }

  // Tables and jobs the bench leaves behind.
  std::string Leftovers() {
    auto tables = db_.QueryValue(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'pgbackfill' AND c.relname LIKE 'bench %' AND c.relkind = 'r'");
    auto jobs = db_.QueryValue("SELECT count(*) FROM pgbackfill.jobs WHERE name LIKE '%:bench'");
    EXPECT_OK(tables);
    EXPECT_OK(jobs);
    return absl::StrCat(tables.value_or("?"), " table(s), ", jobs.value_or("?"), " job(s)");
  }

  // Lets the statistics collector catch up before reading write counters.
  void SettleStats() { ASSERT_OK(db_.Exec("SELECT pg_stat_force_next_flush()").status()); }

  TestDatabase db_;
};

TEST_F(BenchCommandTest, MeasuresASampleAndNeverWritesTheOriginal) {
  ASSERT_OK(db_.ExecScript(kTable));
  SettleStats();
  const std::string before = Fingerprint();
  const std::string plan = testing::WriteTestFile(Plan());
  CommandResult result =
      RunPgbackfill({"bench", plan, "--dsn", db_.dsn(), "--rows", "10000", "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;

  const std::vector<events::Event> events = testing::ReadEvents(result.out);
  const std::optional<events::BenchFinished> report =
      testing::FirstEvent<events::BenchFinished>(events);
  ASSERT_TRUE(report.has_value()) << result.out;
  EXPECT_EQ(report->table, "\"public\".\"items\"");
  EXPECT_EQ(report->scratch_rows, 10000);
  EXPECT_FALSE(report->whole_table);
  EXPECT_EQ(report->outcome, "done");
  EXPECT_EQ(report->rows, 10000);
  EXPECT_GE(report->batches, 10) << "1000-row batches";
  EXPECT_GT(report->rows_per_second, 0);
  const events::BatchMillis& batch_ms = report->batch_ms;
  for (const auto& [p, ms] : {std::pair{"p50", batch_ms.p50}, std::pair{"p95", batch_ms.p95},
                              std::pair{"p99", batch_ms.p99}, std::pair{"max", batch_ms.max}}) {
    EXPECT_TRUE(ms.has_value()) << p << ": " << testing::EventText(*report);
  }
  EXPECT_LE(batch_ms.p50.value_or(0), batch_ms.p99.value_or(0));
  EXPECT_EQ(report->retries, 0);
  // held_seconds is a number, or the event would not have decoded; it is never negative.
  EXPECT_GE(report->held_seconds, 0);
  EXPECT_EQ(report->production_rows, kRows);
  EXPECT_TRUE(report->production_seconds.has_value());
  // The backfill ran as its own job on the scratch table.
  const std::optional<events::JobStarted> started = testing::FirstEvent<events::JobStarted>(events);
  ASSERT_TRUE(started.has_value());
  EXPECT_EQ(started->job, "items-cents:bench");
  EXPECT_EQ(started->table, "\"pgbackfill\".\"bench items-cents\"");

  SettleStats();
  EXPECT_EQ(Fingerprint(), before) << "the original table was written";
  EXPECT_EQ(Leftovers(), "0 table(s), 0 job(s)");
}

TEST_F(BenchCommandTest, ASmallTableIsCopiedWholeWithItsStorageParameters) {
  ASSERT_OK(db_.ExecScript(absl::StrCat(kTable, "ALTER TABLE items SET (fillfactor = 70);")));
  const std::string plan = testing::WriteTestFile(Plan());
  CommandResult result =
      RunPgbackfill({"bench", plan, "--dsn", db_.dsn(), "--rows", "50000", "--keep"});
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  // fillfactor decides whether an UPDATE stays on its page (HOT): the copy must have it.
  ASSERT_OK_AND_ASSIGN(std::string options,
                       db_.QueryValue("SELECT array_to_string(reloptions, ',') FROM pg_class "
                                      "WHERE oid = 'pgbackfill.\"bench items-cents\"'::regclass"));
  EXPECT_EQ(options, "fillfactor=70");
  EXPECT_EQ(Leftovers(), "1 table(s), 1 job(s)") << "--keep keeps them";
  EXPECT_THAT(result.out, AllOf(HasSubstr("30000 rows (the whole table)"), HasSubstr("rows/s"),
                                HasSubstr("batch latency     p50 "), HasSubstr("throttle held"),
                                HasSubstr("estimate for \"public\".\"items\": 30000 rows")));
}

TEST_F(BenchCommandTest, SignalledOrKilledBenchLeavesTheOriginalAlone) {
  ASSERT_OK(db_.ExecScript(kTable));
  SettleStats();
  const std::string before = Fingerprint();
  // 200 ms per batch (~40 batches on 2 workers), so the bench is still running when the signal
  // comes after its first progress event.
  const std::string plan = testing::WriteTestFile(
      Plan("where: (SELECT pg_catalog.pg_sleep(0.2)) IS NOT NULL\n"));
  const std::vector<std::string> args = {"bench", plan, "--dsn", db_.dsn(), "--json"};

  ASSERT_OK_AND_ASSIGN(testing::Process term, SpawnPgbackfill(args));
  ASSERT_OK(term.WaitForOutput("\"event\":\"progress\"", absl::Seconds(60))) << term.StderrSoFar();
  ASSERT_OK(term.Signal(SIGTERM));
  CommandResult stopped = term.Wait();
  EXPECT_EQ(stopped.exit_code, 3) << stopped.out << stopped.err;
  EXPECT_EQ(Leftovers(), "0 table(s), 0 job(s)") << "a signalled bench cleans up";

  ASSERT_OK_AND_ASSIGN(testing::Process killed, SpawnPgbackfill(args));
  ASSERT_OK(killed.WaitForOutput("\"event\":\"progress\"", absl::Seconds(60)));
  ASSERT_OK(killed.Signal(SIGKILL));
  (void)killed.Wait();
  EXPECT_EQ(Leftovers(), "1 table(s), 1 job(s)") << "kill -9 leaves the scratch copy";

  // The next bench of the plan starts by dropping what the killed one left.
  CommandResult again = RunPgbackfill({"bench", plan, "--dsn", db_.dsn(), "--rows", "2000"});
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_EQ(Leftovers(), "0 table(s), 0 job(s)");
  SettleStats();
  EXPECT_EQ(Fingerprint(), before) << "the original table was written";
}

TEST_F(BenchCommandTest, APlanThatCannotRunIsRefusedBeforeAnyCopy) {
  ASSERT_OK(db_.ExecScript(kTable));
  const std::string plan = testing::WriteTestFile(
      "version: 1\nthrottle: { application: off }\nname: broken\ntable: items\nset:\n  cents: "
      "price * nonsense\n");
  CommandResult result = RunPgbackfill({"bench", plan, "--dsn", db_.dsn()});
  EXPECT_EQ(result.exit_code, 2) << result.out << result.err;
  EXPECT_THAT(result.err, AllOf(HasSubstr("preflight"), HasSubstr("set.cents"),
                                HasSubstr("nonsense")));
  ASSERT_OK_AND_ASSIGN(std::string tables,
                       db_.QueryValue("SELECT count(*) FROM pg_class WHERE relname LIKE 'bench %'"));
  EXPECT_EQ(tables, "0");
}

TEST_F(BenchCommandTest, CopyModeWritesOnlyScratchTwins) {
  ASSERT_OK(db_.ExecScript(absl::StrCat(
      kTable, "CREATE TABLE items_v2 (id bigint PRIMARY KEY, cents bigint NOT NULL);")));
  const std::string plan = testing::WriteTestFile(
      "version: 1\nthrottle: { application: off }\nname: items-v2\ntable: items\ninto: "
      "items_v2\ncolumns:\n  id: id\n"
      "  cents: price * 100\nbatch: { rows: 2000 }\nworkers: 2\n");
  CommandResult result =
      RunPgbackfill({"bench", plan, "--dsn", db_.dsn(), "--rows", "8000", "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  const std::optional<events::BenchFinished> report =
      testing::FirstEvent<events::BenchFinished>(testing::ReadEvents(result.out));
  ASSERT_TRUE(report.has_value()) << result.out;
  EXPECT_EQ(report->rows, 8000);
  ASSERT_OK_AND_ASSIGN(std::string target, db_.QueryValue("SELECT count(*) FROM items_v2"));
  EXPECT_EQ(target, "0") << "the real target was written";
  ASSERT_OK_AND_ASSIGN(std::string triggers,
                       db_.QueryValue("SELECT count(*) FROM pg_trigger WHERE tgrelid = "
                                      "'items'::regclass"));
  EXPECT_EQ(triggers, "0");
  EXPECT_EQ(Leftovers(), "0 table(s), 0 job(s)");
}

}  // namespace
}  // namespace pgbackfill
