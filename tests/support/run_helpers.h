// What the integration fixtures that run a backfill share: the arguments of a `run --json`, what
// the job store says committed, the every-row-once check, the server's view of our batches, and
// Eventually, which waits for a condition instead of sleeping for a guess.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "support/test_cluster.h"

namespace pgbackfill::testing {

// Polls `condition` every `poll` until it returns true, or fails once `timeout` has passed. Use it
// for anything a test would otherwise sleep for, with a message naming what did not happen:
//
//   ASSERT_TRUE(Eventually([&] { return RowsCommitted(db) > 0; })) << "no batch committed";
template <typename Condition>
::testing::AssertionResult Eventually(Condition condition,
                                      absl::Duration timeout = absl::Seconds(60),
                                      absl::Duration poll = absl::Milliseconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() >= deadline) {
      return ::testing::AssertionFailure()
             << "the condition did not hold within " << absl::FormatDuration(timeout);
    }
    absl::SleepFor(poll);
  }
  return ::testing::AssertionSuccess();
}

// `pgbackfill run PLAN --dsn DSN --json`.
std::vector<std::string> RunArgs(const std::string& plan_path, const std::string& dsn);

// The fixture of tests that run pgbackfill on a database of their own.
class RunTest : public ::testing::Test {
 protected:
  // `pgbackfill run PLAN --json` on db_.
  std::vector<std::string> RunArgs(const std::string& plan_path) const {
    return testing::RunArgs(plan_path, db_.dsn());
  }

  // Rows committed so far according to the job store (of `job`, or of every job when empty); 0
  // before a run has created the store. Any other error fails the test and gives -1.
  int64_t RowsCommitted(const std::string& job = "");

  // For plans with `set: n: n + 1` on a table whose n starts at 0: a row touched twice shows
  // n = 2, one skipped n = 0. Checks that every row has n = 1 and that there are `rows` rows.
  void ExpectEveryRowOnce(const std::string& table, int64_t rows);

  TestDatabase db_;
};

// Sessions of pgbackfill on `db` that are running a batch statement right now (not the last one
// an idle session ran: pg_stat_activity keeps that in `query`).
int64_t BatchesRunning(TestDatabase& db);
// Terminates those sessions; returns how many it terminated.
int64_t TerminateRunningBatches(TestDatabase& db);

}  // namespace pgbackfill::testing
