// The dual-write and copy triggers (expand/triggers.h) and the copy-mode batch
// (batch::BuildCopyBatch) against the real server: what application writes do through the
// triggers, reinstalling and dropping them, and a batch racing a concurrent UPDATE or DELETE from
// another session (no lost update, no ghost row).
#include "pgbackfill/expand/triggers.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "pgbackfill/checkpoint/job_store.h"
#include "pgbackfill/sql/names.h"
#include "pgbackfill/batch/batch_sql.h"
#include "pgbackfill/pg/connection.h"
#include "pgbackfill/pg/error.h"
#include "pgbackfill/ranges/key_range.h"
#include "support/run_helpers.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill::expand {
namespace {

using ::testing::HasSubstr;
using testing::TestDatabase;

// As the expand phase runs them: one multi-statement string, so one transaction.
absl::Status Install(TestDatabase& db, const std::vector<std::string>& statements) {
  return db.ExecScript(absl::StrJoin(statements, ";\n"));
}

std::string Count(TestDatabase& db, const std::string& sql) {
  absl::StatusOr<std::string> value = db.QueryValue(sql);
  return value.ok() ? *value : std::string(value.status().message());
}

// Objects pgbackfill left behind: functions in its schema, triggers on `table`.
std::string Leftovers(TestDatabase& db, const std::string& table) {
  return Count(db,
               "SELECT (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = "
               "p.pronamespace WHERE n.nspname = 'pgbackfill') || '/' || (SELECT count(*) FROM "
               "pg_trigger WHERE tgrelid = '" + table + "'::regclass AND NOT tgisinternal)");
}

class TriggersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_.emplace(db_.conn());
    ASSERT_OK(store_->EnsureSchema());
  }

  // Rows of `a` not in `b` plus rows of `b` not in `a`: "0" when they hold the same rows.
  std::string Difference(const std::string& a, const std::string& b) {
    return Count(db_, "SELECT count(*) FROM ((" + a + " EXCEPT ALL " + b + ") UNION ALL (" + b +
                          " EXCEPT ALL " + a + ")) d");
  }

  TestDatabase db_;
  std::optional<checkpoint::JobStore> store_;
};

DualWriteSpec SplitName() {
  DualWriteSpec spec;
  spec.job = "split-name";
  spec.table = {"public", "users"};
  spec.set = {{"first_name", "first_word(full_name)", 1},
              {"Last Name", "split_part(t.full_name, ' ', 2) || coalesce(tg_op, '')", 2}};
  // `found` is also the name of a PL/pgSQL variable: the column must win.
  spec.where = "found IS NOT TRUE";
  spec.search_path = "\"$user\", public";
  return spec;
}

