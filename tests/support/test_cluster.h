// Support for integration tests: the throwaway cluster that scripts/test starts (see
// scripts/pg-cluster), one fresh database per test, and running commands (pgbackfill, pgbench)
// with their output captured.
//
// The cluster is described by environment variables that `scripts/pg-cluster start` writes to
// DIR/env and scripts/test sources:
//   PGBACKFILL_TEST_DSN          primary over the unix socket (key=value DSN, dbname=postgres)
//   PGBACKFILL_TEST_TCP_DSN      primary over TCP on 127.0.0.1 (for proxies)
//   PGBACKFILL_TEST_STANDBY_DSN  streaming standby (only when started with --standby)
//   PGBACKFILL_TEST_CLUSTER_DIR  the cluster directory, passed to scripts/pg-cluster
//   PGBACKFILL_PG_CLUSTER        absolute path of scripts/pg-cluster
//   PGBACKFILL_PG_BIN            PostgreSQL binaries (pgbench, psql, ...)
//   PGBACKFILL_TEST_SECOND_DSN   a second, independent cluster's primary (copies between clusters)
//   PGBACKFILL_TEST_SECOND_CLUSTER_DIR  its directory
// A missing variable is a test failure, never a skip (tests/support/main.cc checks up front).
//
// Inside `namespace pgbackfill`, `testing::` names this namespace; spell GoogleTest `::testing::`.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pgbackfill/pg/connection.h"
#include "pgbackfill/pg/result.h"

namespace pgbackfill::testing {

// The cluster's DSNs. ClusterDsn() and TcpDsn() throw std::runtime_error when the variable is
// unset, which GoogleTest reports as a failure of the calling test.
const std::string& ClusterDsn();
std::string TcpDsn();
std::optional<std::string> StandbyDsn();
// The second cluster (scripts/test starts it beside the first); throws when unset.
std::string SecondClusterDsn();
std::string ClusterDir();
// `$PGBACKFILL_PG_BIN/name`, e.g. PgBinary("pgbench").
std::string PgBinary(std::string_view name);

// The value of `keyword` in a key=value DSN whose values are unquoted words, as
// scripts/pg-cluster writes them ("host=/dir port=5433" gives "5433" for "port"); "" when absent.
// (No <regex>: GCC 12 warns inside it under the sanitizers, which the -Werror build refuses.)
std::string DsnValue(std::string_view dsn, std::string_view keyword);

// The port of TcpDsn().
uint16_t TcpPort();

// `base_dsn` pointing at database `dbname`. For a key=value DSN it appends ` dbname='...'` (libpq
// lets the later keyword win); for a postgres:// URI it adds a `dbname` query parameter.
std::string WithDbname(const std::string& base_dsn, std::string_view dbname);

// Sharing the cluster between test processes (ctest -j runs several at once). Every test process
// holds a shared lock on $PGBACKFILL_TEST_CLUSTER_DIR/tests.lock (taken by tests/support/main.cc
// before the first test); a test that restarts or stops a node takes it exclusively, so it waits
// until no other test process is running and keeps new ones out until it is done.

// Takes the shared lock for this process; idempotent. A no-op without PGBACKFILL_TEST_CLUSTER_DIR.
absl::Status JoinCluster();

// Runs scripts/pg-cluster on the test cluster: args[0] is the subcommand and the cluster
// directory goes right after it, so {"restart", "primary"} runs
// `pg-cluster restart $PGBACKFILL_TEST_CLUSTER_DIR primary`. Subcommands: restart [node],
// stop-node node, start-node node (node = primary|standby). Blocks until the node is up (for the
// standby: streaming, also after restarting the primary) or down. Holds the exclusive lock for
// the call; a test that leaves a node stopped across several steps needs a ClusterDisruption.
absl::Status ClusterCtl(const std::vector<std::string>& args);
// The same on the second cluster ({"restart"} restarts its primary), under the same lock.
absl::Status SecondClusterCtl(const std::vector<std::string>& args);

// Exclusive use of the cluster for a scope, for tests that stop or restart nodes:
//
//   ClusterDisruption disruption;                 // waits for other test processes to finish
//   ASSERT_OK(ClusterCtl({"stop-node", "standby"}));
//   ... the backfill must pause ...
//   // leaving the scope starts every stopped node again, also when an assertion failed
//
// Nests. The constructor throws std::runtime_error when the lock cannot be taken.
class ClusterDisruption {
 public:
  ClusterDisruption();
  ClusterDisruption(const ClusterDisruption&) = delete;
  ClusterDisruption& operator=(const ClusterDisruption&) = delete;
  ~ClusterDisruption();
};

// Waits until the standby has replayed everything the primary had written when this was called.
absl::Status WaitForStandbyCatchUp(absl::Duration timeout = absl::Seconds(30));

// A database created for the current test and dropped (WITH (FORCE)) when it goes out of scope.
// The name comes from the running GoogleTest suite and test, the pid and a counter, so tests that
// run in parallel (ctest -j) never share one. Set PGBACKFILL_TEST_KEEP_DATABASES=1 to keep them
// for a post-mortem. The constructor throws std::runtime_error when the database cannot be made.
// Thread-compatible: conn() is one connection, use it from one thread at a time.
class TestDatabase {
 public:
  TestDatabase();
  // `tag` distinguishes several databases of one test in their names (e.g. "source", "target").
  explicit TestDatabase(std::string_view tag);
  // The same on the cluster `base_dsn` names (e.g. SecondClusterDsn()).
  TestDatabase(std::string_view tag, const std::string& base_dsn);
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;
  ~TestDatabase();

