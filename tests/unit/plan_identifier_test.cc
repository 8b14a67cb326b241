#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pgbackfill/plan/parse.h"
#include "pgbackfill/plan/plan.h"

namespace pgbackfill::plan {
namespace {

using ::testing::HasSubstr;

std::string Folded(std::string_view text) {
  absl::StatusOr<std::string> name = ParseIdentifier(text);
  EXPECT_TRUE(name.ok()) << text << ": " << name.status();
  return name.ok() ? *name : "<error>";
}

std::string ErrorOf(std::string_view text) {
  absl::StatusOr<QualifiedName> name = ParseQualifiedName(text);
  EXPECT_FALSE(name.ok()) << text;
  return name.ok() ? "" : std::string(name.status().message());
}

TEST(ParseIdentifierTest, UnquotedFoldsToLowerCase) {
  EXPECT_EQ(Folded("users"), "users");
  EXPECT_EQ(Folded("Users"), "users");
  EXPECT_EQ(Folded("FIRST_NAME"), "first_name");
  EXPECT_EQ(Folded("  padded  "), "padded");
  EXPECT_EQ(Folded("a$1"), "a$1");
}

TEST(ParseIdentifierTest, FoldingIsAsciiOnly) {
  // PostgreSQL's downcase_identifier leaves multibyte characters alone in UTF-8 databases.
  EXPECT_EQ(Folded("Ärger"), "Ärger");
  EXPECT_EQ(Folded("ÄRGER_X"), "Ärger_x");
}

TEST(ParseIdentifierTest, QuotedKeepsCaseSpacesAndDoubledQuotes) {
  EXPECT_EQ(Folded("\"Users\""), "Users");
  EXPECT_EQ(Folded("\"has space\""), "has space");
  EXPECT_EQ(Folded("\"We\"\"ird Table\""), "We\"ird Table");
  EXPECT_EQ(Folded("\"select\""), "select");
  EXPECT_EQ(Folded("\"a.b\""), "a.b");
  EXPECT_EQ(Folded("\"\"\"\""), "\"");
}

TEST(ParseIdentifierTest, RejectsMalformedNames) {
  EXPECT_THAT(ParseIdentifier("\"open").status().message(),
              HasSubstr("unterminated quoted identifier"));
  EXPECT_THAT(ParseIdentifier("\"\"").status().message(),
              HasSubstr("zero-length quoted identifier"));
  EXPECT_THAT(ParseIdentifier("").status().message(), HasSubstr("empty name"));
  EXPECT_THAT(ParseIdentifier("a.b").status().message(), HasSubstr("expected a single name"));
  EXPECT_THAT(ParseIdentifier("my-col").status().message(), HasSubstr("unexpected character '-'"));
  EXPECT_THAT(ParseIdentifier("1col").status().message(), HasSubstr("cannot start with '1'"));
  EXPECT_THAT(ParseIdentifier("\"a\"b").status().message(), HasSubstr("unexpected character 'b'"));
  EXPECT_THAT(ParseIdentifier(std::string(64, 'a')).status().message(),
              HasSubstr("longer than 63 bytes"));
  EXPECT_TRUE(ParseIdentifier(std::string(63, 'a')).ok());
}

TEST(ParseQualifiedNameTest, SplitsOnTheDotOutsideQuotes) {
  EXPECT_EQ(*ParseQualifiedName("users"), (QualifiedName{"", "users"}));
  EXPECT_EQ(*ParseQualifiedName("Public.Users"), (QualifiedName{"public", "users"}));
  EXPECT_EQ(*ParseQualifiedName("public.\"select\""), (QualifiedName{"public", "select"}));
  EXPECT_EQ(*ParseQualifiedName("\"My.Schema\".\"We\"\"ird Table\""),
            (QualifiedName{"My.Schema", "We\"ird Table"}));
  EXPECT_EQ(*ParseQualifiedName("\"has space\" . t"), (QualifiedName{"has space", "t"}));
}

TEST(ParseQualifiedNameTest, RejectsEmptyPartsAndThreeParts) {
  EXPECT_THAT(ErrorOf("public."), HasSubstr("empty name part"));
  EXPECT_THAT(ErrorOf(".users"), HasSubstr("empty name part"));
  EXPECT_THAT(ErrorOf("a..b"), HasSubstr("empty name part"));
  EXPECT_THAT(ErrorOf("db.public.users"), HasSubstr("too many dots"));
  EXPECT_THAT(ErrorOf("public.\"users"), HasSubstr("unterminated quoted identifier"));
  EXPECT_THAT(ErrorOf("public users"), HasSubstr("unexpected character 'u'"));
}

TEST(QuoteQualifiedTest, AlwaysQuotesAndOmitsAnEmptySchema) {
  EXPECT_EQ(QuoteQualified({"public", "users"}), "\"public\".\"users\"");
  EXPECT_EQ(QuoteQualified({"", "users"}), "\"users\"");
  EXPECT_EQ(QuoteQualified({"My Schema", "We\"ird"}), "\"My Schema\".\"We\"\"ird\"");
}

TEST(QuoteQualifiedTest, RoundTripsThroughTheParser) {
  for (const QualifiedName& name : {QualifiedName{"public", "select"},
                                    QualifiedName{"a.b", "c\"d e"}, QualifiedName{"", "Mixed"}}) {
    absl::StatusOr<QualifiedName> parsed = ParseQualifiedName(QuoteQualified(name));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, name);
  }
}

}  // namespace
}  // namespace pgbackfill::plan
