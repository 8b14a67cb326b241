// Network failures mid-backfill: every connection of a running `pgbackfill run` (workers, the
// control session, the throttle probes) goes through a TcpProxy that cuts them all at once, several
// times. The run may reconnect and finish, or stop with an error and be run again; either way each
// row must be written exactly once and the job store must count every row.
//
// The plan sets `c: v * 2` and `n: n + 1` (n starts at 0): a row written twice shows n = 2, one
// skipped n = 0.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "pgbackfill/events/events.h"
#include "proxy/tcp_proxy.h"
#include "support/run_events.h"
#include "support/run_helpers.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill {
namespace {

using nlohmann::json;
using proxy::TcpProxy;
using testing::CommandResult;
using testing::Eventually;
using testing::Process;
using testing::RunPgbackfill;
using testing::SpawnPgbackfill;

constexpr int64_t kRows = 200'000;
constexpr int kCuts = 3;
// Runs after the first one, when that one stops with an error instead of reconnecting. Cuts only
// happen during the first run, so one more run should always do; the bound keeps a job that can
// never finish from looping.
constexpr int kMaxReruns = 3;

// `where` with an uncorrelated sub-select runs once per batch: every batch sleeps `seconds`, so a
// run lasts long enough to be cut several times, without changing which rows match.
std::string Plan(const std::string& name, int batch_rows, double sleep_seconds) {
  return absl::StrCat("version: 1\nthrottle: { application: off }\nname: ", name,
                      "\ntable: cut\nset:\n  c: v * 2\n  n: n + 1\n"
                      "where: (SELECT pg_catalog.pg_sleep(",
                      sleep_seconds, ")) IS NOT NULL\nbatch: { rows: ", batch_rows,
                      ", min_rows: ", batch_rows, ", max_rows: ", batch_rows, " }\nworkers: 2\n");
}

class LinkCutTest : public testing::RunTest {
 protected:
  void SetUp() override {
    ASSERT_OK(db_.ExecScript(
        absl::StrCat("CREATE TABLE cut (id bigint PRIMARY KEY, v bigint NOT NULL, c bigint,"
                     "  n int NOT NULL DEFAULT 0);"
                     "INSERT INTO cut (id, v) SELECT g, g % 1000 FROM generate_series(1, ",
                     kRows,
                     ") g;"
                     "ANALYZE cut;")));
  }

  // The test database through the proxy: the cluster's TCP DSN with the proxy's port (libpq lets
  // the later keyword win).
  std::string ProxyDsn() const {
    return db_.DsnFor(absl::StrCat(testing::TcpDsn(), " port=", proxy_.port()));
  }

  // `run --json` through the proxy.
  std::vector<std::string> ProxyRunArgs(const std::string& plan_path) const {
    return testing::RunArgs(plan_path, ProxyDsn());
  }

  static bool Finished(const Process& process) {
    return process.StdoutSoFar().find("\"event\":\"job_finished\"") != std::string::npos;
  }

  // Whether `condition` came to hold; false once the run has printed job_finished or after
  // `timeout` (then the test cannot do what it meant to, and says so).
  template <typename Condition>
  bool WaitUntil(const Process& process, Condition condition, absl::Duration timeout) {
    bool finished = false;
    const bool held = static_cast<bool>(
        Eventually([&] { return condition() || (finished = Finished(process)); }, timeout));
    return held && !finished;
  }

  // Sessions of ours that were connected at server time `at` and still are.
  int64_t SessionsConnectedBefore(const std::string& at) {
    auto count = db_.QueryValue(
        "SELECT count(*) FROM pg_catalog.pg_stat_activity"
        " WHERE datname = pg_catalog.current_database() AND application_name = 'pgbackfill'"
        " AND backend_start <= $1::timestamptz AND pid <> pg_catalog.pg_backend_pid()",
        {at});
    EXPECT_OK(count);
    return count.ok() ? std::stoll(*count) : -1;
  }

