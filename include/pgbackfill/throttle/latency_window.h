// The canary's latency reading: a percentile over the last few timings rather than the last one
// alone, so that a single slow round trip (a scheduling hiccup on our side) does not pause the
// backfill, while a slowdown that persists shows within a few intervals. Pure; not thread-safe.
#pragma once

#include <cstddef>
#include <deque>
#include <optional>

#include "absl/time/time.h"

namespace pgbackfill::throttle {

class LatencyWindow {
 public:
  static constexpr size_t kDefaultSize = 5;

  // Keeps the last `size` timings (at least 1).
  explicit LatencyWindow(size_t size = kDefaultSize);

  void Add(absl::Duration latency);
  void Clear() { timings_.clear(); }

  // The nearest-rank percentile of the kept timings: the smallest timing t such that at least
  // `fraction` of them are <= t, i.e. the ceil(fraction * n)-th smallest (fraction in (0, 1],
  // clamped). nullopt while empty. With the default window of 5, P99 is the largest of the 5.
  std::optional<absl::Duration> Percentile(double fraction) const;
  std::optional<absl::Duration> P99() const { return Percentile(0.99); }

  size_t size() const { return timings_.size(); }
  size_t capacity() const { return capacity_; }

 private:
  size_t capacity_;
  std::deque<absl::Duration> timings_;  // oldest first
};

}  // namespace pgbackfill::throttle
