#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "pgbackfill/plan/plan.h"
#include "pgbackfill/throttle/clock.h"
#include "pgbackfill/throttle/governor.h"
#include "pgbackfill/throttle/sample.h"

namespace pgbackfill::throttle {
namespace {

using ::testing::HasSubstr;

ReplicaSample Replica(std::string name, absl::Duration lag, int64_t bytes = 1024) {
  ReplicaSample replica;
  replica.name = std::move(name);
  replica.replay_lag = lag;
  replica.lag_bytes = bytes;
  return replica;
}

// A governor on a fake clock, fed one sample per interval, every signal checked.
class GovernorTest : public ::testing::Test {
 protected:
  static GovernorConfig AllChecked() {
    GovernorConfig config;
    config.max_replica_lag = absl::Seconds(5);
    config.max_replica_lag_bytes = 16 << 20;
    config.max_lock_waiters = 0;
    config.max_wal_bytes_per_second = 10 << 20;
    config.max_canary_latency = absl::Milliseconds(100);
    config.check_custom = true;
    config.workers = 8;
    config.full_start = false;  // rule 6's growth from one worker (the full start has its tests)
    return config;
  }

  // Every signal well below its limit.
  Samples Healthy() const {
    Samples samples;
    samples.taken = clock_.Now();
    samples.replicas = std::vector<ReplicaSample>{Replica("standby1", absl::Milliseconds(100))};
    samples.lock_waiters = 0;
    samples.wal_bytes_per_second = 1 << 20;
    samples.canary_latency = absl::Milliseconds(5);
    samples.custom = std::string("f");
    return samples;
  }

  // Advances one interval, then judges `samples` (stamped with the new time).
  Decision Step(Samples samples) {
    clock_.Advance(absl::Seconds(1));
    samples.taken = clock_.Now();
    return governor_.Update(samples);
  }
  Decision StepHealthy() { return Step(Healthy()); }

