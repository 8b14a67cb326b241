// Staying online, end to end through the binary against the real primary and its streaming
// standby: the job holds while the standby lags (replay paused, a delayed standby, a stopped
// standby), while a custom throttle query says so, and while an operator paused it; a row lock
// held by the application costs it retries but never makes application sessions wait on it for
// long; pause / resume / set / abort from a second process steer the running job.
//
// Tests that pause replay, delay it or stop the standby hold a ClusterDisruption: every other test
// process shares that standby, and its backfills would hold too.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "pgbackfill/events/events.h"
#include "pgbackfill/pg/connection.h"
#include "pgbackfill/util/status.h"
#include "support/lock_wait_watch.h"
#include "support/run_events.h"
#include "support/run_helpers.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Pair;
using testing::ClusterCtl;
using testing::ClusterDisruption;
using testing::CommandResult;
using testing::Eventually;
using testing::Process;
using testing::RunPgbackfill;
using testing::SpawnPgbackfill;

constexpr char kItemsTable[] =
    "CREATE TABLE items (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0, pad text);"
    "INSERT INTO items (id, pad) SELECT g, 'x' FROM generate_series(1, 20000) g;"
    "ANALYZE items;";
constexpr int64_t kItemsRows = 20000;

// 200-row batches that sleep 50 ms each: about 100 batches, long enough to be held mid-run, short
// enough to finish in seconds once let go.
std::string ItemsPlan(const std::string& name, const std::string& throttle, int workers = 2) {
  return absl::StrCat("version: 1\nname: ", name,
                      "\ntable: items\nset:\n  n: n + 1\n"
                      "where: (SELECT pg_catalog.pg_sleep(0.05)) IS NOT NULL\n"
                      "batch: { rows: 200, min_rows: 200, max_rows: 200 }\nworkers: ",
                      workers, "\nthrottle: { application: off, interval: 200ms, ", throttle,
                      " }\n");
}

// The line of `out` that ends at `end` (an offset WaitForStdout gave): an event's JSON.
std::string LineEndingAt(const std::string& out, size_t end) {
  const size_t start = out.rfind('\n', end) == std::string::npos ? 0 : out.rfind('\n', end) + 1;
  const size_t stop = out.find('\n', end);
  return out.substr(start, stop == std::string::npos ? std::string::npos : stop - start);
}

// The event on the line of `out` that ends at `end`, decoded as the run's events are; nullopt
// when that line is not JSON or not an event of kind T.
template <typename T>
std::optional<T> EventEndingAt(const std::string& out, size_t end) {
  const std::string line = LineEndingAt(out, end);
  const std::optional<events::Event> event =
      events::FromJson(nlohmann::json::parse(line, nullptr, false));
  if (!event.has_value() || !std::holds_alternative<T>(*event)) return std::nullopt;
  return std::get<T>(*event);
}

class ThrottleTest : public testing::RunTest {
 protected:
  // Sessions of pgbackfill on db_ inside a transaction right now: a worker's from the BEGIN of its
  // batch to the end of its COMMIT (xact_start is cleared only once the commit is visible), or a
  // probe's for the moment it runs.
  int64_t SessionsInTransaction() {
    auto value = db_.QueryValue(
        "SELECT count(*) FROM pg_catalog.pg_stat_activity"
        " WHERE datname = pg_catalog.current_database() AND application_name = 'pgbackfill'"
        " AND xact_start IS NOT NULL AND pid <> pg_catalog.pg_backend_pid()");
    EXPECT_OK(value);
    return value.ok() ? std::stoll(*value) : -1;
  }

  // Waits for the job's next throttle event with `state` after `from`; returns the reason (held)
  // and moves `from` past it.
  std::string WaitForThrottle(Process& process, const std::string& state, size_t& from,
                              absl::Duration timeout = absl::Seconds(60)) {
    absl::StatusOr<size_t> at =
        process.WaitForStdout(absl::StrCat("\"state\":\"", state, "\""), from, timeout);
    EXPECT_OK(at);
    if (!at.ok()) return "";
    from = *at;
    const std::string out = process.StdoutSoFar();
    const std::optional<events::Throttle> event = EventEndingAt<events::Throttle>(out, *at);
    EXPECT_TRUE(event.has_value()) << LineEndingAt(out, *at);
    return event.has_value() ? event->reason.value_or("") : "";
  }

