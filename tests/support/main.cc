// main() of the integration test binary. Integration tests never skip for lack of a server: a
// missing or unreachable cluster fails the run, so CI cannot pass without having tested anything.
#include <signal.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "pgbackfill/pg/connection.h"
#include "support/test_cluster.h"

namespace pgbackfill::testing {
namespace {

constexpr char kHowToRun[] =
    "Run the integration tests through `scripts/test` (it starts a throwaway PostgreSQL 15 "
    "primary and standby), or start one yourself: `scripts/pg-cluster start /tmp/pgbf "
    "--standby && source /tmp/pgbf/env`, then ctest.";

// Checked once per process, before any test: every test of the binary needs the cluster.
class ClusterEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    // The lock first: a test of another process that is restarting the server holds it
    // exclusively, and asking the server before it is back would fail this whole process.
    std::string problem;
    if (absl::Status joined = JoinCluster(); !joined.ok()) {
      problem = "cannot take the cluster lock: " + joined.ToString();
    }
    if (problem.empty()) problem = Problem();
    if (problem.empty()) return;
    ADD_FAILURE() << problem << "\n" << kHowToRun;
    // Not a fatal assertion: after one, GoogleTest marks every test "[  SKIPPED ]", and the
    // tests that gtest_discover_tests registers treat that output as a CTest skip, which a CI
    // summary shows as a pass. Exiting makes each test a plain failure.
    std::fflush(stdout);
    std::exit(1);
  }

 private:
  static std::string Problem() {
    const char* dsn = std::getenv("PGBACKFILL_TEST_DSN");
    if (dsn == nullptr || *dsn == '\0') return "PGBACKFILL_TEST_DSN is not set.";
    auto conn = pg::Connection::Connect(dsn);
    if (!conn.ok()) {
      return "the test cluster at '" + std::string(dsn) + "' does not answer: " +
             conn.status().ToString();
    }
    auto one = conn->Exec("SELECT 1");
    if (!one.ok()) return "SELECT 1 failed on '" + std::string(dsn) + "': " + one.status().ToString();
    return "";
  }
};

}  // namespace
}  // namespace pgbackfill::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // Tests write to pipes of children that may have exited; EPIPE is an answer, not a crash.
  ::signal(SIGPIPE, SIG_IGN);
  // GoogleTest owns the environment and deletes it at exit.
  ::testing::AddGlobalTestEnvironment(new pgbackfill::testing::ClusterEnvironment);
  return RUN_ALL_TESTS();
}
