// No password at rest or in sight, through the binary: a run whose plan holds literal passwords
// (the cluster trusts local connections, so any password connects) stores its plan without them,
// and neither its output, the job store nor `status` shows them; a connection string libpq
// cannot read is not quoted back either.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "support/run_helpers.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill {
namespace {

using testing::CommandResult;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::RunPgbackfill;

constexpr char kPassword[] = "Hunter2-Secret";

class SecretsAtRestTest : public testing::RunTest {};

TEST_F(SecretsAtRestTest, ARunStoresItsPlanWithoutPasswordsAndPrintsNone) {
  ASSERT_OK(
      db_.ExecScript("CREATE TABLE accounts (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);"
                     "INSERT INTO accounts (id) SELECT g FROM generate_series(1, 2000) g;"));
  // The standby, when there is one, is probed directly under a password of its own.
  const std::optional<std::string> standby = testing::StandbyDsn();
  const std::string replicas = standby.has_value()
                                   ? absl::StrCat("  replicas:\n    - ", db_.DsnFor(*standby),
                                                  " password=", kPassword, "-replica\n")
                                   : "";
  const std::string plan = testing::WriteTestFile(absl::StrCat(
      "version: 1\nname: secret-run\n", "dsn: ", db_.dsn(), " password='", kPassword, " x'\n",
      "table: accounts\nset:\n  n: n + 1\n", "throttle:\n  application: off\n", replicas));

  CommandResult result = RunPgbackfill({"run", plan, "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  ExpectEveryRowOnce("accounts", 2000);
  EXPECT_THAT(result.out + result.err, Not(HasSubstr("Hunter2")));

  ASSERT_OK_AND_ASSIGN(
      std::string stored,
      db_.QueryValue("SELECT plan_text FROM pgbackfill.jobs WHERE name = 'secret-run'"));
  EXPECT_THAT(stored, HasSubstr(" password=********\n"));
  EXPECT_THAT(stored, Not(HasSubstr("Hunter2")));
  // Nor any other column of the job store.
  ASSERT_OK_AND_ASSIGN(std::string rows, db_.QueryValue("SELECT string_agg(j::text, ' ') FROM "
                                                        "pgbackfill.jobs j"));
  EXPECT_THAT(rows, Not(HasSubstr("Hunter2")));

  for (bool json : {false, true}) {
    std::vector<std::string> args = {"status", "secret-run", "--dsn", db_.dsn()};
    if (json) args.push_back("--json");
    CommandResult status = RunPgbackfill(args);
    EXPECT_EQ(status.exit_code, 0) << status.err;
    EXPECT_THAT(status.out + status.err, Not(HasSubstr("Hunter2")));
  }
}

TEST_F(SecretsAtRestTest, AConnectionStringLibpqCannotReadIsNotQuotedBack) {
  // %zz is no percent escape: libpq refuses the string and its message quotes the token.
  const std::string plan = testing::WriteTestFile(
      absl::StrCat("version: 1\nname: j\ntable: t\nset: {n: n + 1}\n",
                   "dsn: postgresql://app:", kPassword, "%zz@127.0.0.1:1/x\n"));
  CommandResult result = RunPgbackfill({"check", plan});
  EXPECT_NE(result.exit_code, 0);
  EXPECT_THAT(result.err, HasSubstr("percent-encoded"));
  EXPECT_THAT(result.out + result.err, Not(HasSubstr("Hunter2")));
}

}  // namespace
}  // namespace pgbackfill