  // Waits for a progress event after `from` whose hold reason contains `needle` (progress events
  // come every second and carry the current reason, so a hold that was already on for another
  // reason when the test caused this one is seen too); moves `from` past it.
  std::string WaitForHoldReason(Process& process, const std::string& needle, size_t& from,
                                absl::Duration timeout = absl::Seconds(60)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      absl::StatusOr<size_t> at =
          process.WaitForStdout("\"event\":\"progress\"", from, deadline - absl::Now());
      if (!at.ok()) break;
      from = *at;
      const std::optional<events::Progress> event =
          EventEndingAt<events::Progress>(process.StdoutSoFar(), *at);
      if (event.has_value() && event->throttle.has_value() &&
          event->throttle->find(needle) != std::string::npos) {
        return *event->throttle;
      }
    }
    ADD_FAILURE() << "no progress event held for '" << needle << "'\n" << process.StdoutSoFar();
    return "";
  }

  // While the job is held, no batch commits: the batches in flight when the hold began (one
  // 50 ms batch per worker) commit, and after that the committed total must stand still. Returns
  // that total.
  int64_t ExpectNoCommitsWhileHeld() {
    EXPECT_TRUE(Eventually([&] { return SessionsInTransaction() == 0; }, absl::Seconds(30)))
        << "the job's sessions kept running transactions while it was held";
    const int64_t before = RowsCommitted();
    // Not a wait for a condition: how long the total must stand still, time for dozens of 50 ms
    // batches had the hold let them run.
    absl::SleepFor(absl::Seconds(2));
    EXPECT_EQ(RowsCommitted(), before) << "batches committed while the job was held";
    EXPECT_LT(before, kItemsRows) << "the job finished before it was held; make it longer";
    return before;
  }

  void ExpectEveryRowOnce() { RunTest::ExpectEveryRowOnce("items", kItemsRows); }
};

// Runs `statements` one by one on the standby's postgres database (replay control and settings
// are cluster-wide; ALTER SYSTEM refuses to run in the implicit transaction of a multi-statement
// query).
absl::Status OnStandby(const std::vector<std::string>& statements) {
  std::optional<std::string> dsn = testing::StandbyDsn();
  if (!dsn.has_value()) return absl::FailedPreconditionError("the test cluster has no standby");
  ASSIGN_OR_RETURN(pg::Connection conn, pg::Connection::Connect(*dsn));
  for (const std::string& sql : statements) RETURN_IF_ERROR(conn.Exec(sql).status());
  return absl::OkStatus();
}

constexpr char kReloadConf[] = "SELECT pg_catalog.pg_reload_conf()";

// Leaves the standby replaying without delay whatever the test did to it, also on failure.
struct StandbyReset {
  ~StandbyReset() {
    (void)OnStandby({"SELECT pg_catalog.pg_wal_replay_resume()",
                     "ALTER SYSTEM RESET recovery_min_apply_delay", kReloadConf});
  }
};

TEST_F(ThrottleTest, ReplayPausedOnTheStandbyHoldsUntilResumed) {
  ClusterDisruption disruption;
  StandbyReset reset;
  ASSERT_OK(db_.ExecScript(kItemsTable));
  auto process = SpawnPgbackfill(RunArgs(testing::WriteTestFile(
      ItemsPlan("paused", "max_replica_lag: 1s, max_replica_lag_bytes: 0"))));
  ASSERT_OK(process);
  ASSERT_OK(process->WaitForOutput("\"event\":\"progress\"", absl::Seconds(60)));

  size_t from = process->StdoutSoFar().size();
  ASSERT_OK(OnStandby({"SELECT pg_catalog.pg_wal_replay_pause()"}));
  WaitForHoldReason(*process, "s > 1.0s", from);  // "replica standby replay lag 2.1s > 1.0s"
  ExpectNoCommitsWhileHeld();

  ASSERT_OK(OnStandby({"SELECT pg_catalog.pg_wal_replay_resume()"}));
  WaitForThrottle(*process, "running", from);
  CommandResult result = process->Wait();
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  ExpectEveryRowOnce();
  // `status` saw the reason while it held (the job row is refreshed every 2 s).
  bool progress_showed_reason = false;
  for (const events::Progress& progress :
       testing::EventsOf<events::Progress>(testing::ReadEvents(result.out))) {
    if (progress.throttle.has_value() &&
        progress.throttle->find("replica standby") != std::string::npos) {
      progress_showed_reason = true;
    }
  }
  EXPECT_TRUE(progress_showed_reason) << "progress events never carried the hold reason";
}