  FakeClock clock_;
  Governor governor_{AllChecked(), clock_};
};

TEST_F(GovernorTest, HoldsUntilTheFirstSampleThenRuns) {
  Decision before = governor_.Current();
  EXPECT_TRUE(before.hold);
  EXPECT_EQ(before.reason, "waiting for the first throttle sample");
  Decision after = StepHealthy();
  EXPECT_FALSE(after.hold);
  EXPECT_EQ(after.reason, "");
  EXPECT_EQ(after.active_workers, 1);
  EXPECT_EQ(after.batch_target_scale, 1.0);
}

TEST_F(GovernorTest, EachSignalOverItsLimitHoldsWithANamedReason) {
  struct Case {
    void (*mutate)(Samples&);
    std::string reason;
  };
  const std::vector<Case> cases = {
      {[](Samples& s) {
         s.replicas = std::vector<ReplicaSample>{Replica("standby1", absl::Milliseconds(7200))};
       },
       "replica standby1 replay lag 7.2s > 5.0s"},
      {[](Samples& s) {
         s.replicas = std::vector<ReplicaSample>{
             Replica("standby1", absl::Milliseconds(10), int64_t{32} << 20)};
       },
       "replica standby1 byte lag 32.0MB > 16.0MB"},
      {[](Samples& s) { s.lock_waiters = 2; }, "lock waiters 2 > 0"},
      {[](Samples& s) { s.wal_bytes_per_second = 20 << 20; }, "WAL rate 20.0MB/s > 10.0MB/s"},
      {[](Samples& s) { s.canary_latency = absl::Milliseconds(250); },
       "canary latency 250ms > 100ms"},
      {[](Samples& s) { s.custom = std::string("t"); }, "custom throttle query returned t"},
  };
  for (const Case& c : cases) {
    FakeClock clock;
    Governor governor(AllChecked(), clock);
    Samples samples = Healthy();
    samples.taken = clock.Now();
    c.mutate(samples);
    Decision decision = governor.Update(samples);
    EXPECT_TRUE(decision.hold) << c.reason;
    EXPECT_EQ(decision.reason, c.reason);
  }
}

TEST_F(GovernorTest, EveryNumericVetoSignalIsReportedWithItsReadingAndLimit) {
  GovernorConfig config = AllChecked();
  config.max_slot_wal = 1 << 30;
  config.max_archive_pending = 64 << 20;
  Governor governor(config, clock_);
  Samples samples = Healthy();
  samples.lock_waiters = 1;
  samples.slots = std::vector<SlotWal>{
      {.slot = "sub1", .retained_bytes = 2048, .wal_status = "reserved", .safe_wal_size = {}}};
  samples.archiver = ArchiverState{
      .archiving = true, .pending_bytes = 4096, .failing = false, .last_failed_wal = ""};
  const Decision decision = governor.Update(samples);
  std::vector<std::string> read;
  for (const LimitReading& reading : decision.limits) {
    read.push_back(absl::StrFormat("%s/%s %.15g %.15g", reading.name, reading.object, reading.value,
                                   reading.limit));
  }
  EXPECT_THAT(read, ::testing::UnorderedElementsAre(
                        "replica_lag/standby1 0.1 5", "replica_lag_bytes/standby1 1024 16777216",
                        "lock_waiters/ 1 0", "wal_bytes_per_second/ 1048576 10485760",
                        "canary_latency/ 0.005 0.1", "slot_wal_bytes/sub1 2048 1073741824",
                        "archive_pending_bytes/ 4096 67108864"));
  // Current() between samples says the same.
  EXPECT_EQ(governor.Current().limits.size(), decision.limits.size());
}

TEST_F(GovernorTest, SignalsAtTheirLimitRun) {
  Samples samples = Healthy();
  samples.replicas = std::vector<ReplicaSample>{
      Replica("standby1", absl::Seconds(5), int64_t{16} << 20)};
  samples.wal_bytes_per_second = 10 << 20;
  samples.canary_latency = absl::Milliseconds(100);
  EXPECT_FALSE(Step(samples).hold);
}

TEST_F(GovernorTest, UncheckedSignalsAreIgnored) {
  GovernorConfig config;  // only replica time lag (5s) and lock waiters (0) are checked
  config.max_lock_waiters = std::nullopt;
  Governor governor(config, clock_);
  Samples samples;  // every reading NotMeasured()...
  samples.taken = clock_.Now();
  samples.replicas = std::vector<ReplicaSample>{Replica("standby1", absl::Seconds(1))};
  EXPECT_FALSE(governor.Update(samples).hold);  // ...but none of those is checked
}

TEST_F(GovernorTest, VetoListsEverySignalOverItsLimitInAFixedOrder) {
  Samples samples = Healthy();
  samples.replicas = std::vector<ReplicaSample>{Replica("a", absl::Seconds(6)),
                                                Replica("b", absl::Seconds(1)),
                                                Replica("c", absl::Seconds(9))};
  samples.lock_waiters = 1;
  samples.canary_latency = absl::Seconds(2);
  Decision decision = Step(samples);
  EXPECT_TRUE(decision.hold);
  EXPECT_EQ(decision.reason,
            "replica a replay lag 6.0s > 5.0s; replica c replay lag 9.0s > 5.0s; "
            "lock waiters 1 > 0; canary latency 2.0s > 100ms");
}

TEST_F(GovernorTest, LockWaitersHoldOnlyAboveTheLimitButAlwaysShortenBatches) {
  GovernorConfig config = AllChecked();
  config.max_lock_waiters = 2;
  governor_.SetConfig(config);
  Samples samples = Healthy();
  samples.lock_waiters = 2;
  Decision decision = Step(samples);
  EXPECT_FALSE(decision.hold);
  EXPECT_EQ(decision.batch_target_scale, 0.5);
  EXPECT_EQ(decision.pressure, "lock waiters 2 (limit 2)");
  samples.lock_waiters = 3;
  EXPECT_EQ(Step(samples).reason, "lock waiters 3 > 2");
  EXPECT_EQ(StepHealthy().batch_target_scale, 1.0);
}

TEST_F(GovernorTest, FailsClosedOnProbeErrors) {
  Samples samples = Healthy();
  samples.lock_waiters = absl::UnavailableError("connection lost");
  samples.canary_latency = NotMeasured();
  samples.custom = absl::NotFoundError("returned no row");
  Decision decision = Step(samples);
  EXPECT_TRUE(decision.hold);
  EXPECT_EQ(decision.reason,
            "lock waiter probe failed: connection lost; canary probe failed: not measured; "
            "custom throttle query probe failed: returned no row");

  samples = Healthy();
  samples.replicas = absl::UnavailableError("pg_stat_replication: permission denied");
  EXPECT_EQ(Step(samples).reason,
            "replica probe failed: pg_stat_replication: permission denied");
}

TEST_F(GovernorTest, FailsClosedOnAnUnreadableOrIncompleteReplica) {
  ReplicaSample unreachable;
  unreachable.name = "standby2";
  unreachable.status = absl::UnavailableError("could not connect to standby2:5433");
  ReplicaSample no_lag;  // not idle and no replay lag: cannot tell
  no_lag.name = "standby3";
  no_lag.lag_bytes = 0;
  Samples samples = Healthy();
  samples.replicas = std::vector<ReplicaSample>{unreachable, no_lag};
  EXPECT_EQ(Step(samples).reason,
            "replica standby2 probe failed: could not connect to standby2:5433; "
            "replica standby3 replay lag unknown: not measured");
}

TEST_F(GovernorTest, AutovacuumOnTheTableHoldsWhenChecked) {
  GovernorConfig config = AllChecked();
  config.hold_on_autovacuum = true;
  config.table = "public.users";
  governor_.SetConfig(config);
  Samples samples = Healthy();
  samples.autovacuum = false;
  EXPECT_FALSE(Step(samples).hold);

  samples.autovacuum = true;
  Decision decision = Step(samples);
  EXPECT_TRUE(decision.hold);
  EXPECT_EQ(decision.reason, "autovacuum running on public.users");
  EXPECT_EQ(decision.pressure, "") << "autovacuum is not a verdict on our concurrency";

  // Listed after every other signal.
  samples.custom = std::string("t");
  EXPECT_EQ(Step(samples).reason,
            "custom throttle query returned t; autovacuum running on public.users");

  // Fails closed, like every other checked reading.
  samples = Healthy();
  samples.autovacuum = absl::NotFoundError("the target table does not exist");
  EXPECT_EQ(Step(samples).reason, "autovacuum probe failed: the target table does not exist");
  samples.autovacuum = NotMeasured();
  EXPECT_EQ(Step(samples).reason, "autovacuum probe failed: not measured");

  // Then back below every limit: resumes after the usual cooldown.
  samples.autovacuum = false;
  EXPECT_TRUE(Step(samples).hold);  // clear for 0s
  EXPECT_TRUE(Step(samples).hold);  // clear for 1s
  EXPECT_FALSE(Step(samples).hold);
}

TEST_F(GovernorTest, AutovacuumIsIgnoredUnlessChecked) {
  Samples samples = Healthy();
  samples.autovacuum = true;
  EXPECT_FALSE(Step(samples).hold);
  samples.autovacuum = absl::UnavailableError("connection lost");
  EXPECT_FALSE(Step(samples).hold);
}

TEST_F(GovernorTest, AutovacuumReasonWithoutATableName) {
  GovernorConfig config = AllChecked();
  config.hold_on_autovacuum = true;
  governor_.SetConfig(config);
  Samples samples = Healthy();
  samples.autovacuum = true;
  EXPECT_EQ(Step(samples).reason, "autovacuum running on the target table");
}

TEST_F(GovernorTest, AReplicaThatDisappearsHoldsUntilItReturnsOrIsForgotten) {
  EXPECT_FALSE(StepHealthy().hold);
  Samples samples = Healthy();
  samples.replicas = std::vector<ReplicaSample>{};
  Decision decision = Step(samples);
  EXPECT_TRUE(decision.hold);
  EXPECT_EQ(decision.reason, "replica standby1 disappeared from the replica probe");
  EXPECT_TRUE(Step(samples).hold);  // still missing

  governor_.ForgetReplica("standby1");
  EXPECT_THAT(Step(samples).reason, HasSubstr("resuming after 2.0s within limits"));
}

// After a failover the run writes to the promoted standby: the old primary's standbys are gone
// for good, and the new primary's are the ones to watch. A restart keeps the timeline, and a
// standby missing after it still holds.
TEST_F(GovernorTest, ANewPrimaryTimelineForgetsTheOldPrimarysStandbysOnce) {
  Samples samples = Healthy();
  samples.primary_timeline = std::string("00000001");
  EXPECT_FALSE(Step(samples).hold);
  EXPECT_EQ(governor_.TakeNotice(), "");

  samples.replicas = std::vector<ReplicaSample>{};
  EXPECT_EQ(Step(samples).reason, "replica standby1 disappeared from the replica probe");

  samples.primary_timeline = std::string("00000002");
  EXPECT_THAT(Step(samples).reason, HasSubstr("resuming after"));
  EXPECT_EQ(governor_.TakeNotice(),
            "failover: the primary is on WAL timeline 00000002 (was 00000001), a promoted "
            "standby; no longer waiting for standby1, watching the new primary's standbys");
  EXPECT_EQ(governor_.TakeNotice(), "");  // said once
  EXPECT_TRUE(Step(samples).hold);        // the usual cooldown after a hold
  EXPECT_FALSE(Step(samples).hold);

  // An unreadable timeline is no failover; the new primary's standby is watched like any.
  samples.primary_timeline = absl::UnavailableError("connection lost");
  samples.replicas = std::vector<ReplicaSample>{Replica("new-standby", absl::Seconds(1), 0)};
  EXPECT_FALSE(Step(samples).hold);
  samples.replicas = std::vector<ReplicaSample>{};
  EXPECT_EQ(Step(samples).reason, "replica new-standby disappeared from the replica probe");
  EXPECT_EQ(governor_.TakeNotice(), "");
}

TEST_F(GovernorTest, AnExpectedReplicaThatWasNeverSeenHolds) {
  GovernorConfig config = AllChecked();
  config.expected_replicas = {"cascaded"};
  governor_.SetConfig(config);
  EXPECT_EQ(StepHealthy().reason, "replica cascaded not reported by the replica probe");
}

TEST_F(GovernorTest, IdleStandbyIgnoresTimeLagButNotByteLag) {
  ReplicaSample idle = Replica("standby1", absl::Minutes(10), 0);
  idle.idle = true;
  Samples samples = Healthy();
  samples.replicas = std::vector<ReplicaSample>{idle};
  EXPECT_FALSE(Step(samples).hold);

  idle.replay_lag = NotMeasured();  // pg_stat_replication shows NULL for an idle standby
  samples.replicas = std::vector<ReplicaSample>{idle};
  const Decision caught_up = Step(samples);
  EXPECT_FALSE(caught_up.hold);
  // Readers see a caught-up standby's time lag as 0, not as a missing series.
  ASSERT_FALSE(caught_up.limits.empty());
  EXPECT_EQ(caught_up.limits.front().name, "replica_lag");
  EXPECT_EQ(caught_up.limits.front().value, 0);

  idle.lag_bytes = int64_t{40} << 20;
  samples.replicas = std::vector<ReplicaSample>{idle};
  EXPECT_EQ(Step(samples).reason, "replica standby1 byte lag 40.0MB > 16.0MB");
}

TEST_F(GovernorTest, StaleSamplesHoldAndCoolDownWhenSamplesReturn) {
  EXPECT_FALSE(StepHealthy().hold);
  clock_.Advance(absl::Seconds(3));  // exactly 3 intervals: still fresh
  EXPECT_FALSE(governor_.Current().hold);
  clock_.Advance(absl::Seconds(1));
  Decision stale = governor_.Current();
  EXPECT_TRUE(stale.hold);
  EXPECT_EQ(stale.reason, "no throttle samples for 4.0s");

  Decision back = StepHealthy();  // 5s after the previous sample
  EXPECT_TRUE(back.hold);
  EXPECT_EQ(back.reason,
            "resuming after 2.0s within limits; held for: no throttle samples for 5.0s");
  EXPECT_TRUE(StepHealthy().hold);
  EXPECT_FALSE(StepHealthy().hold);
}

TEST_F(GovernorTest, ASampleTakenLongAgoIsStaleOnArrival) {
  EXPECT_FALSE(StepHealthy().hold);
  Samples old = Healthy();
  clock_.Advance(absl::Seconds(10));
  Decision decision = governor_.Update(old);  // taken 10s ago
  EXPECT_TRUE(decision.hold);
  EXPECT_EQ(decision.reason, "no throttle samples for 10.0s");
}

TEST_F(GovernorTest, HysteresisResumesOnlyAfterTwoIntervalsBelowTheLimits) {
  EXPECT_FALSE(StepHealthy().hold);
  Samples lagging = Healthy();
  lagging.replicas = std::vector<ReplicaSample>{Replica("standby1", absl::Seconds(6))};
  EXPECT_TRUE(Step(lagging).hold);
  EXPECT_TRUE(StepHealthy().hold);  // clear for 0s
  EXPECT_TRUE(StepHealthy().hold);  // clear for 1s
  EXPECT_TRUE(Step(lagging).hold);  // over again: the cooldown starts over
  EXPECT_TRUE(StepHealthy().hold);
  Decision cooling = StepHealthy();
  EXPECT_TRUE(cooling.hold);
  EXPECT_EQ(cooling.reason,
            "resuming after 2.0s within limits; held for: replica standby1 replay lag 6.0s > "
            "5.0s");
  Decision resumed = StepHealthy();  // clear for 2s
  EXPECT_FALSE(resumed.hold);
  EXPECT_EQ(resumed.reason, "");
}

// Rule 6's start: a first round with every signal clear starts every worker; one with a signal
// near its limit starts at one and grows one per healthy interval.
TEST(GovernorStartTest, AHealthyFirstRoundStartsEveryWorker) {
  FakeClock clock;
  GovernorConfig config;
  config.workers = 6;
  Governor governor(config, clock);
  Samples samples;
  samples.replicas = std::vector<ReplicaSample>{};
  samples.lock_waiters = 0;
  clock.Advance(absl::Seconds(1));
  samples.taken = clock.Now();
  EXPECT_EQ(governor.Update(samples).active_workers, 6);
}

TEST(GovernorStartTest, AFirstRoundNearALimitStartsAtOneWorker) {
  FakeClock clock;
  GovernorConfig config;
  config.workers = 6;
  config.max_lock_waiters = 5;
  Governor governor(config, clock);
  Samples samples;
  samples.replicas = std::vector<ReplicaSample>{};
  samples.lock_waiters = 1;  // any waiter on our locks is pressure
  clock.Advance(absl::Seconds(1));
  samples.taken = clock.Now();
  EXPECT_EQ(governor.Update(samples).active_workers, 1);
  samples.lock_waiters = 0;
  std::vector<int> workers;
  for (int i = 0; i < 6; ++i) {
    clock.Advance(absl::Seconds(1));
    samples.taken = clock.Now();
    workers.push_back(governor.Update(samples).active_workers);
  }
  // No growth for 3 intervals after the pressure, then one a healthy interval.
  EXPECT_EQ(workers, (std::vector<int>{1, 1, 2, 3, 4, 5}));
}

TEST_F(GovernorTest, ATimerFiringSlightlyEarlyStillCounts) {
  EXPECT_FALSE(StepHealthy().hold);  // t=1, 1 worker
  Samples samples = Healthy();
  clock_.Advance(absl::Milliseconds(950));
  samples.taken = clock_.Now();
  EXPECT_EQ(governor_.Update(samples).active_workers, 2);
}

TEST_F(GovernorTest, WorkersGrowByOnePerHealthyIntervalUpToTheCeiling) {
  std::vector<int> workers;
  for (int i = 0; i < 10; ++i) workers.push_back(StepHealthy().active_workers);
  EXPECT_EQ(workers, (std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 8, 8}));
}

TEST_F(GovernorTest, PressureHalvesWorkersThenWaitsBeforeGrowing) {
  for (int i = 0; i < 8; ++i) StepHealthy();
  ASSERT_EQ(governor_.Current().active_workers, 8);

  Samples near = Healthy();  // 4s > 70% of 5s: cut before the veto
  near.replicas = std::vector<ReplicaSample>{Replica("standby1", absl::Seconds(4))};
  Decision cut = Step(near);
  EXPECT_FALSE(cut.hold);
  EXPECT_EQ(cut.active_workers, 4);
  EXPECT_EQ(cut.pressure, "replica standby1 replay lag 4.0s > 70% of 5.0s");
  EXPECT_EQ(Step(near).active_workers, 2);  // still near after an interval: cut again

  std::vector<int> workers;
  for (int i = 0; i < 5; ++i) workers.push_back(StepHealthy().active_workers);
  // No growth for 3 intervals after the last cut, then +1 per interval.
  EXPECT_EQ(workers, (std::vector<int>{2, 2, 3, 4, 5}));
  EXPECT_EQ(governor_.Current().pressure, "");
}

// Rule 9: at one worker, pressure halves a rows/s pace measured from ReportRows, never below 5% of
// the peak; healthy intervals give 2.5% of the peak back, and workers grow only once it is gone.
TEST_F(GovernorTest, PressureAtOneWorkerPacesTheRateThenGivesItBack) {
  governor_.ReportRows(0);
  StepHealthy();  // t=1: 1 worker
  for (int i = 0; i < 2; ++i) {
    governor_.ReportRows(100000);  // 100k rows/s
    StepHealthy();
  }
  ASSERT_EQ(governor_.Current().active_workers, 3);
  EXPECT_EQ(governor_.Current().rate_limit_rows_per_second, 0) << "no pace before pressure";

  Samples near = Healthy();
  near.canary_latency = absl::Milliseconds(80);  // > 70% of 100 ms: pressure, no veto
  governor_.ReportRows(100000);
  EXPECT_EQ(Step(near).active_workers, 1);  // 3 -> 1: rule 6 first
  EXPECT_EQ(governor_.Current().pace_rows_per_second, 0);
  governor_.ReportRows(40000);
  Decision paced = Step(near);
  EXPECT_EQ(paced.active_workers, 1);
  EXPECT_DOUBLE_EQ(paced.pace_rows_per_second, 20000) << "half of the last interval's 40k rows/s";
  EXPECT_DOUBLE_EQ(paced.rate_limit_rows_per_second, 20000);
  for (double want : {10000.0, 5000.0, 5000.0}) {  // floor: 5% of the 100k peak
    governor_.ReportRows(20000);
    EXPECT_DOUBLE_EQ(Step(near).pace_rows_per_second, want);
  }

  // Recovery: 3 intervals after the last cut, +2.5k (2.5% of the peak) per interval: slowly, so
  // the rate stays near the one that caused no pressure. At the peak the pace ends, then workers.
  std::vector<double> paces;
  std::vector<int> workers;
  for (int i = 0; i < 42; ++i) {
    governor_.ReportRows(5000);
    const Decision decision = StepHealthy();
    paces.push_back(decision.pace_rows_per_second);
    workers.push_back(decision.active_workers);
  }
  EXPECT_EQ(std::vector<double>(paces.begin(), paces.begin() + 5),
            (std::vector<double>{5000, 5000, 7500, 10000, 12500}));
  EXPECT_DOUBLE_EQ(paces[38], 97500);
  EXPECT_EQ(paces[39], 0) << "back at the 100k peak: no pace";
  EXPECT_EQ(workers[39], 1);
  EXPECT_EQ(workers[40], 2) << "workers grow only once the pace is gone";
}

TEST_F(GovernorTest, ThePaceNeverRaisesTheOperatorsRateLimit) {
  GovernorConfig config = AllChecked();
  config.workers = 1;
  config.max_rows_per_second = 8000;
  governor_.SetConfig(config);
  StepHealthy();
  governor_.ReportRows(50000);
  StepHealthy();
  Samples near = Healthy();
  near.canary_latency = absl::Milliseconds(80);
  governor_.ReportRows(50000);
  Decision paced = Step(near);
  EXPECT_DOUBLE_EQ(paced.pace_rows_per_second, 25000);
  EXPECT_DOUBLE_EQ(paced.rate_limit_rows_per_second, 8000);
}

TEST_F(GovernorTest, NoPaceWithoutAMeasuredRate) {
  StepHealthy();
  Samples near = Healthy();
  near.canary_latency = absl::Milliseconds(80);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Step(near).rate_limit_rows_per_second, 0);
}

