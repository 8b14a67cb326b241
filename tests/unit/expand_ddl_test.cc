#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pgbackfill/expand/ddl.h"

namespace pgbackfill::expand {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Optional;

TEST(NeedsNoTransactionTest, ConcurrentIndexBuildsAndDrops) {
  EXPECT_TRUE(NeedsNoTransaction("CREATE INDEX CONCURRENTLY i ON t (c)"));
  EXPECT_TRUE(NeedsNoTransaction("create unique index concurrently if not exists i on t (c)"));
  EXPECT_TRUE(NeedsNoTransaction("CrEaTe InDeX cOnCuRrEnTlY ON t (c);"));
  EXPECT_TRUE(NeedsNoTransaction("DROP INDEX CONCURRENTLY IF EXISTS public.i"));
  EXPECT_FALSE(NeedsNoTransaction("CREATE INDEX i ON t (c)"));
  EXPECT_FALSE(NeedsNoTransaction("CREATE UNIQUE INDEX i ON t (c)"));
  EXPECT_FALSE(NeedsNoTransaction("DROP INDEX i"));
}

TEST(NeedsNoTransactionTest, OtherStatementsRefusedInATransactionBlock) {
  for (const char* sql : {
           "VACUUM (ANALYZE) t",
           "vacuum",
           "REINDEX INDEX CONCURRENTLY i",
           "REINDEX TABLE CONCURRENTLY public.t",
           "REINDEX (VERBOSE, CONCURRENTLY) TABLE t",
           "REINDEX (CONCURRENTLY true) INDEX i",
           "REINDEX SCHEMA public",
           "REINDEX DATABASE",
           "REINDEX SYSTEM app",
           "ALTER TABLE parent DETACH PARTITION part_2020 CONCURRENTLY",
           "CREATE DATABASE x",
           "DROP DATABASE x",
           "ALTER DATABASE x SET TABLESPACE fast",
           "CREATE TABLESPACE fast LOCATION '/ssd'",
           "DROP TABLESPACE fast",
           "ALTER SYSTEM SET work_mem = '64MB'",
           "CLUSTER",
           "CLUSTER VERBOSE",
           "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p",
           "ALTER SUBSCRIPTION s REFRESH PUBLICATION",
           "DROP SUBSCRIPTION s",
           "DISCARD ALL",
       }) {
    EXPECT_TRUE(NeedsNoTransaction(sql)) << sql;
  }
  for (const char* sql : {
           "REINDEX INDEX i",
           "REINDEX (VERBOSE) TABLE t",
           "REINDEX (CONCURRENTLY false) INDEX i",
           "REINDEX (CONCURRENTLY off) INDEX i",
           "ALTER TABLE parent DETACH PARTITION part_2020",
           "ALTER TABLE parent DETACH PARTITION part_2020 FINALIZE",
           "ALTER DATABASE x SET search_path TO app",
           "CLUSTER t USING t_pkey",
           "CLUSTER VERBOSE t",
           "ANALYZE t",
           "DISCARD PLANS",
           "ALTER TABLE t ADD COLUMN c int",
       }) {
    EXPECT_FALSE(NeedsNoTransaction(sql)) << sql;
  }
}

TEST(NeedsNoTransactionTest, CommentsLiteralsAndQuotedNamesDoNotFoolIt) {
  // "concurrently" as a (necessarily quoted: it is a keyword) column or index name.
  EXPECT_FALSE(NeedsNoTransaction(R"(CREATE INDEX "concurrently" ON t ("concurrently"))"));
  EXPECT_FALSE(NeedsNoTransaction(R"(ALTER TABLE t ADD COLUMN "concurrently" int)"));
  EXPECT_FALSE(NeedsNoTransaction(R"(ALTER TABLE parent DETACH PARTITION "concurrently")"));
  // Comments.
  EXPECT_FALSE(NeedsNoTransaction("CREATE INDEX /* CONCURRENTLY */ i ON t (c)"));
  EXPECT_FALSE(NeedsNoTransaction("CREATE INDEX -- CONCURRENTLY\n i ON t (c)"));
  EXPECT_FALSE(NeedsNoTransaction("-- VACUUM t;\nALTER TABLE t ADD COLUMN c int"));
  EXPECT_FALSE(NeedsNoTransaction("/* outer /* nested */ VACUUM; still a comment */ SELECT 1"));
  EXPECT_TRUE(NeedsNoTransaction("/* a comment */ CREATE INDEX CONCURRENTLY i ON t (c)"));
  EXPECT_TRUE(NeedsNoTransaction("CREATE /* x */ INDEX -- y\n CONCURRENTLY i ON t (c)"));
  // String literals, escape strings, dollar quotes.
  EXPECT_FALSE(NeedsNoTransaction("COMMENT ON TABLE t IS 'run VACUUM; later'"));
  EXPECT_FALSE(NeedsNoTransaction("COMMENT ON TABLE t IS 'it''s; VACUUM'"));
  EXPECT_FALSE(NeedsNoTransaction(R"(COMMENT ON TABLE t IS E'it\'s; VACUUM')"));
  EXPECT_FALSE(NeedsNoTransaction(
      "DO $$ BEGIN EXECUTE 'SELECT 1'; END $$; COMMENT ON TABLE t IS $x$; VACUUM;$x$"));
  EXPECT_FALSE(NeedsNoTransaction(
      "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $body$ SELECT 1; $body$"));
  // $1 is a parameter and a$b an identifier, not dollar quotes.
  EXPECT_TRUE(NeedsNoTransaction("SELECT a$b, $1; VACUUM"));
  // A later statement of several.
  EXPECT_TRUE(NeedsNoTransaction("SELECT 1; VACUUM t"));
}

TEST(NeedsNoTransactionTest, SqlStandardFunctionBodiesAreOneStatement) {
  // psql's rule: semicolons inside BEGIN ATOMIC ... END of CREATE FUNCTION/PROCEDURE do not end
  // the statement. Split at every semicolon, the body's last "END" would read as a COMMIT.
  EXPECT_TRUE(ValidateStep("CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC "
                           "SELECT 1; SELECT CASE WHEN true THEN 2 END; END")
                  .ok());
  const std::string procedure_then_vacuum =
      "CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC SELECT 1; END; VACUUM t";
  EXPECT_TRUE(NeedsNoTransaction(procedure_then_vacuum));
  EXPECT_THAT(ValidateStep(procedure_then_vacuum).message(), HasSubstr("\"VACUUM t\" cannot run"));
  // Outside a routine header BEGIN is just a word (here, a transaction start).
  EXPECT_THAT(ValidateStep("SELECT 1; BEGIN; SELECT 2").message(),
              HasSubstr("transaction control"));
}

TEST(ConcurrentIndexNameTest, NameAsWritten) {
  EXPECT_THAT(ConcurrentIndexName("CREATE INDEX CONCURRENTLY items_n ON items (n)"),
              Optional(std::string("items_n")));
  EXPECT_THAT(ConcurrentIndexName("create unique index concurrently Items_N on items (n);"),
              Optional(std::string("Items_N")));
  EXPECT_THAT(ConcurrentIndexName(
                  R"(CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "My ""Index""" ON t (c))"),
              Optional(std::string(R"("My ""Index""")")));
  EXPECT_THAT(ConcurrentIndexName("CREATE INDEX CONCURRENTLY app.i ON app.t (c)"),
              Optional(std::string("app.i")));
  EXPECT_THAT(ConcurrentIndexName("/* why */ CREATE INDEX -- build\n CONCURRENTLY i ON ONLY t (c)"),
              Optional(std::string("i")));
  // IF is not reserved: an index named "if".
  EXPECT_THAT(ConcurrentIndexName("CREATE INDEX CONCURRENTLY if ON t (c)"),
              Optional(std::string("if")));
}

TEST(ConcurrentIndexNameTest, NotSuchAStatement) {
  EXPECT_EQ(ConcurrentIndexName("CREATE INDEX CONCURRENTLY ON t (c)"), std::nullopt);
  EXPECT_EQ(ConcurrentIndexName("CREATE INDEX CONCURRENTLY IF NOT EXISTS ON t (c)"), std::nullopt);
  EXPECT_EQ(ConcurrentIndexName("CREATE INDEX i ON t (c)"), std::nullopt);
  EXPECT_EQ(ConcurrentIndexName(R"(CREATE INDEX "concurrently" ON t (c))"), std::nullopt);
  EXPECT_EQ(ConcurrentIndexName("DROP INDEX CONCURRENTLY i"), std::nullopt);
  EXPECT_EQ(ConcurrentIndexName("-- CREATE INDEX CONCURRENTLY i ON t (c)"), std::nullopt);
  EXPECT_EQ(ConcurrentIndexName("SELECT 'CREATE INDEX CONCURRENTLY i ON t (c)'"), std::nullopt);
  EXPECT_EQ(ConcurrentIndexName(""), std::nullopt);
  // Several statements: not a step RunDdlStep runs (ValidateStep refuses it).
  EXPECT_EQ(ConcurrentIndexName("CREATE INDEX CONCURRENTLY i ON t (c); SELECT 1"), std::nullopt);
}

TEST(ValidateStepTest, AcceptsOrdinarySteps) {
  EXPECT_TRUE(ValidateStep("ALTER TABLE t ADD COLUMN c int").ok());
  EXPECT_TRUE(ValidateStep("ALTER TABLE a RENAME TO b; ALTER TABLE c RENAME TO a;").ok());
  EXPECT_TRUE(ValidateStep("CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (c)").ok());
  EXPECT_TRUE(ValidateStep("SAVEPOINT s; ALTER TABLE t ADD COLUMN c int; ROLLBACK TO s").ok());
  EXPECT_TRUE(ValidateStep("DO $$ BEGIN PERFORM 1; END $$").ok());
  EXPECT_TRUE(
      ValidateStep("SET LOCAL statement_timeout = '5s'; ALTER TABLE t ADD COLUMN c int").ok());
}

TEST(ValidateStepTest, RefusesWhatCannotRunSafely) {
  EXPECT_THAT(ValidateStep("  -- nothing\n /* here */ ; ").message(), HasSubstr("no SQL"));
  EXPECT_THAT(ValidateStep("BEGIN; ALTER TABLE t ADD COLUMN c int; COMMIT").message(),
              HasSubstr("transaction control (\"BEGIN\")"));
  EXPECT_THAT(ValidateStep("ALTER TABLE t ADD COLUMN c int; commit").message(),
              HasSubstr("transaction control"));
  EXPECT_THAT(ValidateStep("START TRANSACTION").message(), HasSubstr("transaction control"));
  EXPECT_THAT(ValidateStep("ROLLBACK").message(), HasSubstr("transaction control"));
  EXPECT_THAT(ValidateStep("PREPARE TRANSACTION 'x'").message(), HasSubstr("transaction control"));
  const absl::Status mixed =
      ValidateStep("ALTER TABLE t ADD COLUMN c int;\nCREATE INDEX CONCURRENTLY i ON t (c)");
  EXPECT_EQ(mixed.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(mixed.message(), HasSubstr("\"CREATE INDEX CONCURRENTLY i ON t (c)\" cannot run "
                                         "inside a transaction block"));
  EXPECT_THAT(ValidateStep("CREATE INDEX CONCURRENTLY ON t (c)").message(),
              HasSubstr("name the index"));
  // Prepared statements are not transaction control.
  EXPECT_TRUE(ValidateStep("PREPARE q AS SELECT 1").ok());
}

TEST(NotNullTest, StepsText) {
  const plan::QualifiedName table{.schema = "public", .name = "Users"};
  const std::string alter = R"(ALTER TABLE "public"."Users" )";
  const std::string check = R"("pgbf_users-split_email_not_null")";
  EXPECT_THAT(NotNullSteps(table, "email", "users-split"),
              ElementsAre(alter + "DROP CONSTRAINT IF EXISTS " + check + ", ADD CONSTRAINT " +
                              check + R"( CHECK ("email" IS NOT NULL) NOT VALID)",
                          alter + "VALIDATE CONSTRAINT " + check,
                          alter + R"(ALTER COLUMN "email" SET NOT NULL)",
                          alter + "DROP CONSTRAINT IF EXISTS " + check));
  EXPECT_EQ(NotNullCleanupStep(table, "email", "users-split"),
            NotNullSteps(table, "email", "users-split").back());
  // Odd column names are quoted everywhere, also inside the constraint name.
  const std::vector<std::string> odd = NotNullSteps({.schema = "", .name = "t"}, R"(We"ird)", "j");
  EXPECT_EQ(odd[2], R"(ALTER TABLE "t" ALTER COLUMN "We""ird" SET NOT NULL)");
  EXPECT_THAT(odd[0], HasSubstr(R"(CONSTRAINT "pgbf_j_We""ird_not_null" CHECK ("We""ird" IS)"));
}

TEST(NotNullTest, NoStepNeedsToRunOutsideATransaction) {
  for (const std::string& step : NotNullSteps({.schema = "", .name = "t"}, "c", "j")) {
    EXPECT_FALSE(NeedsNoTransaction(step)) << step;
    EXPECT_TRUE(ValidateStep(step).ok()) << step;
  }
}

TEST(NotNullTest, ConstraintNamesFitIn63BytesAndStayDistinct) {
  EXPECT_EQ(NotNullConstraintName("job", "col"), "pgbf_job_col_not_null");
  const std::string job(63, 'j');
  const std::string column_a = std::string(63, 'c');
  const std::string column_b = std::string(62, 'c') + "d";
  const std::string a = NotNullConstraintName(job, column_a);
  const std::string b = NotNullConstraintName(job, column_b);
  EXPECT_EQ(a.size(), 63u) << a;
  EXPECT_EQ(b.size(), 63u) << b;
  EXPECT_NE(a, b);
  EXPECT_TRUE(a.starts_with("pgbf_jjj")) << a;
  EXPECT_TRUE(a.ends_with("_not_null")) << a;
  // Deterministic: a rerun finds the constraint the first run added, also a later version's.
  EXPECT_EQ(a, NotNullConstraintName(job, column_a));
  EXPECT_EQ(NotNullConstraintName("migrate_orders_" + std::string(30, 'x'),
                                  "customer_reference_" + std::string(20, 'y')),
            "pgbf_migrate_orders_xxxxxxxxxxxxxxxxxxxxxxxxx_6908b6ec_not_null");
  // Job and column are hashed apart.
  EXPECT_NE(NotNullConstraintName(std::string(40, 'a') + "_b", std::string(30, 'c')),
            NotNullConstraintName(std::string(40, 'a'), "b_" + std::string(30, 'c')));
  // The longest name that needs no hash, and the shortest that does.
  const std::string fits(63 - std::string("pgbf_j__not_null").size(), 'x');
  EXPECT_EQ(NotNullConstraintName("j", fits), "pgbf_j_" + fits + "_not_null");
  EXPECT_EQ(NotNullConstraintName("j", fits + "x").size(), 63u);
}

TEST(NotNullTest, ConstraintNamesAreNotCutInsideAUtf8Character) {
  std::string column;
  for (int i = 0; i < 21; ++i) column += "\xC3\xA9";  // é, 2 bytes each
  for (size_t shift = 0; shift < 3; ++shift) {
    const std::string name = NotNullConstraintName(std::string(10 + shift, 'j'), column);
    EXPECT_LE(name.size(), 63u);
    // The byte before the hash is never a lead byte whose continuation was cut off.
    const size_t hash_start = name.size() - std::string("_12345678_not_null").size();
    const auto last = static_cast<unsigned char>(name[hash_start - 1]);
    EXPECT_FALSE(last >= 0xC0) << "cut after a lead byte: " << name;
    size_t pos = 0;
    while (pos < hash_start) {  // every character whole
      const auto lead = static_cast<unsigned char>(name[pos]);
      const size_t length = lead < 0x80 ? 1 : 2;
      ASSERT_LE(pos + length, hash_start) << name;
      pos += length;
    }
  }
}

}  // namespace
}  // namespace pgbackfill::expand
