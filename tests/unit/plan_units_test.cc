#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pgbackfill/plan/suggest.h"
#include "pgbackfill/plan/units.h"

namespace pgbackfill::plan {
namespace {

using ::testing::HasSubstr;
using ::testing::Optional;

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
