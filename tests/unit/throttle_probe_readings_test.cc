#include "pgbackfill/throttle/probe_readings.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "pgbackfill/pg/lsn.h"

namespace pgbackfill::throttle {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr uint64_t kPrimaryLsn = (uint64_t{1} << 32) | 0x1000;  // "1/1000"

WalSenderRow Streaming(std::string name, std::string replay_lsn, std::string lag_micros = "1500") {
  WalSenderRow row;
  row.application_name = std::move(name);
  row.state = "streaming";
  row.write_lsn = "1/1000";
  row.replay_lsn = std::move(replay_lsn);
  row.replay_lag_micros = std::move(lag_micros);
  return row;
}

std::vector<std::string> Names(const std::vector<ReplicaSample>& replicas) {
  std::vector<std::string> names;
  for (const ReplicaSample& replica : replicas) names.push_back(replica.name);
  return names;
}

TEST(ReplicasFromWalSendersTest, LagAgainstThePrimarysPosition) {
  std::vector<ReplicaSample> replicas =
      ReplicasFromWalSenders({Streaming("standby", "1/800", "250000")}, kPrimaryLsn);
  ASSERT_EQ(replicas.size(), 1u);
  const ReplicaSample& r = replicas[0];
  EXPECT_EQ(r.name, "standby");
  EXPECT_TRUE(r.status.ok());
  EXPECT_EQ(*r.lag_bytes, 0x800);
  EXPECT_EQ(*r.replay_lag, absl::Milliseconds(250));
  EXPECT_FALSE(r.idle);
}

TEST(ReplicasFromWalSendersTest, CaughtUpIsIdle) {
  std::vector<ReplicaSample> replicas =
      ReplicasFromWalSenders({Streaming("standby", "1/1000")}, kPrimaryLsn);
  EXPECT_TRUE(replicas[0].idle);
  EXPECT_EQ(*replicas[0].lag_bytes, 0);
  // Ahead of a position read a moment earlier: idle, never a negative lag.
  replicas = ReplicasFromWalSenders({Streaming("standby", "1/2000")}, kPrimaryLsn);
  EXPECT_TRUE(replicas[0].idle);
  EXPECT_EQ(*replicas[0].lag_bytes, 0);
}

TEST(ReplicasFromWalSendersTest, NullReplayLagIsAnErrorReading) {
  WalSenderRow row = Streaming("standby", "1/1000");
  row.replay_lag_micros.reset();
  std::vector<ReplicaSample> replicas = ReplicasFromWalSenders({row}, kPrimaryLsn);
  EXPECT_TRUE(replicas[0].status.ok());
  EXPECT_FALSE(replicas[0].replay_lag.ok());
  EXPECT_THAT(std::string(replicas[0].replay_lag.status().message()), HasSubstr("NULL"));
  EXPECT_TRUE(replicas[0].idle) << "caught up: the governor ignores its time lag";
}

TEST(ReplicasFromWalSendersTest, NoReplayPositionYetIsAByteLagError) {
  WalSenderRow row;
  row.application_name = "new";
  row.state = "startup";
  std::vector<ReplicaSample> replicas = ReplicasFromWalSenders({row}, kPrimaryLsn);
  ASSERT_EQ(replicas.size(), 1u) << "a standby still starting up is one to wait for";
  EXPECT_TRUE(replicas[0].status.ok());
  EXPECT_THAT(std::string(replicas[0].lag_bytes.status().message()),
              HasSubstr("not reported a replay position"));
  EXPECT_FALSE(replicas[0].idle);
}

TEST(ReplicasFromWalSendersTest, HiddenDetailsAreAnErrorNamingTheGrant) {
  WalSenderRow row;
  row.application_name = "standby";  // visible to everyone; state and positions are not
  std::vector<ReplicaSample> replicas = ReplicasFromWalSenders({row}, kPrimaryLsn);
  ASSERT_EQ(replicas.size(), 1u);
  EXPECT_EQ(replicas[0].name, "standby");
  EXPECT_THAT(std::string(replicas[0].status.message()), HasSubstr("pg_monitor"));
}

TEST(ReplicasFromWalSendersTest, LeavesOutWhatIsNotAStandby) {
  WalSenderRow logical = Streaming("debezium", "0/10");
  logical.logical = true;
  WalSenderRow backup;
  backup.application_name = "pg_basebackup";
  backup.state = "backup";
  WalSenderRow receivewal;  // reports positions, never replays
  receivewal.application_name = "pg_receivewal";
  receivewal.state = "streaming";
  receivewal.write_lsn = "1/F00";
  std::vector<ReplicaSample> replicas = ReplicasFromWalSenders(
      {logical, backup, receivewal, Streaming("standby", "1/1000")}, kPrimaryLsn);
  EXPECT_THAT(Names(replicas), ElementsAre("standby"));
}

TEST(ReplicasFromWalSendersTest, CatchupAndStoppingStandbysCount) {
  WalSenderRow catchup = Streaming("a", "1/0");
  catchup.state = "catchup";
  WalSenderRow stopping = Streaming("b", "1/0");
  stopping.state = "stopping";
  EXPECT_THAT(Names(ReplicasFromWalSenders({catchup, stopping}, kPrimaryLsn)),
              ElementsAre("a", "b"));
}

TEST(StandbyNameTest, ApplicationNameAndClientAddress) {
  EXPECT_EQ(StandbyName("standby", std::nullopt), "standby");
  EXPECT_EQ(StandbyName("standby", "10.0.0.5"), "standby (10.0.0.5)");
  EXPECT_EQ(StandbyName("", "10.0.0.5"), "walsender (10.0.0.5)");
  EXPECT_EQ(StandbyName(std::nullopt, std::nullopt), "walsender");
  EXPECT_EQ(StandbyName("standby", ""), "standby");
}

StandbyRow Standby(std::optional<std::string> replay, std::optional<std::string> receive,
                   std::optional<std::string> delay = "2000000") {
  StandbyRow row;
  row.in_recovery = "t";
  row.replay_lsn = std::move(replay);
  row.receive_lsn = std::move(receive);
  row.replay_delay_micros = std::move(delay);
  return row;
}

TEST(ReplicaFromStandbyTest, LagAgainstThePrimary) {
  ReplicaSample r = ReplicaFromStandby("h:5432", Standby("1/F00", "1/1000"), kPrimaryLsn);
  EXPECT_EQ(r.name, "h:5432");
  EXPECT_TRUE(r.status.ok());
  EXPECT_EQ(*r.lag_bytes, 0x100);
  EXPECT_EQ(*r.replay_lag, absl::Seconds(2));
  EXPECT_FALSE(r.idle);
}

TEST(ReplicaFromStandbyTest, IdleOnlyWhenEverythingReceivedAndThePrimarysPositionReplayed) {
  EXPECT_TRUE(ReplicaFromStandby("h", Standby("1/1000", "1/1000"), kPrimaryLsn).idle);
  EXPECT_TRUE(ReplicaFromStandby("h", Standby("1/1000", std::nullopt), kPrimaryLsn).idle)
      << "no walreceiver (archive recovery): compared with the primary only";
  EXPECT_FALSE(ReplicaFromStandby("h", Standby("1/1000", "1/2000"), kPrimaryLsn).idle)
      << "received but not replayed";
  EXPECT_FALSE(ReplicaFromStandby("h", Standby("1/F00", "1/F00"), kPrimaryLsn).idle)
      << "not everything received";
}

TEST(ReplicaFromStandbyTest, UnknownPrimaryPositionIsAByteLagError) {
  ReplicaSample r = ReplicaFromStandby("h", Standby("1/1000", "1/1000"),
                                       absl::UnavailableError("connection lost"));
  EXPECT_TRUE(r.status.ok());
  EXPECT_THAT(std::string(r.lag_bytes.status().message()),
              HasSubstr("primary's WAL position is unknown this round: connection lost"));
  EXPECT_FALSE(r.idle);
  EXPECT_TRUE(r.replay_lag.ok());
}

TEST(ReplicaFromStandbyTest, NotInRecoveryIsNotAStandby) {
  StandbyRow row = Standby("1/1000", std::nullopt);
  row.in_recovery = "f";
  ReplicaSample r = ReplicaFromStandby("db2:5432", row, kPrimaryLsn);
  EXPECT_FALSE(r.status.ok());
  EXPECT_THAT(std::string(r.status.message()), HasSubstr("db2:5432 is not a standby"));
}

TEST(ReplicaFromStandbyTest, NoReplayedTransactionYet) {
  ReplicaSample r = ReplicaFromStandby("h", Standby("1/F00", "1/F00", std::nullopt), kPrimaryLsn);
  EXPECT_THAT(std::string(r.replay_lag.status().message()),
              HasSubstr("pg_last_xact_replay_timestamp() is NULL"));
}

TEST(ReplicaFromStandbyTest, ClockSkewIsNoLag) {
  ReplicaSample r = ReplicaFromStandby("h", Standby("1/F00", "1/F00", "-3000"), kPrimaryLsn);
  EXPECT_EQ(*r.replay_lag, absl::ZeroDuration());
}

TEST(DisambiguateNamesTest, SuffixesLaterDuplicatesInOrder) {
  std::vector<std::string> names = {"standby", "other", "standby", "standby"};
  DisambiguateNames(names);
  EXPECT_THAT(names, ElementsAre("standby", "other", "standby #2", "standby #3"));
}

TEST(DisambiguateNamesTest, ReservedNamesAndExistingSuffixes) {
  std::vector<std::string> names = {"h:5432", "a", "a #2", "a"};
  DisambiguateNames(names, {"h:5432"});
  EXPECT_THAT(names, ElementsAre("h:5432 #2", "a", "a #2", "a #3"));
}

TEST(WalBytesPerSecondTest, DeltaOverElapsed) {
  EXPECT_EQ(*WalBytesPerSecond(1000, 3000, absl::Seconds(2)), 1000);
  EXPECT_EQ(*WalBytesPerSecond(0, 1 << 20, absl::Milliseconds(500)), 2 << 20);
  EXPECT_EQ(*WalBytesPerSecond(5000, 5000, absl::Seconds(1)), 0);
  EXPECT_EQ(*WalBytesPerSecond(5000, 10, absl::Seconds(1)), 0) << "a different server";
  EXPECT_FALSE(WalBytesPerSecond(0, 10, absl::ZeroDuration()).ok());
}

TEST(CustomReadingTest, FirstValueOrAnError) {
  EXPECT_EQ(*CustomReading(1, "t"), "t");
  EXPECT_EQ(*CustomReading(3, "0.5"), "0.5");
  EXPECT_EQ(CustomReading(0, std::nullopt).status().message(), "throttle.query returned no row");
  EXPECT_EQ(CustomReading(1, std::nullopt).status().message(), "throttle.query returned NULL");
}

}  // namespace
}  // namespace pgbackfill::throttle
