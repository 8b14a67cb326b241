// `pgbackfill check` against the real server, through the binary as a user runs it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "nlohmann/json.hpp"
#include "support/status_testing.h"
#include "support/test_cluster.h"
#include "pgbackfill/pg/connection.h"

namespace pgbackfill {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::CommandResult;
using testing::RunPgbackfill;
using testing::TestDatabase;

class CheckTest : public ::testing::Test {
 protected:
  CommandResult Check(const std::string& plan_text, bool json = true,
                      const std::string& dsn = "") {
    std::vector<std::string> args = {"check", testing::WriteTestFile(plan_text), "--dsn",
                                     dsn.empty() ? db_.dsn() : dsn};
    if (json) args.push_back("--json");
    return RunPgbackfill(args);
  }

  nlohmann::json CheckJson(const std::string& plan_text, int expected_exit,
                           const std::string& dsn = "") {
    CommandResult result = Check(plan_text, true, dsn);
    EXPECT_EQ(result.exit_code, expected_exit) << result.out << result.err;
    nlohmann::json json = nlohmann::json::parse(result.out, nullptr, false);
    EXPECT_FALSE(json.is_discarded()) << "not JSON: " << result.out << result.err;
    return json;
  }

  static std::string Problems(const nlohmann::json& json) {
    std::string all;
    if (json.contains("problems")) {
      for (const auto& problem : json["problems"]) all += problem.get<std::string>() + "\n";
    }
    return all;
  }

  TestDatabase db_;
};

constexpr char kUsersTable[] =
    "CREATE TABLE users (id bigint PRIMARY KEY, full_name text NOT NULL, first_name text,"
    " last_name text);"
    "INSERT INTO users SELECT g, 'A' || g || ' B' || g FROM generate_series(1, 1000) g"
    "  WHERE g % 10 <> 0;"
    "ANALYZE users;";

constexpr char kUsersPlan[] = R"(version: 1
name: split
table: public.users
set:
  first_name: split_part(full_name, ' ', 1)
  last_name: split_part(full_name, ' ', 2)
where: first_name IS NULL
)";

TEST_F(CheckTest, OversizedDeepAliasBombAndBinaryPlansExitTwoWithTheirLine) {
  std::string binary = "\x7f" "ELF\x02\x01\x01";
  binary.push_back('\0');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"version: 1\n#" + std::string(2 << 20, 'x') + "\n",
       ".yaml:1: the file is larger than the 1 MiB (1048576 bytes) a plan file may be"},
      {"version: 1\nset: " + std::string(600000, '[') + "\n",
       ".yaml:2: set: nests mappings and lists more than 16 deep"},
      {"a: &a [lol, lol, lol]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n",
       ".yaml:2: b: YAML aliases (*name) are not accepted in a plan file"},
      {binary, ".yaml:1: the file is not UTF-8 text (byte 0x7f)"},
  };
  for (const auto& [text, message] : cases) {
    CommandResult result = Check(text, /*json=*/false);
    EXPECT_EQ(result.exit_code, 2) << result.out << result.err;
    EXPECT_THAT(result.err, HasSubstr(message));
  }
}

