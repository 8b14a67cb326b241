#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pgbackfill/plan/plan.h"
#include "pgbackfill/plan/suggest.h"
#include "pgbackfill/plan/units.h"

namespace pgbackfill::plan {
namespace {

using ::testing::HasSubstr;
using ::testing::Optional;

TEST(ParseLimitTest, RelativeAbsoluteAndOff) {
  absl::StatusOr<Limit> limit = ParseLimit("1.25x + 2ms", LimitUnit::kSeconds);
  ASSERT_TRUE(limit.ok()) << limit.status();
  EXPECT_EQ(*limit, (Limit{.factor = 1.25, .offset = 0.002}));
  EXPECT_DOUBLE_EQ(limit->Of(0.004), 0.007);
  EXPECT_EQ(*ParseLimit("2x", LimitUnit::kSeconds), (Limit{.factor = 2, .offset = 0}));
  EXPECT_EQ(*ParseLimit(" 50ms ", LimitUnit::kSeconds), (Limit{.factor = 0, .offset = 0.05}));
  EXPECT_EQ(*ParseLimit("1.5x+1", LimitUnit::kSessions), (Limit{.factor = 1.5, .offset = 1}));
  EXPECT_EQ(*ParseLimit("8", LimitUnit::kSessions), (Limit{.factor = 0, .offset = 8}));
  EXPECT_FALSE(ParseLimit("off", LimitUnit::kSeconds)->enabled());
  EXPECT_FALSE(ParseLimit("0", LimitUnit::kSessions)->enabled());
}

TEST(ParseLimitTest, RefusesWhatIsNotALimit) {
  EXPECT_THAT(ParseLimit("x", LimitUnit::kSeconds).status().message(),
              HasSubstr("such as 2x, 1.25x + 2ms"));
  EXPECT_THAT(ParseLimit("-1x", LimitUnit::kSeconds).status().message(),
              HasSubstr("factor of the baseline"));
  EXPECT_THAT(ParseLimit("2x - 1ms", LimitUnit::kSeconds).status().message(),
              HasSubstr("only + may follow"));
  EXPECT_THAT(ParseLimit("2x + 5", LimitUnit::kSeconds).status().message(),
              HasSubstr("such as 2x"));
  EXPECT_THAT(ParseLimit("8ms", LimitUnit::kSessions).status().message(),
              HasSubstr("2x, 1.5x + 1 or 8"));
}

TEST(ParseLimitTest, ASharesOffsetIsAPercentOrAFractionOfAtMostTheWholeTime) {
  EXPECT_EQ(*ParseLimit("1.25x + 5%", LimitUnit::kShare), (Limit{.factor = 1.25, .offset = 0.05}));
  EXPECT_EQ(*ParseLimit("30%", LimitUnit::kShare), (Limit{.factor = 0, .offset = 0.3}));
  EXPECT_EQ(*ParseLimit("0.3", LimitUnit::kShare), (Limit{.factor = 0, .offset = 0.3}));
  EXPECT_THAT(ParseLimit("150%", LimitUnit::kShare).status().message(),
              HasSubstr("such as 1.25x, 1.25x + 5% or 30%"));
  EXPECT_FALSE(ParseLimit("5%", LimitUnit::kSessions).ok()) << "a percent of sessions is no limit";
}

TEST(ParseDurationValueTest, AcceptsUnitsAndBareZero) {
  EXPECT_EQ(*ParseDurationValue("200ms"), absl::Milliseconds(200));
  EXPECT_EQ(*ParseDurationValue("5s"), absl::Seconds(5));
  EXPECT_EQ(*ParseDurationValue("1m"), absl::Minutes(1));
  EXPECT_EQ(*ParseDurationValue("1h30m"), absl::Minutes(90));
  EXPECT_EQ(*ParseDurationValue("1.5s"), absl::Milliseconds(1500));
  EXPECT_EQ(*ParseDurationValue("0"), absl::ZeroDuration());
}

TEST(ParseDurationValueTest, RejectsJunkNegativeInfiniteAndMissingUnits) {
  EXPECT_EQ(ParseDurationValue("5x").status().message(),
            "must be a duration such as 200ms, 5s or 1m, got \"5x\"");
  EXPECT_EQ(ParseDurationValue("-1s").status().message(), "must not be negative, got \"-1s\"");
  EXPECT_THAT(std::string(ParseDurationValue("inf").status().message()),
              HasSubstr("must be finite"));
  EXPECT_THAT(std::string(ParseDurationValue("30").status().message()),
              HasSubstr("needs a unit (ms, s, m or h), e.g. 30ms or 30s"));
  EXPECT_FALSE(ParseDurationValue("").ok());
}

TEST(ParseByteSizeTest, AcceptsPostgresUnits) {
  EXPECT_EQ(*ParseByteSize("0"), 0);
  EXPECT_EQ(*ParseByteSize("1048576"), 1048576);
  EXPECT_EQ(*ParseByteSize("512B"), 512);
  EXPECT_EQ(*ParseByteSize("64kB"), 64 * 1024);
  EXPECT_EQ(*ParseByteSize("16MB"), 16 << 20);
  EXPECT_EQ(*ParseByteSize("16 MB"), 16 << 20);
  EXPECT_EQ(*ParseByteSize("2GB"), int64_t{2} << 30);
  EXPECT_EQ(*ParseByteSize("1TB"), int64_t{1} << 40);
}

TEST(ParseByteSizeTest, RejectsJunkNegativeAndOverflow) {
  EXPECT_THAT(std::string(ParseByteSize("16mb").status().message()),
              HasSubstr("must be a byte count"));
  EXPECT_THAT(std::string(ParseByteSize("MB").status().message()),
              HasSubstr("must be a byte count"));
  EXPECT_THAT(std::string(ParseByteSize("-1MB").status().message()),
              HasSubstr("must not be negative"));
  EXPECT_THAT(std::string(ParseByteSize("99999999999TB").status().message()),
              HasSubstr("too large"));
}

TEST(EditDistanceTest, CountsTranspositionsAsOneEdit) {
  EXPECT_EQ(EditDistance("table", "table"), 0u);
  EXPECT_EQ(EditDistance("tabel", "table"), 1u);
  EXPECT_EQ(EditDistance("Table", "table"), 0u);
  EXPECT_EQ(EditDistance("", "abc"), 3u);
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3u);
}

TEST(SuggestTest, SuggestsOnlyPlausibleTypos) {
  constexpr std::string_view kKeys[] = {
      "table", "key", "set", "workers", "max_replica_lag", "max_replica_lag_bytes"};
  EXPECT_THAT(Suggest("tabel", kKeys), Optional(std::string_view("table")));
  EXPECT_THAT(Suggest("wrokers", kKeys), Optional(std::string_view("workers")));
  EXPECT_THAT(Suggest("max_replica_lga", kKeys), Optional(std::string_view("max_replica_lag")));
  EXPECT_THAT(Suggest("kye", kKeys), Optional(std::string_view("key")));
  EXPECT_EQ(Suggest("sleep", kKeys), std::nullopt);
  EXPECT_EQ(Suggest("xyz", kKeys), std::nullopt);
}

}  // namespace
}  // namespace pgbackfill::plan
