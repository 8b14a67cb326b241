#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pgbackfill/metrics/registry.h"

namespace pgbackfill::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(MetricsRegistryTest, BatchEventsAddUpToRowsBatchesAndTheDurationHistogram) {
  Registry registry("job1");
  registry.Fold(events::Batch{.worker = 0, .range = 1, .rows = 500, .seconds = 0.02});
  registry.Fold(events::Batch{.worker = 1, .range = 2, .rows = 300, .seconds = 0.3});
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("pgbackfill_rows_total{job=\"job1\"} 800\n"));
  EXPECT_THAT(text, HasSubstr("pgbackfill_batches_total{job=\"job1\"} 2\n"));
  EXPECT_THAT(text,
              HasSubstr("pgbackfill_batch_duration_seconds_bucket{job=\"job1\",le=\"0.025\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("pgbackfill_batch_duration_seconds_bucket{job=\"job1\",le=\"0.5\"} 2\n"));
  EXPECT_THAT(text,
              HasSubstr("pgbackfill_batch_duration_seconds_bucket{job=\"job1\",le=\"+Inf\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("pgbackfill_batch_duration_seconds_count{job=\"job1\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE pgbackfill_batch_duration_seconds histogram\n"));
}

TEST(MetricsRegistryTest, RangeSplitsCount) {
  Registry registry("j");
  registry.Fold(events::RangeSplit{
      .worker = 1, .range = 1, .new_range = 9, .at = "(5)", .estimated_rows = 5});
  registry.Fold(events::RangeSplit{
      .worker = 0, .range = 9, .new_range = 10, .at = "(7)", .estimated_rows = 2});
  EXPECT_THAT(registry.Render(), HasSubstr("pgbackfill_range_splits_total{job=\"j\"} 2\n"));
}

TEST(MetricsRegistryTest, RetriesCountByTheConditionOfTheirSqlstate) {
  Registry registry("j");
  registry.Fold(events::Retry{
      .worker = 0, .range = 0, .sqlstate = "55P03", .error = "", .wait_ms = 1, .batch_rows = 1});
  registry.Fold(events::Retry{
      .worker = 0, .range = 0, .sqlstate = "55P03", .error = "", .wait_ms = 1, .batch_rows = 1});
  registry.Fold(events::Retry{
      .worker = 0, .range = 0, .sqlstate = "53300", .error = "", .wait_ms = 1, .batch_rows = 1});
  registry.Fold(events::Reconnect{.worker = 0, .range = 0, .sqlstate = "08006", .error = ""});
  const std::string text = registry.Render();
  EXPECT_THAT(text,
              HasSubstr("pgbackfill_retries_total{job=\"j\",reason=\"lock_not_available\"} 2\n"));
  EXPECT_THAT(
      text, HasSubstr("pgbackfill_retries_total{job=\"j\",reason=\"insufficient_resources\"} 1\n"));
  // Every reason has a series from the start, so rate() sees the first retry.
  EXPECT_THAT(text,
              HasSubstr("pgbackfill_retries_total{job=\"j\",reason=\"deadlock_detected\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("pgbackfill_reconnects_total{job=\"j\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("pgbackfill_range_splits_total{job=\"j\"} 0\n"));
  EXPECT_EQ(RetryReason("40001"), "serialization_failure");
  EXPECT_EQ(RetryReason("XX000"), "other");
}

TEST(MetricsRegistryTest, HeldCarriesAFixedReasonNameAndReturnsToZero) {
  Registry registry("j");
  registry.Fold(
      events::Throttle{.state = "held", .reason = "replica standby1 replay lag 7.2s > 5.0s"});
  EXPECT_THAT(registry.Render(), HasSubstr("pgbackfill_held{job=\"j\",reason=\"replica\"} 1\n"));
  registry.Fold(events::Throttle{.state = "running", .reason = std::nullopt});
  EXPECT_THAT(registry.Render(), HasSubstr("pgbackfill_held{job=\"j\"} 0\n"));
  events::Progress progress;
  progress.throttle = "paused by alice at 2026-01-01; `pgbackfill resume j` continues";
  registry.Fold(progress);
  EXPECT_THAT(registry.Render(), HasSubstr("pgbackfill_held{job=\"j\",reason=\"paused\"} 1\n"));
}

TEST(MetricsRegistryTest, HoldReasonsMapTheGovernorsTextsToFixedNames) {
  EXPECT_EQ(HoldReason("replication slot s1 is lost"), "replication_slot");
  EXPECT_EQ(HoldReason("replica standby1 disappeared from the replica probe"), "replica");
  EXPECT_EQ(HoldReason("lock waiters 3 > 0"), "lock_waiters");
  EXPECT_EQ(HoldReason("no throttle samples for 4.0s"), "stale_samples");
  EXPECT_EQ(HoldReason("measuring the application's baseline (2 of 5)"), "baseline");
  EXPECT_EQ(HoldReason("application statement_latency 9ms > 2ms, over 1.5x"), "application");
  EXPECT_EQ(HoldReason("resuming after 2s within limits; held for: WAL rate 9 > 1"), "resuming");
  EXPECT_EQ(HoldReason("WAL rate probe failed: timeout"), "wal_rate");
  EXPECT_EQ(HoldReason("something new"), "other");
}

TEST(MetricsRegistryTest, GaugesFollowTheLastProgressEvent) {
  Registry registry("j");
  registry.Fold(events::JobStarted{.job = "j",
                                   .table = "t",
                                   .key = "id",
                                   .estimated_rows = 100,
                                   .ranges_total = 4,
                                   .ranges_pending = 4,
                                   .workers = 2,
                                   .resumed = false,
                                   .rows_done_before = 0,
                                   .moves_between_databases = std::nullopt,
                                   .copy_format = std::nullopt,
                                   .through_stage = std::nullopt});
  events::Progress progress;
  progress.rows_done = 60;
  progress.estimated_rows = 120;
  progress.rows_per_second = 30;
  progress.ranges_done = 3;
  progress.ranges_total = 4;
  progress.workers = 2;
  progress.pace_rows_per_second = 40;
  registry.Fold(progress);
  std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("pgbackfill_phase{job=\"j\",phase=\"backfill\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("pgbackfill_job_rows_done{job=\"j\"} 60\n"));
  EXPECT_THAT(text, HasSubstr("pgbackfill_estimated_rows{job=\"j\"} 120\n"));
  EXPECT_THAT(text, HasSubstr("pgbackfill_rows_per_second{job=\"j\"} 30\n"));
  EXPECT_THAT(text, HasSubstr("pgbackfill_ranges_done{job=\"j\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("pgbackfill_ranges{job=\"j\"} 4\n"));
  EXPECT_THAT(text, HasSubstr("pgbackfill_active_workers{job=\"j\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("pgbackfill_max_workers{job=\"j\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("pgbackfill_pace_rows_per_second{job=\"j\"} 40\n"));
  progress.pace_rows_per_second.reset();
  registry.Fold(progress);
  EXPECT_THAT(registry.Render(), Not(HasSubstr("pgbackfill_pace_rows_per_second{")));
}

TEST(MetricsRegistryTest, SignalsShowReadingLimitAndBaselineOnlyWhileReported) {
  Registry registry("j");
  events::Progress progress;
  progress.signals.push_back(
      {.name = "statement_latency", .value = 0.004, .baseline = 0.002, .limit = 0.006});
  progress.signals.push_back(
      {.name = "active_sessions", .value = 3, .baseline = std::nullopt, .limit = 8});
  registry.Fold(progress);
  std::string text = registry.Render();
  EXPECT_THAT(
      text,
      HasSubstr("pgbackfill_throttle_signal{job=\"j\",signal=\"statement_latency\"} 0.004\n"));
  EXPECT_THAT(
      text,
      HasSubstr("pgbackfill_throttle_signal_limit{job=\"j\",signal=\"active_sessions\"} 8\n"));
  EXPECT_THAT(
      text,
      HasSubstr(
          "pgbackfill_throttle_signal_baseline{job=\"j\",signal=\"statement_latency\"} 0.002\n"));
  EXPECT_THAT(
      text,
      Not(HasSubstr("pgbackfill_throttle_signal_baseline{job=\"j\",signal=\"active_sessions\"}")));
  registry.Fold(events::Progress{});
  EXPECT_THAT(registry.Render(), Not(HasSubstr("signal=")));
}

TEST(MetricsRegistryTest, VetoSignalsShowTheirReadingAndLimitWithTheirObject) {
  Registry registry("j");
  events::Progress progress;
  progress.limits.push_back(
      {.name = "replica_lag", .object = "standby1", .value = 1.5, .limit = 5});
  progress.limits.push_back(
      {.name = "lock_waiters", .object = std::nullopt, .value = 0, .limit = 0});
  registry.Fold(progress);
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("pgbackfill_throttle_signal{job=\"j\",signal=\"replica_lag\",object="
                              "\"standby1\"} 1.5\n"));
  EXPECT_THAT(text, HasSubstr("pgbackfill_throttle_signal_limit{job=\"j\",signal=\"replica_lag\","
                              "object=\"standby1\"} 5\n"));
  EXPECT_THAT(text, HasSubstr("pgbackfill_throttle_signal{job=\"j\",signal=\"lock_waiters\"} 0\n"));
  EXPECT_THAT(
      text, Not(HasSubstr("pgbackfill_throttle_signal_baseline{job=\"j\",signal=\"replica_lag\"")));
}

TEST(MetricsRegistryTest, VacuumsCountWithTheirTime) {
  Registry registry("j");
  registry.Fold(events::Vacuum{.table = "t", .seconds = 1.5, .every_rows = 10, .table_bytes = 1});
  registry.Fold(events::Vacuum{.table = "t", .seconds = 0.5, .every_rows = 10, .table_bytes = 1});
  const std::string text = registry.Render();
  EXPECT_THAT(text, HasSubstr("pgbackfill_vacuums_total{job=\"j\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("pgbackfill_vacuum_seconds_total{job=\"j\"} 2\n"));
}

TEST(MetricsRegistryTest, FreeTextOfEventsNeverReachesTheMetrics) {
  Registry registry("j");
  const std::string secret = "password=hunter2 host=db.internal";
  registry.Fold(events::Retry{.worker = 0,
                              .range = 0,
                              .sqlstate = "55P03",
                              .error = secret,
                              .wait_ms = 1,
                              .batch_rows = 1});
  registry.Fold(events::Reconnect{.worker = 0, .range = 0, .sqlstate = "08006", .error = secret});
  registry.Fold(events::Throttle{.state = "held", .reason = "replica " + secret + " probe failed"});
  registry.Fold(events::Warning{.message = secret});
  registry.Fold(events::PhaseStarted{.job = "j", .phase = "backfill"});
  const std::string text = registry.Render();
  EXPECT_THAT(text, Not(HasSubstr("hunter2")));
  EXPECT_THAT(text, Not(HasSubstr("db.internal")));
  EXPECT_THAT(text, HasSubstr("pgbackfill_phase{job=\"j\",phase=\"backfill\"} 1\n"));
}

TEST(MetricsRegistryTest, AJobNameIsEscapedInItsLabel) {
  Registry registry("a\"b\\c");
  EXPECT_THAT(registry.Render(), HasSubstr("pgbackfill_rows_total{job=\"a\\\"b\\\\c\"} 0\n"));
}

TEST(MetricsRegistryTest, EveryFamilyHasHelpAndTypeBeforeItsSamples) {
  Registry registry("j");
  registry.Fold(events::Batch{.worker = 0, .range = 0, .rows = 1, .seconds = 0.1});
  const std::string text = registry.Render();
  size_t help = 0;
  size_t type = 0;
  for (size_t at = text.find("# HELP "); at != std::string::npos; at = text.find("# HELP ", at + 1))
    ++help;
  for (size_t at = text.find("# TYPE "); at != std::string::npos; at = text.find("# TYPE ", at + 1))
    ++type;
  EXPECT_EQ(help, type);
  EXPECT_GE(help, 15u);
  EXPECT_EQ(text.find("pgbackfill_"), text.find("# HELP ") + 7) << "a sample before its family";
}

}  // namespace
}  // namespace pgbackfill::metrics
