// `pgbackfill pause|resume|abort|set` and the control part of `status`, through the binary as an
// operator runs them, against job rows made directly with JobStore (no backfill needs to run: a
// running process is stood in for by a runner's lease in the job store).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "pgbackfill/checkpoint/job_store.h"
#include "pgbackfill/pg/connection.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill {
namespace {

using checkpoint::JobRecord;
using checkpoint::JobStore;
using ::testing::AllOf;
using testing::CommandResult;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using testing::RunPgbackfill;
using testing::TestDatabase;

constexpr char kJob[] = "users_v2";

JobRecord SampleJob(const std::string& name) {
  JobRecord job;
  job.name = name;
  job.plan_hash = "sha256:abc";
  job.plan_text = "version: 1\nthrottle: { application: off }\nname: " + name + "\n";
  job.estimated_rows = 1000;
  return job;
}

class ControlCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_.emplace(db_.conn());
    ASSERT_OK(store_->EnsureSchema());
    ASSERT_OK(store_->CreateJob(SampleJob(kJob), {{1, std::nullopt, std::nullopt}}));
  }

  // pgbackfill ARGS --dsn <this test's database>.
  CommandResult Run(std::vector<std::string> args) {
    args.push_back("--dsn");
    args.push_back(db_.dsn());
    return RunPgbackfill(args);
  }

  nlohmann::json RunJson(std::vector<std::string> args) {
    args.push_back("--json");
    CommandResult result = Run(args);
    EXPECT_EQ(result.exit_code, 0) << result.out << result.err;
    nlohmann::json json = nlohmann::json::parse(result.out, nullptr, false);
    EXPECT_FALSE(json.is_discarded()) << "not JSON: " << result.out << result.err;
    return json;
  }

  JobRecord Job(const std::string& name = kJob) {
    absl::StatusOr<std::optional<JobRecord>> job = store_->LoadJob(name);
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok() || !job->has_value()) return {};
    return **job;
  }

  // Stands in for a process running the job: holds a lease on it and has recorded its pid and
  // host, as the runner does.
  void StartFakeRun(int pid, const std::string& host) {
    checkpoint::RunnerRecord runner;
    runner.id = absl::StrCat(host, ":", pid);
    runner.host = host;
    runner.pid = pid;
    ASSERT_OK(store_->RegisterRunner(kJob, runner, absl::Minutes(5)));
    ASSERT_OK(store_->MarkStarted(kJob, pid, host));
  }

  TestDatabase db_;
  std::optional<JobStore> store_;
};

TEST_F(ControlCommandTest, PauseAndResumeAJobNobodyRunsAreRecorded) {
  CommandResult paused = Run({"pause", kJob});
  ASSERT_EQ(paused.exit_code, 0) << paused.out << paused.err;
  EXPECT_THAT(paused.out, AllOf(HasSubstr("job users_v2: pause recorded by "),
                                HasSubstr("no process is running it (it is pending): it starts "
                                          "paused when it next runs")));
  JobRecord job = Job();
  EXPECT_EQ(job.control, "pause");
  EXPECT_THAT(job.control_by, ::testing::MatchesRegex(".+@.* pid [0-9]+"));
  EXPECT_THAT(job.control_at, ::testing::Not(IsEmpty()));
  EXPECT_EQ(job.state, "pending") << "pause never changes the state";

  CommandResult resumed = Run({"resume", kJob});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.out << resumed.err;
  EXPECT_THAT(resumed.out, HasSubstr("job users_v2: resume recorded by "));
  EXPECT_EQ(Job().control, "run");
}

