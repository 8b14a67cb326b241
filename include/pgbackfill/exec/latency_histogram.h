// Batch latencies of a whole run in constant memory: a histogram with logarithmic buckets (each
// 5% wider than the one before, from 100 µs to about an hour, and one for anything longer), so a run of a million batches
// costs the same few kilobytes as one of ten, and a percentile is within 5% of the true value.
// Pure; not thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>

#include "absl/time/time.h"

namespace pgbackfill::exec {

class LatencyHistogram {
 public:
  static constexpr double kGrowth = 1.05;
  static constexpr int kBuckets = 360;  // 100 µs * 1.05^358 ≈ 1.1 hours

  void Add(absl::Duration latency);

  int64_t count() const { return count_; }
  absl::Duration max() const { return max_; }
  // The nearest-rank percentile (fraction in (0, 1]): the upper edge of the bucket holding the
  // ceil(fraction * count)-th smallest latency, never above the largest seen. nullopt while empty.
  std::optional<absl::Duration> Percentile(double fraction) const;

 private:
  static int BucketOf(absl::Duration latency);
  static absl::Duration UpperEdge(int bucket);

  std::array<int64_t, kBuckets> counts_{};
  int64_t count_ = 0;
  absl::Duration max_ = absl::ZeroDuration();
};

}  // namespace pgbackfill::exec
