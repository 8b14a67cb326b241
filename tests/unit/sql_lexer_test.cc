#include "pgbackfill/sql/lexer.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pgbackfill/sql/key.h"
#include "pgbackfill/sql/names.h"

namespace pgbackfill::sql {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> Texts(const std::vector<Token>& tokens) {
  std::vector<std::string> texts;
  for (const Token& token : tokens) texts.emplace_back(token.text);
  return texts;
}

std::vector<std::string> StatementTexts(std::string_view sql) {
  std::vector<std::string> texts;
  for (const Statement& statement : Split(sql)) texts.emplace_back(statement.Text());
  return texts;
}

TEST(LexTest, QuotedRunsCommentsAndDollarQuotesAreOneTokenEach) {
  const std::vector<Token> tokens =
      Lex("SELECT 'a;b', \"x\"\"y\", E'it\\'s', $f$ ; $f$, $1 /* c /* nested */ ; */ -- tail");
  EXPECT_THAT(Texts(tokens),
              ElementsAre("SELECT", "'a;b'", ",", "\"x\"\"y\"", ",", "E'it\\'s'", ",",
                          "$f$ ; $f$", ",", "$1", "/* c /* nested */ ; */", "-- tail"));
  EXPECT_EQ(tokens[0].kind, TokenKind::kWord);
  EXPECT_EQ(tokens[1].kind, TokenKind::kString);
  EXPECT_EQ(tokens[3].kind, TokenKind::kQuotedIdent);
  EXPECT_EQ(tokens[5].kind, TokenKind::kString);
  EXPECT_EQ(tokens[7].kind, TokenKind::kString);
  EXPECT_EQ(tokens[9].kind, TokenKind::kParam);
  EXPECT_EQ(tokens[10].kind, TokenKind::kComment);
  EXPECT_EQ(tokens[11].kind, TokenKind::kComment);
}

TEST(LexTest, DepthCountsParenthesesAroundEachToken) {
  const std::vector<Token> tokens = Lex("f(a, (b)) c");
  std::vector<int> depths;
  for (const Token& token : tokens) depths.push_back(token.depth);
  // f ( a , ( b ) ) c
  EXPECT_THAT(depths, ElementsAre(0, 0, 1, 1, 1, 2, 1, 0, 0));
}

TEST(LexTest, UnterminatedRunsAreMarkedOpen) {
  EXPECT_FALSE(Lex("\"open").front().closed);
  EXPECT_FALSE(Lex("'open").front().closed);
  EXPECT_FALSE(Lex("/* open").front().closed);
  EXPECT_FALSE(Lex("$t$ open").front().closed);
  EXPECT_TRUE(Lex("\"shut\"").front().closed);
}

TEST(SplitTest, SemicolonsOutsideQuotesAndParenthesesEndStatements) {
  EXPECT_THAT(StatementTexts("SELECT 1; SELECT ';' ;; -- done;\nSELECT (1;2)"),
              ElementsAre("SELECT 1", "SELECT ';'", "SELECT (1;2)"));
  EXPECT_TRUE(Split("  -- only a comment\n /* and another */ ").empty());
}

TEST(SplitTest, StandardRoutineBodyKeepsItsSemicolons) {
  EXPECT_THAT(StatementTexts("CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql "
                             "BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END; "
                             "SELECT 3"),
              ElementsAre("CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC "
                          "SELECT CASE WHEN true THEN 1 END; SELECT 2; END",
                          "SELECT 3"));
  // Outside a routine header BEGIN is a transaction's, and its semicolon ends it.
  EXPECT_THAT(StatementTexts("BEGIN; SELECT 1; END"), ElementsAre("BEGIN", "SELECT 1", "END"));
}

TEST(NameOfTest, WordsFoldToLowerCaseAsciiOnlyQuotedNamesAsWritten) {
  EXPECT_EQ(NameOf(Lex("Users").front()), "users");
  EXPECT_EQ(NameOf(Lex("ÄRGER").front()), "Ärger");
  EXPECT_EQ(NameOf(Lex("\"We\"\"ird\"").front()), "We\"ird");
  EXPECT_TRUE(IsWord(Lex("CoNcUrReNtLy").front(), "concurrently"));
  EXPECT_FALSE(IsWord(Lex("\"concurrently\"").front(), "concurrently"));
}

TEST(SplitIdentifierListTest, ReadsASettingAsTheServerDoes) {
  EXPECT_THAT(SplitIdentifierList("\"$user\", Public ,\"My\"\"Schema\""),
              ElementsAre("$user", "public", "My\"Schema"));
  EXPECT_THAT(SplitIdentifierList("$user, public"), ElementsAre("$user", "public"));
  EXPECT_TRUE(SplitIdentifierList("  ").empty());
}

TEST(TimeoutSettingTest, WholeMillisecondsRoundedUpNeverZero) {
  EXPECT_EQ(TimeoutSetting(absl::Seconds(2)), "2000ms");
  EXPECT_EQ(TimeoutSetting(absl::Microseconds(1500)), "2ms");
  EXPECT_EQ(TimeoutSetting(absl::ZeroDuration()), "1ms");
  EXPECT_EQ(TimeoutSetting(absl::Nanoseconds(1)), "1ms");
  EXPECT_EQ(SetLocalTimeout("lock_timeout", absl::Milliseconds(200)),
            "/* pgbackfill */ SET LOCAL lock_timeout = '200ms'");
}

TEST(KeyRowTest, ColumnsQuotedAndParametersCast) {
  const std::vector<KeyColumn> key{{"a", "text"}, {"B", "uuid"}};
  EXPECT_EQ(KeyRow(key), "(\"a\", \"B\")");
  EXPECT_EQ(KeyRow(key, "t."), "(t.\"a\", t.\"B\")");
  EXPECT_EQ(ParamRow(key, 3), "($3::text, $4::uuid)");
}

}  // namespace
}  // namespace pgbackfill::sql
