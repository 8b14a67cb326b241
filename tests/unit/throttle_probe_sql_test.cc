#include "pgbackfill/throttle/probe_sql.h"

#include <gmock/gmock.h>
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <array>
#include <cctype>
#include <string>
#include <string_view>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/time/time.h"

namespace pgbackfill::throttle {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

bool IsWordChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_';
}

// A name in SQL text: a word of letters, digits and underscores with its dotted parts (a.b), and
// where it starts and ends.
struct Name {
  std::string text;
  size_t begin = 0;
  size_t end = 0;
};

std::vector<Name> Names(const std::string& sql) {
  std::vector<Name> names;
  for (size_t i = 0; i < sql.size();) {
    if (!IsWordChar(sql[i])) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < sql.size() && (IsWordChar(sql[end]) || sql[end] == '.')) ++end;
    names.push_back({sql.substr(i, end - i), i, end});
    i = end;
  }
  return names;
}

// Every function call and relation in catalog SQL is spelled pg_catalog.x: the names directly
// followed by "(" (minus SQL keywords) and the names after FROM/JOIN. (Plain string scanning:
// <regex> here made GCC 12 warn inside the library under the sanitizers.)
void ExpectOnlyQualifiedCatalogReferences(const std::string& sql) {
  constexpr std::array<std::string_view, 9> kKeywords = {
      "EXISTS", "IN", "ALL", "ANY", "SELECT", "EXTRACT", "ON", "AND", "WHERE"};
  const std::vector<Name> names = Names(sql);
  for (size_t i = 0; i < names.size(); ++i) {
    const Name& name = names[i];
    const bool call = name.end < sql.size() && sql[name.end] == '(';
    if (call && !absl::c_linear_search(kKeywords, name.text)) {
      EXPECT_TRUE(name.text.starts_with("pg_catalog.")) << "unqualified " << name.text
                                                        << " in: " << sql;
    }
    // The name after FROM or JOIN and whitespace is a relation; EXTRACT(EPOCH FROM x) takes an
    // expression.
    if ((name.text != "FROM" && name.text != "JOIN") || i + 1 == names.size() ||
        (i > 0 && name.text == "FROM" && names[i - 1].text == "EPOCH")) {
      continue;
    }
    const Name& next = names[i + 1];
    const std::string between = sql.substr(name.end, next.begin - name.end);
    const bool adjacent = !between.empty() && absl::c_all_of(between, [](char c) {
      return std::isspace(static_cast<unsigned char>(c)) != 0;
    });
    if (adjacent && !std::isdigit(static_cast<unsigned char>(next.text[0]))) {
      EXPECT_TRUE(next.text.starts_with("pg_catalog.")) << "unqualified " << next.text
                                                        << " in: " << sql;
    }
  }
}

TEST(ProbeSqlTest, TheQualificationCheckFindsUnqualifiedCallsAndRelations) {
  EXPECT_NONFATAL_FAILURE(ExpectOnlyQualifiedCatalogReferences("SELECT now()"), "unqualified now");
  EXPECT_NONFATAL_FAILURE(ExpectOnlyQualifiedCatalogReferences("SELECT 1 FROM pg_stat_activity"),
                          "unqualified pg_stat_activity");
  EXPECT_NONFATAL_FAILURE(ExpectOnlyQualifiedCatalogReferences(
                              "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_locks l ON true"),
                          "unqualified pg_locks");
  ExpectOnlyQualifiedCatalogReferences(
      "SELECT EXTRACT(EPOCH FROM pg_catalog.now()) FROM pg_catalog.pg_class WHERE EXISTS (SELECT)");
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
  EXPECT_THAT(sql, HasSubstr("set_config('statement_timeout', $1, true)"))
      << "a session-level timeout would reach the application through a transaction pooler";
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
  EXPECT_THAT(sql, HasSubstr("), w.insert_lsn::text, "
                             "pg_catalog.substr(pg_catalog.pg_walfile_name(w.lsn), 1, 8) FROM"));
  EXPECT_EQ(kWalInsertLsn, 9);
  EXPECT_EQ(kWalTimeline, 10);
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
