#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "pgbackfill/exec/batch_sql.h"

namespace pgbackfill::exec {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

UpdateBatchSpec UsersSpec() {
  UpdateBatchSpec spec;
  spec.table = {"public", "users"};
  spec.key = {{"id", "bigint"}};
  spec.set = {{"first_name", "split_part(full_name, ' ', 1)", 5}};
  return spec;
}

TEST(BatchParamsTest, LayoutFollowsBoundedEnds) {
  BatchParams both = UpdateBatchParams(2, {true, true});
  EXPECT_EQ(both.lower, 1);
  EXPECT_EQ(both.upper, 3);
  EXPECT_EQ(both.rows, 5);
  EXPECT_EQ(both.job, 6);
  EXPECT_EQ(both.range, 7);
  EXPECT_EQ(both.checkpoint, 8);
  EXPECT_EQ(both.count, 8);

  BatchParams open = UpdateBatchParams(1, {false, false});
  EXPECT_EQ(open.lower, 0);
  EXPECT_EQ(open.upper, 0);
  EXPECT_EQ(open.rows, 1);
  EXPECT_EQ(open.checkpoint, 4);
  EXPECT_EQ(open.count, 4);
}

TEST(BuildUpdateBatchTest, BoundedIntegerRange) {
  const std::string sql = BuildUpdateBatch(UsersSpec(), {true, true});
  EXPECT_THAT(sql, AllOf(HasSubstr("SELECT \"id\" FROM \"public\".\"users\"\n"
                                   "  WHERE EXISTS (SELECT FROM claim) AND (\"id\") > ($1::bigint)"
                                   " AND (\"id\") <= ($2::bigint)"),
                         HasSubstr("OFFSET $3::bigint - 1 LIMIT 1"),
                         HasSubstr("UPDATE \"public\".\"users\" AS t SET \"first_name\" = "
                                   "(split_part(full_name, ' ', 1))"),
                         HasSubstr("(t.\"id\") > ($1::bigint)"),
                         HasSubstr("(t.\"id\") <= (SELECT \"id\" FROM bound)"),
                         HasSubstr("UNION ALL\n  SELECT $2::bigint, true WHERE NOT EXISTS (SELECT FROM "
                                   "batch_end) AND EXISTS (SELECT FROM claim)"),
                         HasSubstr("ARRAY[\"id\"::text] FROM bound"),
                         HasSubstr("r.job_name = $4::text AND r.range_id = $5::int"),
                         HasSubstr("done_upto IS NOT DISTINCT FROM $6::text[]\n     FOR UPDATE")));
}

TEST(BuildUpdateBatchTest, OpenEndedRangesHaveNoBoundPredicate) {
  const std::string sql = BuildUpdateBatch(UsersSpec(), {false, false});
  EXPECT_THAT(sql, Not(HasSubstr(" > (")));
  EXPECT_THAT(sql, Not(HasSubstr("<= ($")));
  EXPECT_THAT(sql, HasSubstr("OFFSET $1::bigint - 1"));
  EXPECT_THAT(sql, HasSubstr("range_end AS (\n  SELECT \"id\" FROM \"public\".\"users\"\n"
                             "  ORDER BY \"id\" DESC LIMIT 1"));
  EXPECT_THAT(sql, HasSubstr("r.job_name = $2::text AND r.range_id = $3::int"));
}

TEST(BuildUpdateBatchTest, CompositeKeyUsesRowValues) {
  UpdateBatchSpec spec = UsersSpec();
  spec.key = {{"tenant_id", "text"}, {"id", "uuid"}};
  const std::string sql = BuildUpdateBatch(spec, {true, false});
  EXPECT_THAT(sql, AllOf(HasSubstr("(\"tenant_id\", \"id\") > ($1::text, $2::uuid)"),
                         HasSubstr("ORDER BY \"tenant_id\", \"id\""),
                         HasSubstr("ARRAY[\"tenant_id\"::text, \"id\"::text]"),
                         HasSubstr("(t.\"tenant_id\", t.\"id\") <= (SELECT \"tenant_id\", \"id\" "
                                   "FROM bound)"),
                         HasSubstr("WHERE (\"tenant_id\", \"id\") > ($1::text, $2::uuid)\n"
                                   "  ORDER BY \"tenant_id\" DESC, \"id\" DESC LIMIT 1")));
}

TEST(BuildUpdateBatchTest, WhereIsParenthesisedAndNamesAreQuoted) {
  UpdateBatchSpec spec;
  spec.table = {"My Schema", "We\"ird"};
  spec.key = {{"select", "integer"}};
  spec.set = {{"new \"col\"", "1", 1}, {"Other", "2", 2}};
  spec.where = "a OR b";
  const std::string sql = BuildUpdateBatch(spec, {true, true});
  EXPECT_THAT(sql, AllOf(HasSubstr("\"My Schema\".\"We\"\"ird\""),
                         HasSubstr("\"new \"\"col\"\"\" = (1), \"Other\" = (2)"),
                         HasSubstr("AND (a OR b)"), HasSubstr("(\"select\") > ($1::integer)")));
}

}  // namespace
}  // namespace pgbackfill::exec
