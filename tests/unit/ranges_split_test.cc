#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "pgbackfill/ranges/split.h"

namespace pgbackfill::ranges {
namespace {

using ::testing::ElementsAre;

using Less = std::function<bool(const KeyValue&, const KeyValue&)>;

bool IntegerLess(const KeyValue& a, const KeyValue& b) {
  return std::stoll(a[0]) < std::stoll(b[0]);
}
bool TextLess(const KeyValue& a, const KeyValue& b) { return a < b; }

// (lower, upper]: the predicate the batch SQL uses.
bool Contains(const KeyRange& range, const KeyValue& key, const Less& less) {
  return (!range.lower || less(*range.lower, key)) && (!range.upper || !less(*range.upper, key));
}

// Ids 1..n, open at both ends, neighbours sharing their boundary, boundaries strictly increasing.
void ExpectPartition(const std::vector<KeyRange>& ranges, const Less& less) {
  ASSERT_FALSE(ranges.empty());
  EXPECT_FALSE(ranges.front().lower.has_value());
  EXPECT_FALSE(ranges.back().upper.has_value());
  for (size_t i = 0; i < ranges.size(); ++i) {
    EXPECT_EQ(ranges[i].id, static_cast<int>(i) + 1);
    if (i + 1 == ranges.size()) break;
    ASSERT_TRUE(ranges[i].upper.has_value()) << "range " << ranges[i].id;
    EXPECT_EQ(ranges[i].upper, ranges[i + 1].lower) << "range " << ranges[i].id;
    if (ranges[i].lower) {
      EXPECT_TRUE(less(*ranges[i].lower, *ranges[i].upper)) << "range " << ranges[i].id;
    }
  }
}

// The interior boundaries (upper bounds of all but the last range), first key column only.
std::vector<std::string> Boundaries(const std::vector<KeyRange>& ranges) {
  std::vector<std::string> out;
  for (const KeyRange& range : ranges) {
    if (range.upper) out.push_back((*range.upper)[0]);
  }
  return out;
}

TEST(RangeCountTest, TinyTableGetsOneRangePerWorker) {
  EXPECT_EQ(RangeCount(0, 4), 4);
  EXPECT_EQ(RangeCount(9'999, 4), 4);
  EXPECT_EQ(RangeCount(5, 1), 1);
  EXPECT_EQ(RangeCount(-1, 3), 3);  // "never analysed" style estimates
}

TEST(RangeCountTest, MoreRangesThanWorkers) {
  EXPECT_EQ(RangeCount(10'000, 4), 16);
  EXPECT_EQ(RangeCount(1'000'000, 8), 32);
}

TEST(RangeCountTest, LargeTableGetsRangesBySize) {
  EXPECT_EQ(RangeCount(100'000'000, 4), 50);
  EXPECT_EQ(RangeCount(100'000'001, 4), 51);
}

TEST(RangeCountTest, Capped) {
  EXPECT_EQ(RangeCount(std::numeric_limits<int64_t>::max(), 4), kMaxRanges);
  EXPECT_EQ(RangeCount(1'000'000, 100'000), kMaxRanges);
  EXPECT_EQ(RangeCount(1, 100'000), kMaxRanges);
}

TEST(RangeCountTest, NoWorkersCountsAsOne) {
  EXPECT_EQ(RangeCount(0, 0), 1);
  EXPECT_EQ(RangeCount(1'000'000, -3), kRangesPerWorker);
}

TEST(SplitIntegerRangeTest, EvenSplit) {
  std::vector<KeyRange> ranges = SplitIntegerRange(1, 100, 4);
  ExpectPartition(ranges, IntegerLess);
  EXPECT_THAT(Boundaries(ranges), ElementsAre("25", "50", "75"));
}

TEST(SplitIntegerRangeTest, GapsAreIrrelevantOnlyTheSpanCounts) {
  // Keys 1 and 1'000'000 only: the split is over values, not rows.
  std::vector<KeyRange> ranges = SplitIntegerRange(1, 1'000'000, 4);
  ExpectPartition(ranges, IntegerLess);
  EXPECT_THAT(Boundaries(ranges), ElementsAre("250000", "500000", "750000"));
}

TEST(SplitIntegerRangeTest, NegativeKeys) {
  std::vector<KeyRange> ranges = SplitIntegerRange(-100, -1, 4);
  ExpectPartition(ranges, IntegerLess);
  EXPECT_THAT(Boundaries(ranges), ElementsAre("-76", "-51", "-26"));

  ranges = SplitIntegerRange(-10, 9, 2);
  EXPECT_THAT(Boundaries(ranges), ElementsAre("-1"));
}

TEST(SplitIntegerRangeTest, FullInt64RangeDoesNotOverflow) {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  std::vector<KeyRange> ranges = SplitIntegerRange(kMin, kMax, 4);
  ExpectPartition(ranges, IntegerLess);
  EXPECT_THAT(Boundaries(ranges), ElementsAre("-4611686018427387905", "-1", "4611686018427387903"));

  ranges = SplitIntegerRange(kMin, kMax, 4096);
  ASSERT_EQ(ranges.size(), 4096u);
  ExpectPartition(ranges, IntegerLess);

  ranges = SplitIntegerRange(kMax - 1, kMax, 8);
  EXPECT_THAT(Boundaries(ranges), ElementsAre(absl::StrCat(kMax - 1)));
  ranges = SplitIntegerRange(kMin, kMin + 1, 8);
  EXPECT_THAT(Boundaries(ranges), ElementsAre(absl::StrCat(kMin)));
}

TEST(SplitIntegerRangeTest, CountReducedToSpan) {
  std::vector<KeyRange> ranges = SplitIntegerRange(1, 3, 10);
  ExpectPartition(ranges, IntegerLess);
  EXPECT_THAT(Boundaries(ranges), ElementsAre("1", "2"));
}

TEST(SplitIntegerRangeTest, OneKeyGivesOneOpenRange) {
  std::vector<KeyRange> ranges = SplitIntegerRange(42, 42, 16);
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0], (KeyRange{1, std::nullopt, std::nullopt}));
}

TEST(SplitIntegerRangeTest, DegenerateInputs) {
  EXPECT_EQ(SplitIntegerRange(1, 100, 0).size(), 1u);
  EXPECT_EQ(SplitIntegerRange(1, 100, -5).size(), 1u);
  EXPECT_EQ(SplitIntegerRange(1, 0, 4).size(), 1u);  // no keys
}

// Every small span and count: a partition, the key count reduced to the span, each key of
// [min - 2, max + 2] in exactly one range, and the values of [min, max] spread evenly.
TEST(SplitIntegerRangeTest, PartitionExhaustive) {
  for (int64_t min = -6; min <= 6; ++min) {
    for (int64_t max = min; max <= min + 14; ++max) {
      for (int count = 1; count <= 18; ++count) {
        SCOPED_TRACE(absl::StrCat("min=", min, " max=", max, " count=", count));
        const std::vector<KeyRange> ranges = SplitIntegerRange(min, max, count);
        ExpectPartition(ranges, IntegerLess);
        const int64_t values = max - min + 1;
        ASSERT_EQ(std::ssize(ranges), std::min<int64_t>(count, values));
        std::vector<int64_t> per_range(ranges.size());
        for (int64_t key = min - 2; key <= max + 2; ++key) {
          int hits = 0;
          for (size_t r = 0; r < ranges.size(); ++r) {
            if (Contains(ranges[r], {absl::StrCat(key)}, IntegerLess)) {
              ++hits;
              if (key >= min && key <= max) ++per_range[r];
            }
          }
          EXPECT_EQ(hits, 1) << "key " << key;
        }
        const int64_t n = std::ssize(ranges);
        for (int64_t held : per_range) {
          EXPECT_GE(held, values / n);
          EXPECT_LE(held, (values + n - 1) / n);
        }
      }
    }
  }
}

KeyValue K(const std::string& a) { return {a}; }

TEST(SplitAtSamplesTest, EmptySampleGivesOneOpenRange) {
  std::vector<KeyRange> ranges = SplitAtSamples({}, 8);
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0], (KeyRange{1, std::nullopt, std::nullopt}));
  EXPECT_EQ(SplitAtSamples({K("a"), K("b")}, 1).size(), 1u);
  EXPECT_EQ(SplitAtSamples({K("a"), K("b")}, 0).size(), 1u);
}

TEST(SplitAtSamplesTest, EvenQuantiles) {
  std::vector<KeyValue> sample;
  for (char c = 'a'; c <= 'h'; ++c) sample.push_back(K(std::string(1, c)));
  std::vector<KeyRange> ranges = SplitAtSamples(sample, 4);
  ExpectPartition(ranges, TextLess);
  // Two samples per range: (, b] (b, d] (d, f] (f, ).
  EXPECT_THAT(Boundaries(ranges), ElementsAre("b", "d", "f"));
}

TEST(SplitAtSamplesTest, CompositeKeys) {
  std::vector<KeyValue> sample = {{"t1", "a"}, {"t1", "b"}, {"t2", "a"}, {"t2", "b"}};
  std::vector<KeyRange> ranges = SplitAtSamples(sample, 2);
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0].upper, (KeyValue{"t1", "b"}));
  EXPECT_EQ(ranges[1].lower, (KeyValue{"t1", "b"}));
}

TEST(SplitAtSamplesTest, DuplicateBoundariesCollapse) {
  std::vector<KeyValue> sample = {K("a"), K("a"), K("a"), K("a"), K("b"), K("b"), K("b"), K("b")};
  std::vector<KeyRange> ranges = SplitAtSamples(sample, 4);
  ExpectPartition(ranges, TextLess);
  EXPECT_THAT(Boundaries(ranges), ElementsAre("a", "b"));
}

TEST(SplitAtSamplesTest, MoreRangesThanSamples) {
  std::vector<KeyRange> ranges = SplitAtSamples({K("a"), K("b"), K("c")}, 10);
  ExpectPartition(ranges, TextLess);
  EXPECT_THAT(Boundaries(ranges), ElementsAre("a", "b", "c"));

  ranges = SplitAtSamples({K("a")}, 10);
  ExpectPartition(ranges, TextLess);
  EXPECT_THAT(Boundaries(ranges), ElementsAre("a"));
}

// Samples of every size up to 24 with runs of duplicates of every length up to 4, every count up
// to 30: a partition, every sampled key in exactly one range, and no range given more than its
// share (rounded up) of the distinct keys when the sample has no duplicates.
TEST(SplitAtSamplesTest, PartitionExhaustive) {
  for (int samples = 0; samples <= 24; ++samples) {
    for (int run = 1; run <= 4; ++run) {
      std::vector<KeyValue> sample;
      for (int i = 0; i < samples; ++i) sample.push_back(K(absl::StrCat(1000 + i / run)));
      for (int count = 1; count <= 30; ++count) {
        SCOPED_TRACE(absl::StrCat("samples=", samples, " run=", run, " count=", count));
        const std::vector<KeyRange> ranges = SplitAtSamples(sample, count);
        ExpectPartition(ranges, TextLess);
        ASSERT_LE(std::ssize(ranges), std::max(count, 1));
        std::vector<int> per_range(ranges.size());
        for (const KeyValue& key : sample) {
          int hits = 0;
          for (size_t r = 0; r < ranges.size(); ++r) {
            if (Contains(ranges[r], key, TextLess)) {
              ++hits;
              ++per_range[r];
            }
          }
          EXPECT_EQ(hits, 1) << "key " << key[0];
        }
        if (run == 1 && samples >= count) {
          for (int held : per_range) EXPECT_LE(held, (samples + count - 1) / count);
          EXPECT_EQ(std::ssize(ranges), count);
        }
      }
    }
  }
}

}  // namespace
}  // namespace pgbackfill::ranges
