// Watches, from a session of its own, how long other sessions wait on locks held by a set of
// backends (pg_locks.waitstart of waiters whose pg_blocking_pids meet that set), polling every
// 20 ms until destroyed. For "no application session waits on us longer than lock_timeout".
#pragma once

#include <atomic>
#include <string>
#include <thread>

namespace pgbackfill::testing {

class LockWaitWatch {
 public:
  // `blockers_sql`: an int[] expression naming the backends whose lock holding is measured, e.g.
  // "ARRAY[4242]" or an ARRAY(SELECT pid FROM pg_stat_activity WHERE ...).
  LockWaitWatch(std::string dsn, std::string blockers_sql);
  LockWaitWatch(const LockWaitWatch&) = delete;
  LockWaitWatch& operator=(const LockWaitWatch&) = delete;
  ~LockWaitWatch();

  // The longest wait seen so far, in seconds.
  double max_wait_seconds() const { return max_wait_seconds_.load(); }

 private:
  std::atomic<bool> done_{false};
  std::atomic<double> max_wait_seconds_{0};
  std::thread thread_;
};

}  // namespace pgbackfill::testing
