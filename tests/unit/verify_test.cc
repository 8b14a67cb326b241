#include "pgbackfill/verify/verify.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "pgbackfill/sql/lexer.h"

namespace pgbackfill::verify {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Optional;

TEST(MentionedIdentifiersTest, WordsAreFoldedQuotedNamesKeptLiteralsAndCommentsSkipped) {
  EXPECT_THAT(sql::MentionedIdentifiers("First || ' ' || \"Last Name\""),
              ElementsAre("first", "Last Name"));
  EXPECT_THAT(sql::MentionedIdentifiers("'n + 1' -- n\n/* n */ || $$n$$ || $q$n$q$ || x"),
              ElementsAre("x"));
  EXPECT_THAT(sql::MentionedIdentifiers("\"a\"\"b\" + c1_2$"), ElementsAre("a\"b", "c1_2$"));
  EXPECT_THAT(sql::MentionedIdentifiers("$1 + 2.5e3"), ElementsAre("e3"));
}

TEST(WhyNotVerifiableTest, SelfReferenceCannotBeVerified) {
  plan::Plan plan;
  plan.set = {{"n", "n + 1", 3}};
  EXPECT_THAT(WhyNotVerifiable(plan), Optional(HasSubstr("set.n reads column n")));
  plan.set = {{"full", "first || ' ' || last", 3}, {"first_len", "length(first)", 4}};
  EXPECT_EQ(WhyNotVerifiable(plan), std::nullopt);
  plan.set = {{"a", "b", 3}, {"b", "a", 4}};  // each reads the other: no fixed expected value
  EXPECT_NE(WhyNotVerifiable(plan), std::nullopt);
  plan.set = {{"Upper", "\"Upper\" || 'x'", 3}};
  EXPECT_NE(WhyNotVerifiable(plan), std::nullopt) << "quoted names compare as written";
  plan.set.clear();
  plan.columns = {{"n", "n + 1", 3}};
  plan.mode = plan::Mode::kCopy;
  EXPECT_EQ(WhyNotVerifiable(plan), std::nullopt) << "copy mode reads one table, writes another";
}

TEST(DiffSqlTest, BoundedRangeWithWhereAndTwoColumns) {
  batch::UpdateBatchSpec spec;
  spec.table = {"public", "people"};
  spec.key = {{"tenant", "text"}, {"id", "bigint"}};
  spec.set = {{"full", "first || last", 3}, {"Len", "length(first)", 4}};
  spec.where = "active";
  EXPECT_EQ(DiffSql(spec, {true, true}, 5),
            "SELECT (\"tenant\", \"id\")::text, pg_catalog.count(*) OVER () FROM "
            "\"public\".\"people\" AS t WHERE (\"tenant\", \"id\") > ($1::text, $2::bigint) AND "
            "(\"tenant\", \"id\") <= ($3::text, $4::bigint) AND (active) AND (\"full\" IS "
            "DISTINCT FROM (first || last) OR \"Len\" IS DISTINCT FROM (length(first))) ORDER BY "
            "(\"tenant\", \"id\") LIMIT 5");
}

TEST(DiffSqlTest, OpenEndsHaveNoBoundParameters) {
  batch::UpdateBatchSpec spec;
  spec.table = {"s", "t"};
  spec.key = {{"id", "integer"}};
  spec.set = {{"c", "a * 2", 3}};
  EXPECT_THAT(DiffSql(spec, {false, true}, 1),
              HasSubstr("WHERE (\"id\") <= ($1::integer) AND (\"c\" IS DISTINCT FROM (a * 2))"));
  EXPECT_THAT(DiffSql(spec, {false, false}, 1), HasSubstr("AS t WHERE (\"c\" IS DISTINCT FROM"));
}

TEST(CopyDiffSqlTest, BothWaysOverTheSameKeyRangeCountedByKey) {
  CopyCheck check;
  check.source = {"public", "people"};
  check.key = {{"id", "integer"}};
  check.target = {"public", "people_v2"};
  check.columns = {{"id", "id", 0}, {"full_name", "first || ' ' || last", 3}};
  check.column_types = {"bigint", "text"};
  check.target_key = {"id"};
  EXPECT_EQ(CopyDiffSql(check, {true, false}, 5),
            "WITH s AS (SELECT (id)::bigint AS \"id\", (first || ' ' || last)::text AS "
            "\"full_name\" FROM \"public\".\"people\" AS t WHERE (\"id\") > ($1::integer)), d AS "
            "(SELECT \"id\", \"full_name\" FROM \"public\".\"people_v2\" WHERE (\"id\") > "
            "($1::integer)) SELECT k::text, pg_catalog.count(*) OVER () FROM (SELECT DISTINCT "
            "(\"id\") AS k FROM ((SELECT * FROM s EXCEPT ALL SELECT * FROM d) UNION ALL (SELECT * "
            "FROM d EXCEPT ALL SELECT * FROM s)) x) keys ORDER BY k LIMIT 5");
}

}  // namespace
}  // namespace pgbackfill::verify