TEST_F(ControlCommandTest, RunningJobIsAskedAndTheOutputNamesItsProcess) {
  StartFakeRun(4567, "worker-host");
  CommandResult paused = Run({"pause", kJob});
  ASSERT_EQ(paused.exit_code, 0) << paused.out << paused.err;
  EXPECT_THAT(paused.out,
              AllOf(HasSubstr("job users_v2: pause requested by "),
                    HasSubstr("; the running process (pid 4567 on host worker-host) picks it up "
                              "within one throttle interval")));
  EXPECT_EQ(Job().control, "pause");

  nlohmann::json json = RunJson({"resume", kJob});
  EXPECT_EQ(json["job"], kJob);
  EXPECT_EQ(json["action"], "resume");
  EXPECT_EQ(json["control"], "run");
  EXPECT_EQ(json["running"], true);
  EXPECT_EQ(json["pid"], 4567);
  EXPECT_EQ(json["host"], "worker-host");
  EXPECT_EQ(json["settings"], nlohmann::json::object());
  EXPECT_EQ(Job().control, "run");

  // Abort of a running job is a request: the process stops itself and records the state.
  CommandResult aborted = Run({"abort", kJob});
  ASSERT_EQ(aborted.exit_code, 0) << aborted.out << aborted.err;
  EXPECT_THAT(aborted.out, HasSubstr("job users_v2: abort requested by "));
  JobRecord job = Job();
  EXPECT_EQ(job.control, "abort");
  EXPECT_EQ(job.state, "running");
}

TEST_F(ControlCommandTest, AbortOfAJobNobodyRunsMarksItAborted) {
  ASSERT_OK(store_->MarkStarted(kJob, 99, "gone-host"));  // crashed: state running, no lock
  nlohmann::json json = RunJson({"abort", kJob});
  EXPECT_EQ(json["action"], "abort");
  EXPECT_EQ(json["control"], "abort");
  EXPECT_EQ(json["state"], "aborted");
  EXPECT_EQ(json["running"], false);
  EXPECT_TRUE(json["pid"].is_null());
  JobRecord job = Job();
  EXPECT_EQ(job.state, "aborted");
  EXPECT_EQ(job.control, "abort");
  EXPECT_THAT(job.last_error, HasSubstr("aborted by "));
  EXPECT_THAT(job.finished_at, ::testing::Not(IsEmpty()));
  ASSERT_OK_AND_ASSIGN(std::vector<checkpoint::RunnerRecord> runners, store_->ListRunners(kJob));
  EXPECT_TRUE(runners.empty()) << "marking it aborted takes no lease";

  CommandResult again = Run({"abort", kJob});
  EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_THAT(again.out, HasSubstr("job users_v2: already aborted; nothing to do"));

  ASSERT_OK(store_->CreateJob(SampleJob("failed_job"), {}));
  ASSERT_OK(store_->FinishJob("failed_job", "failed", "boom"));
  CommandResult human = Run({"abort", "failed_job"});
  ASSERT_EQ(human.exit_code, 0) << human.out << human.err;
  EXPECT_THAT(human.out, AllOf(HasSubstr("job failed_job: aborted by "),
                               HasSubstr("no process was running it (it was failed)")));
  EXPECT_EQ(Job("failed_job").state, "aborted");
}

TEST_F(ControlCommandTest, SetValidatesThenMergesSettings) {
  nlohmann::json json = RunJson({"set", kJob, "workers=2", "throttle.max_replica_lag=10s"});
  EXPECT_EQ(json["action"], "set");
  EXPECT_EQ(json["settings"],
            (nlohmann::json{{"workers", "2"}, {"throttle.max_replica_lag", "10s"}}));
  EXPECT_EQ(json["control"], "run");

  CommandResult more = Run({"set", kJob, "workers=3", "batch.target=500ms"});
  ASSERT_EQ(more.exit_code, 0) << more.out << more.err;
  EXPECT_THAT(more.out, HasSubstr("job users_v2: batch.target=500ms, workers=3 recorded by "));
  EXPECT_THAT(more.out, HasSubstr("the new values apply when it next runs"));
  EXPECT_EQ(Job().settings,
            (std::map<std::string, std::string>{
                {"batch.target", "500ms"}, {"throttle.max_replica_lag", "10s"}, {"workers", "3"}}));
  EXPECT_THAT(Job().control_by, HasSubstr(" pid "));
}