TEST_F(CheckTest, GoodPlanReportsKeyRowsAndBatchSql) {
  ASSERT_OK(db_.ExecScript(kUsersTable));
  nlohmann::json json = CheckJson(kUsersPlan, 0);
  EXPECT_TRUE(json["ok"].get<bool>()) << Problems(json);
  EXPECT_EQ(json["table"]["schema"], "public");
  EXPECT_EQ(json["table"]["name"], "users");
  EXPECT_EQ(json["key"]["index"], "users_pkey");
  EXPECT_EQ(json["key"]["split"], "arithmetic");
  EXPECT_EQ(json["key"]["columns"][0]["type"], "bigint");
  EXPECT_EQ(json["estimated_rows"], 900);
  EXPECT_EQ(json["min_key"], nlohmann::json({"1"}));
  EXPECT_EQ(json["max_key"], nlohmann::json({"999"}));
  ASSERT_EQ(json["batch_sql"].size(), 5u);
  // Tagged, so the throttle never counts the job's own statements as the application's.
  EXPECT_EQ(json["batch_sql"][0], "/* pgbackfill */ BEGIN");
  EXPECT_EQ(json["batch_sql"][1], "/* pgbackfill */ SET LOCAL lock_timeout = '200ms'");
  EXPECT_THAT(json["batch_sql"][3].get<std::string>(),
              AllOf(HasSubstr("UPDATE \"public\".\"users\" AS t SET \"first_name\" = "
                              "(split_part(full_name, ' ', 1))"),
                    HasSubstr("(first_name IS NULL)"), HasSubstr("\"pgbackfill\".\"ranges\"")));
  EXPECT_EQ(json["batch_sql"][4], "/* pgbackfill */ COMMIT");

  // Nothing was created: check never changes the database.
  ASSERT_OK_AND_ASSIGN(std::string schemas,
                       db_.QueryValue("SELECT count(*) FROM pg_namespace WHERE nspname = "
                                      "'pgbackfill'"));
  EXPECT_EQ(schemas, "0");
}

TEST_F(CheckTest, HumanOutputShowsSummaryAndSql) {
  ASSERT_OK(db_.ExecScript(kUsersTable));
  CommandResult result = Check(kUsersPlan, /*json=*/false);
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, AllOf(HasSubstr("\"public\".\"users\""), HasSubstr("users_pkey"),
                                HasSubstr("~900"), HasSubstr("one round trip"),
                                HasSubstr("OK: the plan can run.")));
}

TEST_F(CheckTest, BadPlanExitsTwoWithFileAndLine) {
  CommandResult result = Check("version: 1\nname: x\ntable: users\nset:\n  a: b\nworkers: -3\n");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.err, AllOf(HasSubstr(".yaml:6: workers:")));
}

TEST_F(CheckTest, CompositeTextUuidKey) {
  ASSERT_OK(db_.ExecScript(
      "CREATE TABLE events (tenant_id text NOT NULL, id uuid NOT NULL, payload jsonb NOT NULL,"
      " kind text, PRIMARY KEY (tenant_id, id));"
      "INSERT INTO events SELECT 't' || (g % 5), md5(g::text)::uuid,"
      " jsonb_build_object('kind', 'k' || g) FROM generate_series(1, 200) g;"));
  nlohmann::json json = CheckJson(
      "version: 1\nname: ev\ntable: events\nset:\n  kind: payload ->> 'kind'\n", 0);
  EXPECT_EQ(json["key"]["split"], "sampled");
  ASSERT_EQ(json["key"]["columns"].size(), 2u);
  EXPECT_EQ(json["key"]["columns"][0]["name"], "tenant_id");
  EXPECT_EQ(json["key"]["columns"][1]["type"], "uuid");
  EXPECT_EQ(json["min_key"][0], "t0");
  EXPECT_EQ(json["estimated_rows"], 200) << "unanalysed small table is counted exactly";
  EXPECT_THAT(json["batch_sql"][3].get<std::string>(),
              HasSubstr("(\"tenant_id\", \"id\") > ($1::text, $2::uuid)"));
}

TEST_F(CheckTest, UuidKey) {
  ASSERT_OK(db_.ExecScript(
      "CREATE TABLE docs (id uuid PRIMARY KEY, body text, words int);"
      "INSERT INTO docs SELECT md5(g::text)::uuid, repeat('w ', g) FROM generate_series(1, 50) g;"));
  nlohmann::json json = CheckJson(
      "version: 1\nname: docs\ntable: docs\nset:\n  words: array_length(regexp_split_to_array("
      "trim(body), ' '), 1)\n",
      0);
  EXPECT_EQ(json["key"]["columns"][0]["type"], "uuid");
  EXPECT_EQ(json["key"]["split"], "sampled");
}

TEST_F(CheckTest, EmptyTable) {
  ASSERT_OK(db_.ExecScript("CREATE TABLE e (id int PRIMARY KEY, v int);"));
  nlohmann::json json = CheckJson("version: 1\nname: e\ntable: e\nset:\n  v: id * 2\n", 0);
  EXPECT_EQ(json["estimated_rows"], 0);
  EXPECT_TRUE(json["min_key"].is_null());
}

