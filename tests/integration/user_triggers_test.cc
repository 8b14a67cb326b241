// The written table's own triggers (README "The table's own triggers"): `check` lists those the
// batches fire and warns, a default run fires them for every row, `triggers: skip` fires none
// (session_replication_role = replica in each batch transaction) and is refused before any change
// for a role that may not set it, and a trigger's WHEN clause can test pgbackfill.in_batch instead.
//
// The plans use `n = n + 1`: a row touched twice would show n = 2, one skipped n = 0.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <optional>
#include <string>
#include <utility>
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

using nlohmann::json;
using ::testing::AllOf;
using testing::CommandResult;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::Process;
using testing::RunPgbackfill;
using testing::SpawnPgbackfill;
using testing::TestDatabase;

constexpr int64_t kRows = 3000;

// `items` with an updated_at touch trigger and an audit trigger, as an application has them, and
// triggers a backfill of `n` must not meet: UPDATE OF another column, INSERT only, disabled.
std::string ItemsTable(int64_t rows) {
  return absl::StrCat(R"(
    CREATE TABLE items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0, note text,
                        updated_at timestamptz NOT NULL DEFAULT '2000-01-01');
    INSERT INTO items (id) SELECT g FROM generate_series(1, )",
                      rows, R"() g;
    CREATE TABLE audit (item_id bigint, op text);
    CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql
      AS $$BEGIN NEW.updated_at := now(); RETURN NEW; END$$;
    CREATE FUNCTION log_audit() RETURNS trigger LANGUAGE plpgsql
      AS $$BEGIN INSERT INTO audit VALUES (NEW.id, TG_OP); RETURN NULL; END$$;
    CREATE TRIGGER touch BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION touch();
    CREATE TRIGGER audit AFTER UPDATE ON items FOR EACH ROW EXECUTE FUNCTION log_audit();
    CREATE TRIGGER note_changed AFTER UPDATE OF note ON items FOR EACH ROW
      EXECUTE FUNCTION log_audit();
    CREATE TRIGGER inserted AFTER INSERT ON items FOR EACH ROW EXECUTE FUNCTION log_audit();
    CREATE TRIGGER off BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION touch();
    ALTER TABLE items DISABLE TRIGGER off;
    ANALYZE items;
  )");
}

std::string ItemsPlan(const std::string& extra = "") {
  return absl::StrCat("version: 1\nname: items\nthrottle: { application: off }\ntable: items\n",
                      "set:\n  n: n + 1\n", extra);
}

class UserTriggersTest : public testing::RunTest {
 protected:
  json CheckJson(const std::string& plan_text, int expected_exit, const std::string& dsn = "") {
    CommandResult result = RunPgbackfill({"check", testing::WriteTestFile(plan_text), "--dsn",
                                          dsn.empty() ? db_.dsn() : dsn, "--json"});
    EXPECT_EQ(result.exit_code, expected_exit) << result.out << result.err;
    json parsed = json::parse(result.out, nullptr, false);
    EXPECT_FALSE(parsed.is_discarded()) << "not JSON: " << result.out << result.err;
    return parsed;
  }

  // name -> fires, for every trigger `check` listed.
  static std::vector<std::pair<std::string, bool>> Listed(const json& report) {
    std::vector<std::pair<std::string, bool>> listed;
    for (const json& trigger : report["triggers"]) {
      listed.emplace_back(trigger["name"].get<std::string>(), trigger["fires"].get<bool>());
    }
    return listed;
  }

  static std::string Joined(const json& strings) {
    std::string all;
    for (const json& text : strings) all += text.get<std::string>() + "\n";
    return all;
  }

  int64_t Count(const std::string& sql) {
    absl::StatusOr<std::string> value = db_.QueryValue(sql);
    EXPECT_OK(value);
    return value.ok() ? std::stoll(*value) : -1;
  }

  int64_t AuditRows() { return Count("SELECT count(*) FROM audit"); }
  int64_t TouchedRows() {
    return Count("SELECT count(*) FROM items WHERE updated_at <> '2000-01-01'");
  }
};