TEST_F(GovernorTest, AtMostOneCutPerInterval) {
  for (int i = 0; i < 8; ++i) StepHealthy();
  Samples near = Healthy();
  near.canary_latency = absl::Milliseconds(80);
  Decision first = Step(near);
  EXPECT_EQ(first.active_workers, 4);
  clock_.Advance(absl::Milliseconds(300));
  near.taken = clock_.Now();
  EXPECT_EQ(governor_.Update(near).active_workers, 4);
}

TEST_F(GovernorTest, AHoldCutsOnceAndNotAgainWhileHeld) {
  for (int i = 0; i < 8; ++i) StepHealthy();
  Samples over = Healthy();
  over.wal_bytes_per_second = 11 << 20;
  EXPECT_EQ(Step(over).active_workers, 4);
  EXPECT_EQ(Step(over).active_workers, 4);
  EXPECT_EQ(Step(over).active_workers, 4);
}

TEST_F(GovernorTest, AProbeErrorHoldsWithoutCuttingWorkers) {
  for (int i = 0; i < 4; ++i) StepHealthy();
  Samples failed = Healthy();
  failed.canary_latency = absl::DeadlineExceededError("canary timed out");
  Decision decision = Step(failed);
  EXPECT_TRUE(decision.hold);
  EXPECT_EQ(decision.active_workers, 4);
}