TEST_F(TriggersTest, DualWriteComputesSetColumnsOnInsertAndUpdate) {
  ASSERT_OK(db_.ExecScript(
      "CREATE FUNCTION public.first_word(text) RETURNS text LANGUAGE sql IMMUTABLE"
      "  AS $$ SELECT split_part($1, ' ', 1) $$;"
      "CREATE TABLE users (id bigint PRIMARY KEY, full_name text NOT NULL, first_name text,"
      " \"Last Name\" text, found boolean, tg_op text);"
      "INSERT INTO users VALUES (1, 'Old Row', NULL, NULL, NULL, NULL);"));
  ASSERT_OK(Install(db_, DualWriteInstallSql(SplitName())));
  ASSERT_OK(Install(db_, DualWriteInstallSql(SplitName()))) << "a second expand reinstalls";
  EXPECT_EQ(Leftovers(db_, "users"), "1/1");

  ASSERT_OK(db_.ExecScript(
      "INSERT INTO users (id, full_name, first_name) VALUES (2, 'Ada Lovelace', 'typed');"
      "INSERT INTO users (id, full_name, found) VALUES (3, 'Alan Turing', true);"
      "INSERT INTO users (id, full_name, tg_op) VALUES (4, 'Grace Hopper', '!');"
      "UPDATE users SET full_name = 'Edsger Dijkstra' WHERE id = 1;"));
  ASSERT_OK_AND_ASSIGN(
      std::string rows,
      db_.QueryValue("SELECT string_agg(id || ':' || coalesce(first_name, '-') || ':' || "
                     "coalesce(\"Last Name\", '-'), ' ' ORDER BY id) FROM users"));
  EXPECT_EQ(rows, "1:Edsger:Dijkstra 2:Ada:Lovelace 3:-:- 4:Grace:Hopper!");

  // Leaving `where` keeps the last computed values; entering it computes.
  ASSERT_OK(db_.ExecScript("UPDATE users SET found = true, full_name = 'A B' WHERE id = 2;"
                           "UPDATE users SET found = false WHERE id = 3;"));
  ASSERT_OK_AND_ASSIGN(
      std::string after,
      db_.QueryValue("SELECT string_agg(id || ':' || coalesce(first_name, '-') || ':' || "
                     "coalesce(\"Last Name\", '-'), ' ' ORDER BY id) FROM users "
                     "WHERE id IN (2, 3)"));
  EXPECT_EQ(after, "2:Ada:Lovelace 3:Alan:Turing");

  // A backfill batch marks its transaction: its own UPDATE is left alone (computed once).
  ASSERT_OK(db_.ExecScript(std::string("BEGIN; SET LOCAL ") + sql::kInBatchSetting +
                           " = on; UPDATE users SET first_name = 'batch' WHERE id = 4; COMMIT;"));
  EXPECT_EQ(Count(db_, "SELECT first_name FROM users WHERE id = 4"), "batch");

  // The application session's search_path does not decide what the expressions call: the
  // function pins the operator's.
  ASSERT_OK_AND_ASSIGN(pg::Connection app, pg::Connection::Connect(db_.dsn()));
  ASSERT_OK(app.ExecScript(
      "CREATE SCHEMA evil; CREATE FUNCTION evil.first_word(text) RETURNS text "
      "LANGUAGE sql AS $$ SELECT 'hacked' $$;"
      "SET search_path = evil, public;"
      "UPDATE users SET full_name = 'Barbara Liskov' WHERE id = 1;"));
  EXPECT_EQ(Count(db_, "SELECT first_name FROM users WHERE id = 1"), "Barbara");

  const TriggerNames names = NamesFor(SplitName().job, "dw");
  ASSERT_OK(Install(db_, DropTriggerSql(SplitName().table, names)));
  EXPECT_EQ(Leftovers(db_, "users"), "0/0");
  ASSERT_OK(Install(db_, DropTriggerSql(SplitName().table, names))) << "dropping twice is fine";
  ASSERT_OK(db_.ExecScript("DROP TABLE users"));
  EXPECT_OK(Install(db_, DropTriggerSql(SplitName().table, names))) << "also without the table";
}

CopySpec UsersToV2() {
  CopySpec spec;
  spec.job = "users-to-v2";
  spec.source = {"public", "users"};
  spec.source_key = {"tenant", "id"};
  spec.target = {"public", "users_v2"};
  spec.columns = {{"tenant_id", "tenant", 1},
                  {"user_id", "t.id", 2},
                  {"email", "lower(email)", 3},
                  {"Domain", "split_part(email, '@', 2)", 4}};
  spec.target_key = {"tenant_id", "user_id"};
  spec.where = "NOT deleted";
  spec.search_path = "public";
  return spec;
}

constexpr char kCopyTables[] =
    "CREATE TABLE users (tenant text NOT NULL, id int NOT NULL, email text,"
    " deleted boolean NOT NULL DEFAULT false, note text, PRIMARY KEY (tenant, id));"
    "CREATE TABLE users_v2 (tenant_id text NOT NULL, user_id bigint NOT NULL, email text,"
    " \"Domain\" text, copied_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (tenant_id, user_id));";

// The source as the target should hold it.
constexpr char kExpected[] =
    "SELECT tenant, id::bigint, lower(email), split_part(email, '@', 2) FROM users "
    "WHERE NOT deleted";
constexpr char kActual[] = "SELECT tenant_id, user_id, email, \"Domain\" FROM users_v2";

