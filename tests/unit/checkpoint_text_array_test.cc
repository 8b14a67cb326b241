// The job store's text[] literal helpers on their own; against the server's parser and printer in
// tests/integration/job_store_test.cc.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "pgbackfill/checkpoint/job_store.h"
#include "support/status_testing.h"
#include "support/tricky_strings.h"

namespace pgbackfill::checkpoint {
namespace {

using ranges::KeyValue;
using ::testing::ElementsAre;
using testing::TrickyStrings;

TEST(JobStoreTextArrayTest, RoundTripsTrickyStrings) {
  const std::vector<std::string>& tricky = TrickyStrings();
  for (const std::string& s : tricky) {
    SCOPED_TRACE(s);
    std::optional<KeyValue> value = KeyValue{s};
    ASSERT_OK_AND_ASSIGN(auto parsed, ParseTextArray(TextArrayLiteral(value)));
    EXPECT_EQ(parsed, value);
  }
  std::optional<KeyValue> all = tricky;
  ASSERT_OK_AND_ASSIGN(auto parsed_all, ParseTextArray(TextArrayLiteral(all)));
  EXPECT_EQ(parsed_all, all);
  std::optional<KeyValue> empty = KeyValue{};
  ASSERT_OK_AND_ASSIGN(auto parsed_empty, ParseTextArray(TextArrayLiteral(empty)));
  EXPECT_EQ(parsed_empty, empty);
  EXPECT_EQ(TextArrayLiteral(std::nullopt), std::nullopt);
  ASSERT_OK_AND_ASSIGN(auto parsed_null, ParseTextArray(std::nullopt));
  EXPECT_EQ(parsed_null, std::nullopt);
}

TEST(JobStoreTextArrayTest, ParsesBareElementsAsArrayInDoes) {
  ASSERT_OK_AND_ASSIGN(auto value, ParseTextArray("{a, b c ,\\ d\\ ,\"\"}"));
  EXPECT_THAT(*value, ElementsAre("a", "b c", " d ", ""));
  ASSERT_OK_AND_ASSIGN(auto escaped_null, ParseTextArray("{\\NULL,\"NULL\"}"));
  EXPECT_THAT(*escaped_null, ElementsAre("NULL", "NULL"));
}

TEST(JobStoreTextArrayTest, RejectsMalformedLiteralsAndNullElements) {
  for (const char* bad : {"", "a", "{a", "{a,}", "{,a}", "{\"a}", "{a}x", "{{a},{b}}", "{a,NULL}",
                          "{null}", "[0:0]={a}", "{a\"b}", "{a\\"}) {
    EXPECT_EQ(ParseTextArray(std::string(bad)).status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

}  // namespace
}  // namespace pgbackfill::checkpoint