TEST_F(CheckTest, TableWithoutUsableKeyIsRefusedWithReasons) {
  ASSERT_OK(db_.ExecScript(
      "CREATE TABLE heap (id int, email text, v int);"
      "CREATE UNIQUE INDEX heap_email ON heap (email);"          // nullable column
      "CREATE UNIQUE INDEX heap_lower ON heap (lower(email));"   // expression
      "ALTER TABLE heap ALTER COLUMN id SET NOT NULL;"
      "CREATE UNIQUE INDEX heap_partial ON heap (id) WHERE v > 0;"));  // partial
  nlohmann::json json = CheckJson("version: 1\nname: h\ntable: heap\nset:\n  v: 1\n", 2);
  const std::string problems = Problems(json);
  EXPECT_THAT(problems, AllOf(HasSubstr(".yaml:3: table:"), HasSubstr("has no usable key"),
                              HasSubstr("\"email\" is nullable"), HasSubstr("partial"),
                              HasSubstr("expressions")));
  ASSERT_EQ(json["rejected_keys"].size(), 3u);
}

TEST_F(CheckTest, TableWithNoIndexAtAll) {
  ASSERT_OK(db_.ExecScript("CREATE TABLE bare (a int, v int);"));
  nlohmann::json json = CheckJson("version: 1\nname: b\ntable: bare\nset:\n  v: a\n", 2);
  EXPECT_THAT(Problems(json), HasSubstr("has no unique index at all"));
}

TEST_F(CheckTest, UniqueIndexOverNotNullColumnsServesAsKey) {
  ASSERT_OK(db_.ExecScript(
      "CREATE TABLE u (code text NOT NULL, region int NOT NULL, v int);"
      "CREATE UNIQUE INDEX u_code_region ON u (region, code);"));
  nlohmann::json json = CheckJson("version: 1\nname: u\ntable: u\nset:\n  v: region\n", 0);
  EXPECT_EQ(json["key"]["index"], "u_code_region");
  EXPECT_EQ(json["key"]["primary"], false);
  EXPECT_EQ(json["key"]["columns"][0]["name"], "region") << "index order, not column order";
}

TEST_F(CheckTest, ExplicitKeyMustMatchAUniqueIndex) {
  ASSERT_OK(db_.ExecScript(kUsersTable));
  nlohmann::json json = CheckJson(
      "version: 1\nname: k\ntable: users\nkey: [full_name]\nset:\n  first_name: \"'x'\"\n", 2);
  EXPECT_THAT(Problems(json), AllOf(HasSubstr(".yaml:4: key:"), HasSubstr("\"full_name\"")));
}

TEST_F(CheckTest, MissingTableAndColumns) {
  nlohmann::json missing =
      CheckJson("version: 1\nname: m\ntable: nope\nset:\n  a: 1\n", 2);
  EXPECT_THAT(Problems(missing), AllOf(HasSubstr(".yaml:3: table:"), HasSubstr("\"nope\""),
                                       HasSubstr("does not exist")));

  ASSERT_OK(db_.ExecScript(kUsersTable));
  nlohmann::json column = CheckJson(
      "version: 1\nname: m\ntable: users\nset:\n  first_name: \"'x'\"\n  nickname: 'y'\n", 2);
  EXPECT_THAT(Problems(column), AllOf(HasSubstr(".yaml:6: set.nickname:"),
                                      HasSubstr("\"nickname\" does not exist")));
}

TEST_F(CheckTest, ExpressionsThatDoNotCompileNameTheirLine) {
  ASSERT_OK(db_.ExecScript(kUsersTable));
  nlohmann::json json = CheckJson(R"(version: 1
name: bad
table: users
set:
  first_name: split_part(full_name, ' ', 1)
  last_name: no_such_function(full_name)
where: full_name + 1
)",
                                  2);
  const std::string problems = Problems(json);
  EXPECT_THAT(problems, AllOf(HasSubstr(".yaml:6: set.last_name: expression does not compile"),
                              HasSubstr("no_such_function"), HasSubstr("42883"),
                              HasSubstr(".yaml:7: where: condition does not compile")));
  EXPECT_THAT(problems, ::testing::Not(HasSubstr("set.first_name")));
}

