#include "pgbackfill/expand/triggers.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace pgbackfill::expand {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

TEST(TriggerNamesTest, ReadableStableAndInTheJobStoreSchema) {
  const TriggerNames names = NamesFor("users-split", "dw");
  EXPECT_EQ(names.function_schema, "pgbackfill");
  EXPECT_THAT(names.function, StartsWith("pgbackfill_dw_users-split_"));
  EXPECT_EQ(names.function.size(), std::string("pgbackfill_dw_users-split_").size() + 8);
  EXPECT_EQ(names.trigger, names.function);
  // Fixed by definition: a later build must find what an earlier one created.
  EXPECT_EQ(names.function, "pgbackfill_dw_users-split_d38c9bca");
  EXPECT_EQ(NamesFor("users-split", "dw").function, names.function);
  EXPECT_NE(NamesFor("users-split", "copy").function, names.function);
  EXPECT_NE(NamesFor("users-splits", "dw").function, names.function);
}

TEST(TriggerNamesTest, LongNamesFitAndStayDistinct) {
  const std::string a(63, 'a');
  const std::string b = std::string(62, 'a') + "b";
  for (const char* kind : {"dw", "copy"}) {
    const TriggerNames first = NamesFor(a, kind);
    const TriggerNames second = NamesFor(b, kind);
    EXPECT_LE(first.function.size(), 63u) << kind;
    EXPECT_EQ(first.function.size(), 63u) << "the job part is cut to use the room: " << kind;
    EXPECT_LE(second.trigger.size(), 63u) << kind;
    // Same printable prefix after the cut; the hash of the full name tells them apart.
    EXPECT_NE(first.function, second.function) << kind;
  }
}

TEST(FunctionSearchPathTest, SplitsAsTheServerDoesAndAppendsPgTemp) {
  EXPECT_EQ(FunctionSearchPath("\"$user\", public"),
            " SET search_path TO '$user', 'public', 'pg_temp'");
  EXPECT_EQ(FunctionSearchPath("App,\"My \"\"S\"\"\" ,  pg_temp"),
            " SET search_path TO 'app', 'My \"S\"', 'pg_temp'");
  EXPECT_EQ(FunctionSearchPath(""), " SET search_path TO 'pg_temp'");
  EXPECT_EQ(FunctionSearchPath("\"\""), " SET search_path TO 'pg_temp'");
  EXPECT_EQ(FunctionSearchPath("o'hara"), " SET search_path TO 'o''hara', 'pg_temp'");
}

DualWriteSpec UsersDualWrite() {
  DualWriteSpec spec;
  spec.job = "split";
  spec.table = {"public", "users"};
  spec.set = {{"first_name", "split_part(full_name, ' ', 1)", 5},
              {"Last Name", "split_part(full_name, ' ', 2)", 6}};
  spec.search_path = "\"$user\", public";
  return spec;
}

TEST(DualWriteInstallSqlTest, FunctionAndTrigger) {
  const std::vector<std::string> sql = DualWriteInstallSql(UsersDualWrite());
  ASSERT_EQ(sql.size(), 3u);
  const std::string fn = "\"pgbackfill\".\"" + NamesFor("split", "dw").function + "\"()";
  EXPECT_THAT(sql[0],
              AllOf(StartsWith("CREATE OR REPLACE FUNCTION " + fn +
                               " RETURNS trigger LANGUAGE plpgsql SECURITY INVOKER SET "
                               "search_path TO '$user', 'public', 'pg_temp'\nAS $pgbackfill$\n"
                               "#variable_conflict use_column\n"),
                    HasSubstr("pg_catalog.current_setting('pgbackfill.in_batch', true) = 'on'"),
                    HasSubstr("SELECT (split_part(full_name, ' ', 1)), "
                              "(split_part(full_name, ' ', 2))\n"
                              "    INTO NEW.\"first_name\", NEW.\"Last Name\"\n"
                              "    FROM (SELECT NEW.*) AS t;"),
                    HasSubstr("RETURN NEW;\nEND\n$pgbackfill$"), Not(HasSubstr("IF EXISTS"))));
  EXPECT_THAT(sql[1], StartsWith("COMMENT ON FUNCTION " + fn + " IS 'pgbackfill job split"));
  EXPECT_EQ(sql[2], "CREATE OR REPLACE TRIGGER \"" + NamesFor("split", "dw").trigger +
                        "\" BEFORE INSERT OR UPDATE ON \"public\".\"users\" FOR EACH ROW "
                        "EXECUTE FUNCTION " + fn);
}

