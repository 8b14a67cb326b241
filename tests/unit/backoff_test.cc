#include "pgbackfill/util/backoff.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "absl/time/time.h"

namespace pgbackfill {
namespace {

std::vector<absl::Duration> Delays(Backoff& backoff, int n) {
  std::vector<absl::Duration> delays;
  for (int i = 0; i < n; ++i) delays.push_back(backoff.Next());
  return delays;
}

TEST(BackoffTest, EveryDelayWithinItsWindow) {
  const absl::Duration base = absl::Milliseconds(50);
  const absl::Duration max = absl::Seconds(10);
  for (uint64_t seed = 0; seed < 50; ++seed) {
    Backoff backoff(base, max, seed);
    for (int attempt = 0; attempt < 100; ++attempt) {
      const absl::Duration ceiling = backoff.Ceiling();
      EXPECT_EQ(ceiling, std::min(max, base * (int64_t{1} << std::min(attempt + 1, 62))));
      const absl::Duration delay = backoff.Next();
      EXPECT_GE(delay, base) << "attempt " << attempt;
      EXPECT_LE(delay, ceiling) << "attempt " << attempt;
      EXPECT_LE(delay, max);
    }
    EXPECT_EQ(backoff.attempts(), 100);
  }
}

TEST(BackoffTest, WindowDoublesUntilMax) {
  Backoff backoff(absl::Milliseconds(100), absl::Seconds(1), 1);
  std::vector<absl::Duration> ceilings;
  for (int i = 0; i < 6; ++i) {
    ceilings.push_back(backoff.Ceiling());
    backoff.Next();
  }
  EXPECT_EQ(ceilings, (std::vector<absl::Duration>{absl::Milliseconds(200), absl::Milliseconds(400),
                                                   absl::Milliseconds(800), absl::Seconds(1),
                                                   absl::Seconds(1), absl::Seconds(1)}));
}

TEST(BackoffTest, DelaysGrowOnAverage) {
  constexpr int kSeeds = 400;
  constexpr int kAttempts = 10;
  std::vector<absl::Duration> sum(kAttempts);
  for (uint64_t seed = 0; seed < kSeeds; ++seed) {
    Backoff backoff(absl::Milliseconds(50), absl::Seconds(10), seed);
    for (int i = 0; i < kAttempts; ++i) sum[static_cast<size_t>(i)] += backoff.Next();
  }
  // Windows up to attempt 7 (ceiling 12.8 s, capped to 10 s) widen; later ones are all the same.
  for (size_t i = 1; i <= 7; ++i) EXPECT_GT(sum[i], sum[i - 1]) << "attempt " << i;
  // Capped attempts draw from [50 ms, 10 s]: about 5 s on average.
  EXPECT_GT(sum.back() / kSeeds, absl::Seconds(4));
}

TEST(BackoffTest, ResetStartsOver) {
  Backoff backoff(absl::Milliseconds(50), absl::Seconds(10), 7);
  Delays(backoff, 20);
  EXPECT_EQ(backoff.attempts(), 20);
  EXPECT_EQ(backoff.Ceiling(), absl::Seconds(10));
  backoff.Reset();
  EXPECT_EQ(backoff.attempts(), 0);
  EXPECT_EQ(backoff.Ceiling(), absl::Milliseconds(100));
  EXPECT_LE(backoff.Next(), absl::Milliseconds(100));
}

TEST(BackoffTest, DeterministicForASeed) {
  Backoff a(absl::Milliseconds(50), absl::Seconds(10), 42);
  Backoff b(absl::Milliseconds(50), absl::Seconds(10), 42);
  Backoff c(absl::Milliseconds(50), absl::Seconds(10), 43);
  const std::vector<absl::Duration> from_a = Delays(a, 30);
  EXPECT_EQ(from_a, Delays(b, 30));
  EXPECT_NE(from_a, Delays(c, 30));
}

TEST(BackoffTest, JitterSpreadsWorkersThatFailedTogether) {
  std::vector<absl::Duration> first;
  for (uint64_t seed = 0; seed < 8; ++seed) {
    Backoff backoff(absl::Milliseconds(50), absl::Seconds(10), seed);
    first.push_back(backoff.Next());
  }
  std::sort(first.begin(), first.end());
  EXPECT_NE(first.front(), first.back());
}

TEST(BackoffTest, DegenerateSettings) {
  Backoff zero_base(absl::ZeroDuration(), absl::Seconds(1), 1);
  EXPECT_GE(zero_base.Next(), absl::Milliseconds(1));

  // max below base: every delay is exactly base.
  Backoff small_max(absl::Milliseconds(50), absl::Milliseconds(10), 1);
  for (absl::Duration delay : Delays(small_max, 10)) EXPECT_EQ(delay, absl::Milliseconds(50));
}

TEST(BackoffTest, ManyAttemptsDoNotOverflow) {
  Backoff backoff(absl::Seconds(1), absl::Hours(1), 3);
  for (int i = 0; i < 1000; ++i) {
    const absl::Duration delay = backoff.Next();
    ASSERT_GE(delay, absl::Seconds(1));
    ASSERT_LE(delay, absl::Hours(1));
  }
}

TEST(BackoffTest, DefaultSeedIsRandom) {
  // Two default-constructed backoffs drawing 20 identical delays would take a broken seed.
  Backoff a;
  Backoff b;
  EXPECT_NE(Delays(a, 20), Delays(b, 20));
}

}  // namespace
}  // namespace pgbackfill
