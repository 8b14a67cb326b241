#include "lease.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "pgbackfill/exec/runner.h"
#include "pgbackfill/util/status.h"

namespace pgbackfill::exec::internal {
namespace {

std::string HostName() {
  std::array<char, 256> name{};
  if (gethostname(name.data(), name.size() - 1) != 0) return "";
  return name.data();
}

// The pid namespace this process lives in ("" when /proc does not say): pids of two containers
// that share a host name are not comparable.
std::string PidNamespace() {
  std::array<char, 64> link{};
  const ssize_t length = readlink("/proc/self/ns/pid", link.data(), link.size() - 1);
  return length > 0 ? std::string(link.data(), static_cast<size_t>(length)) : "";
}

// A runner of this host whose process is gone (kill -9, a crash) cannot renew its lease, but
// would hold its ranges until the lease expired: a run started again on the same host takes them
// at once. A pid reused since reads as alive, which only means waiting for the lease.
absl::Status ExpireDeadNeighbours(checkpoint::JobStore& store, const std::string& job,
                                  const checkpoint::RunnerRecord& self) {
  ASSIGN_OR_RETURN(std::vector<checkpoint::RunnerRecord> runners, store.ListRunners(job));
  for (const checkpoint::RunnerRecord& other : runners) {
    if (!other.live || other.pid == self.pid || !RunnerProcessGone(other)) continue;
    RETURN_IF_ERROR(store.ExpireRunner(job, other.id));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Duration HeartbeatPeriod(absl::Duration timeout) {
  return std::clamp(timeout / 4, absl::Milliseconds(200), absl::Seconds(5));
}

std::string NewRunnerId(const std::string& host, int pid) {
  absl::BitGen bits;
  return absl::StrFormat("%s:%d:%08x@%s", host, pid, absl::Uniform<uint32_t>(bits), PidNamespace());
}

absl::StatusOr<std::unique_ptr<Lease>> Lease::Take(const std::string& dsn, const std::string& job,
                                                   const std::string& kind,
                                                   absl::Duration timeout) {
  ASSIGN_OR_RETURN(pg::Connection conn, pg::Connection::Connect(dsn));
  conn.TagStatements();
  checkpoint::RunnerRecord runner;
  runner.kind = kind;
  runner.host = HostName();
  runner.pid = static_cast<int>(getpid());
  runner.id = NewRunnerId(runner.host, runner.pid);
  checkpoint::JobStore store(conn);
  RETURN_IF_ERROR(store.RegisterRunner(job, runner, timeout));
  RETURN_IF_ERROR(ExpireDeadNeighbours(store, job, runner));
  return std::unique_ptr<Lease>(new Lease(std::move(conn), dsn, job, std::move(runner), timeout));
}

Lease::Lease(pg::Connection conn, std::string dsn, std::string job, checkpoint::RunnerRecord runner,
             absl::Duration timeout)
    : dsn_(std::move(dsn)),
      job_(std::move(job)),
      runner_(std::move(runner)),
      timeout_(timeout),
      conn_(std::move(conn)) {
  thread_ = std::thread([this] { Heartbeat(); });
}

Lease::~Lease() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
  // Best effort: a runner that cannot say goodbye is forgotten when its lease expires.
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!conn_.has_value()) {
      absl::StatusOr<pg::Connection> reconnected = pg::Connection::Connect(dsn_);
      if (!reconnected.ok()) return;
      conn_.emplace(*std::move(reconnected));
      conn_->TagStatements();
    }
    if (checkpoint::JobStore(*conn_).UnregisterRunner(job_, runner_.id).ok()) return;
    conn_.reset();
  }
}

void Lease::Heartbeat() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    wake_.wait_for(lock, absl::ToChronoNanoseconds(HeartbeatPeriod(timeout_)),
                   [this] { return stop_; });
    if (stop_) break;
    Renew();
  }
}

void Lease::Renew() {
  if (!conn_.has_value()) {
    absl::StatusOr<pg::Connection> reconnected = pg::Connection::Connect(dsn_);
    if (!reconnected.ok()) return;  // the next beat tries again; the lease lapses if none can
    conn_.emplace(*std::move(reconnected));
    conn_->TagStatements();
  }
  absl::StatusOr<bool> renewed =
      checkpoint::JobStore(*conn_).RenewRunner(job_, runner_.id, timeout_);
  if (!renewed.ok()) {
    conn_.reset();
    return;
  }
  if (!*renewed) lost_.store(true);
}

absl::StatusOr<std::string> Lease::OthersLive(const std::string& kind) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!conn_.has_value()) {
    ASSIGN_OR_RETURN(pg::Connection reconnected, pg::Connection::Connect(dsn_));
    conn_.emplace(std::move(reconnected));
    conn_->TagStatements();
  }
  ASSIGN_OR_RETURN(std::vector<checkpoint::RunnerRecord> runners,
                   checkpoint::JobStore(*conn_).ListRunners(job_));
  std::string text;
  for (const checkpoint::RunnerRecord& other : runners) {
    if (!other.live || other.id == runner_.id || (!kind.empty() && other.kind != kind)) continue;
    absl::StrAppend(&text, text.empty() ? "" : "; ", other.kind, " pid ", other.pid, " on host ",
                    other.host, " (last heartbeat ", other.heartbeat_at, ", lease until ",
                    other.lease_until, ")");
  }
  return text;
}

}  // namespace pgbackfill::exec::internal

namespace pgbackfill::exec {

bool RunnerProcessGone(const checkpoint::RunnerRecord& runner) {
  // The id ends with the pid namespace (NewRunnerId): pids of two containers that share a host
  // name are not comparable.
  if (runner.pid <= 0 || runner.host != internal::HostName() ||
      !absl::EndsWith(runner.id, absl::StrCat("@", internal::PidNamespace()))) {
    return false;
  }
  return kill(runner.pid, 0) != 0 && errno == ESRCH;
}

}  // namespace pgbackfill::exec
