// The engine/pg helpers the throttle probes rely on: WAL positions and naming a server by its DSN.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "pgbackfill/pg/dsn.h"
#include "pgbackfill/pg/lsn.h"

namespace pgbackfill::pg {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(ParseLsnTest, ParsesPostgresSpelling) {
  EXPECT_EQ(*ParseLsn("0/0"), 0u);
  EXPECT_EQ(*ParseLsn("0/16B3748"), 0x16B3748u);
  EXPECT_EQ(*ParseLsn("16/B374D848"), (uint64_t{0x16} << 32) | 0xB374D848u);
  EXPECT_EQ(*ParseLsn("ffffffff/FFFFFFFF"), ~uint64_t{0});
}

TEST(ParseLsnTest, RejectsAnythingElse) {
  for (const char* bad : {"", "/", "0/", "/0", "16B3748", "0x1/0", "1/0x2", "-1/0", "+1/0", " 1/0",
                          "1/0 ", "1/2/3", "123456789/0", "g/0", "1 /0"}) {
    EXPECT_FALSE(ParseLsn(bad).ok()) << "'" << bad << "'";
  }
  EXPECT_THAT(std::string(ParseLsn("nope").status().message()), HasSubstr("'nope'"));
}

TEST(ParseLsnTest, FormatIsTheInverse) {
  EXPECT_EQ(FormatLsn(0), "0/0");
  EXPECT_EQ(FormatLsn((uint64_t{0x16} << 32) | 0xB374D848u), "16/B374D848");
  for (uint64_t lsn : {uint64_t{1}, uint64_t{0xABCDEF0123456789}, ~uint64_t{0}}) {
    EXPECT_EQ(*ParseLsn(FormatLsn(lsn)), lsn);
  }
}

// Clears the PG* variables DescribeDsn falls back to, restoring them afterwards.
class DescribeDsnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : kVariables) {
      const char* value = std::getenv(name);
      saved_.push_back(value != nullptr ? std::optional<std::string>(value) : std::nullopt);
      unsetenv(name);
    }
  }
  void TearDown() override {
    for (size_t i = 0; i < saved_.size(); ++i) {
      if (saved_[i].has_value()) {
        setenv(kVariables[i], saved_[i]->c_str(), 1);
      } else {
        unsetenv(kVariables[i]);
      }
    }
  }
  static constexpr const char* kVariables[] = {"PGHOST", "PGHOSTADDR", "PGPORT"};
  std::vector<std::optional<std::string>> saved_;
};

TEST_F(DescribeDsnTest, KeyValue) {
  EXPECT_EQ(*DescribeDsn("host=db1.internal port=5433 user=app password=s3cret dbname=shop"),
            "db1.internal:5433");
  EXPECT_EQ(*DescribeDsn("host=/tmp/pg/socket port=22486 user=postgres"), "/tmp/pg/socket:22486");
  EXPECT_EQ(*DescribeDsn("hostaddr=10.0.0.7 dbname=x"), "10.0.0.7:5432");
  EXPECT_EQ(*DescribeDsn("host=::1 port=6000"), "[::1]:6000");
}

TEST_F(DescribeDsnTest, Uri) {
  EXPECT_EQ(*DescribeDsn("postgres://app:s3cret@replica-2.example.com:6432/shop?sslmode=require"),
            "replica-2.example.com:6432");
  EXPECT_EQ(*DescribeDsn("postgresql://app@[2001:db8::1]/shop"), "[2001:db8::1]:5432");
  EXPECT_EQ(*DescribeDsn("postgresql:///shop?host=/var/run/postgresql&port=5434"),
            "/var/run/postgresql:5434");
}

TEST_F(DescribeDsnTest, NeverShowsThePasswordOrUser) {
  for (const char* dsn : {"host=h password=s3cret user=bob", "postgres://bob:s3cret@h/db"}) {
    const std::string name = *DescribeDsn(dsn);
    EXPECT_THAT(name, Not(HasSubstr("s3cret")));
    EXPECT_THAT(name, Not(HasSubstr("bob")));
  }
}

TEST_F(DescribeDsnTest, SeveralHosts) {
  EXPECT_EQ(*DescribeDsn("host=h1,h2 port=5432,5433"), "h1:5432,h2:5433");
  EXPECT_EQ(*DescribeDsn("host=h1,h2 port=6000"), "h1:6000,h2:6000");
  EXPECT_EQ(*DescribeDsn("postgres://h1:1,h2:2/db"), "h1:1,h2:2");
}

TEST_F(DescribeDsnTest, DefaultsFromTheEnvironmentThenLibpq) {
  EXPECT_EQ(*DescribeDsn(""), "localhost:5432");
  EXPECT_EQ(*DescribeDsn("dbname=x"), "localhost:5432");
  setenv("PGHOST", "envhost", 1);
  setenv("PGPORT", "7777", 1);
  EXPECT_EQ(*DescribeDsn("dbname=x"), "envhost:7777");
  EXPECT_EQ(*DescribeDsn("host=explicit"), "explicit:7777");
}

TEST_F(DescribeDsnTest, InvalidDsnIsAnError) {
  absl::StatusOr<std::string> bad = DescribeDsn("host=h nonsense");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("invalid connection string"));
  EXPECT_FALSE(DescribeDsn("no_such_keyword=1").ok());
}

}  // namespace
}  // namespace pgbackfill::pg