TEST(DualWriteInstallSqlTest, WhereGuardsTheAssignment) {
  DualWriteSpec spec = UsersDualWrite();
  spec.where = "first_name IS NULL";
  const std::string sql = DualWriteInstallSql(spec)[0];
  EXPECT_THAT(sql, HasSubstr("IF EXISTS (SELECT FROM (SELECT NEW.*) AS t WHERE "
                             "(first_name IS NULL)) THEN\n    SELECT "));
}

TEST(DualWriteInstallSqlTest, DollarQuoteAvoidsTheBody) {
  DualWriteSpec spec = UsersDualWrite();
  spec.set = {{"c", "'$pgbackfill$'", 1}};
  const std::string sql = DualWriteInstallSql(spec)[0];
  EXPECT_THAT(sql, AllOf(HasSubstr("AS $pgbackfill_1$\n"), HasSubstr("END\n$pgbackfill_1$")));
}

CopySpec UsersCopy() {
  CopySpec spec;
  spec.job = "to-v2";
  spec.source = {"public", "users"};
  spec.source_key = {"tenant", "id"};
  spec.target = {"public", "users_v2"};
  spec.columns = {{"tenant_id", "tenant", 1}, {"user_id", "id", 2}, {"email", "lower(email)", 3}};
  spec.target_key = {"tenant_id", "user_id"};
  spec.search_path = "public";
  return spec;
}

TEST(CopyTriggerInstallSqlTest, MirrorsInsertUpdateDelete) {
  const std::vector<std::string> sql = CopyTriggerInstallSql(UsersCopy());
  ASSERT_EQ(sql.size(), 3u);
  const TriggerNames names = NamesFor("to-v2", "copy");
  EXPECT_THAT(
      sql[0],
      AllOf(StartsWith("CREATE OR REPLACE FUNCTION \"pgbackfill\".\"" + names.function +
                       "\"() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path "
                       "TO 'public', 'pg_temp'\nAS $pgbackfill$\n#variable_conflict use_column\n"),
            HasSubstr("pgbackfill_new_matches := true;"),
            HasSubstr("ROW(OLD.\"tenant\", OLD.\"id\") IS DISTINCT FROM "
                      "ROW(NEW.\"tenant\", NEW.\"id\")"),
            HasSubstr("DELETE FROM \"public\".\"users_v2\" AS dst USING (SELECT OLD.*) AS t\n"
                      "       WHERE dst.\"tenant_id\" = t.\"tenant\" AND "
                      "dst.\"user_id\" = t.\"id\";"),
            HasSubstr("INSERT INTO \"public\".\"users_v2\" AS dst (\"tenant_id\", \"user_id\", "
                      "\"email\") OVERRIDING SYSTEM VALUE\n"
                      "    SELECT (tenant), (id), (lower(email))\n"
                      "      FROM (SELECT NEW.*) AS t\n"
                      "    ON CONFLICT (\"tenant_id\", \"user_id\") DO UPDATE SET \"email\" = "
                      "EXCLUDED.\"email\";"),
            HasSubstr("RETURN NULL;")));
  EXPECT_EQ(sql[2], "CREATE OR REPLACE TRIGGER \"" + names.trigger +
                        "\" AFTER INSERT OR UPDATE OR DELETE ON \"public\".\"users\" FOR EACH "
                        "ROW EXECUTE FUNCTION \"pgbackfill\".\"" + names.function + "\"()");
}

TEST(CopyTriggerInstallSqlTest, UpsertsWhateverOnConflictSaysAndHonoursWhere) {
  CopySpec spec = UsersCopy();
  spec.on_conflict = plan::OnConflict::kSkip;
  spec.where = "deleted_at IS NULL";
  const std::string sql = CopyTriggerInstallSql(spec)[0];
  EXPECT_THAT(sql, AllOf(HasSubstr("pgbackfill_new_matches := EXISTS (SELECT FROM (SELECT NEW.*) "
                                   "AS t WHERE (deleted_at IS NULL));"),
                         HasSubstr("OR NOT pgbackfill_new_matches"),
                         HasSubstr("DO UPDATE SET \"email\" = EXCLUDED.\"email\"")));

  spec.columns.pop_back();  // only the key is copied: nothing to update on a conflict
  EXPECT_THAT(CopyTriggerInstallSql(spec)[0], HasSubstr("DO NOTHING;"));
}

TEST(DropTriggerSqlTest, IfExistsBoth) {
  const TriggerNames names = NamesFor("split", "dw");
  EXPECT_THAT(DropTriggerSql({"My Schema", "T\"x"}, names),
              ElementsAre("DROP TRIGGER IF EXISTS \"" + names.trigger +
                              "\" ON \"My Schema\".\"T\"\"x\"",
                          "DROP FUNCTION IF EXISTS \"pgbackfill\".\"" + names.function +
                              "\"() CASCADE"));
}

}  // namespace
}  // namespace pgbackfill::expand