TEST_F(UserTriggersTest, CheckListsTheUpdateTriggersABatchFiresAndWarns) {
  ASSERT_OK(db_.ExecScript(ItemsTable(kRows)));
  const json report = CheckJson(ItemsPlan(), 0);
  EXPECT_TRUE(report["ok"].get<bool>()) << Joined(report["problems"]);
  // Not `note_changed` (UPDATE OF a column the plan does not set), `inserted`, or `off`.
  EXPECT_THAT(Listed(report), ElementsAre(std::pair{"audit", true}, std::pair{"touch", true}));
  EXPECT_EQ(report["triggers"][1]["enabled"], "origin");
  EXPECT_THAT(report["triggers"][1]["definition"].get<std::string>(),
              HasSubstr("CREATE TRIGGER touch BEFORE UPDATE ON public.items"));
  EXPECT_THAT(Joined(report["warnings"]),
              AllOf(HasSubstr("triggers: every row the batches UPDATE in \"public\".\"items\" "
                              "fires its trigger(s) \"audit\", \"touch\""),
                    HasSubstr("triggers: skip"), HasSubstr("pgbackfill.in_batch")));

  // An UPDATE OF trigger is met once the plan sets one of its columns.
  const json with_note = CheckJson(ItemsPlan("  note: '''x'''\n"), 0);
  EXPECT_THAT(Listed(with_note),
              ElementsAre(std::pair{"audit", true}, std::pair{"note_changed", true},
                          std::pair{"touch", true}));

  CommandResult text =
      RunPgbackfill({"check", testing::WriteTestFile(ItemsPlan()), "--dsn", db_.dsn()});
  EXPECT_EQ(text.exit_code, 0) << text.out << text.err;
  EXPECT_THAT(text.out, AllOf(HasSubstr("trigger   \"audit\" on public.items fires"),
                              HasSubstr("warning   ")));
}

TEST_F(UserTriggersTest, CheckWithSkipMarksThemSkippedAndNamesWhatReplicaModeStillFires) {
  ASSERT_OK(db_.ExecScript(ItemsTable(kRows)));
  ASSERT_OK(
      db_.ExecScript("CREATE TRIGGER always_on AFTER UPDATE ON items FOR EACH STATEMENT"
                     "  EXECUTE FUNCTION log_audit();"
                     "ALTER TABLE items ENABLE ALWAYS TRIGGER always_on;"
                     "CREATE TRIGGER replica_only AFTER UPDATE ON items FOR EACH ROW"
                     "  EXECUTE FUNCTION log_audit();"
                     "ALTER TABLE items ENABLE REPLICA TRIGGER replica_only;"));
  const json fire = CheckJson(ItemsPlan(), 0);
  EXPECT_THAT(Listed(fire),
              ElementsAre(std::pair{"always_on", true}, std::pair{"audit", true},
                          std::pair{"replica_only", false}, std::pair{"touch", true}));

  const json skip = CheckJson(ItemsPlan("triggers: skip\n"), 0);
  EXPECT_TRUE(skip["ok"].get<bool>()) << Joined(skip["problems"]);
  EXPECT_THAT(Listed(skip),
              ElementsAre(std::pair{"always_on", true}, std::pair{"audit", false},
                          std::pair{"replica_only", true}, std::pair{"touch", false}));
  EXPECT_THAT(Joined(skip["warnings"]),
              AllOf(HasSubstr(":7: triggers: skip leaves out only triggers enabled as usual: "
                              "\"always_on\", \"replica_only\""),
                    Not(HasSubstr("\"audit\""))));
  EXPECT_THAT(Joined(skip["notes"]), HasSubstr("do not fire \"audit\", \"touch\""));
  EXPECT_THAT(skip["batch_sql"][2].get<std::string>(),
              HasSubstr("pg_catalog.set_config('session_replication_role', 'replica', true)"));
  EXPECT_THAT(fire["batch_sql"][2].get<std::string>(), Not(HasSubstr("session_replication_role")));
}

