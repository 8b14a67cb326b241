#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "pgbackfill/pg/error.h"
#include "pgbackfill/pg/quote.h"

namespace pgbackfill::pg {
namespace {

TEST(QuoteIdentTest, AlwaysQuotesAndDoublesQuotes) {
  EXPECT_EQ(QuoteIdent("users"), "\"users\"");
  EXPECT_EQ(QuoteIdent("Has Space"), "\"Has Space\"");
  EXPECT_EQ(QuoteIdent("we\"ird"), "\"we\"\"ird\"");
  EXPECT_EQ(QuoteIdent("select"), "\"select\"");
  EXPECT_EQ(QuoteIdent(""), "\"\"");
}

TEST(QuoteLiteralTest, DoublesSingleQuotes) {
  EXPECT_EQ(QuoteLiteral("it's"), "'it''s'");
  EXPECT_EQ(QuoteLiteral(""), "''");
}

TEST(QuoteLiteralTest, BackslashUsesEscapeStringForm) {
  EXPECT_EQ(QuoteLiteral("a\\b'c"), "E'a\\\\b''c'");
}

TEST(ClassifySqlStateTest, RetryableStates) {
  for (const char* state : {"40001", "40P01", "55P03", "57014", "53300", "53200"}) {
    EXPECT_EQ(ClassifySqlState(state), ErrorClass::kRetry) << state;
  }
}

TEST(ClassifySqlStateTest, ReconnectStates) {
  for (const char* state : {"", "08000", "08006", "08003", "57P01", "57P02", "57P03", "25006"}) {
    EXPECT_EQ(ClassifySqlState(state), ErrorClass::kReconnect) << state;
  }
}

TEST(ClassifySqlStateTest, EverythingElseIsFatal) {
  for (const char* state : {"42P01", "42703", "23505", "22012", "42501", "XX000", "25P02"}) {
    EXPECT_EQ(ClassifySqlState(state), ErrorClass::kFatal) << state;
  }
}

TEST(ClassifyTest, UsesThePayloadAndKeepsTheMessage) {
  absl::Status status = MakeError("55P03", "canceling statement due to lock timeout");
  EXPECT_EQ(status.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(SqlStateOf(status), "55P03");
  EXPECT_EQ(Classify(status), ErrorClass::kRetry);
  EXPECT_EQ(status.message(), "canceling statement due to lock timeout");
}

TEST(ClassifyTest, StatusesWithoutSqlState) {
  EXPECT_EQ(Classify(absl::OkStatus()), ErrorClass::kNone);
  EXPECT_EQ(Classify(absl::UnavailableError("gone")), ErrorClass::kReconnect);
  EXPECT_EQ(Classify(absl::InternalError("bug")), ErrorClass::kFatal);
  EXPECT_EQ(SqlStateOf(absl::InternalError("bug")), "");
}

}  // namespace
}  // namespace pgbackfill::pg