TEST_F(GovernorTest, RetryBurstIsPressure) {
  for (int i = 0; i < 4; ++i) StepHealthy();
  governor_.ReportRetries(2);
  EXPECT_EQ(StepHealthy().active_workers, 5);  // 2 < burst of 3
  governor_.ReportRetries(2);
  governor_.ReportRetries(1);
  Decision decision = StepHealthy();
  EXPECT_FALSE(decision.hold);
  EXPECT_EQ(decision.active_workers, 2);
  EXPECT_EQ(decision.pressure, "3 retryable failures since the last sample");
  EXPECT_EQ(StepHealthy().pressure, "");  // counted once
}

TEST_F(GovernorTest, SetConfigAppliesLive) {
  for (int i = 0; i < 8; ++i) StepHealthy();
  GovernorConfig config = AllChecked();
  config.workers = 3;
  config.max_rows_per_second = 500;
  config.max_canary_latency = absl::Milliseconds(2);
  governor_.SetConfig(config);
  Decision now = governor_.Current();
  EXPECT_EQ(now.active_workers, 3);
  EXPECT_EQ(now.rate_limit_rows_per_second, 500);
  EXPECT_FALSE(now.hold);  // thresholds apply from the next sample
  EXPECT_EQ(StepHealthy().reason, "canary latency 5ms > 2ms");

  config.max_canary_latency = absl::ZeroDuration();  // canary no longer checked
  governor_.SetConfig(config);
  Samples samples = Healthy();
  samples.canary_latency = NotMeasured();
  EXPECT_THAT(Step(samples).reason, HasSubstr("resuming after"));
}

