// `pgbackfill set` values: every settable key takes what the plan file takes, refuses what it
// refuses with the same message, and unknown or fixed keys are refused with a way forward.
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pgbackfill/plan/parse.h"
#include "pgbackfill/plan/settings.h"

namespace pgbackfill::plan {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// The message of a setting that must be refused, with the plan checked to be unchanged.
std::string ErrorOf(std::string_view key, std::string_view value) {
  Plan plan;
  absl::Status status = ApplySetting(plan, key, value);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << key << "=" << value;
  const Plan defaults;
  EXPECT_EQ(plan.workers, defaults.workers);
  EXPECT_EQ(plan.batch.target, defaults.batch.target);
  EXPECT_EQ(plan.throttle.max_replica_lag, defaults.throttle.max_replica_lag);
  EXPECT_EQ(plan.throttle.lock_timeout, defaults.throttle.lock_timeout);
  return std::string(status.message());
}

Plan Applied(std::string_view key, std::string_view value) {
  Plan plan;
  absl::Status status = ApplySetting(plan, key, value);
  EXPECT_TRUE(status.ok()) << key << "=" << value << ": " << status;
  return plan;
}

TEST(SettableKeysTest, AreTheTuningKeys) {
  EXPECT_THAT(
      SettableKeys(),
      ::testing::ElementsAre("workers", "vacuum_every", "batch.target", "throttle.max_replica_lag",
                             "throttle.max_replica_lag_bytes", "throttle.max_lock_waiters",
                             "throttle.max_wal_bytes_per_second", "throttle.max_canary_latency",
                             "throttle.max_rows_per_second", "throttle.lock_timeout",
                             "throttle.statement_timeout", "throttle.max_statement_latency",
                             "throttle.max_statement_tail", "throttle.max_commit_latency",
                             "throttle.max_active_sessions", "throttle.max_cpu_pressure",
                             "throttle.max_slot_wal", "throttle.max_archive_pending"));
}

TEST(ApplySettingTest, Workers) {
  EXPECT_EQ(Applied("workers", "2").workers, 2);
  EXPECT_EQ(Applied("workers", "256").workers, 256);
  EXPECT_EQ(Applied("workers", " 8 ").workers, 8) << "surrounding blanks, as YAML trims them";
  EXPECT_EQ(ErrorOf("workers", "0"), "workers: must be an integer between 1 and 256, got \"0\"");
  EXPECT_EQ(ErrorOf("workers", "257"),
            "workers: must be an integer between 1 and 256, got \"257\"");
  EXPECT_EQ(ErrorOf("workers", "many"),
            "workers: must be an integer between 1 and 256, got \"many\"");
  EXPECT_EQ(ErrorOf("workers", ""), "workers: must be an integer between 1 and 256, got \"\"");
}

TEST(ApplySettingTest, VacuumEvery) {
  EXPECT_DOUBLE_EQ(Applied("vacuum_every", "5%").vacuum_every.fraction, 0.05);
  EXPECT_EQ(Applied("vacuum_every", "150000").vacuum_every.rows, 150000);
  EXPECT_FALSE(Applied("vacuum_every", "off").vacuum_every.enabled());
  EXPECT_THAT(ErrorOf("vacuum_every", "0%"), HasSubstr("not a share between 0% and 100%"));
}

TEST(ApplySettingTest, BatchTarget) {
  EXPECT_EQ(Applied("batch.target", "500ms").batch.target, absl::Milliseconds(500));
  EXPECT_EQ(Applied("batch.target", "1.5s").batch.target, absl::Milliseconds(1500));
  EXPECT_EQ(ErrorOf("batch.target", "0"), "batch.target: must be at least 1ms, got \"0\"");
  EXPECT_EQ(ErrorOf("batch.target", "x"),
            "batch.target: must be a duration such as 200ms, 5s or 1m, got \"x\"");
  EXPECT_EQ(ErrorOf("batch.target", "5"),
            "batch.target: needs a unit (ms, s, m or h), e.g. 5ms or 5s, got \"5\"");
}

TEST(ApplySettingTest, BatchTargetKeepsTheOtherBatchValues) {
  Plan plan;
  plan.batch = {.rows = 50, .target = absl::Seconds(1), .min_rows = 10, .max_rows = 60};
  ASSERT_TRUE(ApplySetting(plan, "batch.target", "300ms").ok());
  EXPECT_EQ(plan.batch.target, absl::Milliseconds(300));
  EXPECT_EQ(plan.batch.rows, 50);
  EXPECT_EQ(plan.batch.min_rows, 10);
  EXPECT_EQ(plan.batch.max_rows, 60);
}

TEST(ApplySettingTest, ReplicaLag) {
  EXPECT_EQ(Applied("throttle.max_replica_lag", "10s").throttle.max_replica_lag, absl::Seconds(10));
  EXPECT_EQ(Applied("throttle.max_replica_lag", "0").throttle.max_replica_lag, absl::ZeroDuration())
      << "0 = not checked";
  EXPECT_EQ(ErrorOf("throttle.max_replica_lag", "x"),
            "throttle.max_replica_lag: must be a duration such as 200ms, 5s or 1m, got \"x\"");
  EXPECT_EQ(ErrorOf("throttle.max_replica_lag", "-1s"),
            "throttle.max_replica_lag: must not be negative, got \"-1s\"");
  EXPECT_EQ(Applied("throttle.max_replica_lag_bytes", "16MB").throttle.max_replica_lag_bytes,
            16 << 20);
  EXPECT_EQ(Applied("throttle.max_replica_lag_bytes", "0").throttle.max_replica_lag_bytes, 0);
  EXPECT_EQ(ErrorOf("throttle.max_replica_lag_bytes", "lots"),
            "throttle.max_replica_lag_bytes: must be a byte count such as 1048576, 512kB, 16MB "
            "or 1GB, got \"lots\"");
  EXPECT_EQ(ErrorOf("throttle.max_replica_lag_bytes", "-1MB"),
            "throttle.max_replica_lag_bytes: must not be negative, got \"-1MB\"");
}

TEST(ApplySettingTest, LockWaiters) {
  EXPECT_EQ(Applied("throttle.max_lock_waiters", "3").throttle.max_lock_waiters, 3);
  EXPECT_EQ(Applied("throttle.max_lock_waiters", "0").throttle.max_lock_waiters, 0);
  EXPECT_EQ(ErrorOf("throttle.max_lock_waiters", "-1"),
            "throttle.max_lock_waiters: must be a non-negative integer, got \"-1\"");
  EXPECT_EQ(ErrorOf("throttle.max_lock_waiters", "1.5"),
            "throttle.max_lock_waiters: must be a non-negative integer, got \"1.5\"");
}

TEST(ApplySettingTest, Rates) {
  EXPECT_EQ(Applied("throttle.max_wal_bytes_per_second", "64MB").throttle.max_wal_bytes_per_second,
            64 << 20);
  EXPECT_EQ(
      Applied("throttle.max_wal_bytes_per_second", "1048576").throttle.max_wal_bytes_per_second,
      1048576);
  EXPECT_EQ(ErrorOf("throttle.max_wal_bytes_per_second", "64 MiB"),
            "throttle.max_wal_bytes_per_second: must be a byte count such as 1048576, 512kB, "
            "16MB or 1GB, got \"64 MiB\"");
  EXPECT_DOUBLE_EQ(Applied("throttle.max_rows_per_second", "2500.5").throttle.max_rows_per_second,
                   2500.5);
  EXPECT_DOUBLE_EQ(Applied("throttle.max_rows_per_second", "0").throttle.max_rows_per_second, 0);
  EXPECT_EQ(ErrorOf("throttle.max_rows_per_second", "fast"),
            "throttle.max_rows_per_second: must be a non-negative number, got \"fast\"");
  EXPECT_EQ(ErrorOf("throttle.max_rows_per_second", "-5"),
            "throttle.max_rows_per_second: must be a non-negative number, got \"-5\"");
  EXPECT_EQ(ErrorOf("throttle.max_rows_per_second", "inf"),
            "throttle.max_rows_per_second: must be a non-negative number, got \"inf\"");
}

TEST(ApplySettingTest, CanaryLatency) {
  EXPECT_EQ(Applied("throttle.max_canary_latency", "50ms").throttle.max_canary_latency,
            absl::Milliseconds(50));
  EXPECT_EQ(ErrorOf("throttle.max_canary_latency", "50"),
            "throttle.max_canary_latency: needs a unit (ms, s, m or h), e.g. 50ms or 50s, "
            "got \"50\"");
}

TEST(ApplySettingTest, Timeouts) {
  for (const char* key : {"throttle.lock_timeout", "throttle.statement_timeout"}) {
    SCOPED_TRACE(key);
    const Plan plan = Applied(key, "2s");
    EXPECT_EQ(std::string_view(key) == "throttle.lock_timeout" ? plan.throttle.lock_timeout
                                                               : plan.throttle.statement_timeout,
              absl::Seconds(2));
    EXPECT_EQ(ErrorOf(key, "0"),
              absl::StrCat(key,
                           ": must be at least 1ms (0 would turn PostgreSQL's timeout off), "
                           "got \"0\""));
    EXPECT_EQ(ErrorOf(key, "soon"),
              absl::StrCat(key, ": must be a duration such as 200ms, 5s or 1m, got \"soon\""));
  }
}

// The plan file and `set` agree on every value: same result, same message after the location.
TEST(ApplySettingTest, AgreesWithThePlanFileForEveryKey) {
  const std::vector<std::string> values = {
      "0",   "1",  "256",  "257", "-1", "1.5", "5",   "5ms",   "1s",
      "-1s", "1m", "16MB", "1kB", "x",  "1e3", "inf", "0.5ms", "99999999999999999999",
      "5%",  "0%", "101%", "off"};
  for (std::string_view settable : SettableKeys()) {
    const std::string key(settable);
    for (const std::string& value : values) {
      SCOPED_TRACE(absl::StrCat(key, "=", value));
      const size_t dot = key.find('.');
      const bool top_level = dot == std::string::npos;
      std::string file = "version: 1\nname: j\ntable: t\nset: {a: '1'}\n";
      if (top_level) {
        absl::StrAppend(&file, key, ": ", value, "\n");
      } else {
        absl::StrAppend(&file, key.substr(0, dot), ":\n  ", key.substr(dot + 1), ": ", value, "\n");
      }
      const absl::StatusOr<Plan> parsed =
          ParsePlan(file, "plan.yaml", [](std::string_view) { return std::nullopt; });
      Plan set;
      const absl::Status status = ApplySetting(set, key, value);
      ASSERT_EQ(status.ok(), parsed.ok()) << status << " / " << parsed.status();
      if (!status.ok()) {
        const std::string prefix = top_level ? "plan.yaml:5: " : "plan.yaml:6: ";
        EXPECT_EQ(absl::StrCat(prefix, status.message()), parsed.status().message());
        continue;
      }
      EXPECT_EQ(set.workers, parsed->workers);
      EXPECT_EQ(set.batch.target, parsed->batch.target);
      EXPECT_EQ(set.vacuum_every, parsed->vacuum_every);
      const Throttle& a = set.throttle;
      const Throttle& b = parsed->throttle;
      EXPECT_EQ(a.max_replica_lag, b.max_replica_lag);
      EXPECT_EQ(a.max_replica_lag_bytes, b.max_replica_lag_bytes);
      EXPECT_EQ(a.max_lock_waiters, b.max_lock_waiters);
      EXPECT_EQ(a.max_wal_bytes_per_second, b.max_wal_bytes_per_second);
      EXPECT_EQ(a.max_canary_latency, b.max_canary_latency);
      EXPECT_DOUBLE_EQ(a.max_rows_per_second, b.max_rows_per_second);
      EXPECT_EQ(a.lock_timeout, b.lock_timeout);
      EXPECT_EQ(a.statement_timeout, b.statement_timeout);
    }
  }
}

TEST(ApplySettingTest, UnknownKeysSuggestASettableOne) {
  EXPECT_THAT(ErrorOf("wokers", "2"),
              StartsWith("wokers: unknown key (did you mean \"workers\"?); pgbackfill set "
                         "takes: workers, vacuum_every, batch.target, throttle.max_replica_lag, "));
  EXPECT_THAT(ErrorOf("throttle.max_replica_lga", "1s"),
              StartsWith("throttle.max_replica_lga: unknown key (did you mean "
                         "\"throttle.max_replica_lag\"?)"));
  EXPECT_THAT(ErrorOf("max_replica_lag", "1s"),
              StartsWith("max_replica_lag: unknown key (did you mean "
                         "\"throttle.max_replica_lag\"?)"))
      << "the key as written under throttle: in the plan file";
  EXPECT_THAT(ErrorOf("color", "red"),
              StartsWith("color: unknown key; pgbackfill set takes: workers, "));
  EXPECT_THAT(ErrorOf("color", "red"), HasSubstr("throttle.statement_timeout"));
}

TEST(ApplySettingTest, PlanKeysThatCannotChangeWhileRunningSaySo) {
  for (const char* key : {"batch.rows", "batch.max_rows", "throttle.canary", "throttle.interval",
                          "throttle.hold_on_autovacuum", "throttle.command", "table", "set",
                          "verify"}) {
    EXPECT_THAT(ErrorOf(key, "1"),
                StartsWith(absl::StrCat(key,
                                        ": cannot be changed while a job runs; edit the plan "
                                        "file and run it again")))
        << key;
  }
}

}  // namespace
}  // namespace pgbackfill::plan