  const std::string& name() const { return name_; }
  // The cluster DSN (unix socket) with dbname set to this database.
  const std::string& dsn() const { return dsn_; }
  // Any cluster DSN (TcpDsn(), *StandbyDsn(), a proxy's) pointed at this database.
  std::string DsnFor(const std::string& base_dsn) const { return WithDbname(base_dsn, name_); }

  // A connection to this database, opened on first use and kept until destruction.
  pg::Connection& conn();
  // Drops the kept connection; the next conn() opens a new one (after a server restart).
  void Reconnect() { conn_.reset(); }
  absl::StatusOr<pg::Result> Exec(const std::string& sql, const std::vector<pg::Param>& params = {});
  absl::Status ExecScript(const std::string& sql);
  // The first column of the first row as text; an error when there is no row or it is NULL.
  absl::StatusOr<std::string> QueryValue(const std::string& sql,
                                         const std::vector<pg::Param>& params = {});

 private:
  std::string name_;
  std::string base_dsn_;
  std::string dsn_;
  std::optional<pg::Connection> conn_;
};

// How a command ended. exit_code is the process's exit status, or 128 + signal number when a
// signal killed it (then term_signal is that signal), or 127 when it could not be started.
// Writes `text` to a fresh file named after the current test (plus `suffix`, e.g. ".yaml") in
// GoogleTest's temp dir and returns its path. Each call makes a new file.
std::string WriteTestFile(const std::string& text, const std::string& suffix = ".yaml");

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
  int term_signal = 0;
};

// Environment additions for a child: each pair overrides (or adds) one variable of ours.
using EnvVars = std::vector<std::pair<std::string, std::string>>;

// A running child process with stdout and stderr captured. A background thread drains both pipes
// (and feeds stdin) from the start, so a chatty child never blocks on a full pipe while the test
// does something else. Movable; destroying a Process that was not waited for kills (SIGKILL) and
// reaps it. Not thread-safe except for the const accessors.
class Process {
 public:
  // argv[0] is looked up in PATH when it has no slash. When stdin_text is nullopt, the child's
  // stdin is /dev/null; otherwise it receives that text and then EOF.
  static absl::StatusOr<Process> Spawn(const std::vector<std::string>& argv,
                                       const EnvVars& extra_env = {},
                                       std::optional<std::string> stdin_text = std::nullopt);

  Process(Process&&) noexcept;
  Process& operator=(Process&&) noexcept;
  ~Process();

  pid_t pid() const;
  absl::Status Signal(int signal_number);

  // Blocks until `needle` appears in the stdout or stderr captured so far, the process exits
  // (NotFound), or `timeout` passes (DeadlineExceeded). For "wait until the first batch
  // committed, then kill it" tests.
  absl::Status WaitForOutput(std::string_view needle, absl::Duration timeout = absl::Seconds(60));
  // Blocks until `needle` appears on stdout at or after byte `from`; returns the offset just past
  // it, so a test can wait for the next occurrence of an event. DeadlineExceeded on timeout or when
  // the process closed its output first.
  absl::StatusOr<size_t> WaitForStdout(std::string_view needle, size_t from,
                                       absl::Duration timeout = absl::Seconds(60));
  // Copies of what was captured so far.
  std::string StdoutSoFar() const;
  std::string StderrSoFar() const;

  // Waits for exit and the end of its output. After `timeout` the process is killed with SIGKILL
  // and the result notes it in `err`. Call at most once.
  CommandResult Wait(absl::Duration timeout = absl::Minutes(5));

 private:
  struct State;
  explicit Process(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// Spawn + Wait. A command that cannot be started gives exit_code 127 and the reason in `err`.
CommandResult RunCommand(const std::vector<std::string>& argv, const EnvVars& extra_env = {},
                         std::optional<std::string> stdin_text = std::nullopt);

// The same for the pgbackfill binary built with the tests (PGBACKFILL_BINARY); `args` excludes
// argv[0].
CommandResult RunPgbackfill(const std::vector<std::string>& args, const EnvVars& extra_env = {},
                            std::optional<std::string> stdin_text = std::nullopt);
absl::StatusOr<Process> SpawnPgbackfill(const std::vector<std::string>& args,
                                        const EnvVars& extra_env = {},
                                        std::optional<std::string> stdin_text = std::nullopt);
// The path of the pgbackfill binary, and of the source tree (for plans/, scripts/).
std::string PgbackfillBinary();
std::string SourceDir();

}  // namespace pgbackfill::testing
