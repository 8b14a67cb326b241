// The rules of the readings of what the application feels (probe_readings.h), their SQL
// (probe_sql.h) and the throttle.command runner (probe_command.h), without a server.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "pgbackfill/throttle/probe_command.h"
#include "pgbackfill/throttle/probe_readings.h"
#include "pgbackfill/throttle/probe_sql.h"
#include "pgbackfill/util/shell_command.h"

namespace pgbackfill::throttle {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Row = std::vector<std::optional<std::string>>;

StatementRow Statement(int64_t queryid, int64_t calls, double millis, std::string query = "q") {
  return StatementRow{queryid, 10, calls, millis, std::move(query)};
}

TEST(StatementLatencyDeltaTest, TheFirstRoundOnlyPrimes) {
  StatementBaseline next;
  StatementLatency reading =
      StatementLatencyDelta(std::nullopt, {Statement(1, 100, 500.0)}, next);
  EXPECT_EQ(reading.calls, 0);
  EXPECT_EQ(reading.mean, absl::ZeroDuration());
  EXPECT_EQ(reading.worst_busy, absl::ZeroDuration());
  EXPECT_EQ(next.size(), 1u);
}

TEST(StatementLatencyDeltaTest, MeanOverEveryStatementsDeltas) {
  StatementBaseline first;
  StatementLatencyDelta(std::nullopt, {Statement(1, 100, 500.0), Statement(2, 10, 10.0)}, first);
  StatementBaseline next;
  // Statement 1: 10 calls, 20 ms; statement 2: 30 calls, 60 ms; statement 3 is new: 10, 120 ms.
  StatementLatency reading = StatementLatencyDelta(
      first, {Statement(1, 110, 520.0), Statement(2, 40, 70.0), Statement(3, 10, 120.0)}, next);
  EXPECT_EQ(reading.calls, 50);
  EXPECT_EQ(reading.mean, absl::Microseconds(200 * 1000 / 50));
  EXPECT_EQ(reading.worst_busy, absl::Milliseconds(12));
  EXPECT_EQ(reading.worst_query, "q");
  EXPECT_EQ(next.at({1, 10}).calls, 110);
}

// A statement's counters as pg_stat_statements shows them after `times` (ms): calls, total and
// the population stddev.
StatementRow Counted(int64_t queryid, const std::vector<double>& times) {
  double total = 0;
  for (double t : times) total += t;
  const double mean = total / static_cast<double>(times.size());
  double squares = 0;
  for (double t : times) squares += (t - mean) * (t - mean);
  StatementRow row = Statement(queryid, static_cast<int64_t>(times.size()), total);
  row.stddev_millis = std::sqrt(squares / static_cast<double>(times.size()));
  return row;
}

TEST(StatementLatencyDeltaTest, TheTailIsTheIntervalsMeanPlusThreeStandardDeviations) {
  // Before: 1,000 calls of 0.02 ms each. In the interval: 98 more of 0.02 ms, and 2 that waited
  // 3 ms. The interval's mean moves from 0.02 to 0.0796 ms; its tail to ~1.3 ms.
  std::vector<double> before(1000, 0.02);
  std::vector<double> interval(98, 0.02);
  interval.push_back(3);
  interval.push_back(3);
  std::vector<double> after = before;
  after.insert(after.end(), interval.begin(), interval.end());
  StatementBaseline first;
  StatementBaseline next;
  StatementLatencyDelta(std::nullopt, {Counted(1, before)}, first);
  const StatementLatency reading = StatementLatencyDelta(first, {Counted(1, after)}, next);
  double mean = 0;
  for (double t : interval) mean += t / 100;
  double variance = 0;
  for (double t : interval) variance += (t - mean) * (t - mean) / 100;
  EXPECT_EQ(reading.calls, 100);
  EXPECT_NEAR(absl::ToDoubleMilliseconds(reading.mean), mean, 1e-6);
  EXPECT_NEAR(absl::ToDoubleMilliseconds(reading.tail), mean + 3 * std::sqrt(variance), 1e-3);
  EXPECT_GT(reading.tail, absl::Milliseconds(1));

  // An interval of calls all alike has no spread: the tail is the mean.
  StatementBaseline third;
  std::vector<double> alike = after;
  alike.insert(alike.end(), 100, 0.05);
  const StatementLatency flat = StatementLatencyDelta(next, {Counted(1, alike)}, third);
  EXPECT_NEAR(absl::ToDoubleMilliseconds(flat.tail), 0.05, 1e-4);
}

TEST(StatementLatencyDeltaTest, TheTailTakesEveryStatementsCallsTogether) {
  StatementBaseline first;
  StatementBaseline next;
  StatementLatencyDelta(std::nullopt, {Counted(1, {1, 1}), Counted(2, {1, 1})}, first);
  // 2 more calls of statement 1 (1 ms each), 2 of statement 2 (3 ms each): 1, 1, 3, 3.
  const StatementLatency reading =
      StatementLatencyDelta(first, {Counted(1, {1, 1, 1, 1}), Counted(2, {1, 1, 3, 3})}, next);
  EXPECT_EQ(reading.calls, 4);
  EXPECT_NEAR(absl::ToDoubleMilliseconds(reading.mean), 2, 1e-9);
  EXPECT_NEAR(absl::ToDoubleMilliseconds(reading.tail), 2 + 3 * 1, 1e-6);
}

TEST(StatementLatencyDeltaTest, WorstBusyIsAmongTheFiveBusiest) {
  StatementBaseline first;
  std::vector<StatementRow> before;
  for (int64_t id = 1; id <= 6; ++id) before.push_back(Statement(id, 0, 0));
  StatementLatencyDelta(std::nullopt, before, first);
  std::vector<StatementRow> after;
  // Five busy statements at 1 ms, one rare statement at 1 s: the rare one is not the worst busy.
  for (int64_t id = 1; id <= 5; ++id) after.push_back(Statement(id, 100, 100.0 * static_cast<double>(id), "busy"));
  after.push_back(Statement(6, 1, 1000.0, "rare"));
  StatementBaseline next;
  StatementLatency reading = StatementLatencyDelta(first, after, next);
  EXPECT_EQ(reading.worst_busy, absl::Milliseconds(5));
  EXPECT_EQ(reading.worst_query, "busy");
}

TEST(StatementLatencyDeltaTest, CountersThatWentBackwardsAreSkipped) {
  StatementBaseline first;
  StatementLatencyDelta(std::nullopt, {Statement(1, 100, 500.0), Statement(2, 10, 10.0)}, first);
  StatementBaseline next;
  StatementLatency reading =
      StatementLatencyDelta(first, {Statement(1, 3, 1.0), Statement(2, 12, 14.0)}, next);
  EXPECT_EQ(reading.calls, 2);
  EXPECT_EQ(reading.mean, absl::Milliseconds(2));
  EXPECT_EQ(next.at({1, 10}).calls, 3) << "the next round counts from the reset counters";
}

TEST(StatementLatencyDeltaTest, WorstQueryIsCutTo80BytesOnACharacterBoundary) {
  StatementBaseline first;
  StatementLatencyDelta(std::nullopt, {}, first);
  std::string query(79, 'x');
  query += "\xC3\xA9 and more";  // a two-byte character across byte 80
  StatementBaseline next;
  StatementLatency reading = StatementLatencyDelta(first, {Statement(1, 1, 1.0, query)}, next);
  EXPECT_EQ(reading.worst_query, std::string(79, 'x'));
}

TEST(StatementLatencyErrorsTest, OnlyNotInstalledIsFailedPrecondition) {
  absl::Status missing = StatementsNotInstalled("app");
  EXPECT_EQ(missing.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(missing.message(), "pg_stat_statements is not installed in database app");
  absl::Status fatal = absl::FailedPreconditionError("must be loaded via shared_preload_libraries");
  fatal.SetPayload("sqlstate", absl::Cord("55000"));
  absl::Status recoded = StatementLatencyError(fatal);
  EXPECT_EQ(recoded.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(recoded.message(), fatal.message());
  EXPECT_EQ(recoded.GetPayload("sqlstate"), absl::Cord("55000"));
  EXPECT_EQ(StatementLatencyError(absl::UnavailableError("x")).code(),
            absl::StatusCode::kUnavailable);
}

TEST(ParseStatementRowTest, NumbersAndText) {
  absl::StatusOr<StatementRow> row =
      ParseStatementRow(Row{"-42", "10", "7", "12.5", "SELECT $1", "0.25"});
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->queryid, -42);
  EXPECT_EQ(row->calls, 7);
  EXPECT_DOUBLE_EQ(row->total_millis, 12.5);
  EXPECT_EQ(row->query, "SELECT $1");
  EXPECT_DOUBLE_EQ(row->stddev_millis, 0.25);
  EXPECT_FALSE(ParseStatementRow(Row{"x", "10", "7", "12.5", "q", "0"}).ok());
  EXPECT_FALSE(ParseStatementRow(Row{"1", "10", "7", "12.5", "q"}).ok()) << "no stddev";
}

TEST(SessionLoadTest, AveragesOverTheLooksThatAnsweredAndKeepsTheMostRecentlyBusy) {
  absl::StatusOr<SessionLook> look = ParseSessionLook(Row{"4", "1", "2", "0", "1", "7"});
  ASSERT_TRUE(look.ok()) << look.status();
  EXPECT_EQ(look->lock, 2);
  EXPECT_EQ(look->recent, 7);
  absl::StatusOr<SessionLoad> load =
      AverageLooks({*look, SessionLook{2, 1, 0, 1, 0, 3}}, absl::OkStatus());
  ASSERT_TRUE(load.ok()) << load.status();
  EXPECT_EQ(load->looks, 2);
  EXPECT_DOUBLE_EQ(load->active, 3.0);
  EXPECT_DOUBLE_EQ(load->cpu, 1.0);
  EXPECT_DOUBLE_EQ(load->lock, 1.0);
  EXPECT_DOUBLE_EQ(load->lwlock, 0.5);
  EXPECT_DOUBLE_EQ(load->io, 0.5);
  EXPECT_EQ(load->recent, 7) << "one look that saw them is enough";
}

TEST(SessionLoadTest, NoLookIsTheRoundsError) {
  absl::StatusOr<SessionLoad> load = AverageLooks({}, absl::DeadlineExceededError("slow"));
  EXPECT_EQ(load.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_FALSE(AverageLooks({}, absl::OkStatus()).ok());
}

TEST(ParseSlotRowTest, NullsMeanNoRetentionAndNoCap) {
  absl::StatusOr<SlotWal> slot = ParseSlotRow(Row{"x", std::nullopt, std::nullopt, std::nullopt});
  ASSERT_TRUE(slot.ok()) << slot.status();
  EXPECT_EQ(slot->slot, "x");
  EXPECT_EQ(slot->retained_bytes, 0);
  EXPECT_EQ(slot->wal_status, "");
  EXPECT_FALSE(slot->safe_wal_size.has_value());
  slot = ParseSlotRow(Row{"y", "reserved", "1024", "4096"});
  ASSERT_TRUE(slot.ok()) << slot.status();
  EXPECT_EQ(slot->retained_bytes, 4096);
  EXPECT_EQ(slot->safe_wal_size, 1024);
  EXPECT_EQ(slot->wal_status, "reserved");
}

TEST(ParseArchiverRowTest, PendingIsReadyFilesTimesSegmentSize) {
  absl::StatusOr<ArchiverState> state =
      ParseArchiverRow(Row{"on", "t", "000000010000000000000003", "2", "16777216", "app"});
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_TRUE(state->archiving);
  EXPECT_TRUE(state->failing);
  EXPECT_EQ(state->last_failed_wal, "000000010000000000000003");
  EXPECT_EQ(state->pending_bytes, 2 * 16777216LL);
  state = ParseArchiverRow(Row{"off", "f", std::nullopt, "0", "16777216", "app"});
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_FALSE(state->archiving);
  EXPECT_FALSE(state->failing);
}

TEST(ParseArchiverRowTest, NoPrivilegeNamesTheRoleToGrant) {
  absl::StatusOr<ArchiverState> state =
      ParseArchiverRow(Row{"on", "f", std::nullopt, std::nullopt, "16777216", "app"});
  EXPECT_EQ(state.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(state.status().message()), HasSubstr("GRANT pg_monitor TO app"));
}

TEST(CpuPressureTest, TheShareIsTheStallTimeOverTheServersClockBetweenTwoCounts) {
  const std::string psi =
      "some avg10=12.50 avg60=10.00 avg300=8.00 total=5000000\n"
      "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
  absl::StatusOr<CpuStallCount> first = ParseCpuPressureRow(Row{psi, "t", "100.0", "app"});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->total_micros, 5'000'000);
  EXPECT_EQ(CpuPressureBetween(std::nullopt, *first), std::nullopt) << "one count is no interval";
  // 0.3 s of stall in 1.5 s.
  const CpuStallCount second{.total_micros = 5'300'000, .at_seconds = 101.5};
  EXPECT_THAT(CpuPressureBetween(*first, second),
              testing::Optional(testing::DoubleNear(0.2, 1e-9)));
  // A restarted server's count starts again, and a clock that did not move tells nothing.
  EXPECT_EQ(CpuPressureBetween(second, {.total_micros = 10, .at_seconds = 102}), std::nullopt);
  EXPECT_EQ(CpuPressureBetween(second, {.total_micros = 5'400'000, .at_seconds = 101.5}),
            std::nullopt);
  // Never over the whole interval, whatever rounding the two clocks make.
  EXPECT_EQ(CpuPressureBetween(second, {.total_micros = 7'000'000, .at_seconds = 102.5}), 1.0);
}

TEST(CpuPressureTest, NoPrivilegeOrNoFileIsNotAvailableAndAStrangeFileIsAnError) {
  absl::StatusOr<CpuStallCount> denied = ParseCpuPressureRow(Row{std::nullopt, "f", "1", "app"});
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(denied.status().message()),
              HasSubstr("GRANT pg_read_server_files TO app"));
  absl::StatusOr<CpuStallCount> missing = ParseCpuPressureRow(Row{std::nullopt, "t", "1", "app"});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("PSI"));
  absl::StatusOr<CpuStallCount> strange = ParseCpuPressureRow(Row{"full total=3", "t", "1", "app"});
  EXPECT_EQ(strange.status().code(), absl::StatusCode::kInternal);
}