TEST_F(TriggersTest, CopyTriggerMirrorsApplicationWrites) {
  ASSERT_OK(db_.ExecScript(kCopyTables));
  ASSERT_OK(Install(db_, CopyTriggerInstallSql(UsersToV2())));
  ASSERT_OK(Install(db_, CopyTriggerInstallSql(UsersToV2()))) << "a second expand reinstalls";

  // The application's role may not touch users_v2 at all: the trigger writes as pgbackfill.
  const std::string app = db_.name() + "_app";
  ASSERT_OK(db_.ExecScript("CREATE ROLE \"" + app + "\" LOGIN;"
                           "GRANT SELECT, INSERT, UPDATE, DELETE ON users TO \"" + app + "\";"));
  {
    ASSERT_OK_AND_ASSIGN(pg::Connection conn, pg::Connection::Connect(db_.dsn() + " user=" + app));
    ASSERT_OK(conn.ExecScript(
        "INSERT INTO users (tenant, id, email) SELECT 't' || (g % 3), g, 'U' || g || '@Ex.org'"
        "  FROM generate_series(1, 30) g;"
        "UPDATE users SET email = 'New@Mail.net' WHERE id = 4;"          // value change
        "UPDATE users SET id = id + 100 WHERE id IN (5, 6);"             // key change
        "UPDATE users SET tenant = 'moved' WHERE id = 7;"                // key change, 1st column
        "UPDATE users SET deleted = true WHERE id IN (8, 9);"            // leaves `where`
        "UPDATE users SET deleted = false WHERE id = 9;"                 // comes back
        "UPDATE users SET note = 'untouched mapping' WHERE id = 10;"     // unmapped column
        "DELETE FROM users WHERE id IN (11, 12);"
        "UPDATE users SET id = 11 WHERE id = 13;"));                     // onto a deleted key
  }
  EXPECT_EQ(Difference(kExpected, kActual), "0");
  EXPECT_EQ(Count(db_, "SELECT count(*) FROM users_v2"), "27");
  EXPECT_EQ(Count(db_, "SELECT email FROM users_v2 WHERE user_id = 4"), "new@mail.net");

  // A row the target held before (on_conflict is for batches): the application's write wins.
  ASSERT_OK(db_.ExecScript("INSERT INTO users_v2 (tenant_id, user_id, email) VALUES "
                           "('t0', 300, 'stale');"
                           "INSERT INTO users (tenant, id, email) VALUES ('t0', 300, 'Fresh@x');"));
  EXPECT_EQ(Difference(kExpected, kActual), "0");

  // A contract that swaps the tables renames the source before the trigger is dropped by name.
  const TriggerNames names = NamesFor(UsersToV2().job, "copy");
  ASSERT_OK(db_.ExecScript("ALTER TABLE users RENAME TO users_old;"
                           "ALTER TABLE users_v2 RENAME TO users_new;"
                           "CREATE TABLE users (LIKE users_old);"));
  ASSERT_OK(Install(db_, DropTriggerSql(UsersToV2().source, names)));
  EXPECT_EQ(Leftovers(db_, "users_old"), "0/0");
  ASSERT_OK(db_.ExecScript("DROP TABLE users; ALTER TABLE users_old RENAME TO users;"
                           "ALTER TABLE users_new RENAME TO users_v2;"));
  ASSERT_OK(db_.ExecScript("INSERT INTO users (tenant, id) VALUES ('after', 1)"));
  EXPECT_EQ(Count(db_, "SELECT count(*) FROM users_v2 WHERE tenant_id = 'after'"), "0");
  EXPECT_OK(db_.ExecScript("DROP OWNED BY \"" + app + "\"; DROP ROLE \"" + app + "\";"));
}

batch::CopyBatchSpec BatchSpec(plan::OnConflict on_conflict) {
  const CopySpec copy = UsersToV2();
  batch::CopyBatchSpec spec;
  spec.source = copy.source;
  spec.key = {{"tenant", "text"}, {"id", "integer"}};
  spec.target = copy.target;
  spec.columns = copy.columns;
  spec.target_key = copy.target_key;
  spec.on_conflict = on_conflict;
  spec.where = copy.where;
  return spec;
}

checkpoint::JobRecord Job(const std::string& name) {
  checkpoint::JobRecord job;
  job.name = name;
  job.plan_hash = "test";
  job.plan_text = "version: 1\nthrottle: { application: off }\n";
  job.plan_file = "test.yaml";
  return job;
}

struct BatchResult {
  int64_t rows = 0;
  std::optional<ranges::KeyValue> done_upto;
  bool range_done = false;
};

// One batch of the job's single range (open at both ends) from `start` (nothing done yet when
// nullopt), as the runner sends it: the checkpoint is both the claim and the lower bound.
absl::StatusOr<BatchResult> RunBatch(pg::Connection& conn, const batch::CopyBatchSpec& spec,
                                     const std::string& job, int64_t rows,
                                     const std::optional<ranges::KeyValue>& start) {
  const sql::RangeEnds ends{start.has_value(), false};
  const batch::BatchParams p = batch::UpdateBatchParams(spec.key.size(), ends);
  std::vector<pg::Param> params(static_cast<size_t>(p.count));
  if (start.has_value()) {
    for (size_t i = 0; i < start->size(); ++i) {
      params[static_cast<size_t>(p.lower - 1) + i] = (*start)[i];
    }
  }
  params[static_cast<size_t>(p.rows - 1)] = std::to_string(rows);
  params[static_cast<size_t>(p.job - 1)] = job;
  params[static_cast<size_t>(p.range - 1)] = "1";
  params[static_cast<size_t>(p.checkpoint - 1)] = checkpoint::TextArrayLiteral(start);
  ASSIGN_OR_RETURN(pg::Result result, conn.Exec(batch::BuildCopyBatch(spec, ends), params));
  if (result.Rows() != 1) return absl::NotFoundError("the claim failed: no result row");
  BatchResult out;
  out.rows = std::stoll(std::string(result.Get(0, 0)));
  ASSIGN_OR_RETURN(out.done_upto, checkpoint::ParseTextArray(result.GetOptional(0, 1)));
  out.range_done = result.Get(0, 2) == "t";
  return out;
}