TEST_F(GovernorTest, SetConfigKeepsWatchingKnownReplicas) {
  StepHealthy();
  governor_.SetConfig(AllChecked());
  Samples samples = Healthy();
  samples.replicas = std::vector<ReplicaSample>{};
  EXPECT_EQ(Step(samples).reason, "replica standby1 disappeared from the replica probe");
}

TEST_F(GovernorTest, OlderSamplesAreIgnored) {
  Samples first = Healthy();
  StepHealthy();
  first.lock_waiters = 5;
  EXPECT_FALSE(governor_.Update(first).hold);
}

TEST(CustomQueryHoldsTest, BooleansAndNumbers) {
  EXPECT_TRUE(*CustomQueryHolds("t"));
  EXPECT_TRUE(*CustomQueryHolds("TRUE"));
  EXPECT_TRUE(*CustomQueryHolds("1"));
  EXPECT_TRUE(*CustomQueryHolds(" 2.5 "));
  EXPECT_FALSE(*CustomQueryHolds("f"));
  EXPECT_FALSE(*CustomQueryHolds("false"));
  EXPECT_FALSE(*CustomQueryHolds("0"));
  EXPECT_FALSE(*CustomQueryHolds("0.99"));
  absl::StatusOr<bool> bad = CustomQueryHolds("maybe");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("custom throttle query returned 'maybe'"));
  EXPECT_FALSE(CustomQueryHolds("nan").ok());
}