TEST(AppProbeSqlTest, EveryStatementIsQualifiedAndTheViewUsesTheExtensionsSchema) {
  for (const std::string& sql : {StatementsExtensionSql(), SessionLoadSql(), SlotsSql(),
                                 ArchiverSql(), CpuPressureSql(), StatementLatencySql("ext")}) {
    EXPECT_THAT(sql, HasSubstr("pg_catalog.")) << sql;
  }
  EXPECT_THAT(StatementLatencySql("my schema"), HasSubstr("\"my schema\".pg_stat_statements s"));
  EXPECT_THAT(StatementLatencySql("ext"), HasSubstr("strpos(s.query, 'pgbackfill') = 0"));
  EXPECT_THAT(StatementLatencySql("ext"), HasSubstr("s.toplevel"));
  EXPECT_EQ(sql::Tagged("SELECT 1"), "/* pgbackfill */ SELECT 1");
  EXPECT_THAT(std::string(sql::kTag), HasSubstr("pgbackfill")) << "the statement filter sees it";
}

TEST(AppProbeSqlTest, SessionLoadLeavesOutOurSessions) {
  const std::string sql = SessionLoadSql();
  EXPECT_THAT(sql, HasSubstr("a.pid <> pg_catalog.pg_backend_pid()"));
  EXPECT_THAT(sql, HasSubstr("a.pid <> ALL ($1::pg_catalog.int4[])"));
  EXPECT_THAT(sql, HasSubstr("NOT LIKE 'pgbackfill%'"));
  EXPECT_THAT(sql, HasSubstr("backend_type = 'client backend'"));
  EXPECT_THAT(sql, Not(HasSubstr("datname"))) << "every database: the server's load is shared";
}

