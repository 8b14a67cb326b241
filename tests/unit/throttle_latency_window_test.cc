#include "pgbackfill/throttle/latency_window.h"

#include <gtest/gtest.h>

#include "absl/time/time.h"

namespace pgbackfill::throttle {
namespace {

absl::Duration Ms(int ms) { return absl::Milliseconds(ms); }

TEST(LatencyWindowTest, EmptyHasNoPercentile) {
  LatencyWindow window;
  EXPECT_EQ(window.capacity(), 5u);
  EXPECT_EQ(window.P99(), std::nullopt);
}

TEST(LatencyWindowTest, P99OfFiveIsTheLargest) {
  LatencyWindow window;
  for (int ms : {5, 40, 3, 7, 6}) window.Add(Ms(ms));
  EXPECT_EQ(window.P99(), Ms(40));
}

TEST(LatencyWindowTest, KeepsOnlyTheLastTimings) {
  LatencyWindow window(3);
  window.Add(Ms(500));  // a spike, then three fast timings push it out
  EXPECT_EQ(window.P99(), Ms(500));
  window.Add(Ms(1));
  window.Add(Ms(2));
  EXPECT_EQ(window.P99(), Ms(500));
  window.Add(Ms(3));
  EXPECT_EQ(window.size(), 3u);
  EXPECT_EQ(window.P99(), Ms(3));
}

TEST(LatencyWindowTest, NearestRank) {
  LatencyWindow window(10);
  for (int ms = 10; ms >= 1; --ms) window.Add(Ms(ms));  // 1..10 in any order
  EXPECT_EQ(window.Percentile(0.5), Ms(5));             // ceil(5.0) = 5th
  EXPECT_EQ(window.Percentile(0.51), Ms(6));            // ceil(5.1) = 6th
  EXPECT_EQ(window.Percentile(0.7), Ms(7));             // 0.7 * 10 is 7, not 8, despite rounding
  EXPECT_EQ(window.Percentile(0.9), Ms(9));
  EXPECT_EQ(window.Percentile(0.99), Ms(10));
  EXPECT_EQ(window.Percentile(1.0), Ms(10));
  EXPECT_EQ(window.Percentile(0.0), Ms(1));  // clamped to the first rank
  EXPECT_EQ(window.Percentile(-1), Ms(1));
  EXPECT_EQ(window.Percentile(2), Ms(10));
}

TEST(LatencyWindowTest, OneTimingIsEveryPercentile) {
  LatencyWindow window;
  window.Add(Ms(12));
  EXPECT_EQ(window.Percentile(0.01), Ms(12));
  EXPECT_EQ(window.P99(), Ms(12));
}

TEST(LatencyWindowTest, ZeroSizeKeepsOne) {
  LatencyWindow window(0);
  EXPECT_EQ(window.capacity(), 1u);
  window.Add(Ms(1));
  window.Add(Ms(2));
  EXPECT_EQ(window.P99(), Ms(2));
}

TEST(LatencyWindowTest, ClearForgets) {
  LatencyWindow window;
  window.Add(Ms(1));
  window.Clear();
  EXPECT_EQ(window.P99(), std::nullopt);
}

}  // namespace
}  // namespace pgbackfill::throttle
