#include "pgbackfill/exec/latency_histogram.h"

#include <algorithm>
#include <cmath>

namespace pgbackfill::exec {
namespace {

constexpr double kFirstEdgeSeconds = 100e-6;  // bucket 0 holds everything up to 100 µs

}  // namespace

int LatencyHistogram::BucketOf(absl::Duration latency) {
  const double seconds = absl::ToDoubleSeconds(latency);
  if (!(seconds > kFirstEdgeSeconds)) return 0;
  // The epsilon keeps a latency exactly on an edge in the bucket it closes: log() of an exact
  // power can come out a hair above the integer, and ceil() would push it one bucket up.
  const double index =
      std::ceil(std::log(seconds / kFirstEdgeSeconds) / std::log(kGrowth) - 1e-9);
  return static_cast<int>(std::min(index, static_cast<double>(kBuckets - 1)));
}

absl::Duration LatencyHistogram::UpperEdge(int bucket) {
  return absl::Seconds(kFirstEdgeSeconds * std::pow(kGrowth, bucket));
}

void LatencyHistogram::Add(absl::Duration latency) {
  latency = std::max(latency, absl::ZeroDuration());
  ++counts_[static_cast<size_t>(BucketOf(latency))];
  ++count_;
  max_ = std::max(max_, latency);
}

std::optional<absl::Duration> LatencyHistogram::Percentile(double fraction) const {
  if (count_ == 0) return std::nullopt;
  fraction = std::clamp(fraction, 0.0, 1.0);
  const auto rank = std::max<int64_t>(
      1, static_cast<int64_t>(std::ceil(fraction * static_cast<double>(count_))));
  int64_t seen = 0;
  for (int bucket = 0; bucket < kBuckets; ++bucket) {
    seen += counts_[static_cast<size_t>(bucket)];
    // The last bucket has no upper edge: whatever landed there reports as the largest seen.
    if (seen >= rank) return bucket == kBuckets - 1 ? max_ : std::min(UpperEdge(bucket), max_);
  }
  return max_;
}

}  // namespace pgbackfill::exec