  // Runs the plan through the proxy, cutting every connection kCuts times once batches have
  // committed (and, with `in_flight`, each time only while a batch is running on the server),
  // then runs it again until it finishes. Returns the output of every run, first one first.
  std::vector<CommandResult> RunWithCuts(const std::string& job, const std::string& plan_path,
                                         bool in_flight) {
    std::vector<CommandResult> runs;
    auto spawned = SpawnPgbackfill(ProxyRunArgs(plan_path));
    EXPECT_OK(spawned);
    if (!spawned.ok()) return runs;
    Process process = std::move(spawned).value();
    const auto committed_some = [&] { return RowsCommitted(job) > 0; };
    const auto batch_in_flight = [&] { return testing::BatchesRunning(db_) > 0; };
    EXPECT_TRUE(WaitUntil(process, committed_some, absl::Seconds(60)))
        << "no batch committed before the cuts\n"
        << process.StdoutSoFar() << process.StderrSoFar();
    for (int cut = 0; cut < kCuts; ++cut) {
      if (in_flight) {
        EXPECT_TRUE(WaitUntil(process, batch_in_flight, absl::Seconds(30)))
            << "cut " << cut << ": no batch in flight\n"
            << process.StdoutSoFar() << process.StderrSoFar();
      }
      const int64_t committed = RowsCommitted(job);
      EXPECT_LT(committed, kRows) << "cut " << cut
                                  << " came after the job finished; make the batches slower";
      absl::StatusOr<std::string> cut_at = db_.QueryValue("SELECT pg_catalog.clock_timestamp()");
      EXPECT_OK(cut_at);
      const int64_t accepted = proxy_.connections_accepted();
      proxy_.CutAll();
      // Before the next cut, the run is back: the cut sessions' backends have exited (one that
      // was running a batch finishes it first, so it cannot count as the next cut's batch in
      // flight) and the run has connected through the proxy again. Or it stopped.
      EXPECT_TRUE(Eventually([&] {
        return Finished(process) ||
               (SessionsConnectedBefore(cut_at.value_or("-infinity")) == 0 &&
                proxy_.connections_accepted() > accepted);
      })) << "cut " << cut << ": the run neither came back nor stopped\n"
          << process.StdoutSoFar() << process.StderrSoFar();
    }
    runs.push_back(process.Wait());

    while (runs.back().exit_code != 0 && static_cast<int>(runs.size()) <= kMaxReruns) {
      runs.push_back(RunPgbackfill(ProxyRunArgs(plan_path)));
    }
    return runs;
  }

  // What every run printed, for failure messages.
  static std::string Transcript(const std::vector<CommandResult>& runs) {
    std::string text;
    for (size_t i = 0; i < runs.size(); ++i) {
      absl::StrAppend(&text, "--- run ", i + 1, " exit ", runs[i].exit_code, "\n", runs[i].out,
                      runs[i].err);
    }
    return text;
  }

  void ExpectEveryRowExactlyOnce(const std::string& job, const std::vector<CommandResult>& runs) {
    ASSERT_FALSE(runs.empty());
    ASSERT_EQ(runs.back().exit_code, 0) << Transcript(runs);
    ASSERT_OK_AND_ASSIGN(std::string twice, db_.QueryValue("SELECT count(*) FROM cut WHERE n > 1"));
    ASSERT_OK_AND_ASSIGN(std::string missed,
                         db_.QueryValue("SELECT count(*) FROM cut WHERE n < 1"));
    ASSERT_OK_AND_ASSIGN(std::string wrong,
                         db_.QueryValue("SELECT count(*) FROM cut WHERE c IS DISTINCT FROM v * 2"));
    ASSERT_OK_AND_ASSIGN(std::string total, db_.QueryValue("SELECT count(*) FROM cut"));
    EXPECT_EQ(twice, "0") << "rows written more than once\n" << Transcript(runs);
    EXPECT_EQ(missed, "0") << "rows never written\n" << Transcript(runs);
    EXPECT_EQ(wrong, "0") << "rows with a wrong c\n" << Transcript(runs);
    EXPECT_EQ(total, std::to_string(kRows));

    // The job store is the truth about what committed, also for batches whose COMMIT reply the
    // cut swallowed.
    CommandResult status = RunPgbackfill({"status", job, "--dsn", db_.dsn(), "--json"});
    ASSERT_EQ(status.exit_code, 0) << status.err;
    const json parsed = json::parse(status.out);
    ASSERT_EQ(parsed["jobs"].size(), 1u) << status.out;
    const json& stored = parsed["jobs"][0];
    EXPECT_EQ(stored["state"], "done");
    EXPECT_EQ(stored["rows_done"], kRows);
    int64_t range_rows = 0;
    for (const json& range : stored["ranges"]) range_rows += range["rows_done"].get<int64_t>();
    EXPECT_EQ(range_rows, kRows);
    const std::optional<events::JobFinished> finished =
        testing::FirstEvent<events::JobFinished>(testing::ReadEvents(runs.back().out));
    ASSERT_TRUE(finished.has_value()) << runs.back().out;
    EXPECT_EQ(finished->outcome, "done");
  }