TEST_F(ThrottleTest, DelayedStandbyHoldsAsLagGrows) {
  ClusterDisruption disruption;
  StandbyReset reset;
  ASSERT_OK(db_.ExecScript(kItemsTable));
  ASSERT_OK(OnStandby({"ALTER SYSTEM SET recovery_min_apply_delay = '3s'", kReloadConf}));
  auto process = SpawnPgbackfill(RunArgs(testing::WriteTestFile(
      ItemsPlan("delayed", "max_replica_lag: 1s"))));
  ASSERT_OK(process);
  size_t from = 0;
  WaitForHoldReason(*process, "s > 1.0s", from);  // "replica standby replay lag 2.1s > 1.0s"
  ExpectNoCommitsWhileHeld();

  ASSERT_OK(OnStandby({"ALTER SYSTEM RESET recovery_min_apply_delay", kReloadConf}));
  CommandResult result = process->Wait();
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  ExpectEveryRowOnce();
}

TEST_F(ThrottleTest, StoppedStandbyHoldsTheJobUntilItIsBack) {
  ClusterDisruption disruption;
  ASSERT_OK(db_.ExecScript(kItemsTable));
  auto process = SpawnPgbackfill(RunArgs(testing::WriteTestFile(
      ItemsPlan("standby_gone", "max_replica_lag: 5s"))));
  ASSERT_OK(process);
  ASSERT_OK(process->WaitForOutput("\"event\":\"progress\"", absl::Seconds(60)));

  size_t from = process->StdoutSoFar().size();
  ASSERT_OK(ClusterCtl({"stop-node", "standby"}));
  WaitForHoldReason(*process, "replica standby disappeared", from);
  ExpectNoCommitsWhileHeld();

  ASSERT_OK(ClusterCtl({"start-node", "standby"}));
  WaitForThrottle(*process, "running", from);
  CommandResult result = process->Wait();
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  ExpectEveryRowOnce();
}

TEST_F(ThrottleTest, CustomThrottleQueryHoldsBeforeTheFirstBatch) {
  ASSERT_OK(db_.ExecScript(std::string(kItemsTable) +
                           "CREATE TABLE flags (hold boolean NOT NULL);"
                           "INSERT INTO flags VALUES (true);"));
  auto process = SpawnPgbackfill(RunArgs(testing::WriteTestFile(
      ItemsPlan("custom", "query: 'SELECT hold FROM flags'"))));
  ASSERT_OK(process);
  size_t from = 0;
  WaitForHoldReason(*process, "custom throttle query returned t", from);
  EXPECT_EQ(ExpectNoCommitsWhileHeld(), 0) << "held from the first probe round on: no batch ran";

  ASSERT_OK(db_.ExecScript("UPDATE flags SET hold = false"));
  WaitForThrottle(*process, "running", from);
  CommandResult result = process->Wait();
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  ExpectEveryRowOnce();
}