TEST_F(CheckTest, TypeMismatchIsCaught) {
  ASSERT_OK(db_.ExecScript("CREATE TABLE n (id int PRIMARY KEY, s text, i int);"));
  nlohmann::json json =
      CheckJson("version: 1\nname: n\ntable: n\nset:\n  i: now()\n", 2);
  EXPECT_THAT(Problems(json), AllOf(HasSubstr("set.i"), HasSubstr("42804")));
}

TEST_F(CheckTest, SettingTheKeyOrAGeneratedColumnIsRefused) {
  ASSERT_OK(db_.ExecScript(
      "CREATE TABLE g (id int PRIMARY KEY, a int, b int GENERATED ALWAYS AS (a * 2) STORED);"));
  nlohmann::json json =
      CheckJson("version: 1\nname: g\ntable: g\nset:\n  id: id + 1\n  b: 1\n", 2);
  EXPECT_THAT(Problems(json), AllOf(HasSubstr("set.id"), HasSubstr("part of the key"),
                                    HasSubstr("set.b"), HasSubstr("generated column")));
}

TEST_F(CheckTest, MissingPrivilegesAreNamed) {
  ASSERT_OK(db_.ExecScript(kUsersTable));
  const std::string role = db_.name() + "_app";
  ASSERT_OK(db_.ExecScript("CREATE ROLE \"" + role + "\" LOGIN;"
                           "GRANT SELECT ON users TO \"" + role + "\";"
                           "GRANT UPDATE (first_name) ON users TO \"" + role + "\";"
                           "REVOKE CREATE ON DATABASE \"" + db_.name() + "\" FROM PUBLIC;"));
  nlohmann::json json = CheckJson(std::string(kUsersPlan) + "dual_write: true\n", 2,
                                  db_.dsn() + " user=" + role);
  const std::string problems = Problems(json);
  EXPECT_THAT(problems, AllOf(HasSubstr("set.last_name"), HasSubstr("lacks UPDATE on column"),
                              HasSubstr("lacks TRIGGER"), HasSubstr("CREATE")));
  EXPECT_THAT(problems, ::testing::Not(HasSubstr("set.first_name")));
  EXPECT_OK(db_.ExecScript("DROP OWNED BY \"" + role + "\"; DROP ROLE \"" + role + "\";"));
}

TEST_F(CheckTest, HostileNames) {
  ASSERT_OK(db_.ExecScript(
      "CREATE SCHEMA \"My Schema\";"
      "CREATE TABLE \"My Schema\".\"We\"\"ird Table\" ("
      "  \"select\" bigint PRIMARY KEY, \"Full Name\" text NOT NULL, \"new \"\"col\" text);"
      "INSERT INTO \"My Schema\".\"We\"\"ird Table\" VALUES (1, 'a b'), (2, 'c d');"));
  nlohmann::json json = CheckJson(R"(version: 1
name: hostile
table: '"My Schema"."We""ird Table"'
set:
  '"new ""col"': split_part("Full Name", ' ', 1)
)",
                                  0);
  EXPECT_TRUE(json["ok"].get<bool>()) << Problems(json);
  EXPECT_EQ(json["table"]["name"], "We\"ird Table");
  EXPECT_EQ(json["key"]["columns"][0]["name"], "select");
  EXPECT_THAT(json["batch_sql"][3].get<std::string>(),
              AllOf(HasSubstr("\"My Schema\".\"We\"\"ird Table\""), HasSubstr("\"new \"\"col\"")));
}