// Blocks until a session of this database waits for a lock (the racing writer queued behind the
// batch's row locks, or the batch behind the writer's). Polls from a session of its own, outside
// any transaction: pg_stat_activity is read once per transaction.
absl::Status WaitForLockWaiter(const std::string& dsn) {
  ASSIGN_OR_RETURN(pg::Connection watcher, pg::Connection::Connect(dsn));
  absl::Status status;
  const bool waited = static_cast<bool>(testing::Eventually([&] {
    absl::StatusOr<pg::Result> waiting =
        watcher.Exec("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                     "current_database() AND wait_event_type = 'Lock'");
    status = waiting.status();
    return !waiting.ok() || waiting->Get(0, 0) != "0";
  }, absl::Seconds(30)));
  RETURN_IF_ERROR(status);
  return waited ? absl::OkStatus() : absl::DeadlineExceededError("nobody waited for a lock");
}

TEST_F(TriggersTest, CopyBatchesFillTheTargetExactlyOnce) {
  ASSERT_OK(db_.ExecScript(std::string(kCopyTables) +
                           "INSERT INTO users (tenant, id, email, deleted)"
                           "  SELECT 't' || (g % 4), g, 'Mail' || g || '@Host' || (g % 7),"
                           "         g % 10 = 0 FROM generate_series(1, 1000) g;"));
  for (plan::OnConflict mode :
       {plan::OnConflict::kError, plan::OnConflict::kSkip, plan::OnConflict::kUpdate}) {
    SCOPED_TRACE(static_cast<int>(mode));
    ASSERT_OK(db_.ExecScript("TRUNCATE users_v2"));
    const std::string job = "fill-" + std::to_string(static_cast<int>(mode));
    ASSERT_OK(store_->CreateJob(Job(job), {{1, std::nullopt, std::nullopt}}));
    std::optional<ranges::KeyValue> start;
    int64_t written = 0;
    int batches = 0;
    for (bool done = false; !done; ++batches) {
      ASSERT_LT(batches, 100);
      ASSERT_OK_AND_ASSIGN(BatchResult result,
                           RunBatch(db_.conn(), BatchSpec(mode), job, 130, start));
      written += result.rows;
      start = result.done_upto;
      done = result.range_done;
    }
    EXPECT_EQ(batches, 8);
    EXPECT_EQ(written, 900);
    EXPECT_EQ(Difference(kExpected, kActual), "0");
    // A stale checkpoint (a batch of a killed run repeating) finds no claim and writes nothing.
    EXPECT_EQ(RunBatch(db_.conn(), BatchSpec(mode), job, 130, std::nullopt).status().code(),
              absl::StatusCode::kNotFound);
  }
}

TEST_F(TriggersTest, OnConflictDecidesAboutRowsTheTargetHeldBefore) {
  ASSERT_OK(db_.ExecScript(std::string(kCopyTables) +
                           "INSERT INTO users (tenant, id, email) VALUES ('a', 1, 'One@x'),"
                           " ('a', 2, 'Two@x');"
                           "INSERT INTO users_v2 (tenant_id, user_id, email, \"Domain\") VALUES"
                           " ('a', 1, 'one@x', 'x'),"       // equal to the copy (the trigger's)
                           " ('a', 2, 'other', 'x');"));    // different
  ASSERT_OK(store_->CreateJob(Job("c"), {{1, std::nullopt, std::nullopt}}));

  absl::StatusOr<BatchResult> error =
      RunBatch(db_.conn(), BatchSpec(plan::OnConflict::kError), "c", 10, std::nullopt);
  EXPECT_EQ(pg::SqlStateOf(error.status()), "22P02");
  EXPECT_THAT(error.status().message(),
              HasSubstr("\"public\".\"users_v2\" already holds a different row with key (a,2)"));

  ASSERT_OK_AND_ASSIGN(
      BatchResult skip,
      RunBatch(db_.conn(), BatchSpec(plan::OnConflict::kSkip), "c", 10, std::nullopt));
  EXPECT_EQ(skip.rows, 0);
  EXPECT_EQ(Count(db_, "SELECT email FROM users_v2 WHERE user_id = 2"), "other");

  ASSERT_OK(db_.ExecScript("UPDATE pgbackfill.ranges SET done_upto = NULL, state = 'pending'"));
  ASSERT_OK_AND_ASSIGN(
      BatchResult update,
      RunBatch(db_.conn(), BatchSpec(plan::OnConflict::kUpdate), "c", 10, std::nullopt));
  EXPECT_EQ(update.rows, 1) << "the equal row is left alone";
  EXPECT_EQ(Difference(kExpected, kActual), "0");

  // Error mode accepts a conflicting row that holds exactly the copy.
  ASSERT_OK(db_.ExecScript("UPDATE pgbackfill.ranges SET done_upto = NULL, state = 'pending'"));
  ASSERT_OK_AND_ASSIGN(
      BatchResult equal,
      RunBatch(db_.conn(), BatchSpec(plan::OnConflict::kError), "c", 10, std::nullopt));
  EXPECT_EQ(equal.rows, 0);
}

// A batch and an application write of the same source row, in both orders: the writer queued
// behind the batch's FOR SHARE lock, and the batch queued behind the writer's row lock. With the
// copy trigger installed (as expand leaves it), the target must end equal to the source.
TEST_F(TriggersTest, ConcurrentWritesDuringABatchLoseNothing) {
  ASSERT_OK(db_.ExecScript(std::string(kCopyTables) +
                           "INSERT INTO users (tenant, id, email)"
                           "  SELECT 't', g, 'Mail' || g || '@x' FROM generate_series(1, 200) g;"));
  ASSERT_OK(Install(db_, CopyTriggerInstallSql(UsersToV2())));
  ASSERT_OK_AND_ASSIGN(pg::Connection writer, pg::Connection::Connect(db_.dsn()));

  struct Race {
    const char* name;
    const char* write;
    bool batch_first;
    plan::OnConflict mode;
  };
  const std::vector<Race> races = {
      {"update after batch", "UPDATE users SET email = 'Late@x' WHERE id = 5", true,
       plan::OnConflict::kUpdate},
      {"update before batch", "UPDATE users SET email = 'Early@x' WHERE id = 6", false,
       plan::OnConflict::kUpdate},
      {"update before batch, error mode", "UPDATE users SET email = 'E@x' WHERE id = 7", false,
       plan::OnConflict::kError},
      {"update before batch, skip mode", "UPDATE users SET email = 'S@x' WHERE id = 8", false,
       plan::OnConflict::kSkip},
      {"delete after batch", "DELETE FROM users WHERE id = 9", true, plan::OnConflict::kUpdate},
      {"delete before batch", "DELETE FROM users WHERE id = 10", false,
       plan::OnConflict::kUpdate},
      {"key change before batch", "UPDATE users SET id = 1000 WHERE id = 11", false,
       plan::OnConflict::kUpdate},
  };
  int job_number = 0;
  for (const Race& race : races) {
    SCOPED_TRACE(race.name);
    ASSERT_OK(db_.ExecScript("TRUNCATE users_v2"));
    const std::string job = "race-" + std::to_string(++job_number);
    ASSERT_OK(store_->CreateJob(Job(job), {{1, std::nullopt, std::nullopt}}));
    // No ASSERT while a thread runs: leaving the scope with it joinable would abort the binary.
    absl::Status written;
    absl::StatusOr<BatchResult> batch = absl::UnknownError("not run");
    absl::Status waited;
    if (race.batch_first) {
      ASSERT_OK(db_.Exec("BEGIN").status());
      batch = RunBatch(db_.conn(), BatchSpec(race.mode), job, 100000, std::nullopt);
      std::thread app([&] { written = writer.ExecScript(race.write); });
      waited = WaitForLockWaiter(db_.dsn());  // the write waits for the batch's row lock
      absl::Status committed = db_.Exec("COMMIT").status();
      app.join();
      ASSERT_OK(committed);
    } else {
      ASSERT_OK(writer.ExecScript(std::string("BEGIN; ") + race.write));
      std::thread runner(
          [&] { batch = RunBatch(db_.conn(), BatchSpec(race.mode), job, 100000, std::nullopt); });
      waited = WaitForLockWaiter(db_.dsn());  // the batch waits for the writer's row lock
      written = writer.ExecScript("COMMIT");
      runner.join();
    }
    ASSERT_OK(waited);
    ASSERT_OK(batch.status());
    ASSERT_OK(written);
    EXPECT_TRUE(batch->range_done);
    EXPECT_EQ(Difference(kExpected, kActual), "0");
  }
}

}  // namespace
}  // namespace pgbackfill::expand