TEST_F(UserTriggersTest, CheckWithSkipWarnsAboutForeignKeysOfWrittenColumnsOnly) {
  ASSERT_OK(db_.ExecScript(
      "CREATE TABLE owners (id int PRIMARY KEY);"
      "CREATE TABLE things (id int PRIMARY KEY, owner_id int REFERENCES owners,"
      "  other_id int REFERENCES owners, n int NOT NULL DEFAULT 0);"
      "INSERT INTO owners VALUES (1);"
      "INSERT INTO things (id, owner_id) SELECT g, 1 FROM generate_series(1, 10) g;"));
  const std::string plan =
      "version: 1\nname: things\ntable: things\nset:\n  owner_id: owner_id\ntriggers: skip\n";
  const json report = CheckJson(plan, 0);
  EXPECT_THAT(Joined(report["warnings"]),
              AllOf(HasSubstr("skip also skips the foreign keys \"things_owner_id_fkey\" "
                              "(public.things -> public.owners)"),
                    Not(HasSubstr("things_other_id_fkey"))));
  const json fire =
      CheckJson("version: 1\nname: things\ntable: things\nset:\n  owner_id: owner_id\n", 0);
  EXPECT_THAT(Joined(fire["warnings"]), Not(HasSubstr("foreign key")));
}

TEST_F(UserTriggersTest, DefaultRunFiresEveryTriggerOncePerRowWritten) {
  ASSERT_OK(db_.ExecScript(ItemsTable(kRows)));
  CommandResult result = RunPgbackfill(RunArgs(testing::WriteTestFile(ItemsPlan())));
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  ExpectEveryRowOnce("items", kRows);
  const std::vector<events::Event> events = testing::ReadEvents(result.out);
  const std::optional<events::JobFinished> finished =
      testing::FirstEvent<events::JobFinished>(events);
  ASSERT_TRUE(finished.has_value());
  EXPECT_EQ(AuditRows(), finished->rows) << "one audit row per row backfilled";
  EXPECT_EQ(AuditRows(), kRows);
  EXPECT_EQ(TouchedRows(), kRows) << "the touch trigger rewrote every updated_at";
  bool warned = false;
  for (const events::Warning& warning : testing::EventsOf<events::Warning>(events)) {
    warned |= warning.message.find("\"audit\", \"touch\"") != std::string::npos;
  }
  EXPECT_TRUE(warned) << "the run repeats check's warning: " << result.out;
}

TEST_F(UserTriggersTest, SkipRunFiresNoTriggerAndWritesEveryRowOnce) {
  ASSERT_OK(db_.ExecScript(ItemsTable(kRows)));
  CommandResult result =
      RunPgbackfill(RunArgs(testing::WriteTestFile(ItemsPlan("triggers: skip\n"))));
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  ExpectEveryRowOnce("items", kRows);
  EXPECT_EQ(AuditRows(), 0);
  EXPECT_EQ(TouchedRows(), 0) << "updated_at must keep its value";
  // The role was the batch transaction's own: the application's writes fire the triggers.
  ASSERT_OK(db_.ExecScript("UPDATE items SET note = 'app' WHERE id = 1"));
  EXPECT_EQ(AuditRows(), 2) << "audit and note_changed";
  EXPECT_EQ(TouchedRows(), 1);
}

