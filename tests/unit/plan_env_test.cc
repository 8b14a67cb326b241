#include <cstdlib>
#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pgbackfill/plan/env.h"

namespace pgbackfill::plan {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const EnvLookup kEnv = [](std::string_view name) -> std::optional<std::string> {
  static const std::map<std::string, std::string, std::less<>> kVars = {
      {"USER", "app"}, {"PASS", "p$w}d"}, {"EMPTY", ""}};
  auto it = kVars.find(name);
  if (it == kVars.end()) return std::nullopt;
  return it->second;
};

std::string Expanded(std::string_view text) {
  absl::StatusOr<std::string> out = ExpandEnv(text, kEnv);
  EXPECT_TRUE(out.ok()) << text << ": " << out.status();
  return out.ok() ? *out : "<error>";
}

TEST(ExpandEnvTest, ReplacesVariablesVerbatim) {
  EXPECT_EQ(Expanded("user=${USER} password=${PASS}"), "user=app password=p$w}d");
  EXPECT_EQ(Expanded("${USER}${USER}"), "appapp");
  EXPECT_EQ(Expanded("no variables"), "no variables");
  EXPECT_EQ(Expanded(""), "");
  EXPECT_EQ(Expanded("x=${EMPTY}"), "x=");
}

TEST(ExpandEnvTest, DefaultsApplyWhenUnsetOrEmpty) {
  EXPECT_EQ(Expanded("${MISSING:-localhost}"), "localhost");
  EXPECT_EQ(Expanded("${EMPTY:-fallback}"), "fallback");
  EXPECT_EQ(Expanded("${USER:-other}"), "app");
  EXPECT_EQ(Expanded("${MISSING:-}"), "");
}

TEST(ExpandEnvTest, DollarEscapesAndLoneDollars) {
  EXPECT_EQ(Expanded("pa$$word"), "pa$word");
  EXPECT_EQ(Expanded("$${USER}"), "${USER}");
  EXPECT_EQ(Expanded("cost$5 and $"), "cost$5 and $");
}

TEST(ExpandEnvTest, ErrorsNameTheVariableButNeverEchoTheText) {
  absl::StatusOr<std::string> unset = ExpandEnv("password=hunter2 ${PGPASSWORD_X}", kEnv);
  ASSERT_FALSE(unset.ok());
  EXPECT_EQ(unset.status().message(), "environment variable PGPASSWORD_X is not set");

  absl::StatusOr<std::string> open = ExpandEnv("password=hunter2 ${USER", kEnv);
  ASSERT_FALSE(open.ok());
  EXPECT_THAT(std::string(open.status().message()), HasSubstr("unterminated \"${\""));
  EXPECT_THAT(std::string(open.status().message()), Not(HasSubstr("hunter2")));

  EXPECT_THAT(std::string(ExpandEnv("${}", kEnv).status().message()),
              HasSubstr("invalid environment variable name"));
  EXPECT_THAT(std::string(ExpandEnv("${1X}", kEnv).status().message()),
              HasSubstr("invalid environment variable name \"1X\""));
  EXPECT_THAT(std::string(ExpandEnv("${A B}", kEnv).status().message()),
              HasSubstr("invalid environment variable name"));
}

TEST(ProcessEnvTest, ReadsTheProcessEnvironment) {
  ::setenv("PGBACKFILL_PLAN_TEST_VAR", "42", 1);
  EXPECT_EQ(ProcessEnv()("PGBACKFILL_PLAN_TEST_VAR"), "42");
  ::unsetenv("PGBACKFILL_PLAN_TEST_VAR");
  EXPECT_EQ(ProcessEnv()("PGBACKFILL_PLAN_TEST_VAR"), std::nullopt);
}

}  // namespace
}  // namespace pgbackfill::plan
