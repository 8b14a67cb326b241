// The plan text kept with a job has no passwords: every connection string's secret is replaced
// where the file writes it, and everything else, lines included, stays as written.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "pgbackfill/plan/parse.h"
#include "pgbackfill/plan/plan.h"

namespace pgbackfill::plan {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

absl::StatusOr<Plan> Parse(std::string_view text) {
  return ParsePlan(text, "plan.yaml", [](std::string_view name) -> std::optional<std::string> {
    if (name == "REPLICA_PW") return "from-env";
    return std::nullopt;
  });
}

// A mover's plan with a password in each of the four keys that take connection strings.
constexpr std::string_view kMovePlan = R"(version: 1
name: move-users
dsn: host=home password='a b\'c' dbname=app
table: users
into: users
source_dsn: postgresql://app:S0urce@old-db/app
target_dsn: "postgresql://app@new-db/app?sslmode=require&password=T4rget"
throttle:
  replicas:
    - host=replica1 password=R3plica1
    - postgresql://app:R3plica2@replica2:5433,replica3/app
    - host=replica4 password=${REPLICA_PW}
# the word password in a comment is no connection string
)";

constexpr std::string_view kMovePlanStored = R"(version: 1
name: move-users
dsn: host=home password=******** dbname=app
table: users
into: users
source_dsn: postgresql://app:********@old-db/app
target_dsn: "postgresql://app@new-db/app?sslmode=require&password=********"
throttle:
  replicas:
    - host=replica1 password=********
    - postgresql://app:********@replica2:5433,replica3/app
    - host=replica4 password=${REPLICA_PW}
# the word password in a comment is no connection string
)";

TEST(PlanSecretsTest, StoredTextHasThePasswordsOfAllFourKeysReplacedAndEveryLineKept) {
  absl::StatusOr<Plan> plan = Parse(kMovePlan);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->text, kMovePlanStored);
}

TEST(PlanSecretsTest, ThePlanStillConnectsWithThePasswords) {
  absl::StatusOr<Plan> plan = Parse(kMovePlan);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->dsn, R"(host=home password='a b\'c' dbname=app)");
  EXPECT_EQ(plan->source_dsn, "postgresql://app:S0urce@old-db/app");
  EXPECT_EQ(plan->target_dsn, "postgresql://app@new-db/app?sslmode=require&password=T4rget");
  EXPECT_THAT(plan->throttle.replicas,
              ElementsAre("host=replica1 password=R3plica1",
                          "postgresql://app:R3plica2@replica2:5433,replica3/app",
                          "host=replica4 password=from-env"));
}

TEST(PlanSecretsTest, ARotatedPasswordLeavesTheStoredTextAndTheHashAsTheyWere) {
  std::string rotated(kMovePlan);
  rotated.replace(rotated.find("S0urce"), 6, "N3wSourcePass");
  absl::StatusOr<Plan> before = Parse(kMovePlan);
  absl::StatusOr<Plan> after = Parse(rotated);
  ASSERT_TRUE(before.ok() && after.ok());
  EXPECT_EQ(after->text, before->text);
  EXPECT_EQ(PlanHash(*after), PlanHash(*before));
}

TEST(PlanSecretsTest, QuotedYamlStringsKeepTheirQuotes) {
  absl::StatusOr<Plan> plan = Parse(
      "version: 1\nname: j\ntable: t\nset: {a: '1'}\n"
      "dsn: 'host=db password=s3cret'\n"
      "throttle: {replicas: [\"host=r password=s3cret\", 'host=r2']}\n");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->text,
            "version: 1\nname: j\ntable: t\nset: {a: '1'}\n"
            "dsn: 'host=db password=********'\n"
            "throttle: {replicas: [\"host=r password=********\", 'host=r2']}\n");
}

TEST(PlanSecretsTest, AFileWithAByteOrderMarkHasItsPasswordFoundAllTheSame) {
  constexpr char kBody[] = "version: 1\nname: j\ntable: t\nset: {a: '1'}\ndsn: host=db ";
  absl::StatusOr<Plan> plan = Parse(absl::StrCat("\xEF\xBB\xBF", kBody, "password=s3cret\n"));
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->text, absl::StrCat("\xEF\xBB\xBF", kBody, "password=********\n"));
}

TEST(PlanSecretsTest, TextWithoutPasswordsIsStoredAsWritten) {
  // The word password in values that are not passwords, and an environment reference.
  constexpr std::string_view kPlan = R"yaml(version: 1
name: reset-passwords
dsn: host=db application_name=password user=password_admin password=${PGPW}
table: users
set:
  password_hash: "crypt(password, gen_salt('bf'))"
where: password_hash IS NULL AND password IS NOT NULL
)yaml";
  absl::StatusOr<Plan> plan = ParsePlan(kPlan, "plan.yaml", [](std::string_view) {
    return std::optional<std::string>("x");
  });
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->text, kPlan);
}

TEST(PlanSecretsTest, APasswordTheFileSpellsWithEscapesOrOverLinesIsRefused) {
  constexpr char kHead[] = "version: 1\nname: j\ntable: t\nset: {a: '1'}\n";
  const std::string message =
      "plan.yaml:5: dsn: has a password written with YAML escapes or over several lines, where "
      "it cannot be removed from the plan text stored with the job; write the connection "
      "string on one line, or supply the password through PGPASSFILE, ~/.pgpass or PGPASSWORD "
      "instead";
  for (std::string_view dsn :
       {R"(dsn: "host=db password=s\x33cret")", "dsn: host=db\n  password=s3cret",
        "dsn: 'host=db application_name=''x'' password=s3cret'",
        "dsn: |\n  host=db password=s3cret"}) {
    absl::StatusOr<Plan> plan = Parse(std::string(kHead) + std::string(dsn) + "\n");
    ASSERT_FALSE(plan.ok()) << dsn;
    EXPECT_EQ(plan.status().message(), message) << dsn;
  }
}

TEST(PlanSecretsTest, MessagesAboutAConnectionStringNeverQuoteIt) {
  absl::StatusOr<Plan> plan =
      Parse("version: 1\nname: j\ntable: t\nset: {a: '1'}\ndsn: [host=db password=s3cret]\n");
  ASSERT_FALSE(plan.ok());
  const std::string message(plan.status().message());
  EXPECT_THAT(message, StartsWith("plan.yaml:5: dsn: must be a string"));
  EXPECT_THAT(message, ::testing::Not(HasSubstr("s3cret")));
}

}  // namespace
}  // namespace pgbackfill::plan
