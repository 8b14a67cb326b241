// A process's lease on a job (checkpoint/job_store.h: runners), kept by a heartbeat. Private to
// engine/exec: the backfill runner and the phases hold one while they work on a job.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pgbackfill/checkpoint/job_store.h"
#include "pgbackfill/pg/connection.h"

namespace pgbackfill::exec::internal {

// How often the heartbeat renews a lease of `timeout`: several times per timeout, so that one
// slow renewal (a server restart, a lost connection) does not let it lapse.
absl::Duration HeartbeatPeriod(absl::Duration timeout);

// A new runner id: host, pid, 32 random bits and the pid namespace, unique among the job's
// runners ("db1:4242:9f3a0c1e@pid:[4026531836]").
std::string NewRunnerId(const std::string& host, int pid);

// Registers a runner of job `job` and renews its lease every HeartbeatPeriod on a thread and a
// session of its own, so that nothing the process's main thread does (a blocking statement, a
// long DDL step) lets the lease lapse while the process lives. Every statement is one
// transaction of its own: it works through a transaction-pooling pgbouncer. The destructor stops
// the heartbeat and unregisters the runner (its ranges go back at once); after a kill -9 the
// lease simply expires.
//
// Thread-safe: id() and Held() from any thread; the heartbeat's session is the thread's alone.
class Lease {
 public:
  // Connects to `dsn` and registers the runner (the store's schema must be current).
  static absl::StatusOr<std::unique_ptr<Lease>> Take(const std::string& dsn, const std::string& job,
                                                     const std::string& kind,
                                                     absl::Duration timeout);
  ~Lease();
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  const std::string& id() const { return runner_.id; }
  absl::Duration timeout() const { return timeout_; }
  // False once a renewal found the lease expired (the process or its server went silent for
  // longer than the timeout): other runners may have taken its ranges.
  bool Held() const { return !lost_.load(); }
  // The job's other runners whose lease holds, of any kind ("" for every kind), as a text for a
  // message ("run pid 12 on host a (heartbeat 2024-...)"), "" when there are none.
  absl::StatusOr<std::string> OthersLive(const std::string& kind = "");

 private:
  Lease(pg::Connection conn, std::string dsn, std::string job, checkpoint::RunnerRecord runner,
        absl::Duration timeout);
  void Heartbeat();
  // Renews once, reconnecting first when the session was lost.
  void Renew();

  const std::string dsn_;
  const std::string job_;
  const checkpoint::RunnerRecord runner_;
  const absl::Duration timeout_;
  std::mutex mu_;  // guards conn_ between the heartbeat and OthersLive, and stop_
  std::condition_variable wake_;
  bool stop_ = false;
  std::optional<pg::Connection> conn_;
  std::atomic<bool> lost_{false};
  std::thread thread_;
};

}  // namespace pgbackfill::exec::internal