TEST_F(UserTriggersTest, SkipRunInterruptedAndResumedWritesEveryRowOnceAndFiresNothing) {
  constexpr int64_t kManyRows = 20000;
  ASSERT_OK(db_.ExecScript(ItemsTable(kManyRows)));
  // 10 ms more per batch of 40 rows: long enough a run to be stopped in the middle.
  const std::string plan = testing::WriteTestFile(
      ItemsPlan("triggers: skip\nwhere: (SELECT pg_catalog.pg_sleep(0.01)) IS NOT NULL\n"
                "batch: { rows: 40, min_rows: 40, max_rows: 40 }\nworkers: 2\n"));
  absl::StatusOr<Process> process = SpawnPgbackfill(RunArgs(plan));
  ASSERT_OK(process);
  ASSERT_OK(process->WaitForOutput("\"event\":\"progress\"", absl::Seconds(60)))
      << process->StderrSoFar();
  ASSERT_OK(process->Signal(SIGTERM));
  CommandResult interrupted = process->Wait();
  EXPECT_EQ(interrupted.exit_code, 3) << interrupted.out << interrupted.err;
  const int64_t done = Count("SELECT count(*) FROM items WHERE n = 1");
  EXPECT_GT(done, 0);
  EXPECT_LT(done, kManyRows) << "the run finished before the signal; use more rows";
  EXPECT_EQ(Count("SELECT count(*) FROM items WHERE n > 1"), 0);

  CommandResult resumed = RunPgbackfill(RunArgs(plan));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.out << resumed.err;
  ExpectEveryRowOnce("items", kManyRows);
  EXPECT_EQ(AuditRows(), 0);
  EXPECT_EQ(TouchedRows(), 0);
}

// A login role that may read and update `items`, create the job store and see the standby's
// replay position (pg_monitor, for the throttle), nothing more; dropped (with what it owns and
// was granted) at the end of the scope.
class ScopedRole {
 public:
  ScopedRole(TestDatabase& db, std::string name) : db_(db), name_(std::move(name)) {}
  ~ScopedRole() {
    EXPECT_OK(
        db_.ExecScript(absl::StrCat("DROP OWNED BY \"", name_, "\"; DROP ROLE \"", name_, "\";")));
  }
  absl::Status Create() {
    return db_.ExecScript(absl::StrCat("CREATE ROLE \"", name_, "\" LOGIN;",
                                       "GRANT SELECT, UPDATE ON items TO \"", name_, "\";",
                                       "GRANT CREATE ON DATABASE \"", db_.name(), "\" TO \"", name_,
                                       "\";", "GRANT pg_monitor TO \"", name_, "\";"));
  }
  std::string Dsn() const { return absl::StrCat(db_.dsn(), " user=", name_); }
  const std::string& name() const { return name_; }

 private:
  TestDatabase& db_;
  std::string name_;
};

TEST_F(UserTriggersTest, SkipIsRefusedBeforeAnyChangeForARoleThatMayNotSetTheReplicationRole) {
  ASSERT_OK(db_.ExecScript(ItemsTable(kRows)));
  // Roles are cluster-wide: named after this process, which runs one test at a time. (The
  // database's name is too long to take a suffix within 63 bytes.)
  ScopedRole role(db_, absl::StrCat("trg_writer_", getpid()));
  ASSERT_OK(role.Create());
  const std::string plan = testing::WriteTestFile(ItemsPlan("triggers: skip\n"));

  CommandResult checked = RunPgbackfill({"check", plan, "--dsn", role.Dsn(), "--json"});
  EXPECT_EQ(checked.exit_code, 2) << checked.out << checked.err;
  EXPECT_THAT(checked.out, AllOf(HasSubstr(plan +
                                           ":7: triggers: skip sets session_replication_role = "
                                           "replica in each batch transaction, which role \\\"" +
                                           role.name() + "\\\" may not"),
                                 HasSubstr("GRANT SET ON PARAMETER session_replication_role")));

  CommandResult refused = RunPgbackfill({"run", plan, "--dsn", role.Dsn(), "--json"});
  EXPECT_EQ(refused.exit_code, 2) << refused.out << refused.err;
  EXPECT_THAT(refused.out + refused.err, HasSubstr("triggers: skip sets session_replication_role"));
  EXPECT_EQ(Count("SELECT count(*) FROM items WHERE n <> 0"), 0)
      << "a refused plan changes nothing";
  EXPECT_EQ(Count("SELECT count(*) FROM pg_namespace WHERE nspname = 'pgbackfill'"), 0)
      << "not even the job store";
  EXPECT_EQ(AuditRows(), 0);

  // PostgreSQL 15's grant is enough: no superuser needed.
  ASSERT_OK(db_.ExecScript(
      absl::StrCat("GRANT SET ON PARAMETER session_replication_role TO \"", role.name(), "\"")));
  CommandResult granted = RunPgbackfill({"run", plan, "--dsn", role.Dsn(), "--json"});
  ASSERT_EQ(granted.exit_code, 0) << granted.out << granted.err;
  ExpectEveryRowOnce("items", kRows);
  EXPECT_EQ(AuditRows(), 0);
  EXPECT_EQ(TouchedRows(), 0);
}