TEST(ConfigFromPlanTest, MapsThePlansThrottle) {
  plan::Throttle throttle;
  throttle.interval = absl::Milliseconds(500);
  throttle.max_replica_lag = absl::ZeroDuration();
  throttle.max_replica_lag_bytes = 1 << 20;
  throttle.max_lock_waiters = 0;
  throttle.max_rows_per_second = 1000;
  throttle.query = "select pg_is_in_recovery()";
  GovernorConfig config = ConfigFromPlan(throttle, 6);
  EXPECT_EQ(config.interval, absl::Milliseconds(500));
  EXPECT_TRUE(config.checks_replicas());  // bytes only
  EXPECT_EQ(config.max_lock_waiters, 0);  // 0 = any waiter counts, still checked
  EXPECT_TRUE(config.check_custom);
  EXPECT_EQ(config.max_canary_latency, absl::ZeroDuration());
  EXPECT_EQ(config.max_rows_per_second, 1000);
  EXPECT_EQ(config.workers, 6);

  EXPECT_FALSE(config.hold_on_autovacuum);

  throttle.max_replica_lag_bytes = 0;
  throttle.hold_on_autovacuum = true;
  EXPECT_FALSE(ConfigFromPlan(throttle, 1).checks_replicas());
  EXPECT_TRUE(ConfigFromPlan(throttle, 1).hold_on_autovacuum);
}

