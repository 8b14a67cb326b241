// The plan's hooks through the binary, on the real server: which hooks run, in which order, with
// what on stdin and in the environment; a failing before-phase hook with `on_failure: stop`
// keeps its phase from changing anything; a failing or slow hook is reported and the job goes on.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "support/run_helpers.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill {
namespace {

using ::testing::AllOf;
using testing::CommandResult;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::RunPgbackfill;

class HooksTest : public testing::RunTest {
 protected:
  void SetUp() override {
    log_ = testing::WriteTestFile("", ".hooks.log");
    ASSERT_OK(
        db_.ExecScript("CREATE TABLE items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0);"
                       "INSERT INTO items (id) SELECT g FROM generate_series(1, 3000) g;"));
  }

  // A hook that appends `NAME PGBACKFILL_EVENT PGBACKFILL_PHASE <stdin>` to the log.
  std::string Logging(const std::string& name) const {
    return absl::StrCat("\"echo ", name, " $PGBACKFILL_EVENT $PGBACKFILL_PHASE $(cat) >> ", log_,
                        "\"");
  }

  std::vector<std::string> LogLines() const {
    std::ifstream in(log_);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }

  std::vector<std::string> HookNames() const {
    std::vector<std::string> names;
    for (const std::string& line : LogLines()) {
      names.push_back(std::string(line.substr(0, line.find(' '))));
    }
    return names;
  }

  static std::string PlanHead(const std::string& name) {
    return absl::StrCat("version: 1\nname: ", name,
                        "\ntable: items\nset:\n  n: n + 1\nthrottle: { application: off }\n");
  }