TEST_F(CheckTest, SearchPathCannotShadowCatalogQueries) {
  ASSERT_OK(db_.ExecScript(kUsersTable));
  // A schema ahead of pg_catalog with look-alikes of what catalog queries call. If any query
  // resolved through the user's search_path, the report would show "hacked" or fail.
  ASSERT_OK(db_.ExecScript(R"(
    CREATE SCHEMA evil;
    CREATE FUNCTION evil.format_type(oid, integer) RETURNS text LANGUAGE sql AS $$ SELECT 'hacked' $$;
    CREATE FUNCTION evil.to_regclass(text) RETURNS regclass LANGUAGE sql AS $$ SELECT NULL::regclass $$;
    CREATE FUNCTION evil.pg_relation_size(regclass) RETURNS bigint LANGUAGE sql AS $$ SELECT -1::bigint $$;
    CREATE FUNCTION evil.has_table_privilege(oid, text) RETURNS boolean LANGUAGE sql AS $$ SELECT false $$;
    CREATE FUNCTION evil.bad_eq(oid, oid) RETURNS boolean LANGUAGE sql AS $$ SELECT false $$;
    CREATE OPERATOR evil.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = evil.bad_eq);
    CREATE TABLE evil.users (id int);
  )"));
  const std::string dsn = db_.dsn() + " options='-c search_path=public,evil,pg_catalog'";
  nlohmann::json json = CheckJson(kUsersPlan, 0, dsn);
  EXPECT_TRUE(json["ok"].get<bool>()) << Problems(json);
  EXPECT_EQ(json["key"]["columns"][0]["type"], "bigint");
  EXPECT_EQ(json["table"]["schema"], "public");

  // A schema-less table name still resolves through the user's search_path.
  nlohmann::json unqualified = CheckJson(
      "version: 1\nname: s\ntable: users\nset:\n  first_name: \"'x'\"\n", 0,
      db_.dsn() + " options='-c search_path=public'");
  EXPECT_EQ(unqualified["table"]["schema"], "public");
}

TEST_F(CheckTest, CopyModePlan) {
  ASSERT_OK(db_.ExecScript(std::string(kUsersTable) +
                           "CREATE TABLE users_v2 (id bigint PRIMARY KEY, first text NOT NULL,"
                           " n int NOT NULL);"));
  nlohmann::json good = CheckJson(R"(version: 1
name: copy
table: users
into: users_v2
columns:
  id: id
  first: split_part(full_name, ' ', 1)
  n: length(full_name)
on_conflict: skip
)",
                                  0);
  EXPECT_TRUE(good["ok"].get<bool>()) << Problems(good);

  nlohmann::json bad = CheckJson(R"(version: 1
name: copy
table: users
into: users_v2
columns:
  id: id
  first: split_part(full_name, ' ', 1)
  n: now()
  missing: 1
)",
                                 2);
  EXPECT_THAT(Problems(bad), AllOf(HasSubstr(".yaml:8: columns.n:"),
                                   HasSubstr(".yaml:9: columns.missing:")));
}

TEST_F(CheckTest, CopyModeShowsTheCopyBatchAndFillsColumnsByName) {
  ASSERT_OK(db_.ExecScript(std::string(kUsersTable) +
                           "CREATE TABLE users_v2 (id bigint PRIMARY KEY, full_name text,"
                           " extra text, made timestamptz NOT NULL DEFAULT now());"));
  nlohmann::json json = CheckJson(
      "version: 1\nname: byname\ntable: users\ninto: users_v2\non_conflict: update\n", 0);
  EXPECT_TRUE(json["ok"].get<bool>()) << Problems(json);
  ASSERT_EQ(json["batch_sql"].size(), 5u);
  EXPECT_THAT(json["batch_sql"][3].get<std::string>(),
              AllOf(HasSubstr("SELECT (\"id\") AS \"id\", (\"full_name\") AS \"full_name\"\n"),
                    HasSubstr("FOR SHARE OF t"),
                    HasSubstr("INSERT INTO \"public\".\"users_v2\" AS dst (\"id\", "
                              "\"full_name\")"),
                    HasSubstr("ON CONFLICT (\"id\") DO UPDATE SET \"full_name\" = "
                              "EXCLUDED.\"full_name\""),
                    HasSubstr("\"pgbackfill\".\"ranges\"")));
}