TEST(RateLimiterTest, UnlimitedNeverWaits) {
  RateLimiter limiter(0);
  EXPECT_EQ(limiter.Acquire(1'000'000, absl::UnixEpoch()), absl::ZeroDuration());
}

TEST(RateLimiterTest, BurstThenTheRate) {
  const absl::Time t0 = absl::UnixEpoch();
  RateLimiter limiter(1000);  // 1000 rows/s, a bucket of 1s = 1000 rows, full at start
  EXPECT_EQ(limiter.Acquire(1000, t0), absl::ZeroDuration());
  EXPECT_EQ(limiter.Acquire(500, t0), absl::Milliseconds(500));
  // The next caller queues behind that reservation.
  EXPECT_EQ(limiter.Acquire(500, t0), absl::Seconds(1));
  // 2s later the debt of 1000 rows is paid and 1000 more have accrued... up to the bucket size.
  EXPECT_EQ(limiter.Acquire(1000, t0 + absl::Seconds(2)), absl::ZeroDuration());
  EXPECT_EQ(limiter.Acquire(250, t0 + absl::Seconds(2)), absl::Milliseconds(250));
}

TEST(RateLimiterTest, IdleTimeIsCappedAtTheBurst) {
  const absl::Time t0 = absl::UnixEpoch();
  RateLimiter limiter(100, absl::Seconds(2));  // bucket of 200 rows
  EXPECT_EQ(limiter.Acquire(200, t0), absl::ZeroDuration());
  // An hour idle refills 200 rows, not 360'000.
  EXPECT_EQ(limiter.Acquire(300, t0 + absl::Hours(1)), absl::Seconds(1));
}

