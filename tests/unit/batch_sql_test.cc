#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "pgbackfill/batch/batch_sql.h"

namespace pgbackfill::batch {
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

TEST(BatchTransactionTest, OnePipelineEveryStatementTaggedOrNamingTheJobStore) {
  plan::Throttle throttle;
  throttle.lock_timeout = absl::Milliseconds(200);
  throttle.statement_timeout = absl::Seconds(30);
  const std::vector<std::string> statements =
      BatchTransaction(throttle, plan::Triggers::kFire, "batch");
  ASSERT_EQ(statements.size(), 5u);
  EXPECT_EQ(statements[0], "/* pgbackfill */ BEGIN");
  EXPECT_EQ(statements[1], "/* pgbackfill */ SET LOCAL lock_timeout = '200ms'");
  EXPECT_EQ(statements[2],
            "SELECT pg_catalog.set_config('statement_timeout', '30000ms', true), "
            "pg_catalog.set_config('pgbackfill.in_batch', 'on', true)");
  EXPECT_EQ(statements[kBatchStatementIndex], "batch");
  EXPECT_EQ(statements[4], "/* pgbackfill */ COMMIT");
}

TEST(BatchTransactionTest, SkippingTriggersSetsTheReplicaRoleForTheTransactionInTheSameStatement) {
  const std::vector<std::string> statements =
      BatchTransaction(plan::Throttle{}, plan::Triggers::kSkip, "batch");
  ASSERT_EQ(statements.size(), 5u) << "the pipeline keeps its five statements";
  EXPECT_EQ(statements[2],
            "SELECT pg_catalog.set_config('statement_timeout', '30000ms', true), "
            "pg_catalog.set_config('pgbackfill.in_batch', 'on', true), "
            "pg_catalog.set_config('session_replication_role', 'replica', true)");
  EXPECT_EQ(statements[kBatchStatementIndex], "batch");
}

TEST(BatchParamsTest, LayoutFollowsBoundedEnds) {
  BatchParams both = UpdateBatchParams(2, {true, true});
  EXPECT_EQ(both.lower, 1);
  EXPECT_EQ(both.upper, 3);
  EXPECT_EQ(both.rows, 5);
  EXPECT_EQ(both.job, 6);
  EXPECT_EQ(both.range, 7);
  EXPECT_EQ(both.checkpoint, 8);
  EXPECT_EQ(both.claimed_upper, 9);
  EXPECT_EQ(both.count, 9);

  BatchParams open = UpdateBatchParams(1, {false, false});
  EXPECT_EQ(open.lower, 0);
  EXPECT_EQ(open.upper, 0);
  EXPECT_EQ(open.rows, 1);
  EXPECT_EQ(open.checkpoint, 4);
  EXPECT_EQ(open.claimed_upper, 5);
  EXPECT_EQ(open.count, 5);
}

TEST(BuildUpdateBatchTest, BoundedIntegerRange) {
  const std::string sql = BuildUpdateBatch(UsersSpec(), {true, true});
  EXPECT_THAT(sql,
              AllOf(HasSubstr("SELECT \"id\" FROM \"public\".\"users\"\n"
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
                    HasSubstr("done_upto IS NOT DISTINCT FROM $6::text[]\n     AND upper IS NOT "
                              "DISTINCT FROM $7::text[]\n     FOR UPDATE")));
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

// The bound is an InitPlan output the planner cannot see; a row comparison against it is
// estimated at a third of the table, which chose a sequential scan per batch. A scalar range on
// the first column (both ends) is what PostgreSQL estimates as a narrow range.
TEST(BuildUpdateBatchTest, TheWriteHasAScalarRangeOnTheFirstKeyColumn) {
  UpdateBatchSpec spec = UsersSpec();
  spec.key = {{"tenant_id", "text"}, {"id", "uuid"}};
  EXPECT_THAT(BuildUpdateBatch(spec, {true, true}),
              AllOf(HasSubstr("WHERE (t.\"tenant_id\", t.\"id\") > ($1::text, $2::uuid)\n"
                              "    AND t.\"tenant_id\" >= $1::text\n"
                              "    AND (t.\"tenant_id\", t.\"id\") <= (SELECT \"tenant_id\", "
                              "\"id\" FROM bound)\n"
                              "    AND t.\"tenant_id\" <= (SELECT \"tenant_id\" FROM bound)\n")));
  // A range with no lower end starts at the smallest key present: one index descent.
  EXPECT_THAT(BuildUpdateBatch(UsersSpec(), {false, true}),
              HasSubstr("WHERE t.\"id\" >= (SELECT s.\"id\" FROM \"public\".\"users\" AS s "
                        "ORDER BY s.\"id\" LIMIT 1)\n    AND (t.\"id\") <= (SELECT \"id\" FROM "
                        "bound)\n"));
  // One key column: the row comparisons are scalar already, nothing is repeated.
  EXPECT_THAT(BuildUpdateBatch(UsersSpec(), {true, true}), Not(HasSubstr("t.\"id\" >= $1")));
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

CopyBatchSpec UsersCopySpec() {
  CopyBatchSpec spec;
  spec.source = {"public", "users"};
  spec.key = {{"id", "bigint"}};
  spec.target = {"public", "users_v2"};
  spec.columns = {{"user_id", "id", 1}, {"email", "lower(email)", 2}, {"n", "length(name)", 3}};
  spec.target_key = {"user_id"};
  return spec;
}

TEST(BuildCopyBatchTest, SameHeadAndTailAsTheUpdateBatch) {
  const std::string sql = BuildCopyBatch(UsersCopySpec(), {true, true});
  EXPECT_THAT(sql, AllOf(HasSubstr("WITH claim AS MATERIALIZED (\n  SELECT 1 FROM "
                                   "\"pgbackfill\".\"ranges\""),
                         HasSubstr("done_upto IS NOT DISTINCT FROM $6::text[]\n     AND upper IS "
                                   "NOT DISTINCT FROM $7::text[]\n     FOR UPDATE"),
                         HasSubstr("SELECT \"id\" FROM \"public\".\"users\"\n"
                                   "  WHERE EXISTS (SELECT FROM claim) AND (\"id\") > ($1::bigint)"
                                   " AND (\"id\") <= ($2::bigint)"),
                         HasSubstr("OFFSET $3::bigint - 1 LIMIT 1"),
                         HasSubstr("SELECT count(*) AS n FROM written"),
                         HasSubstr("ARRAY[\"id\"::text] FROM bound"),
                         HasSubstr("r.job_name = $4::text AND r.range_id = $5::int"),
                         HasSubstr("SELECT (SELECT n FROM counted) AS rows_written, c.done_upto, "
                                   "c.range_done\n  FROM checkpoint c")));
  EXPECT_EQ(UpdateBatchParams(1, {true, true}).count, 7) << "the same parameters";
}

TEST(BuildCopyBatchTest, ReadsTheSourceRowsForShareAndInserts) {
  CopyBatchSpec spec = UsersCopySpec();
  spec.where = "deleted_at IS NULL";
  const std::string sql = BuildCopyBatch(spec, {true, true});
  EXPECT_THAT(sql, AllOf(HasSubstr("src AS MATERIALIZED (\n  SELECT (id) AS \"user_id\", "
                                   "(lower(email)) AS \"email\", (length(name)) AS \"n\"\n"
                                   "    FROM \"public\".\"users\" AS t\n"
                                   "   WHERE (t.\"id\") > ($1::bigint)\n"
                                   "     AND (t.\"id\") <= (SELECT \"id\" FROM bound)\n"
                                   "     AND (deleted_at IS NULL)\n"
                                   "     FOR SHARE OF t\n"),
                         HasSubstr("INSERT INTO \"public\".\"users_v2\" AS dst (\"user_id\", "
                                   "\"email\", \"n\") OVERRIDING SYSTEM VALUE\n"
                                   "  SELECT \"user_id\", \"email\", \"n\" FROM src\n"
                                   "  ON CONFLICT (\"user_id\") "),
                         Not(HasSubstr("FOR KEY SHARE"))));
}

TEST(BuildCopyBatchTest, OnConflictModes) {
  CopyBatchSpec spec = UsersCopySpec();
  spec.on_conflict = plan::OnConflict::kSkip;
  EXPECT_THAT(BuildCopyBatch(spec, {false, false}),
              HasSubstr("ON CONFLICT (\"user_id\") DO NOTHING\n  RETURNING 1"));

  spec.on_conflict = plan::OnConflict::kUpdate;
  EXPECT_THAT(BuildCopyBatch(spec, {false, false}),
              HasSubstr("ON CONFLICT (\"user_id\") DO UPDATE SET \"email\" = EXCLUDED.\"email\", "
                        "\"n\" = EXCLUDED.\"n\"\n"
                        "    WHERE ROW(dst.\"email\", dst.\"n\")::text IS DISTINCT FROM "
                        "ROW(EXCLUDED.\"email\", EXCLUDED.\"n\")::text\n  RETURNING 1"));

  spec.on_conflict = plan::OnConflict::kError;
  EXPECT_THAT(BuildCopyBatch(spec, {false, false}),
              AllOf(HasSubstr("ON CONFLICT (\"user_id\") DO UPDATE SET \"email\" = "
                              "EXCLUDED.\"email\"\n    WHERE CASE WHEN ROW(dst.\"email\", "
                              "dst.\"n\")::text IS DISTINCT FROM"),
                    HasSubstr("THEN ('pgbackfill: on_conflict is error, and "
                              "\"public\".\"users_v2\" already holds a different row with key ' "
                              "|| ROW(EXCLUDED.\"user_id\")::text)::integer = 0 ELSE false END")));

  spec.columns.resize(1);  // the key alone: a conflicting row cannot differ
  for (plan::OnConflict mode :
       {plan::OnConflict::kError, plan::OnConflict::kSkip, plan::OnConflict::kUpdate}) {
    spec.on_conflict = mode;
    EXPECT_THAT(BuildCopyBatch(spec, {true, false}), HasSubstr("DO NOTHING"));
  }
}

TEST(BuildCopyBatchTest, OpenEndedAndCompositeKeys) {
  CopyBatchSpec spec = UsersCopySpec();
  spec.key = {{"tenant", "text"}, {"id", "uuid"}};
  spec.columns = {{"Tenant", "tenant", 1}, {"id", "id", 2}};
  spec.target_key = {"Tenant", "id"};
  const std::string sql = BuildCopyBatch(spec, {false, false});
  EXPECT_THAT(sql, AllOf(HasSubstr("range_end AS (\n  SELECT \"tenant\", \"id\" FROM "
                                   "\"public\".\"users\"\n  ORDER BY \"tenant\" DESC, \"id\" DESC"),
                         HasSubstr("WHERE t.\"tenant\" >= (SELECT s.\"tenant\" FROM "
                                   "\"public\".\"users\" AS s ORDER BY s.\"tenant\" LIMIT 1)\n"
                                   "     AND (t.\"tenant\", t.\"id\") <= (SELECT \"tenant\", "
                                   "\"id\" FROM bound)\n"
                                   "     AND t.\"tenant\" <= (SELECT \"tenant\" FROM bound)\n"
                                   "     FOR SHARE OF t"),
                         HasSubstr("ON CONFLICT (\"Tenant\", \"id\") DO NOTHING"),
                         HasSubstr("r.job_name = $2::text AND r.range_id = $3::int")));
}

}  // namespace
}  // namespace pgbackfill::batch