TEST_F(CheckTest, CopyTargetNeedsAUniqueKeyCopiedFromTheSourceKey) {
  ASSERT_OK(db_.ExecScript(std::string(kUsersTable) +
                           "CREATE TABLE v_shifted (uid bigint PRIMARY KEY, name text);"
                           "CREATE TABLE v_nokey (uid bigint NOT NULL, name text);"));
  nlohmann::json shifted = CheckJson(R"(version: 1
name: shifted
table: users
into: v_shifted
columns:
  uid: id + 1000
  name: full_name
)",
                                     2);
  EXPECT_THAT(Problems(shifted),
              AllOf(HasSubstr(".yaml:4: into:"),
                    HasSubstr("\"public\".\"v_shifted\" has no unique key filled from the key "
                              "(\"id\")"),
                    HasSubstr("column \"uid\" is filled with `id + 1000`")));

  nlohmann::json nokey = CheckJson(R"(version: 1
name: nokey
table: users
into: v_nokey
columns:
  uid: '"id"'
  name: full_name
)",
                                   2);
  EXPECT_THAT(Problems(nokey), AllOf(HasSubstr(".yaml:4: into:"),
                                     HasSubstr("has no usable unique index")));

  // The key copied unchanged (also as t.id) is what the copy writes by.
  nlohmann::json good = CheckJson(R"(version: 1
name: good
table: users
into: v_shifted
columns:
  uid: t.id
  name: full_name
on_conflict: skip
)",
                                  0);
  EXPECT_TRUE(good["ok"].get<bool>()) << Problems(good);
  EXPECT_THAT(good["batch_sql"][3].get<std::string>(),
              HasSubstr("ON CONFLICT (\"uid\") DO NOTHING"));
}

TEST_F(CheckTest, CopyExpressionTypesMustFitTheTargetColumns) {
  ASSERT_OK(db_.ExecScript(std::string(kUsersTable) +
                           "CREATE TABLE v2 (id bigint PRIMARY KEY, n int, first_name int,"
                           " must text NOT NULL);"));
  nlohmann::json json = CheckJson(R"(version: 1
name: types
table: users
into: v2
columns:
  id: id
  n: full_name
  first_name: first_name
)",
                                  2);
  const std::string problems = Problems(json);
  EXPECT_THAT(problems, AllOf(HasSubstr(".yaml:7: columns.n: expression does not compile"),
                              HasSubstr("column \"n\" is of type integer but expression is of "
                                        "type text"),
                              HasSubstr(".yaml:8: columns.first_name:"),
                              HasSubstr("\"must\" of \"public\".\"v2\" is NOT NULL without "
                                        "a default")));
  EXPECT_THAT(problems, ::testing::Not(HasSubstr("columns.id")));

  // Columns copied by name are checked the same way, and named.
  ASSERT_OK(db_.ExecScript("ALTER TABLE v2 DROP COLUMN must;"));
  nlohmann::json byname = CheckJson("version: 1\nname: t2\ntable: users\ninto: v2\n", 2);
  EXPECT_THAT(Problems(byname),
              AllOf(HasSubstr(".yaml:4: into: column \"first_name\" (copied by name"),
                    HasSubstr("integer")));
}

TEST_F(CheckTest, UnreachableServerExitsOne) {
  CommandResult result = Check(kUsersPlan, true, "host=127.0.0.1 port=1 connect_timeout=2");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, HasSubstr("could not connect"));
}

TEST_F(CheckTest, ConflictingLockIsARuntimeErrorNotAPlanError) {
  ASSERT_OK(db_.ExecScript(kUsersTable));
  ASSERT_OK_AND_ASSIGN(pg::Connection holder, pg::Connection::Connect(db_.dsn()));
  ASSERT_OK(holder.ExecScript("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE;"));
  CommandResult result = Check(kUsersPlan, /*json=*/true);
  EXPECT_EQ(result.exit_code, 1) << result.out << result.err;
  EXPECT_THAT(result.err, HasSubstr("lock"));
  ASSERT_OK(holder.ExecScript("ROLLBACK"));
}

}  // namespace
}  // namespace pgbackfill
