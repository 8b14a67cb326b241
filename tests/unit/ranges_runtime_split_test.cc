// The pure parts of splitting a range at run time: where the split goes and when it is worth it.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "pgbackfill/ranges/split.h"

namespace pgbackfill::ranges {
namespace {

TEST(SplitIntegerRemainderTest, MidpointOfThePresentKeysNotOfTheRangeBounds) {
  // A range (0, 4e18] whose keys are 1..3M: the split lands among the rows, not at 2e18.
  const std::optional<IntegerSplit> split = SplitIntegerRemainder(1, 3'000'000);
  ASSERT_TRUE(split.has_value());
  EXPECT_EQ(split->point, 1'500'000);
  EXPECT_EQ(split->estimated_rows, 3'000'000);
}

TEST(SplitIntegerRemainderTest, BothPartsKeepAPresentKey) {
  // Two keys: the donor keeps the first, the new range (point, upper] the second.
  const std::optional<IntegerSplit> two = SplitIntegerRemainder(7, 8);
  ASSERT_TRUE(two.has_value());
  EXPECT_EQ(two->point, 7);
  const std::optional<IntegerSplit> far = SplitIntegerRemainder(-5, 8'000'000'000'000'000'000);
  ASSERT_TRUE(far.has_value());
  EXPECT_GE(far->point, -5);
  EXPECT_LT(far->point, 8'000'000'000'000'000'000);
}

TEST(SplitIntegerRemainderTest, FewerThanTwoKeysDoNotSplit) {
  EXPECT_FALSE(SplitIntegerRemainder(5, 5).has_value());
  EXPECT_FALSE(SplitIntegerRemainder(6, 5).has_value());
}

TEST(SplitIntegerRemainderTest, WholeInt64DomainDoesNotOverflow) {
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  const std::optional<IntegerSplit> split = SplitIntegerRemainder(kMin, kMax);
  ASSERT_TRUE(split.has_value());
  EXPECT_EQ(split->point, -1);
  EXPECT_EQ(split->estimated_rows, kMax);
}

TEST(SplitSampledRemainderTest, MedianOfTheSampleLowerOneWhenEven) {
  EXPECT_EQ(SplitSampledRemainder({{"a"}, {"b"}, {"c"}}), KeyValue{"b"});
  EXPECT_EQ(SplitSampledRemainder({{"a", "1"}, {"a", "2"}, {"b", "1"}, {"c", "9"}}),
            (KeyValue{"a", "2"}));
  EXPECT_FALSE(SplitSampledRemainder({}).has_value());
}

TEST(WorthSplittingTest, OnlyRemaindersOfAtLeastFourBatches) {
  EXPECT_TRUE(WorthSplitting(20'000, 5'000));
  EXPECT_FALSE(WorthSplitting(19'999, 5'000));
  EXPECT_FALSE(WorthSplitting(0, 5'000));
  EXPECT_TRUE(WorthSplitting(kMinSplitBatches, 0)) << "a batch of at least one row";
}

}  // namespace
}  // namespace pgbackfill::ranges
