#include "pgbackfill/exec/batch_sizer.h"

#include <gtest/gtest.h>

#include <cstdint>

#include "absl/time/time.h"

namespace pgbackfill::exec {
namespace {

// Elapsed time of `rows` at a steady `rows_per_second`: the made-up clock of these tests.
absl::Duration At(int64_t rows, double rows_per_second) {
  return absl::Seconds(static_cast<double>(rows) / rows_per_second);
}

TEST(BatchSizerTest, StartsAtInitialRows) {
  BatchSizer sizer(BatchSizerConfig{});
  EXPECT_EQ(sizer.rows(), 5000);
  EXPECT_EQ(sizer.rows_per_second(), 0);
}

TEST(BatchSizerTest, ConvergesFromBelowByAtMostMaxGrowth) {
  BatchSizer sizer(BatchSizerConfig{});
  // 100k rows/s and a 200 ms target: the ideal batch is 20'000 rows.
  constexpr double kRate = 100'000;
  std::vector<int64_t> sizes = {sizer.rows()};
  for (int i = 0; i < 10; ++i) {
    sizer.OnSuccess(sizer.rows(), At(sizer.rows(), kRate));
    sizes.push_back(sizer.rows());
  }
  EXPECT_EQ(sizes[1], 7500);
  EXPECT_EQ(sizes[2], 11250);
  EXPECT_EQ(sizes[3], 16875);
  for (size_t i = 1; i < sizes.size(); ++i) {
    EXPECT_LE(static_cast<double>(sizes[i]), 1.5 * static_cast<double>(sizes[i - 1]) + 0.5);
    EXPECT_GE(sizes[i], sizes[i - 1]);
  }
  EXPECT_EQ(sizes.back(), 20'000);
}

TEST(BatchSizerTest, StaysAtTargetWhenSteady) {
  BatchSizer sizer(BatchSizerConfig{.initial_rows = 20'000});
  for (int i = 0; i < 5; ++i) {
    sizer.OnSuccess(20'000, absl::Milliseconds(200));
    EXPECT_EQ(sizer.rows(), 20'000);
  }
}

TEST(BatchSizerTest, DropsAtOnceWhenSlow) {
  BatchSizer sizer(BatchSizerConfig{.initial_rows = 20'000});
  sizer.OnSuccess(20'000, absl::Milliseconds(200));
  // Four times the target: the next batch is a quarter, in one step.
  sizer.OnSuccess(20'000, absl::Milliseconds(800));
  EXPECT_EQ(sizer.rows(), 5000);
  EXPECT_DOUBLE_EQ(sizer.rows_per_second(), 25'000);
  // Slightly over target shrinks slightly.
  sizer.OnSuccess(5000, absl::Milliseconds(250));
  EXPECT_EQ(sizer.rows(), 4000);
}

TEST(BatchSizerTest, OverrunNeverGrows) {
  BatchSizer sizer(BatchSizerConfig{.initial_rows = 1000});
  // A long range-end batch that covered more rows than asked (cannot happen today, but the
  // sizer must not read it as a reason to grow).
  sizer.OnSuccess(100'000, absl::Milliseconds(300));
  EXPECT_EQ(sizer.rows(), 1000);
}

TEST(BatchSizerTest, RespectsLimits) {
  BatchSizer sizer(BatchSizerConfig{.initial_rows = 5000, .min_rows = 100, .max_rows = 8000});
  for (int i = 0; i < 10; ++i) sizer.OnSuccess(sizer.rows(), absl::Milliseconds(1));
  EXPECT_EQ(sizer.rows(), 8000);
  sizer.OnSuccess(8000, absl::Seconds(60));
  EXPECT_EQ(sizer.rows(), 100);

  sizer.SetLimits(500, 1000);
  EXPECT_EQ(sizer.rows(), 500);
  sizer.SetLimits(1, 200);
  EXPECT_EQ(sizer.rows(), 200);
}

TEST(BatchSizerTest, InitialRowsClampedToLimits) {
  EXPECT_EQ(BatchSizer(BatchSizerConfig{.initial_rows = 10, .min_rows = 100}).rows(), 100);
  EXPECT_EQ(BatchSizer(BatchSizerConfig{.initial_rows = 10'000'000}).rows(), 100'000);
}

TEST(BatchSizerTest, RetryableFailureHalvesDownToMin) {
  BatchSizer sizer(BatchSizerConfig{.initial_rows = 1000, .min_rows = 300});
  sizer.OnRetryableFailure();
  EXPECT_EQ(sizer.rows(), 500);
  sizer.OnRetryableFailure();
  EXPECT_EQ(sizer.rows(), 300);
  sizer.OnRetryableFailure();
  EXPECT_EQ(sizer.rows(), 300);
}

TEST(BatchSizerTest, RecoversAfterFailureByAtMostMaxGrowth) {
  BatchSizer sizer(BatchSizerConfig{.initial_rows = 20'000});
  sizer.OnSuccess(20'000, absl::Milliseconds(100));  // rate 200k rows/s
  const int64_t before = sizer.rows();
  sizer.OnRetryableFailure();
  const int64_t halved = sizer.rows();
  EXPECT_EQ(halved, before / 2);
  sizer.OnSuccess(halved, absl::Milliseconds(1));
  EXPECT_LE(sizer.rows(), halved * 3 / 2);
}

TEST(BatchSizerTest, ZeroDurationDoesNotJump) {
  BatchSizer sizer(BatchSizerConfig{});
  sizer.OnSuccess(5000, absl::ZeroDuration());
  EXPECT_EQ(sizer.rows(), 7500);
  sizer.OnSuccess(7500, absl::Nanoseconds(1));
  EXPECT_EQ(sizer.rows(), 11250);
  // Negative elapsed (a clock step) is treated like zero.
  sizer.OnSuccess(11250, absl::Milliseconds(-5));
  EXPECT_EQ(sizer.rows(), 16875);
}

TEST(BatchSizerTest, ZeroRowsChangesNothing) {
  BatchSizer sizer(BatchSizerConfig{});
  sizer.OnSuccess(0, absl::ZeroDuration());
  sizer.OnSuccess(0, absl::Seconds(10));
  EXPECT_EQ(sizer.rows(), 5000);
  EXPECT_EQ(sizer.rows_per_second(), 0);
}

TEST(BatchSizerTest, ShortBatchAtRangeEndDoesNotJump) {
  BatchSizer sizer(BatchSizerConfig{});
  sizer.OnSuccess(10, absl::Microseconds(100));
  EXPECT_LE(sizer.rows(), 7500);
}

TEST(BatchSizerTest, RateIsSmoothedOnTheWayUp) {
  BatchSizer sizer(BatchSizerConfig{.initial_rows = 20'000, .max_rows = 1'000'000});
  sizer.OnSuccess(20'000, absl::Milliseconds(200));  // 100k rows/s
  // One batch twice as fast: the average moves half way (150k rows/s), not all the way.
  sizer.OnSuccess(20'000, absl::Milliseconds(100));
  EXPECT_DOUBLE_EQ(sizer.rows_per_second(), 150'000);
  EXPECT_EQ(sizer.rows(), 30'000);
}

TEST(BatchSizerTest, LowerTargetShrinksAtOnceHigherGrowsStepwise) {
  BatchSizer sizer(BatchSizerConfig{.initial_rows = 20'000});
  sizer.OnSuccess(20'000, absl::Milliseconds(200));  // 100k rows/s
  sizer.SetTarget(absl::Milliseconds(50));
  EXPECT_EQ(sizer.rows(), 5000);
  EXPECT_EQ(sizer.target(), absl::Milliseconds(50));
  sizer.SetTarget(absl::Seconds(1));
  EXPECT_EQ(sizer.rows(), 5000);
  sizer.OnSuccess(5000, absl::Milliseconds(50));
  EXPECT_EQ(sizer.rows(), 7500);
}

TEST(BatchSizerTest, SetTargetBeforeAnyMeasurementKeepsSize) {
  BatchSizer sizer(BatchSizerConfig{});
  sizer.SetTarget(absl::Milliseconds(10));
  EXPECT_EQ(sizer.rows(), 5000);
}

TEST(BatchSizerTest, InvalidConfigIsNormalised) {
  BatchSizer sizer(BatchSizerConfig{.initial_rows = 5000,
                                    .min_rows = 0,
                                    .max_rows = -1,
                                    .target = absl::ZeroDuration(),
                                    .max_growth = 0.5});
  EXPECT_EQ(sizer.rows(), 1);  // max_rows raised to min_rows = 1
  BatchSizer no_growth(BatchSizerConfig{.max_growth = 0.5});
  no_growth.OnSuccess(5000, absl::Milliseconds(1));
  EXPECT_EQ(no_growth.rows(), 5000);
}

TEST(CapRowsToPaceTest, APacedBatchCoversAtMostOneIntervalOfThePace) {
  // 1,000 rows/s with 1 s intervals: the first 5,000-row batch becomes five of 1,000.
  EXPECT_EQ(CapRowsToPace(5000, 100, 1000, absl::Seconds(1)), 1000);
  EXPECT_EQ(CapRowsToPace(800, 100, 1000, absl::Seconds(1)), 800);  // smaller stays
  EXPECT_EQ(CapRowsToPace(5000, 100, 40, absl::Seconds(1)), 100);   // never below min_rows
  EXPECT_EQ(CapRowsToPace(5000, 100, 1000, absl::Milliseconds(200)), 200);
  EXPECT_EQ(CapRowsToPace(5000, 100, 0, absl::Seconds(1)), 5000);  // not paced
}

}  // namespace
}  // namespace pgbackfill::exec