TEST_F(ControlCommandTest, BadSettingsAreRefusedAndNothingIsWritten) {
  struct Case {
    std::vector<std::string> pairs;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"workers=2", "throttle.max_replica_lag=x"},
       "pgbackfill: throttle.max_replica_lag: must be a duration such as 200ms, 5s or 1m, got "
       "\"x\""},
      {{"workers=0"}, "pgbackfill: workers: must be an integer between 1 and 256, got \"0\""},
      {{"wokers=2"},
       "pgbackfill: wokers: unknown key (did you mean \"workers\"?); pgbackfill "
       "set takes: workers, vacuum_every, batch.target,"},
      {{"batch.rows=10"}, "pgbackfill: batch.rows: cannot be changed while a job runs"},
      {{"workers"}, "pgbackfill: expected key=value, got \"workers\""},
      {{"workers=2", "workers=3"}, "pgbackfill: workers: given twice"},
  };
  for (const Case& bad : cases) {
    SCOPED_TRACE(bad.message);
    std::vector<std::string> args = {"set", kJob};
    args.insert(args.end(), bad.pairs.begin(), bad.pairs.end());
    CommandResult result = Run(args);
    EXPECT_EQ(result.exit_code, 2) << result.out << result.err;
    EXPECT_THAT(result.err, HasSubstr(bad.message));
    EXPECT_EQ(result.out, "");
  }
  JobRecord job = Job();
  EXPECT_THAT(job.settings, IsEmpty());
  EXPECT_EQ(job.control_by, "") << "nothing was written";

  CommandResult none = Run({"set", kJob});
  EXPECT_EQ(none.exit_code, 2) << "settings are required";
}

TEST_F(ControlCommandTest, UnknownJobListsTheJobsThatExist) {
  ASSERT_OK(store_->CreateJob(SampleJob("orders_fill"), {}));
  for (const char* action : {"pause", "resume", "abort"}) {
    CommandResult result = Run({action, "users_v3"});
    EXPECT_EQ(result.exit_code, 2) << action << result.out << result.err;
    EXPECT_THAT(result.err,
                AllOf(HasSubstr("no job named users_v3 in this database (" + db_.name() + ")"),
                      HasSubstr("jobs here: orders_fill, users_v2")));
  }
  CommandResult set = Run({"set", "users_v3", "workers=2"});
  EXPECT_EQ(set.exit_code, 2) << set.out << set.err;
  EXPECT_EQ(Job().control, "run");
}

TEST_F(ControlCommandTest, ADoneJobHasNothingToControl) {
  ASSERT_OK(store_->FinishJob(kJob, "done", ""));
  for (const auto& [action, verb] : std::vector<std::pair<std::string, std::string>>{
           {"pause", "pause"}, {"abort", "abort"}, {"resume", "resume"}}) {
    CommandResult result = Run({action, kJob});
    EXPECT_EQ(result.exit_code, 2) << result.out << result.err;
    EXPECT_THAT(result.err, HasSubstr("job users_v2 is done; nothing to " + verb));
  }
  CommandResult set = Run({"set", kJob, "workers=2"});
  EXPECT_EQ(set.exit_code, 2);
  EXPECT_THAT(set.err, HasSubstr("job users_v2 is done; nothing to change"));
  JobRecord job = Job();
  EXPECT_EQ(job.state, "done");
  EXPECT_EQ(job.control, "run");
  EXPECT_THAT(job.settings, IsEmpty());
}