// A session holds a row lock inside the job's next range while application sessions keep
// updating the rows just before it. The job's batch reaches the locked row, gives up after
// lock_timeout and retries with backoff; the application sessions that queued behind the batch's
// own row locks are released when it gives up, so none waits on pgbackfill much longer than
// lock_timeout. A probing session measures that on pg_locks (waitstart) the whole time.
TEST_F(ThrottleTest, RowLockHeldByTheAppCostsRetriesNotLongWaits) {
  ASSERT_OK(db_.ExecScript(kItemsTable));
  constexpr int64_t kLockedId = 10000;
  constexpr int kRetriesWhileBlocked = 5;
  ASSERT_OK_AND_ASSIGN(pg::Connection blocker, pg::Connection::Connect(db_.dsn()));
  ASSERT_OK(blocker.ExecScript(
      absl::StrCat("BEGIN; SELECT * FROM items WHERE id = ", kLockedId, " FOR UPDATE;")));

  std::atomic<bool> done{false};
  std::atomic<int> app_updates{0};
  std::thread app([&] {
    ASSERT_OK_AND_ASSIGN(pg::Connection conn, pg::Connection::Connect(db_.dsn()));
    std::mt19937 random(42);
    std::uniform_int_distribution<int64_t> near(kLockedId - 150, kLockedId - 1);
    while (!done) {
      if (conn.Exec("UPDATE items SET pad = 'app' WHERE id = $1::bigint",
                    {std::to_string(near(random))})
              .ok()) {
        ++app_updates;
      }
    }
  });
  testing::LockWaitWatch watch(db_.dsn(),
                                "ARRAY(SELECT pid FROM pg_catalog.pg_stat_activity"
                                " WHERE application_name = 'pgbackfill'"
                                " AND datname = current_database())");

  auto process = SpawnPgbackfill(RunArgs(testing::WriteTestFile(
      "version: 1\nname: locked\ntable: items\nset:\n  n: n + 1\n"
      "batch: { rows: 100, min_rows: 100, max_rows: 100 }\nworkers: 1\n"
      "throttle: { application: off, interval: 200ms, lock_timeout: 300ms }\n")));
  ASSERT_OK(process);
  // Several timeouts and retries (each at least lock_timeout, 0.3 s) while the app keeps writing:
  // the blocker holds its lock for well over the 1 s bound asserted below.
  size_t from = 0;
  for (int retry = 0; retry < kRetriesWhileBlocked; ++retry) {
    absl::StatusOr<size_t> at = process->WaitForStdout("\"sqlstate\":\"55P03\"", from);
    if (!at.ok()) {
      ADD_FAILURE() << "retry " << retry << ": " << at.status() << "\n" << process->StderrSoFar();
      break;
    }
    from = *at;
  }
  EXPECT_TRUE(Eventually([&] { return app_updates > 0; })) << "the application wrote nothing";
  EXPECT_OK(blocker.ExecScript("COMMIT"));  // not ASSERT: the thread must be joined
  CommandResult result = process->Wait();
  done = true;
  app.join();
  const double max_wait_seconds = watch.max_wait_seconds();
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  ExpectEveryRowOnce();

  const std::vector<events::Retry> retries =
      testing::EventsOf<events::Retry>(testing::ReadEvents(result.out));
  ASSERT_GE(retries.size(), static_cast<size_t>(kRetriesWhileBlocked))
      << "the batch should have timed out on the lock and retried";
  for (const events::Retry& retry : retries) {
    EXPECT_EQ(retry.sqlstate, "55P03") << testing::EventText(retry);
  }
  EXPECT_GT(retries.back().wait_ms, 0) << "retries back off";
  EXPECT_GT(app_updates.load(), 0);
  // lock_timeout (0.3 s) plus the moments the batch held its earlier rows before it reached the
  // locked one, and the probe's own 20 ms granularity. Without lock_timeout this would be the
  // blocker's whole hold, at least kRetriesWhileBlocked lock timeouts.
  EXPECT_LT(max_wait_seconds, 1.0)
      << "an application session waited on pgbackfill for " << max_wait_seconds << " s";
}