  std::string log_;
};

TEST_F(HooksTest, HooksRunInOrderWithTheEventOnStdinAndNoSecretInTheirEnvironment) {
  const std::string env_file = testing::WriteTestFile("", ".env");
  const std::string plan = testing::WriteTestFile(absl::StrCat(
      PlanHead("hooked"), "hooks:\n", "  on_start: ", Logging("on_start"), "\n",
      "  before_expand: ", Logging("before_expand"), "\n", "  after_expand: ",
      Logging("after_expand"), "\n", "  before_backfill: { command: ", Logging("before_backfill"),
      ", timeout: 5s }\n", "  after_backfill: ", Logging("after_backfill"), "\n",
      "  before_verify: ", Logging("before_verify"), "\n", "  after_verify: ",
      Logging("after_verify"), "\n", "  on_done: \"env | grep ^PGBACKFILL_ > ", env_file,
      "; echo on_done $(cat) >> ", log_, "\"\n", "  on_failure: ", Logging("on_failure"), "\n"));
  // A password in the DSN (the test cluster trusts local connections, so it is not checked).
  CommandResult result = RunPgbackfill(
      {"run", plan, "--dsn", absl::StrCat(db_.dsn(), " password=hook-secret-42"), "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  ExpectEveryRowOnce("items", 3000);

  EXPECT_THAT(HookNames(),
              ElementsAre("on_start", "before_expand", "after_expand", "before_backfill",
                          "after_backfill", "before_verify", "after_verify", "on_done"));
  const std::vector<std::string> lines = LogLines();
  ASSERT_EQ(lines.size(), 8u);
  EXPECT_THAT(lines[3],
              HasSubstr("before_backfill phase_started backfill {\"event\":\"phase_started\""));
  EXPECT_THAT(lines[4], HasSubstr("after_backfill phase_done backfill {\"event\":\"phase_done\""));
  // on_done gets the job's last event, job_finished, as JSON.
  const nlohmann::json finished = nlohmann::json::parse(lines[7].substr(lines[7].find('{')));
  EXPECT_EQ(finished["event"], "job_finished");
  EXPECT_EQ(finished["outcome"], "done");
  EXPECT_EQ(finished["rows"], 3000);

  std::ifstream env_in(env_file);
  std::stringstream env;
  env << env_in.rdbuf();
  EXPECT_THAT(
      env.str(),
      AllOf(HasSubstr("PGBACKFILL_HOOK=on_done\n"), HasSubstr("PGBACKFILL_JOB=hooked\n"),
            HasSubstr("PGBACKFILL_EVENT=job_finished\n"), HasSubstr("PGBACKFILL_OUTCOME=done\n"),
            HasSubstr("PGBACKFILL_TABLE=\"items\"\n")));
  for (const std::string& text : {env.str(), result.out, result.err}) {
    EXPECT_THAT(text, Not(HasSubstr("hook-secret-42")));
  }
  for (const std::string& line : lines) EXPECT_THAT(line, Not(HasSubstr("hook-secret-42")));
}

TEST_F(HooksTest, AFailingStopHookKeepsItsPhaseFromChangingAnything) {
  const std::string plan = testing::WriteTestFile(absl::StrCat(
      PlanHead("gated"), "expand:\n  - ALTER TABLE items ADD COLUMN added int\n", "hooks:\n",
      "  before_expand: { command: \"echo not now >&2; exit 3\", on_failure: stop }\n",
      "  on_failure: ", Logging("on_failure"), "\n"));
  CommandResult result = RunPgbackfill(RunArgs(plan));
  EXPECT_EQ(result.exit_code, 2) << result.out << result.err;
  EXPECT_THAT(result.out, HasSubstr("hook before_expand exited with status 3"));
  EXPECT_THAT(result.out, HasSubstr("the expand phase did not start (on_failure: stop)"));
  ASSERT_OK_AND_ASSIGN(std::string added,
                       db_.QueryValue("SELECT count(*) FROM pg_catalog.pg_attribute WHERE "
                                      "attrelid = 'items'::regclass AND attname = 'added'"));
  EXPECT_EQ(added, "0") << "the expand DDL ran";
  ASSERT_OK_AND_ASSIGN(std::string touched,
                       db_.QueryValue("SELECT count(*) FROM items WHERE n <> 0"));
  EXPECT_EQ(touched, "0");
  // on_failure ran, with the refusal as its event.
  EXPECT_THAT(HookNames(), ElementsAre("on_failure"));
  EXPECT_THAT(LogLines()[0], HasSubstr("\"outcome\":\"refused\""));
}

TEST_F(HooksTest, AFailingOrSlowHookIsReportedAndTheJobGoesOn) {
  const std::string plan = testing::WriteTestFile(
      absl::StrCat(PlanHead("tolerant"), "hooks:\n", "  before_backfill: \"exit 7\"\n",
                   "  after_backfill: { command: \"sleep 30\", timeout: 200ms }\n",
                   "  on_done: ", Logging("on_done"), "\n"));
  const absl::Time start = absl::Now();
  CommandResult result = RunPgbackfill(RunArgs(plan));
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_LT(absl::Now() - start, absl::Seconds(25)) << "the slow hook was not cut off";
  EXPECT_THAT(result.out, HasSubstr("hook before_backfill exited with status 7"));
  EXPECT_THAT(result.out, HasSubstr("hook after_backfill did not finish within 200ms and was "
                                    "killed"));
  ExpectEveryRowOnce("items", 3000);
  EXPECT_THAT(HookNames(), ElementsAre("on_done"));
}

TEST_F(HooksTest, HoldAndResumeHooksFollowTheThrottle) {
  // throttle.command holds while the flag file exists.
  const std::string flag = testing::WriteTestFile("", ".hold");
  const std::string plan = testing::WriteTestFile(
      absl::StrCat("version: 1\nname: held\ntable: items\nset:\n  n: n + 1\n",
                   "batch: { rows: 100, min_rows: 100, max_rows: 100 }\n",
                   "throttle: { application: off, interval: 200ms, command: \"test -e ", flag,
                   " && echo true || echo false\" }\n", "hooks:\n",
                   "  on_hold: \"echo on_hold $PGBACKFILL_REASON >> ", log_, "\"\n",
                   "  on_resume: ", Logging("on_resume"), "\n"));
  ASSERT_OK_AND_ASSIGN(testing::Process run, testing::SpawnPgbackfill(RunArgs(plan)));
  ASSERT_TRUE(testing::Eventually([&] { return !LogLines().empty(); }))
      << run.StdoutSoFar() << run.StderrSoFar();
  std::filesystem::remove(flag);
  CommandResult result = run.Wait(absl::Minutes(2));
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  ExpectEveryRowOnce("items", 3000);
  const std::vector<std::string> names = HookNames();
  ASSERT_GE(names.size(), 2u);
  EXPECT_EQ(names[0], "on_hold");
  EXPECT_THAT(LogLines()[0], HasSubstr("throttle command printed true"));
  EXPECT_EQ(names[1], "on_resume");
}

}  // namespace
}  // namespace pgbackfill
