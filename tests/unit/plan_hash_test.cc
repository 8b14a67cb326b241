#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pgbackfill/plan/parse.h"
#include "pgbackfill/plan/plan.h"

namespace pgbackfill::plan {
namespace {

using ::testing::MatchesRegex;

std::string HashOf(std::string_view text) {
  absl::StatusOr<Plan> plan = ParsePlan(text, "plan.yaml", [](std::string_view name) {
    return name == "HOST" ? std::optional<std::string>("db1") : std::nullopt;
  });
  EXPECT_TRUE(plan.ok()) << plan.status();
  return plan.ok() ? PlanHash(*plan) : "<error>";
}

constexpr std::string_view kBase = R"(version: 1
name: users-split-name
table: public.users
key: [id]
set:
  first_name: split_part(full_name, ' ', 1)
  last_name: split_part(full_name, ' ', 2)
where: first_name IS NULL
dual_write: true
)";

TEST(PlanHashTest, IsSixteenHexDigits) { EXPECT_THAT(HashOf(kBase), MatchesRegex("[0-9a-f]{16}")); }

TEST(PlanHashTest, IsAFixedFunctionOfThePlan) {
  // Pinned: the hash is stored in the job store and compared by later builds. If this changes,
  // every running job would refuse to resume; change the serialization version on purpose only.
  Plan plan;
  plan.table = {"public", "t"};
  plan.set = {{.column = "a", .expression = "1", .line = 5}};
  // Cross-checked with an independent FNV-1a implementation of the documented serialization.
  EXPECT_EQ(PlanHash(plan), "7cca017e600695dc");
  plan.set[0].line = 99;  // where an assignment sits in the file is not part of the plan
  EXPECT_EQ(PlanHash(plan), "7cca017e600695dc");
}

TEST(PlanHashTest, IgnoresFormattingCommentsAndQuotingStyle) {
  const std::string reformatted = HashOf(R"yaml(# A comment that was not there before.
version: 1
name: "users-split-name"
table: Public.USERS      # folds to the same name
key: ["id"]
set:
  first_name:   "split_part(full_name, ' ', 1)"
  last_name: |
    split_part(full_name, ' ', 2)
dual_write: yes
where: >-
  first_name IS NULL
)yaml");
  EXPECT_EQ(HashOf(kBase), reformatted);
}

TEST(PlanHashTest, IgnoresTuningAndConnectionKeys) {
  const std::string base = HashOf(kBase);
  EXPECT_EQ(base, HashOf(std::string(kBase) + "workers: 16\n"));
  EXPECT_EQ(base, HashOf(std::string(kBase) + "batch: {rows: 100, target: 1s}\n"));
  EXPECT_EQ(base, HashOf(std::string(kBase) + "throttle: {max_replica_lag: 30s}\n"));
  EXPECT_EQ(base, HashOf(std::string(kBase) + "dsn: host=${HOST}\nverify: false\n"));
  EXPECT_EQ(base, HashOf(std::string(kBase) + "expand: [SELECT 1]\n"));
  EXPECT_EQ(base, HashOf(std::string(kBase) + "triggers: skip\n"));
  std::string renamed(kBase);
  renamed.replace(renamed.find("users-split-name"), 16, "another-name");
  EXPECT_EQ(base, HashOf(renamed));
}

TEST(PlanHashTest, IsTheSameForPlansThatDifferOnlyByPassword) {
  // A rotated password must not read as another plan: a job would refuse to resume.
  const std::string base(kBase);
  EXPECT_EQ(HashOf(base + "dsn: host=db password=old\n"),
            HashOf(base + "dsn: host=db password=rotated\n"));
  EXPECT_EQ(HashOf(base + "dsn: postgresql://app:old@db/shop\n"),
            HashOf(base + "dsn: postgresql://app:rotated@db/shop\n"));
  EXPECT_EQ(HashOf(base + "throttle: {replicas: ['host=r password=old']}\n"),
            HashOf(base + "throttle: {replicas: ['host=r password=rotated']}\n"));
}

TEST(PlanHashTest, ChangesWithAnythingThatDecidesTheRows) {
  const std::string base = HashOf(kBase);
  auto with = [&](std::string_view from, std::string_view to) {
    std::string text(kBase);
    const size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    text.replace(at, from.size(), to);
    return HashOf(text);
  };
  EXPECT_NE(base, with("' ', 2)", "' ', 3)"));              // a set expression
  EXPECT_NE(base, with("last_name:", "'\"Last_Name\"':"));  // a target column
  EXPECT_NE(base, with("first_name IS NULL", "true"));      // where
  EXPECT_NE(base, with("dual_write: true", "dual_write: false"));
  EXPECT_NE(base, with("public.users", "public.users2"));
  EXPECT_NE(base, with("public.users", "users"));  // schema spelled out or not
  EXPECT_NE(base, with("key: [id]", "key: [id, tenant]"));
}

TEST(PlanHashTest, DistinguishesFieldBoundaries) {
  Plan a;
  a.table = {"ab", "c"};
  Plan b;
  b.table = {"a", "bc"};
  EXPECT_NE(PlanHash(a), PlanHash(b));
  Plan copy = a;
  copy.mode = Mode::kCopy;
  copy.into = QualifiedName{"", "x"};
  EXPECT_NE(PlanHash(a), PlanHash(copy));
  Plan skip = copy;
  skip.on_conflict = OnConflict::kSkip;
  EXPECT_NE(PlanHash(copy), PlanHash(skip));
}

}  // namespace
}  // namespace pgbackfill::plan