TEST_F(ThrottleTest, PauseSetResumeAbortFromAnotherProcess) {
  ASSERT_OK(db_.ExecScript(kItemsTable));
  const std::string plan = testing::WriteTestFile(ItemsPlan("steered", "max_replica_lag: 0"));
  auto process = SpawnPgbackfill(RunArgs(plan));
  ASSERT_OK(process);
  ASSERT_OK(process->WaitForOutput("\"event\":\"progress\"", absl::Seconds(60)));

  size_t from = process->StdoutSoFar().size();
  CommandResult paused = RunPgbackfill({"pause", "steered", "--dsn", db_.dsn()});
  ASSERT_EQ(paused.exit_code, 0) << paused.out << paused.err;
  WaitForHoldReason(*process, "paused by", from);
  ExpectNoCommitsWhileHeld();
  CommandResult status = RunPgbackfill({"status", "steered", "--dsn", db_.dsn(), "--json"});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_THAT(status.out, HasSubstr("paused by")) << "status shows why the job is held";

  CommandResult set = RunPgbackfill(
      {"set", "steered", "workers=1", "batch.target=100ms", "--dsn", db_.dsn()});
  ASSERT_EQ(set.exit_code, 0) << set.out << set.err;
  absl::StatusOr<size_t> settings = process->WaitForStdout("\"event\":\"settings\"", from);
  ASSERT_OK(settings);
  const std::string out = process->StdoutSoFar();
  const std::optional<events::Settings> settings_event =
      EventEndingAt<events::Settings>(out, *settings);
  ASSERT_TRUE(settings_event.has_value()) << LineEndingAt(out, *settings);
  EXPECT_THAT(settings_event->settings, Contains(Pair("workers", "1")))
      << LineEndingAt(out, *settings);
  EXPECT_EQ(settings_event->workers, 1);

  CommandResult resumed = RunPgbackfill({"resume", "steered", "--dsn", db_.dsn()});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.out << resumed.err;
  WaitForThrottle(*process, "running", from);
  const int64_t at_resume = RowsCommitted();
  ASSERT_OK(process->WaitForStdout("\"event\":\"progress\"", from));

  CommandResult aborted = RunPgbackfill({"abort", "steered", "--dsn", db_.dsn()});
  ASSERT_EQ(aborted.exit_code, 0) << aborted.out << aborted.err;
  CommandResult result = process->Wait();
  EXPECT_EQ(result.exit_code, 5) << result.out << result.err;
  const std::optional<events::JobFinished> finished =
      testing::FirstEvent<events::JobFinished>(testing::ReadEvents(result.out));
  ASSERT_TRUE(finished.has_value());
  EXPECT_EQ(finished->outcome, "aborted");
  const int64_t at_abort = RowsCommitted();
  EXPECT_GE(at_abort, at_resume);
  EXPECT_LT(at_abort, kItemsRows) << "the job finished before the abort; make it longer";
  ASSERT_OK_AND_ASSIGN(std::string state,
                       db_.QueryValue("SELECT state FROM pgbackfill.jobs WHERE name = 'steered'"));
  EXPECT_EQ(state, "aborted");
  ASSERT_OK_AND_ASSIGN(std::string twice,
                       db_.QueryValue("SELECT count(*) FROM items WHERE n > 1"));
  EXPECT_EQ(twice, "0");

  // Running it again resumes (the abort was of that run) and keeps the `set` overrides.
  CommandResult again = RunPgbackfill(RunArgs(plan));
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  const std::vector<events::Event> again_events = testing::ReadEvents(again.out);
  const std::optional<events::JobStarted> started =
      testing::FirstEvent<events::JobStarted>(again_events);
  ASSERT_TRUE(started.has_value());
  EXPECT_TRUE(started->resumed);
  EXPECT_TRUE(testing::FirstEvent<events::Settings>(again_events).has_value());
  ExpectEveryRowOnce();
}

// Fewer workers mid-run parks the extra ones, which hand their ranges back; more workers later
// spawns new ones. Every range still ends done, every row once.
TEST_F(ThrottleTest, ChangingWorkersMidRunFinishesEveryRange) {
  ASSERT_OK(db_.ExecScript(kItemsTable));
  auto process = SpawnPgbackfill(
      RunArgs(testing::WriteTestFile(ItemsPlan("resized", "max_replica_lag: 0", 4))));
  ASSERT_OK(process);
  ASSERT_OK(process->WaitForOutput("\"event\":\"progress\"", absl::Seconds(60)));
  CommandResult fewer = RunPgbackfill({"set", "resized", "workers=1", "--dsn", db_.dsn()});
  ASSERT_EQ(fewer.exit_code, 0) << fewer.out << fewer.err;
  ASSERT_OK(process->WaitForStdout("\"workers\":1", 0));
  // The parked workers finish their batches and hand their ranges back: one worker is left in a
  // transaction (batch or probe) at a time. Then the one left commits more before the change back.
  EXPECT_TRUE(Eventually([&] { return SessionsInTransaction() <= 1; }, absl::Seconds(30)))
      << "workers=1 left more than one session running batches";
  const int64_t on_one_worker = RowsCommitted();
  EXPECT_TRUE(Eventually([&] { return RowsCommitted() > on_one_worker; }, absl::Seconds(30)))
      << "the one worker left committed nothing";
  CommandResult more = RunPgbackfill({"set", "resized", "workers=3", "--dsn", db_.dsn()});
  ASSERT_EQ(more.exit_code, 0) << more.out << more.err;
  CommandResult result = process->Wait();
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  ExpectEveryRowOnce();
  ASSERT_OK_AND_ASSIGN(std::string open_ranges,
                       db_.QueryValue("SELECT count(*) FROM pgbackfill.ranges WHERE state <> 'done'"));
  EXPECT_EQ(open_ranges, "0");
}

}  // namespace
}  // namespace pgbackfill