TEST(RateLimiterTest, ABatchLargerThanTheBucketWaitsInsteadOfFailing) {
  const absl::Time t0 = absl::UnixEpoch();
  RateLimiter limiter(1000);
  EXPECT_EQ(limiter.Acquire(5000, t0), absl::Seconds(4));
}

TEST(RateLimiterTest, SetRateKeepsTheDebt) {
  const absl::Time t0 = absl::UnixEpoch();
  RateLimiter limiter(1000);
  EXPECT_EQ(limiter.Acquire(2000, t0), absl::Seconds(1));  // 1000 rows of debt
  limiter.SetRate(500, t0);
  EXPECT_EQ(limiter.Acquire(0, t0), absl::Seconds(2));  // the debt at the new rate
  limiter.SetRate(0, t0);
  EXPECT_EQ(limiter.Acquire(1'000'000, t0), absl::ZeroDuration());
  limiter.SetRate(100, t0);  // from unlimited: a fresh, full bucket
  EXPECT_EQ(limiter.Acquire(100, t0), absl::ZeroDuration());
  EXPECT_EQ(limiter.Acquire(50, t0), absl::Milliseconds(500));
}

TEST(RateLimiterTest, AClockSteppingBackDoesNotRefill) {
  const absl::Time t0 = absl::UnixEpoch() + absl::Hours(1);
  RateLimiter limiter(1000);
  EXPECT_EQ(limiter.Acquire(1000, t0), absl::ZeroDuration());
  EXPECT_EQ(limiter.Acquire(1000, t0 - absl::Seconds(1)), absl::Seconds(2));
}

}  // namespace
}  // namespace pgbackfill::throttle
