#include "pgbackfill/exec/latency_histogram.h"

#include <gtest/gtest.h>

namespace pgbackfill::exec {
namespace {

// Within the histogram's promise: at most 5% above the true value, never below it.
void ExpectClose(std::optional<absl::Duration> got, absl::Duration want) {
  ASSERT_TRUE(got.has_value());
  EXPECT_GE(*got, want);
  EXPECT_LE(absl::FDivDuration(*got, want), LatencyHistogram::kGrowth + 1e-9)
      << absl::FormatDuration(*got) << " for " << absl::FormatDuration(want);
}

TEST(LatencyHistogramTest, EmptyHasNoPercentile) {
  LatencyHistogram histogram;
  EXPECT_FALSE(histogram.Percentile(0.5).has_value());
  EXPECT_EQ(histogram.count(), 0);
}

TEST(LatencyHistogramTest, NearestRankWithinFivePercent) {
  LatencyHistogram histogram;
  for (int ms = 1; ms <= 1000; ++ms) histogram.Add(absl::Milliseconds(ms));
  EXPECT_EQ(histogram.count(), 1000);
  ExpectClose(histogram.Percentile(0.5), absl::Milliseconds(500));
  ExpectClose(histogram.Percentile(0.95), absl::Milliseconds(950));
  ExpectClose(histogram.Percentile(0.99), absl::Milliseconds(990));
  EXPECT_EQ(histogram.Percentile(1.0), absl::Milliseconds(1000)) << "capped at the largest seen";
  EXPECT_EQ(histogram.max(), absl::Milliseconds(1000));
}

TEST(LatencyHistogramTest, OneSlowBatchShowsOnlyInTheTail) {
  LatencyHistogram histogram;
  for (int i = 0; i < 99; ++i) histogram.Add(absl::Milliseconds(200));
  histogram.Add(absl::Seconds(30));
  ExpectClose(histogram.Percentile(0.5), absl::Milliseconds(200));
  ExpectClose(histogram.Percentile(0.99), absl::Milliseconds(200));
  EXPECT_EQ(histogram.Percentile(0.999), absl::Seconds(30));
}

TEST(LatencyHistogramTest, ExtremesLandInTheEndBuckets) {
  LatencyHistogram histogram;
  histogram.Add(absl::ZeroDuration());
  histogram.Add(-absl::Milliseconds(1));  // a clock step back counts as zero
  EXPECT_EQ(histogram.Percentile(1.0), absl::ZeroDuration());
  histogram.Add(absl::Hours(100));
  EXPECT_EQ(histogram.Percentile(1.0), absl::Hours(100));
}

}  // namespace
}  // namespace pgbackfill::exec