  // The cuts must have hit the run: it reconnected, or it stopped and was run again.
  void ExpectCutsWereFelt(const std::vector<CommandResult>& runs) {
    ASSERT_FALSE(runs.empty());
    const bool reconnected =
        testing::FirstEvent<events::Reconnect>(testing::ReadEvents(runs.front().out)).has_value();
    EXPECT_TRUE(reconnected || runs.front().exit_code != 0) << "the cuts did not reach a worker\n"
                                                            << Transcript(runs);
    EXPECT_GT(proxy_.connections_accepted(), 0);
  }

  TcpProxy proxy_{{.upstream_port = testing::TcpPort()}};
};

// Cuts at arbitrary moments: between batches, during one, during a probe or a job-store refresh.
TEST_F(LinkCutTest, CutsAtRandomMomentsWriteEveryRowOnce) {
  const std::vector<CommandResult> runs =
      RunWithCuts("cut", testing::WriteTestFile(Plan("cut", 2000, 0.02)), false);
  ExpectCutsWereFelt(runs);
  ExpectEveryRowExactlyOnce("cut", runs);
  RecordProperty("runs", static_cast<int>(runs.size()));
}

// Cuts only while a batch is running on the server: its transaction is not committed yet, its
// backend keeps running (and may still commit the whole pipeline it already received) while the
// worker reconnects and asks the job store where the range stands.
TEST_F(LinkCutTest, CutsDuringUncommittedBatchesWriteEveryRowOnce) {
  const std::vector<CommandResult> runs =
      RunWithCuts("inflight", testing::WriteTestFile(Plan("inflight", 5000, 0.3)), true);
  ExpectCutsWereFelt(runs);
  ExpectEveryRowExactlyOnce("inflight", runs);
  RecordProperty("runs", static_cast<int>(runs.size()));
}

// A cut that swallows the reply to a batch whose COMMIT went through (the backend had the whole
// pipeline and commits after the client is gone): the worker learns from the job store that the
// rows are done, and the run's own counters (job_finished rows / total_rows) must count them too.
TEST_F(LinkCutTest, FinishedEventCountsBatchesWhoseCommitReplyWasLost) {
  const std::vector<CommandResult> runs =
      RunWithCuts("lost_reply", testing::WriteTestFile(Plan("lost_reply", 5000, 0.3)), true);
  ExpectEveryRowExactlyOnce("lost_reply", runs);
  ASSERT_EQ(runs.size(), 1u) << "the run stopped; the rerun's counters start from the job store\n"
                             << Transcript(runs);
  const std::optional<events::JobFinished> finished =
      testing::FirstEvent<events::JobFinished>(testing::ReadEvents(runs.back().out));
  ASSERT_TRUE(finished.has_value()) << runs.back().out;
  EXPECT_EQ(finished->total_rows, kRows) << Transcript(runs);
}

}  // namespace
}  // namespace pgbackfill