TEST_F(UserTriggersTest, AWhenClauseOnInBatchLeavesTheBatchesOutButNotTheApplication) {
  // The spelling the README gives, verbatim.
  ASSERT_OK(db_.ExecScript(absl::StrCat(R"(
    CREATE TABLE items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);
    INSERT INTO items (id) SELECT g FROM generate_series(1, )",
                                        kRows, R"() g;
    CREATE TABLE audit (item_id bigint, op text);
    CREATE FUNCTION log_audit() RETURNS trigger LANGUAGE plpgsql
      AS $$BEGIN INSERT INTO audit VALUES (NEW.id, TG_OP); RETURN NULL; END$$;
    CREATE TRIGGER audit AFTER UPDATE ON items FOR EACH ROW
      WHEN (current_setting('pgbackfill.in_batch', true) IS DISTINCT FROM 'on')
      EXECUTE FUNCTION log_audit();
  )")));
  CommandResult result = RunPgbackfill(RunArgs(testing::WriteTestFile(ItemsPlan())));
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  ExpectEveryRowOnce("items", kRows);
  EXPECT_EQ(AuditRows(), 0) << "the batches set pgbackfill.in_batch";

  // A session that never set it (NULL), and one whose transaction set it and ended (''): both
  // are the application, and both fire.
  ASSERT_OK(db_.ExecScript("UPDATE items SET n = n WHERE id = 1"));
  EXPECT_EQ(AuditRows(), 1);
  ASSERT_OK(
      db_.ExecScript("BEGIN; SELECT pg_catalog.set_config('pgbackfill.in_batch', 'on', true);"
                     " COMMIT; UPDATE items SET n = n WHERE id = 2"));
  EXPECT_EQ(AuditRows(), 2);
}

TEST_F(UserTriggersTest, CopyModeListsTheTargetsInsertAndUpdateTriggers) {
  ASSERT_OK(db_.ExecScript(R"(
    CREATE TABLE src (id int PRIMARY KEY, v text);
    INSERT INTO src SELECT g, 'v' || g FROM generate_series(1, 100) g;
    CREATE TABLE dst (id int PRIMARY KEY, v text);
    CREATE TABLE audit (item_id bigint, op text);
    CREATE FUNCTION log_audit() RETURNS trigger LANGUAGE plpgsql
      AS $$BEGIN INSERT INTO audit VALUES (NEW.id, TG_OP); RETURN NULL; END$$;
    CREATE TRIGGER dst_inserted AFTER INSERT ON dst FOR EACH ROW EXECUTE FUNCTION log_audit();
    CREATE TRIGGER dst_updated AFTER UPDATE ON dst FOR EACH ROW EXECUTE FUNCTION log_audit();
    CREATE TRIGGER dst_deleted AFTER DELETE ON dst FOR EACH ROW EXECUTE FUNCTION log_audit();
    CREATE TRIGGER src_updated AFTER UPDATE ON src FOR EACH ROW EXECUTE FUNCTION log_audit();
  )"));
  const std::string plan = "version: 1\nname: copy\ntable: src\ninto: dst\n";
  const json report = CheckJson(plan, 0);
  EXPECT_TRUE(report["ok"].get<bool>()) << Joined(report["problems"]);
  EXPECT_THAT(Listed(report),
              ElementsAre(std::pair{"dst_inserted", true}, std::pair{"dst_updated", true}));
  EXPECT_THAT(Joined(report["warnings"]),
              HasSubstr("every row the batches INSERT (or UPDATE) in \"public\".\"dst\" fires"));

  CommandResult skipped = RunPgbackfill(
      RunArgs(testing::WriteTestFile(absl::StrCat(plan,
                                                  "triggers: skip\n"
                                                  "throttle: { application: off }\n"))));
  ASSERT_EQ(skipped.exit_code, 0) << skipped.out << skipped.err;
  EXPECT_EQ(Count("SELECT count(*) FROM dst"), 100);
  EXPECT_EQ(AuditRows(), 0) << "no trigger on dst fired for the copy's rows";
}

// Between databases the batches write `into` on the target through COPY: the same triggers, the
// same in_batch marker, the same skip.
class MoveTriggersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(
        source_.ExecScript("CREATE TABLE src (id int PRIMARY KEY, v text);"
                           "INSERT INTO src SELECT g, 'v' || g FROM generate_series(1, 500) g;"));
    ASSERT_OK(target_.ExecScript(R"(
      CREATE TABLE dst (id int PRIMARY KEY, v text);
      CREATE TABLE audit (item_id bigint, trigger_name text);
      CREATE FUNCTION log_audit() RETURNS trigger LANGUAGE plpgsql
        AS $$BEGIN INSERT INTO audit VALUES (NEW.id, TG_NAME); RETURN NULL; END$$;
      CREATE TRIGGER plain AFTER INSERT ON dst FOR EACH ROW EXECUTE FUNCTION log_audit();
      CREATE TRIGGER app_only AFTER INSERT ON dst FOR EACH ROW
        WHEN (current_setting('pgbackfill.in_batch', true) IS DISTINCT FROM 'on')
        EXECUTE FUNCTION log_audit();
    )"));
  }

  std::string Plan(const std::string& extra) {
    return testing::WriteTestFile(absl::StrCat(
        "version: 1\nname: move\nsource_dsn: ", source_.dsn(), "\ntarget_dsn: ", target_.dsn(),
        "\ntable: src\ninto: dst\nthrottle: { application: off }\n", extra));
  }

  std::string Audit(const std::string& trigger) {
    absl::StatusOr<std::string> count =
        target_.QueryValue("SELECT count(*) FROM audit WHERE trigger_name = $1", {trigger});
    return count.ok() ? *count : std::string(count.status().message());
  }

  TestDatabase source_{"source"};
  TestDatabase target_{"target"};
};

TEST_F(MoveTriggersTest, TheTargetsTriggersFireExceptThoseThatTestInBatch) {
  CommandResult checked = RunPgbackfill({"check", Plan(""), "--dsn", target_.dsn(), "--json"});
  ASSERT_EQ(checked.exit_code, 0) << checked.out << checked.err;
  const json report = json::parse(checked.out);
  ASSERT_EQ(report["triggers"].size(), 2u) << checked.out;
  EXPECT_EQ(report["triggers"][0]["name"], "app_only");
  EXPECT_EQ(report["triggers"][1]["name"], "plain");

  CommandResult result = RunPgbackfill({"run", Plan(""), "--dsn", target_.dsn(), "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_EQ(Audit("plain"), "500") << "COPY fires the target's row triggers";
  EXPECT_EQ(Audit("app_only"), "0") << "the target's transaction sets pgbackfill.in_batch too";
}

TEST_F(MoveTriggersTest, SkipFiresNoneOfTheTargetsTriggers) {
  CommandResult checked =
      RunPgbackfill({"check", Plan("triggers: skip\n"), "--dsn", target_.dsn(), "--json"});
  ASSERT_EQ(checked.exit_code, 0) << checked.out << checked.err;
  for (const json& trigger : json::parse(checked.out)["triggers"]) {
    EXPECT_FALSE(trigger["fires"].get<bool>()) << trigger.dump();
  }
  CommandResult result =
      RunPgbackfill({"run", Plan("triggers: skip\n"), "--dsn", target_.dsn(), "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  ASSERT_OK_AND_ASSIGN(std::string copied, target_.QueryValue("SELECT count(*) FROM dst"));
  EXPECT_EQ(copied, "500");
  EXPECT_EQ(Audit("plain"), "0");
}

}  // namespace
}  // namespace pgbackfill
