#include "pgbackfill/throttle/probe_sql.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "absl/time/time.h"

namespace pgbackfill::throttle {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Every function call and relation in catalog SQL is spelled pg_catalog.x: the names directly
// followed by "(" (minus SQL keywords) and the names after FROM/JOIN.
void ExpectOnlyQualifiedCatalogReferences(const std::string& sql) {
  static const std::regex kCall(R"(([A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)?)\()");
  static const std::regex kRelation(R"((FROM|JOIN)\s+([A-Za-z_][A-Za-z_0-9.]*))");
  static const std::regex kKeyword("^(EXISTS|IN|ALL|ANY|SELECT|EXTRACT|ON|AND|WHERE)$");
  for (auto it = std::sregex_iterator(sql.begin(), sql.end(), kCall); it != std::sregex_iterator();
       ++it) {
    const std::string name = (*it)[1];
    if (std::regex_match(name, kKeyword)) continue;
    EXPECT_TRUE(name.rfind("pg_catalog.", 0) == 0) << "unqualified " << name << " in: " << sql;
  }
  // EXTRACT(EPOCH FROM x) takes an expression, not a relation.
  const std::string relations = std::regex_replace(sql, std::regex("EPOCH FROM"), "EPOCH");
  for (auto it = std::sregex_iterator(relations.begin(), relations.end(), kRelation);
       it != std::sregex_iterator(); ++it) {
    const std::string name = (*it)[2];
    EXPECT_TRUE(name.rfind("pg_catalog.", 0) == 0) << "unqualified " << name << " in: " << sql;
  }
}

TEST(ProbeSqlTest, CatalogStatementsQualifyEverything) {
  for (const std::string& sql :
       {ProbeSettingsSql(), WalSendersSql(), LockWaitersSql(), AutovacuumSql(), StandbySql()}) {
    ExpectOnlyQualifiedCatalogReferences(sql);
    // Values only as parameters: no literal but fixed catalog words.
    EXPECT_THAT(sql, Not(HasSubstr(";")));
  }
}

TEST(ProbeSqlTest, SettingsPinTheSearchPathForTheTransactionOnly) {
  const std::string sql = ProbeSettingsSql();
  EXPECT_THAT(sql, HasSubstr("set_config('search_path', 'pg_catalog, pg_temp', true)"));
  EXPECT_THAT(sql, HasSubstr("set_config('statement_timeout', $1, false)"));
}

TEST(ProbeSqlTest, WalSendersCarryTheWalPositionAndTheColumnsInOrder) {
  const std::string sql = WalSendersSql();
  EXPECT_THAT(sql, HasSubstr("SELECT w.lsn::text, r.pid, r.application_name, "
                             "pg_catalog.host(r.client_addr), r.state, r.write_lsn::text, "
                             "r.replay_lsn::text, (EXTRACT(EPOCH FROM r.replay_lag) * "
                             "1000000)::bigint, EXISTS"));
  EXPECT_THAT(sql, HasSubstr("FROM (SELECT pg_catalog.pg_current_wal_lsn() AS lsn, "
                             "pg_catalog.pg_current_wal_insert_lsn() AS insert_lsn) w "
                             "LEFT JOIN pg_catalog.pg_stat_replication r ON true"));
  EXPECT_THAT(sql, HasSubstr("s.slot_type = 'logical'"));
  EXPECT_EQ(kWalSenderLogical, 8);
  EXPECT_THAT(sql, HasSubstr("), w.insert_lsn::text FROM"));
  EXPECT_EQ(kWalInsertLsn, 9);
}

TEST(ProbeSqlTest, LockWaitersExcludeOurSessionsAndTheProbe) {
  const std::string sql = LockWaitersSql();
  EXPECT_THAT(sql, HasSubstr("a.wait_event_type = 'Lock'"));
  EXPECT_THAT(sql, HasSubstr("a.pid <> pg_catalog.pg_backend_pid()"));
  EXPECT_THAT(sql, HasSubstr("a.pid <> ALL ($1::pg_catalog.int4[])"));
  EXPECT_THAT(sql, HasSubstr("pg_catalog.pg_blocking_pids(a.pid) && $1::pg_catalog.int4[]"));
}

TEST(ProbeSqlTest, AutovacuumLooksAtWorkersOnTheTableInThisDatabase) {
  const std::string sql = AutovacuumSql();
  EXPECT_THAT(sql, HasSubstr("WHERE n.nspname = $1 AND c.relname = $2"));
  EXPECT_THAT(sql, HasSubstr("a.backend_type = 'autovacuum worker'"));
  EXPECT_THAT(sql, HasSubstr("v.datid = d.oid"));
  EXPECT_THAT(sql, HasSubstr("pg_catalog.pg_partition_tree(c.oid)"));
  EXPECT_THAT(sql, HasSubstr("v.relid IN (p.oid, p.reltoastrelid)"));
}

TEST(ProbeSqlTest, StandbyColumns) {
  EXPECT_EQ(StandbySql(),
            "SELECT pg_catalog.pg_is_in_recovery(), pg_catalog.pg_last_wal_replay_lsn()::text, "
            "pg_catalog.pg_last_wal_receive_lsn()::text, (EXTRACT(EPOCH FROM pg_catalog.now() - "
            "pg_catalog.pg_last_xact_replay_timestamp()) * 1000000)::bigint");
  EXPECT_EQ(kStandbyReplayDelayMicros, 3);
}

TEST(ProbeSqlTest, DefaultCanaryQuotesEveryIdentifier) {
  EXPECT_EQ(DefaultCanarySql({"public", "users"}, {"id"}),
            R"(SELECT 1 FROM "public"."users" ORDER BY "id" LIMIT 1)");
  EXPECT_EQ(DefaultCanarySql({"Sales", "order \"lines\""}, {"Order Id", "line"}),
            R"(SELECT 1 FROM "Sales"."order ""lines""" ORDER BY "Order Id", "line" LIMIT 1)");
  EXPECT_EQ(DefaultCanarySql({"s", "t"}, {}), R"(SELECT 1 FROM "s"."t" LIMIT 1)");
}

TEST(ProbeSqlTest, StatementTimeoutIsTwoIntervalsButAtLeastASecond) {
  EXPECT_EQ(ProbeStatementTimeout(absl::Seconds(1)), absl::Seconds(2));
  EXPECT_EQ(ProbeStatementTimeout(absl::Seconds(5)), absl::Seconds(10));
  EXPECT_EQ(ProbeStatementTimeout(absl::Milliseconds(100)), absl::Seconds(1));
  EXPECT_EQ(ProbeStatementTimeout(absl::ZeroDuration()), absl::Seconds(1));
}

TEST(ProbeSqlTest, IntArrayParam) {
  EXPECT_EQ(IntArrayParam({}), "{}");
  EXPECT_EQ(IntArrayParam({42}), "{42}");
  EXPECT_EQ(IntArrayParam({1, 22, 333}), "{1,22,333}");
}

}  // namespace
}  // namespace pgbackfill::throttle
