// The time source of the throttling code. Decisions read the clock through this seam so that
// tests can step time by hand instead of sleeping (the same reason ninja abstracts its
// CommandRunner).
#pragma once

#include <chrono>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace pgbackfill::throttle {

// Current time. Implementations must be safe to call from any thread.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

// Wall-clock time (absl::Now()).
class SystemClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

// Time that never steps back: steady_clock read as an absl::Time on an arbitrary epoch. For the
// governor's cooldowns and staleness, where a wall-clock step (NTP, a resumed VM) must neither
// freeze a hold nor make samples look fresh. Not for display.
class MonotonicClock final : public Clock {
 public:
  absl::Time Now() const override {
    return absl::UnixEpoch() + absl::FromChrono(std::chrono::steady_clock::now().time_since_epoch());
  }
};

// Time that moves only when told to. For tests; not thread-safe (one test thread).
class FakeClock final : public Clock {
 public:
  // A fixed, arbitrary start, so that tests never depend on the real date.
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000)) : now_(start) {}

  absl::Time Now() const override { return now_; }
  void Advance(absl::Duration d) { now_ += d; }
  void Set(absl::Time t) { now_ = t; }

 private:
  absl::Time now_;
};

}  // namespace pgbackfill::throttle