TEST(AppProbeSqlTest, HeartbeatCommitsSynchronouslyInItsOwnTransaction) {
  std::vector<std::string> statements = HeartbeatStatements();
  ASSERT_EQ(statements.size(), 4u);
  EXPECT_THAT(statements[0], HasSubstr("BEGIN"));
  EXPECT_THAT(statements[1], HasSubstr("set_config('synchronous_commit', 'on', true)"));
  EXPECT_THAT(statements[2], HasSubstr("INSERT INTO \"pgbackfill\".\"heartbeat\""));
  EXPECT_THAT(statements[2], HasSubstr("ON CONFLICT (job_name) DO UPDATE"));
  EXPECT_EQ(statements[3], "COMMIT");
}

TEST(ProbeCommandTest, ExitStatusAndFirstLine) {
  absl::StatusOr<CommandResult> result =
      RunProbeCommand("printf '0.5\\nmore\\n'; exit 3", absl::Seconds(10));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 3);
  EXPECT_EQ(result->output, "0.5");
}

TEST(ProbeCommandTest, StdinIsEmptyAndAChattyCommandIsNotKilledByItsPipe) {
  absl::StatusOr<CommandResult> result = RunProbeCommand(
      "cat; head -c 1000000 /dev/zero | tr '\\0' 'x'; echo; exit 0", absl::Seconds(10));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 0);
  EXPECT_EQ(result->output.size(), kShellOutputLimit);
}

TEST(ProbeCommandTest, TimeOutKillsTheProcessGroupAndLeavesNoZombie) {
  const absl::Time start = absl::Now();
  absl::StatusOr<CommandResult> result =
      RunProbeCommand("sleep 30 & sleep 30; echo never", absl::Milliseconds(300));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDeadlineExceeded) << result.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1) << "no child of ours is left to reap";
}

TEST(ProbeCommandTest, FirstLine) {
  EXPECT_EQ(FirstLine("a\r\nb"), "a");
  EXPECT_EQ(FirstLine(""), "");
  EXPECT_EQ(FirstLine("no newline"), "no newline");
}

}  // namespace
}  // namespace pgbackfill::throttle
