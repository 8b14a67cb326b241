#include "support/test_cluster.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/util/strings.h"

extern char** environ;

namespace pgbackfill::testing {
namespace {

constexpr char kHowToRun[] =
    "The integration tests need the throwaway cluster that scripts/test starts: run "
    "`scripts/test` (or `scripts/pg-cluster start DIR --standby && source DIR/env` before ctest).";

std::optional<std::string> GetEnv(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

std::string RequireEnv(const char* name) {
  std::optional<std::string> value = GetEnv(name);
  if (!value) throw std::runtime_error(absl::StrCat(name, " is not set. ", kHowToRun));
  return *value;
}

// PostgreSQL identifiers are at most NAMEDATALEN-1 = 63 bytes; longer names are truncated by the
// server, which would make two long test names collide.
constexpr size_t kMaxIdentifierLength = 63;

std::string Sanitize(std::string_view text) {
  std::string out;
  for (char c : text) {
    const char lower = absl::ascii_tolower(static_cast<unsigned char>(c));
    if (absl::ascii_isalnum(static_cast<unsigned char>(lower))) {
      out.push_back(lower);
    } else if (!out.empty() && out.back() != '_') {
      out.push_back('_');
    }
  }
  while (!out.empty() && out.back() == '_') out.pop_back();
  return out;
}

std::string DatabaseName(std::string_view tag) {
  static std::atomic<int> counter{0};
  std::string test_name = "outside_test";
  if (const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info()) {
    test_name = absl::StrCat(info->test_suite_name(), "_", info->name());
  }
  std::string suffix = absl::StrCat("_", getpid(), "_", counter.fetch_add(1));
  if (!tag.empty()) suffix = absl::StrCat("_", Sanitize(tag).substr(0, 12), suffix);
  std::string prefix = absl::StrCat("t_", Sanitize(test_name));
  prefix.resize(std::min(prefix.size(), kMaxIdentifierLength - suffix.size()));
  return prefix + suffix;
}

absl::StatusOr<pg::Connection> ConnectAdmin(const std::string& base_dsn = ClusterDsn()) {
  auto conn = pg::Connection::Connect(base_dsn);
  if (!conn.ok()) {
    return absl::Status(conn.status().code(),
                        absl::StrCat("cannot reach the test cluster: ", conn.status().message()));
  }
  // Keeps "database ... does not exist, skipping" NOTICEs of DROP IF EXISTS out of test output.
  if (absl::Status status = conn->ExecScript("SET client_min_messages = warning"); !status.ok()) {
    return status;
  }
  return conn;
}

void IgnoreSigpipeOnce() {
  // Writing a child's stdin after it exited must give EPIPE, not kill the test binary.
  static std::once_flag once;
  std::call_once(once, [] { ::signal(SIGPIPE, SIG_IGN); });
}

std::vector<std::string> ChildEnvironment(const EnvVars& extra_env) {
  std::map<std::string, std::string> vars;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string_view text(*entry);
    const size_t eq = text.find('=');
    if (eq == std::string_view::npos) continue;
    vars[std::string(text.substr(0, eq))] = std::string(text.substr(eq + 1));
  }
  for (const auto& [key, value] : extra_env) vars[key] = value;
  std::vector<std::string> out;
  out.reserve(vars.size());
  for (const auto& [key, value] : vars) out.push_back(absl::StrCat(key, "=", value));
  return out;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

void CloseFd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

}  // namespace

const std::string& ClusterDsn() {
  static const std::string dsn = RequireEnv("PGBACKFILL_TEST_DSN");
  return dsn;
}

std::string TcpDsn() { return RequireEnv("PGBACKFILL_TEST_TCP_DSN"); }

std::string DsnValue(std::string_view dsn, std::string_view keyword) {
  const std::string prefix = absl::StrCat(ToAbsl(keyword), "=");
  for (absl::string_view word : absl::StrSplit(ToAbsl(dsn), ' ', absl::SkipEmpty())) {
    if (absl::StartsWith(word, prefix)) return std::string(word.substr(prefix.size()));
  }
  return "";
}

uint16_t TcpPort() { return static_cast<uint16_t>(std::stoi(DsnValue(TcpDsn(), "port"))); }

std::optional<std::string> StandbyDsn() { return GetEnv("PGBACKFILL_TEST_STANDBY_DSN"); }

std::string SecondClusterDsn() { return RequireEnv("PGBACKFILL_TEST_SECOND_DSN"); }

std::string ClusterDir() { return RequireEnv("PGBACKFILL_TEST_CLUSTER_DIR"); }

std::string PgBinary(std::string_view name) {
  return absl::StrCat(GetEnv("PGBACKFILL_PG_BIN").value_or("/usr/lib/postgresql/15/bin"), "/",
                      std::string(name));
}

std::string WithDbname(const std::string& base_dsn, std::string_view dbname) {
  if (absl::StartsWith(base_dsn, "postgres://") || absl::StartsWith(base_dsn, "postgresql://")) {
    // Query parameters override the path's database in libpq's URI parser.
    const char separator = base_dsn.find('?') == std::string::npos ? '?' : '&';
    return absl::StrCat(base_dsn, std::string(1, separator), "dbname=", std::string(dbname));
  }
  std::string quoted;
  for (char c : dbname) {
    if (c == '\'' || c == '\\') quoted.push_back('\\');
    quoted.push_back(c);
  }
  return absl::StrCat(base_dsn, " dbname='", quoted, "'");
}

namespace {

// The process-wide cluster lock (see JoinCluster). One fd per process, because flock() converts
// the lock of an open file description in place: a second fd of our own would deadlock us.
std::mutex cluster_lock_mu;
int cluster_lock_fd = -1;          // guarded by cluster_lock_mu
int cluster_exclusive_depth = 0;   // guarded by cluster_lock_mu

absl::Status Flock(int operation) {
  while (::flock(cluster_lock_fd, operation) != 0) {
    if (errno != EINTR) return absl::InternalError(absl::StrCat("flock: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status JoinClusterLocked() {
  if (cluster_lock_fd >= 0) return absl::OkStatus();
  std::optional<std::string> dir = GetEnv("PGBACKFILL_TEST_CLUSTER_DIR");
  if (!dir) return absl::OkStatus();
  const std::string path = *dir + "/tests.lock";
  // O_CLOEXEC: a spawned pgbackfill must not inherit (and outlive us holding) the lock.
  cluster_lock_fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (cluster_lock_fd < 0) {
    return absl::InternalError(absl::StrCat("open ", path, ": ", std::strerror(errno)));
  }
  return Flock(LOCK_SH);
}

// Exclusive for the lifetime of the object (nests); back to shared afterwards. flock converts by
// dropping the shared lock first, so two exclusive waiters cannot deadlock each other.
class ExclusiveClusterLock {
 public:
  ExclusiveClusterLock() {
    std::lock_guard lock(cluster_lock_mu);
    status_ = JoinClusterLocked();
    if (status_.ok() && cluster_lock_fd >= 0 && cluster_exclusive_depth++ == 0) {
      status_ = Flock(LOCK_EX);
    }
  }
  ~ExclusiveClusterLock() {
    std::lock_guard lock(cluster_lock_mu);
    if (status_.ok() && cluster_lock_fd >= 0 && --cluster_exclusive_depth == 0) {
      (void)Flock(LOCK_SH);
    }
  }
  const absl::Status& status() const { return status_; }

 private:
  absl::Status status_;
};

}  // namespace

absl::Status JoinCluster() {
  std::lock_guard lock(cluster_lock_mu);
  return JoinClusterLocked();
}

ClusterDisruption::ClusterDisruption() {
  std::lock_guard lock(cluster_lock_mu);
  if (absl::Status status = JoinClusterLocked(); !status.ok()) {
    throw std::runtime_error("ClusterDisruption: " + status.ToString());
  }
  if (cluster_lock_fd >= 0 && cluster_exclusive_depth++ == 0) {
    if (absl::Status status = Flock(LOCK_EX); !status.ok()) {
      --cluster_exclusive_depth;
      throw std::runtime_error("ClusterDisruption: " + status.ToString());
    }
  }
}

ClusterDisruption::~ClusterDisruption() {
  // Later tests expect a running primary and a streaming standby; start-node is a no-op for a
  // running node.
  std::vector<std::string> nodes = {"primary"};
  if (StandbyDsn()) nodes.push_back("standby");
  for (const std::string& node : nodes) {
    if (absl::Status status = ClusterCtl({"start-node", node}); !status.ok()) {
      ADD_FAILURE() << "restoring the " << node << " after a ClusterDisruption: " << status;
    }
  }
  if (GetEnv("PGBACKFILL_TEST_SECOND_CLUSTER_DIR")) {
    if (absl::Status status = SecondClusterCtl({"start-node", "primary"}); !status.ok()) {
      ADD_FAILURE() << "restoring the second cluster after a ClusterDisruption: " << status;
    }
  }
  std::lock_guard lock(cluster_lock_mu);
  if (cluster_lock_fd >= 0 && --cluster_exclusive_depth == 0) (void)Flock(LOCK_SH);
}

namespace {

absl::Status CtlOn(const char* dir_variable, const std::vector<std::string>& args) {
  if (args.empty()) return absl::InvalidArgumentError("ClusterCtl needs a subcommand");
  std::optional<std::string> script = GetEnv("PGBACKFILL_PG_CLUSTER");
  std::optional<std::string> dir = GetEnv(dir_variable);
  if (!script || !dir) {
    return absl::FailedPreconditionError(
        absl::StrCat("PGBACKFILL_PG_CLUSTER or ", dir_variable, " is not set. ", kHowToRun));
  }
  std::vector<std::string> argv = {*script, args[0], *dir};
  argv.insert(argv.end(), args.begin() + 1, args.end());
  ExclusiveClusterLock exclusive;
  if (!exclusive.status().ok()) return exclusive.status();
  CommandResult result = RunCommand(argv);
  if (result.exit_code != 0) {
    return absl::InternalError(absl::StrCat("`", absl::StrJoin(argv, " "), "` exited with ",
                                            result.exit_code, ": ", result.err, result.out));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ClusterCtl(const std::vector<std::string>& args) {
  return CtlOn("PGBACKFILL_TEST_CLUSTER_DIR", args);
}

absl::Status SecondClusterCtl(const std::vector<std::string>& args) {
  return CtlOn("PGBACKFILL_TEST_SECOND_CLUSTER_DIR", args);
}

absl::Status WaitForStandbyCatchUp(absl::Duration timeout) {
  std::optional<std::string> standby_dsn = StandbyDsn();
  if (!standby_dsn) {
    return absl::FailedPreconditionError(
        "PGBACKFILL_TEST_STANDBY_DSN is not set: the cluster was started without --standby");
  }
  auto primary = ConnectAdmin();
  if (!primary.ok()) return primary.status();
  auto lsn = primary->Exec("SELECT pg_catalog.pg_current_wal_lsn()::text");
  if (!lsn.ok()) return lsn.status();
  const std::string target(lsn->Get(0, 0));

  auto standby = pg::Connection::Connect(*standby_dsn);
  if (!standby.ok()) return standby.status();
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    auto caught_up =
        standby->Exec("SELECT pg_catalog.pg_last_wal_replay_lsn() >= $1::pg_lsn", {target});
    if (!caught_up.ok()) return caught_up.status();
    if (caught_up->Get(0, 0) == "t") return absl::OkStatus();
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("standby did not replay up to ", target, " within ", absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

// ---------------------------------------------------------------------------------------------
// TestDatabase

TestDatabase::TestDatabase() : TestDatabase(std::string_view()) {}

TestDatabase::TestDatabase(std::string_view tag) : TestDatabase(tag, ClusterDsn()) {}

namespace {

// The logical slots of database `name` no session streams from: they would keep it from being
// dropped (and WAL from being removed) after a test that made one was killed.
absl::Status DropLogicalSlots(pg::Connection& admin, const std::string& name) {
  return admin
      .Exec(
          "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM "
          "pg_catalog.pg_replication_slots WHERE database = $1 AND NOT active",
          {name})
      .status();
}

}  // namespace

TestDatabase::TestDatabase(std::string_view tag, const std::string& base_dsn)
    : name_(DatabaseName(tag)), base_dsn_(base_dsn) {
  dsn_ = WithDbname(base_dsn_, name_);
  auto admin = ConnectAdmin(base_dsn_);
  if (!admin.ok()) throw std::runtime_error(admin.status().ToString() + " " + kHowToRun);
  // A database of the same name can only be a leftover of a crashed run whose pid was reused.
  const std::string quoted = pg::QuoteIdent(name_);
  absl::Status status = DropLogicalSlots(*admin, name_);
  if (status.ok()) {
    status = admin->ExecScript(absl::StrCat("DROP DATABASE IF EXISTS ", quoted, " WITH (FORCE)"));
  }
  if (status.ok()) status = admin->ExecScript(absl::StrCat("CREATE DATABASE ", quoted));
  if (!status.ok()) {
    throw std::runtime_error(absl::StrCat("creating test database ", name_, ": ", status.ToString()));
  }
}

TestDatabase::~TestDatabase() {
  conn_.reset();
  if (GetEnv("PGBACKFILL_TEST_KEEP_DATABASES")) {
    std::fprintf(stderr, "keeping test database %s (PGBACKFILL_TEST_KEEP_DATABASES)\n",
                 name_.c_str());
    return;
  }
  auto admin = ConnectAdmin(base_dsn_);
  absl::Status status = admin.ok() ? DropLogicalSlots(*admin, name_) : admin.status();
  if (status.ok()) {
    status = admin->ExecScript(
        absl::StrCat("DROP DATABASE IF EXISTS ", pg::QuoteIdent(name_), " WITH (FORCE)"));
  }
  // A database we cannot drop means the test left the cluster in a state later tests may trip
  // over (a node stopped, a session stuck): that is the test's failure, not theirs.
  if (!status.ok()) ADD_FAILURE() << "dropping test database " << name_ << ": " << status;
}

pg::Connection& TestDatabase::conn() {
  if (!conn_) {
    auto conn = pg::Connection::Connect(dsn_);
    if (!conn.ok()) {
      throw std::runtime_error(absl::StrCat("connecting to test database ", name_, ": ",
                                            conn.status().ToString()));
    }
    conn_.emplace(std::move(conn).value());
  }
  return *conn_;
}

absl::StatusOr<pg::Result> TestDatabase::Exec(const std::string& sql,
                                              const std::vector<pg::Param>& params) {
  return conn().Exec(sql, params);
}

absl::Status TestDatabase::ExecScript(const std::string& sql) { return conn().ExecScript(sql); }

absl::StatusOr<std::string> TestDatabase::QueryValue(const std::string& sql,
                                                     const std::vector<pg::Param>& params) {
  auto result = Exec(sql, params);
  if (!result.ok()) return result.status();
  if (result->Rows() < 1 || result->Columns() < 1) {
    return absl::NotFoundError(absl::StrCat("no value from: ", sql));
  }
  if (result->IsNull(0, 0)) return absl::NotFoundError(absl::StrCat("NULL from: ", sql));
  return std::string(result->Get(0, 0));
}

// ---------------------------------------------------------------------------------------------
// Process

struct Process::State {
  pid_t pid = -1;
  int out_fd = -1;
  int err_fd = -1;
  int in_fd = -1;
  std::string stdin_text;
  size_t stdin_written = 0;

  mutable std::mutex mu;
  std::condition_variable cv;
  std::string out;    // guarded by mu
  std::string err;    // guarded by mu
  bool eof = false;   // guarded by mu: both output pipes closed
  std::atomic<bool> stop{false};
  std::thread reader;
  bool waited = false;

  // Runs on `reader`: moves bytes between the pipes and the buffers until both output pipes
  // reach EOF or `stop` is set (a grandchild that keeps the pipes open must not hang Wait()).
  void Pump() {
    char buffer[65536];
    while (!stop.load()) {
      pollfd fds[3];
      nfds_t count = 0;
      int* owners[3];
      for (int* fd : {&out_fd, &err_fd}) {
        if (*fd < 0) continue;
        fds[count] = {*fd, POLLIN, 0};
        owners[count++] = fd;
      }
      if (count == 0) break;
      if (in_fd >= 0) {
        fds[count] = {in_fd, POLLOUT, 0};
        owners[count++] = &in_fd;
      }
      const int ready = ::poll(fds, count, 100);
      if (ready < 0 && errno != EINTR) break;
      for (nfds_t i = 0; ready > 0 && i < count; ++i) {
        if (fds[i].revents == 0) continue;
        int& fd = *owners[i];
        if (&fd == &in_fd) {
          const size_t left = stdin_text.size() - stdin_written;
          const ssize_t n = ::write(fd, stdin_text.data() + stdin_written, left);
          if (n > 0) stdin_written += static_cast<size_t>(n);
          if ((n < 0 && errno != EAGAIN && errno != EINTR) || stdin_written == stdin_text.size()) {
            CloseFd(fd);  // EOF for the child, or it stopped reading (EPIPE)
          }
          continue;
        }
        const ssize_t n = ::read(fd, buffer, sizeof(buffer));
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) {
          CloseFd(fd);
          continue;
        }
        std::lock_guard lock(mu);
        (&fd == &out_fd ? out : err).append(buffer, static_cast<size_t>(n));
        cv.notify_all();
      }
    }
    CloseFd(in_fd);
    CloseFd(out_fd);
    CloseFd(err_fd);
    std::lock_guard lock(mu);
    eof = true;
    cv.notify_all();
  }
};

absl::StatusOr<Process> Process::Spawn(const std::vector<std::string>& argv,
                                       const EnvVars& extra_env,
                                       std::optional<std::string> stdin_text) {
  if (argv.empty()) return absl::InvalidArgumentError("Spawn needs a command");
  IgnoreSigpipeOnce();

  // O_CLOEXEC so that a child spawned concurrently never inherits another child's pipe ends
  // (which would delay EOF); dup2 in the file actions clears the flag on fds 0-2.
  int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1}, in_pipe[2] = {-1, -1};
  auto close_all = [&] {
    for (int* p : {out_pipe, err_pipe, in_pipe}) {
      CloseFd(p[0]);
      CloseFd(p[1]);
    }
  };
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0 ||
      (stdin_text && ::pipe2(in_pipe, O_CLOEXEC) != 0)) {
    const int saved = errno;
    close_all();
    return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(saved)));
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (stdin_text) {
    posix_spawn_file_actions_adddup2(&actions, in_pipe[0], STDIN_FILENO);
  } else {
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  }
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], STDERR_FILENO);

  // The child starts with default signal handling even though we ignore SIGPIPE.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);

  std::vector<std::string> args = argv;
  std::vector<std::string> env = ChildEnvironment(extra_env);
  std::vector<char*> c_args = CStrings(args);
  std::vector<char*> c_env = CStrings(env);
  pid_t pid = -1;
  const int rc =
      ::posix_spawnp(&pid, c_args[0], &actions, &attr, c_args.data(), c_env.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    close_all();
    return absl::NotFoundError(absl::StrCat("cannot run ", argv[0], ": ", std::strerror(rc)));
  }

  auto state = std::make_unique<State>();
  state->pid = pid;
  state->out_fd = out_pipe[0];
  state->err_fd = err_pipe[0];
  CloseFd(out_pipe[1]);
  CloseFd(err_pipe[1]);
  if (stdin_text) {
    state->in_fd = in_pipe[1];
    CloseFd(in_pipe[0]);
    // Non-blocking: poll's POLLOUT only promises room for PIPE_BUF bytes.
    ::fcntl(state->in_fd, F_SETFL, ::fcntl(state->in_fd, F_GETFL) | O_NONBLOCK);
    state->stdin_text = std::move(*stdin_text);
    if (state->stdin_text.empty()) CloseFd(state->in_fd);
  }
  State* raw = state.get();
  state->reader = std::thread([raw] { raw->Pump(); });
  return Process(std::move(state));
}

Process::Process(std::unique_ptr<State> state) : state_(std::move(state)) {}
Process::Process(Process&&) noexcept = default;
Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    if (state_ && !state_->waited) {
      ::kill(state_->pid, SIGKILL);
      Wait();
    }
    state_ = std::move(other.state_);
  }
  return *this;
}

Process::~Process() {
  if (state_ && !state_->waited) {
    ::kill(state_->pid, SIGKILL);
    Wait();
  }
}

pid_t Process::pid() const { return state_->pid; }

absl::Status Process::Signal(int signal_number) {
  if (state_->waited) return absl::FailedPreconditionError("the process was already waited for");
  if (::kill(state_->pid, signal_number) != 0) {
    return absl::InternalError(absl::StrCat("kill(", state_->pid, ", ", signal_number,
                                            "): ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status Process::WaitForOutput(std::string_view needle_view, absl::Duration timeout) {
  // Debian's abseil has its own string_view type, which std::string_view does not convert to.
  const std::string needle(needle_view);
  std::unique_lock lock(state_->mu);
  const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
  const bool found = state_->cv.wait_until(lock, deadline, [&] {
    return absl::StrContains(state_->out, needle) || absl::StrContains(state_->err, needle) ||
           state_->eof;
  });
  if (absl::StrContains(state_->out, needle) || absl::StrContains(state_->err, needle)) {
    return absl::OkStatus();
  }
  const std::string seen = absl::StrCat("\nstdout so far:\n", state_->out, "\nstderr so far:\n",
                                        state_->err);
  if (found) {
    return absl::NotFoundError(
        absl::StrCat("process ", state_->pid, " closed its output without printing '", needle,
                     "'", seen));
  }
  return absl::DeadlineExceededError(absl::StrCat("'", needle, "' did not appear within ",
                                                  absl::FormatDuration(timeout), seen));
}

absl::StatusOr<size_t> Process::WaitForStdout(std::string_view needle_view, size_t from,
                                              absl::Duration timeout) {
  const std::string needle(needle_view);
  std::unique_lock lock(state_->mu);
  const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
  auto position = [&] { return from <= state_->out.size() ? state_->out.find(needle, from)
                                                           : std::string::npos; };
  state_->cv.wait_until(lock, deadline,
                        [&] { return position() != std::string::npos || state_->eof; });
  if (const size_t at = position(); at != std::string::npos) return at + needle.size();
  return absl::DeadlineExceededError(
      absl::StrCat("'", needle, "' did not appear on stdout after offset ", from, " within ",
                   absl::FormatDuration(timeout), state_->eof ? " (the process closed it)" : "",
                   "\nstdout so far:\n", state_->out, "\nstderr so far:\n", state_->err));
}

std::string Process::StdoutSoFar() const {
  std::lock_guard lock(state_->mu);
  return state_->out;
}

std::string Process::StderrSoFar() const {
  std::lock_guard lock(state_->mu);
  return state_->err;
}

CommandResult Process::Wait(absl::Duration timeout) {
  CommandResult result;
  if (state_->waited) {
    result.err = "Process::Wait called twice";
    return result;
  }
  state_->waited = true;

  // Polling waitpid keeps the timeout simple; tests wait for processes that run for seconds.
  const absl::Time deadline = absl::Now() + timeout;
  bool timed_out = false;
  int status = 0;
  while (true) {
    const pid_t done = ::waitpid(state_->pid, &status, WNOHANG);
    if (done == state_->pid) break;
    if (done < 0 && errno != EINTR) break;
    if (!timed_out && absl::Now() > deadline) {
      timed_out = true;
      ::kill(state_->pid, SIGKILL);
    }
    absl::SleepFor(absl::Milliseconds(5));
  }

  {
    // The child is gone; give the reader a moment to drain what it wrote before it died.
    std::unique_lock lock(state_->mu);
    state_->cv.wait_for(lock, std::chrono::seconds(10), [&] { return state_->eof; });
  }
  state_->stop = true;
  state_->reader.join();

  std::lock_guard lock(state_->mu);
  result.out = std::move(state_->out);
  result.err = std::move(state_->err);
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.term_signal = WTERMSIG(status);
    result.exit_code = 128 + result.term_signal;
  }
  if (timed_out) {
    absl::StrAppend(&result.err, "\n[test support: killed with SIGKILL after ",
                    absl::FormatDuration(timeout), "]\n");
  }
  return result;
}

// ---------------------------------------------------------------------------------------------

CommandResult RunCommand(const std::vector<std::string>& argv, const EnvVars& extra_env,
                         std::optional<std::string> stdin_text) {
  auto process = Process::Spawn(argv, extra_env, std::move(stdin_text));
  if (!process.ok()) {
    CommandResult result;
    result.exit_code = 127;
    result.err = process.status().ToString();
    return result;
  }
  return process->Wait();
}

std::string PgbackfillBinary() { return PGBACKFILL_BINARY; }

std::string SourceDir() { return PGBACKFILL_SOURCE_DIR; }

namespace {
std::vector<std::string> PgbackfillArgv(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {PgbackfillBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}
}  // namespace

CommandResult RunPgbackfill(const std::vector<std::string>& args, const EnvVars& extra_env,
                            std::optional<std::string> stdin_text) {
  return RunCommand(PgbackfillArgv(args), extra_env, std::move(stdin_text));
}

absl::StatusOr<Process> SpawnPgbackfill(const std::vector<std::string>& args,
                                        const EnvVars& extra_env,
                                        std::optional<std::string> stdin_text) {
  return Process::Spawn(PgbackfillArgv(args), extra_env, std::move(stdin_text));
}

std::string WriteTestFile(const std::string& text, const std::string& suffix) {
  static int counter = 0;
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string test = info != nullptr ? absl::StrCat(info->test_suite_name(), "-",
                                                          info->name())
                                           : "no-test";
  std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / absl::StrCat("pgbackfill-", getpid());
  std::filesystem::create_directories(dir);
  std::filesystem::path path = dir / absl::StrCat(test, "-", counter++, suffix);
  std::ofstream(path) << text;
  return path.string();
}

}  // namespace pgbackfill::testing