TEST_F(ControlCommandTest, StatusShowsControlAndSettings) {
  nlohmann::json before = RunJson({"status", kJob});
  ASSERT_EQ(before["jobs"].size(), 1u);
  EXPECT_EQ(before["jobs"][0]["control"], "run");
  EXPECT_TRUE(before["jobs"][0]["control_by"].is_null());
  EXPECT_TRUE(before["jobs"][0]["control_at"].is_null());
  EXPECT_EQ(before["jobs"][0]["settings"], nlohmann::json::object());
  CommandResult plain = Run({"status", kJob});
  EXPECT_THAT(plain.out, ::testing::Not(HasSubstr("control:")));

  ASSERT_EQ(Run({"set", kJob, "throttle.max_replica_lag=10s"}).exit_code, 0);
  ASSERT_EQ(Run({"pause", kJob}).exit_code, 0);
  nlohmann::json after = RunJson({"status"});
  ASSERT_EQ(after["jobs"].size(), 1u);
  const nlohmann::json& job = after["jobs"][0];
  EXPECT_EQ(job["control"], "pause");
  EXPECT_THAT(job["control_by"].get<std::string>(), HasSubstr(" pid "));
  EXPECT_TRUE(job["control_at"].is_string());
  EXPECT_EQ(job["settings"], (nlohmann::json{{"throttle.max_replica_lag", "10s"}}));

  CommandResult human = Run({"status", kJob});
  ASSERT_EQ(human.exit_code, 0) << human.err;
  EXPECT_THAT(human.out, AllOf(HasSubstr("\n  control: pause\n"),
                               HasSubstr("\n  settings: throttle.max_replica_lag=10s\n"),
                               ::testing::ContainsRegex("\n  last request: by .+ pid [0-9]+ at "
                                                        "[0-9T:.-]+Z\n")));
}

TEST_F(ControlCommandTest, DsnComesFromLibpqEnvironmentWithoutFlag) {
  // PGHOST/PGPORT/PGUSER point at the test cluster; PGDATABASE picks this test's database.
  CommandResult result = RunPgbackfill({"pause", kJob}, {{"PGDATABASE", db_.name()}});
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_EQ(Job().control, "pause");
}

TEST(ControlCommandStoreTest, DatabaseWithoutAStoreIsBadInputAndStaysUntouched) {
  TestDatabase db;
  CommandResult result = RunPgbackfill({"pause", kJob, "--dsn", db.dsn()});
  EXPECT_EQ(result.exit_code, 2) << result.out << result.err;
  EXPECT_THAT(result.err, HasSubstr("no pgbackfill job store in this database"));
  ASSERT_OK_AND_ASSIGN(std::string schemas,
                       db.QueryValue("SELECT count(*) FROM pg_catalog.pg_namespace "
                                     "WHERE nspname = 'pgbackfill'"));
  EXPECT_EQ(schemas, "0");
}

TEST(ControlCommandStoreTest, AV1StoreIsShownAndUpgradedOnFirstControl) {
  TestDatabase db;
  JobStore v1(db.conn(), {checkpoint::SchemaSteps().front()});
  ASSERT_OK(v1.EnsureSchema());
  ASSERT_OK(v1.CreateJob(SampleJob(kJob), {}));

  CommandResult status = RunPgbackfill({"status", kJob, "--json", "--dsn", db.dsn()});
  ASSERT_EQ(status.exit_code, 0) << status.out << status.err;
  nlohmann::json json = nlohmann::json::parse(status.out, nullptr, false);
  ASSERT_FALSE(json.is_discarded()) << status.out;
  EXPECT_EQ(json["jobs"][0]["control"], "run");
  ASSERT_OK_AND_ASSIGN(std::string version,
                       db.QueryValue("SELECT version FROM pgbackfill.store_version"));
  EXPECT_EQ(version, "1") << "status changes nothing";

  CommandResult paused = RunPgbackfill({"pause", kJob, "--dsn", db.dsn()});
  ASSERT_EQ(paused.exit_code, 0) << paused.out << paused.err;
  ASSERT_OK_AND_ASSIGN(version, db.QueryValue("SELECT version FROM pgbackfill.store_version"));
  EXPECT_EQ(version, std::to_string(checkpoint::SchemaSteps().size()));
  ASSERT_OK_AND_ASSIGN(
      std::string control,
      db.QueryValue("SELECT control FROM pgbackfill.jobs WHERE name = $1", {std::string(kJob)}));
  EXPECT_EQ(control, "pause");
}

}  // namespace
}  // namespace pgbackfill
