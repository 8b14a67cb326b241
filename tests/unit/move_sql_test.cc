#include "pgbackfill/move/move_sql.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "pgbackfill/move/copy_format.h"
#include "pgbackfill/plan/parse.h"
#include "pgbackfill/plan/plan.h"

namespace pgbackfill::move {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

MoveSpec AccountsSpec() {
  MoveSpec spec;
  spec.source = {"public", "accounts"};
  spec.key = {{"tenant", "text"}, {"id", "uuid"}};
  spec.target = {"archive", "accounts"};
  spec.columns = {{"tenant", "tenant", 3}, {"id", "id", 4}, {"note", "tenant || '/' || id", 5}};
  spec.column_types = {"text", "uuid", "character varying(80)"};
  spec.target_key = {"tenant", "id"};
  spec.target_key_types = {"text", "uuid"};
  spec.target_key_unique = true;
  return spec;
}

TEST(TargetTransactionTest, ClaimFirstCheckpointLastEveryStatementTaggedOrNamingPgbackfill) {
  plan::Throttle throttle;
  throttle.lock_timeout = absl::Milliseconds(150);
  throttle.statement_timeout = absl::Seconds(20);
  for (const bool staged : {false, true}) {
    const TargetTransaction t =
        BuildTargetTransaction(AccountsSpec(), throttle, plan::Triggers::kFire, staged);
    ASSERT_EQ(t.head.size(), staged ? 5u : 4u);
    EXPECT_EQ(t.head[0], "/* pgbackfill */ BEGIN");
    EXPECT_EQ(t.head[1], "/* pgbackfill */ SET LOCAL lock_timeout = '150ms'");
    EXPECT_EQ(t.head[2],
              "SELECT pg_catalog.set_config('statement_timeout', '20000ms', true), "
              "pg_catalog.set_config('pgbackfill.in_batch', 'on', true)");
    EXPECT_EQ(t.head[TargetTransaction::kClaimIndex], ClaimSql());
    if (staged) {
      EXPECT_EQ(t.head[4], StageSql(AccountsSpec()));
    }
    EXPECT_EQ(t.copy_in, CopyInSql(AccountsSpec(), staged));
    EXPECT_EQ(t.tail[t.advance_index], AdvanceSql());
    EXPECT_EQ(t.tail.back(), "/* pgbackfill */ COMMIT");
    if (staged) {
      EXPECT_EQ(t.tail.front(), InsertFromStageSql(AccountsSpec()));
    }
  }
}

TEST(TargetTransactionTest, SkippingTriggersSetsTheReplicaRoleBeforeTheClaim) {
  const TargetTransaction t =
      BuildTargetTransaction(AccountsSpec(), plan::Throttle{}, plan::Triggers::kSkip, false);
  ASSERT_EQ(t.head.size(), 4u);
  EXPECT_THAT(t.head[2], HasSubstr(", pg_catalog.set_config('session_replication_role', "
                                   "'replica', true)"));
  EXPECT_EQ(t.head[TargetTransaction::kClaimIndex], ClaimSql());
}

TEST(BatchEndSqlTest, WalksRowsKeysPastTheCheckpointAndKeepsTheLast) {
  const std::string sql = BatchEndSql(AccountsSpec(), {true, true});
  EXPECT_THAT(sql,
              AllOf(HasSubstr("pg_catalog.row_number() OVER (ORDER BY t.\"tenant\", t.\"id\")"),
                    HasSubstr("FROM \"public\".\"accounts\" AS t"),
                    HasSubstr("(t.\"tenant\", t.\"id\") > ($1::text, $2::uuid)"),
                    HasSubstr("(t.\"tenant\", t.\"id\") <= ($3::text, $4::uuid)"),
                    HasSubstr("LIMIT $5::bigint"),
                    HasSubstr("SELECT b.n, b.\"tenant\"::text, b.\"id\"::text"),
                    HasSubstr("ORDER BY b.n DESC LIMIT 1")));
}

TEST(BatchEndSqlTest, OpenEndsShiftTheRowsParameter) {
  EXPECT_THAT(BatchEndSql(AccountsSpec(), {false, false}),
              AllOf(HasSubstr("WHERE true"), HasSubstr("LIMIT $1::bigint")));
  EXPECT_THAT(BatchEndSql(AccountsSpec(), {false, true}),
              AllOf(HasSubstr("<= ($1::text, $2::uuid)"), HasSubstr("LIMIT $3::bigint"),
                    Not(HasSubstr(" > ("))));
}

TEST(CopyOutSqlTest, QuotesTheBoundsAsLiteralsInKeyOrder) {
  MoveSpec spec = AccountsSpec();
  spec.where = "tenant <> 'x'";
  const std::string sql =
      CopyOutSql(spec, ranges::KeyValue{"it's", "0b3a"}, ranges::KeyValue{"z", "ffff"});
  EXPECT_EQ(sql,
            "COPY (SELECT (tenant), (id), (tenant || '/' || id) FROM \"public\".\"accounts\" AS t"
            " WHERE (t.\"tenant\", t.\"id\") > ('it''s'::text, '0b3a'::uuid) AND"
            " (t.\"tenant\", t.\"id\") <= ('z'::text, 'ffff'::uuid) AND (tenant <> 'x')"
            " ORDER BY t.\"tenant\", t.\"id\") TO STDOUT (FORMAT binary)");
  spec.binary = false;
  EXPECT_THAT(CopyOutSql(spec, std::nullopt, std::nullopt),
              AllOf(HasSubstr("WHERE true AND (tenant <> 'x')"), HasSubstr("(FORMAT text)")));
}

TEST(CopyInSqlTest, IntoTheTargetOrTheStage) {
  EXPECT_EQ(
      CopyInSql(AccountsSpec(), false),
      "COPY \"archive\".\"accounts\" (\"tenant\", \"id\", \"note\") FROM STDIN (FORMAT binary)");
  EXPECT_EQ(
      CopyInSql(AccountsSpec(), true),
      "COPY pg_temp.pgbackfill_stage (\"tenant\", \"id\", \"note\") FROM STDIN (FORMAT binary)");
  EXPECT_THAT(StageSql(AccountsSpec()),
              AllOf(HasSubstr("CREATE TEMPORARY TABLE IF NOT EXISTS pgbackfill_stage ON COMMIT "
                              "DELETE ROWS AS SELECT \"tenant\", \"id\", \"note\" FROM "
                              "\"archive\".\"accounts\" WITH NO DATA")));
}

TEST(InsertFromStageSqlTest, FollowsOnConflict) {
  MoveSpec spec = AccountsSpec();
  EXPECT_THAT(InsertFromStageSql(spec),
              AllOf(HasSubstr("INSERT INTO \"archive\".\"accounts\" AS x (\"tenant\", \"id\", "
                              "\"note\") OVERRIDING SYSTEM VALUE SELECT"),
                    HasSubstr("FROM pg_temp.pgbackfill_stage"), Not(HasSubstr("ON CONFLICT"))));
  spec.on_conflict = plan::OnConflict::kSkip;
  EXPECT_THAT(InsertFromStageSql(spec), HasSubstr("ON CONFLICT (\"tenant\", \"id\") DO NOTHING"));
  spec.on_conflict = plan::OnConflict::kUpdate;
  EXPECT_THAT(InsertFromStageSql(spec),
              AllOf(HasSubstr("DO UPDATE SET \"note\" = EXCLUDED.\"note\""),
                    HasSubstr("WHERE ROW(x.\"note\") IS DISTINCT FROM ROW(EXCLUDED.\"note\")"),
                    Not(HasSubstr("\"tenant\" = EXCLUDED"))));
}

TEST(CheckpointSqlTest, ClaimLocksTheRowOnlyWhereTheBatchStarts) {
  EXPECT_THAT(ClaimSql(), AllOf(HasSubstr("done_upto IS NOT DISTINCT FROM $3::text[]"),
                                HasSubstr("r.upper IS NOT DISTINCT FROM $4::text[]"),
                                HasSubstr("r.state <> 'done'"), HasSubstr("FOR UPDATE")));
  EXPECT_THAT(AdvanceSql(), AllOf(HasSubstr("done_upto = $3::text[]"),
                                  HasSubstr("rows_done = r.rows_done + $4::bigint"),
                                  HasSubstr("CASE WHEN $5::bool THEN 'done'")));
}

TEST(VerifySqlTest, BothSidesHashTheSameRowText) {
  const std::string source = SourceHashSql(AccountsSpec(), {true, false});
  EXPECT_THAT(source, AllOf(HasSubstr("hashtextextended(ROW((tenant)::text, (id)::uuid, "
                                      "(tenant || '/' || id)::character varying(80))::text, 0)"),
                            HasSubstr("FROM \"public\".\"accounts\" AS t WHERE (t.\"tenant\", "
                                      "t.\"id\") > ($1::text, $2::uuid)")));
  const std::string target = TargetHashSql(AccountsSpec(), {true, true});
  EXPECT_THAT(target, AllOf(HasSubstr("ROW(t.\"tenant\", t.\"id\", t.\"note\")::text"),
                            HasSubstr("FROM \"archive\".\"accounts\" AS t"),
                            HasSubstr("<= ($3::text, $4::uuid)")));
  EXPECT_THAT(DeleteTargetRangeSql(AccountsSpec(), {false, true}),
              HasSubstr("DELETE FROM \"archive\".\"accounts\" AS t WHERE (t.\"tenant\", t.\"id\") "
                        "<= ($1::text, $2::uuid)"));
}

TEST(VerifySqlTest, DifferentEncodingsHashTheUtf8Bytes) {
  MoveSpec spec = AccountsSpec();
  spec.same_encoding = false;
  EXPECT_THAT(TargetHashSql(spec, {false, false}),
              HasSubstr("pg_catalog.hashtextextended(pg_catalog.encode(pg_catalog.convert_to("
                        "ROW(t.\"tenant\", t.\"id\", t.\"note\")::text, 'UTF8'), 'hex'), 0)"));
  EXPECT_THAT(SourceHashSql(spec, {false, false}), HasSubstr("pg_catalog.convert_to(ROW("));
}

ColumnTypes Pair(std::string source, uint32_t source_oid, std::string target, uint32_t target_oid) {
  return ColumnTypes{"c", std::move(source), source_oid, std::move(target), target_oid};
}

TEST(CopyFormatTest, BinaryOnlyForTheSameBuiltInType) {
  EXPECT_EQ(HowToCarry(Pair("integer", 23, "integer", 23)), Carry::kBinary);
  EXPECT_EQ(HowToCarry(Pair("integer[]", 1007, "integer[]", 1007)), Carry::kBinary);
  // An enum of the same name has other OIDs in another database: by name, as text.
  EXPECT_EQ(HowToCarry(Pair("mood", 16390, "mood", 24577)), Carry::kText);
  EXPECT_EQ(HowToCarry(Pair("mood", 16390, "mood", 16390)), Carry::kText);
}

TEST(CopyFormatTest, TextWhereEveryValueParses) {
  EXPECT_EQ(HowToCarry(Pair("integer", 23, "bigint", 20)), Carry::kText);
  EXPECT_EQ(HowToCarry(Pair("bigint", 20, "numeric", 1700)), Carry::kText);
  EXPECT_EQ(HowToCarry(Pair("uuid", 2950, "text", 25)), Carry::kText);
  EXPECT_EQ(HowToCarry(Pair("json", 114, "jsonb", 3802)), Carry::kText);
  EXPECT_EQ(HowToCarry(Pair("date", 1082, "timestamp without time zone", 1114)), Carry::kText);
}

TEST(CopyFormatTest, RefusesWhatTextCannotCarry) {
  EXPECT_EQ(HowToCarry(Pair("integer", 23, "boolean", 16)), Carry::kRefused);
  EXPECT_EQ(HowToCarry(Pair("numeric", 1700, "integer", 23)), Carry::kRefused);
  EXPECT_EQ(HowToCarry(Pair("text", 25, "uuid", 2950)), Carry::kRefused);
  EXPECT_EQ(HowToCarry(Pair("timestamp without time zone", 1114, "timestamp with time zone", 1184)),
            Carry::kRefused);
}

TEST(CopyFormatTest, OneTextColumnMakesTheStreamText) {
  const FormatChoice all_binary =
      ChooseFormat({Pair("integer", 23, "integer", 23), Pair("text", 25, "text", 25)});
  EXPECT_TRUE(all_binary.binary);
  EXPECT_THAT(all_binary.text_because, IsEmpty());

  std::vector<ColumnTypes> mixed = {Pair("integer", 23, "integer", 23),
                                    Pair("integer", 23, "bigint", 20),
                                    Pair("integer", 23, "boolean", 16)};
  mixed[1].column = "qty";
  const FormatChoice choice = ChooseFormat(mixed);
  EXPECT_FALSE(choice.binary);
  EXPECT_THAT(choice.text_because,
              ElementsAre("column \"qty\": integer on the source, bigint in the target"));
  EXPECT_THAT(choice.refused, ElementsAre(2u));
}

plan::Plan ParsedPlan(const std::string& text) {
  absl::StatusOr<plan::Plan> parsed =
      plan::ParsePlan(text, "plan.yaml", [](std::string_view) { return std::nullopt; });
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return parsed.ok() ? *parsed : plan::Plan{};
}

TEST(EndpointsTest, EitherSideDefaultsToTheDsn) {
  constexpr char kCopy[] = "version: 1\nname: j\ntable: t\ninto: u\ndsn: host=main\n";
  const plan::Plan same = ParsedPlan(kCopy);
  EXPECT_FALSE(plan::MovesBetweenDatabases(same));
  EXPECT_EQ(plan::HomeDsn(same, ""), "host=main");
  EXPECT_EQ(plan::HomeDsn(same, "host=flag"), "host=flag");

  const plan::Plan to_archive = ParsedPlan(std::string(kCopy) + "target_dsn: host=archive\n");
  EXPECT_TRUE(plan::MovesBetweenDatabases(to_archive));
  EXPECT_EQ(plan::HomeDsn(to_archive, "host=flag"), "host=archive");
  EXPECT_EQ(plan::SourceDsn(to_archive, "host=flag"), "host=flag");
  EXPECT_EQ(plan::SourceDsn(to_archive, ""), "host=main");

  const plan::Plan from_old = ParsedPlan(std::string(kCopy) + "source_dsn: host=old\n");
  EXPECT_EQ(plan::HomeDsn(from_old, ""), "host=main");
  EXPECT_EQ(plan::SourceDsn(from_old, ""), "host=old");
  // Another database may hold a table of the same name.
  EXPECT_TRUE(plan::MovesBetweenDatabases(
      ParsedPlan("version: 1\nname: j\ntable: t\ninto: t\ntarget_dsn: host=archive\n")));
  // Which database a job moves between is part of what it does, not tuning.
  EXPECT_NE(plan::PlanHash(same), plan::PlanHash(to_archive));
  EXPECT_EQ(plan::PlanHash(to_archive), plan::PlanHash(from_old));
}

}  // namespace
}  // namespace pgbackfill::move
