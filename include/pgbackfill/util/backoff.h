// Delays between retries of a batch (or DDL step) that failed with a retryable error: lock
// timeout, deadlock, serialization failure, statement timeout, connection loss.
//
// Exponential with "full jitter" above a floor: attempt n (0-based) waits a uniformly random
// duration in [base, min(max, base * 2^(n+1))].
//   - Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter") spreads workers that
//     failed together, typically queued on the same lock, over the whole window, so their retries
//     do not collide again; it does the least total work of the schemes compared there.
//   - The floor of `base` keeps a retry from re-queuing on the lock at once: every lock-timeout
//     retry waits in the lock queue, in front of application queries, for up to lock_timeout.
//   - Unlike "decorrelated" jitter (a random walk over the previous delay), the window is a
//     function of the attempt number alone, so the bound of every delay is easy to state.
// Deterministic for a given seed (tests, reproducible benchmarks). Not thread-safe: one per worker.
#pragma once

#include <cstdint>
#include <random>

#include "absl/time/time.h"

namespace pgbackfill {

class Backoff {
 public:
  // A seed from std::random_device, for the default constructor.
  static uint64_t RandomSeed();

  // base <= 0 counts as 1 ms, max < base as base.
  explicit Backoff(absl::Duration base = absl::Milliseconds(50),
                   absl::Duration max = absl::Seconds(10), uint64_t seed = RandomSeed());

  // The delay before the next retry; counts one attempt.
  absl::Duration Next();
  // After a success: the next failure starts again from the smallest window.
  void Reset() { attempts_ = 0; }
  // Delays handed out since construction or the last Reset().
  int attempts() const { return attempts_; }
  // The upper end of the window the next Next() draws from.
  absl::Duration Ceiling() const;

 private:
  absl::Duration base_;
  absl::Duration max_;
  int attempts_ = 0;
  std::mt19937_64 random_;
};

}  // namespace pgbackfill
