#include "pgbackfill/throttle/latency_window.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace pgbackfill::throttle {

LatencyWindow::LatencyWindow(size_t size) : capacity_(std::max<size_t>(size, 1)) {}

void LatencyWindow::Add(absl::Duration latency) {
  timings_.push_back(latency);
  while (timings_.size() > capacity_) timings_.pop_front();
}

std::optional<absl::Duration> LatencyWindow::Percentile(double fraction) const {
  if (timings_.empty()) return std::nullopt;
  // NaN and values <= 0 mean the smallest timing; above 1, the largest.
  if (!(fraction > 0)) fraction = 0;
  fraction = std::min(fraction, 1.0);
  std::vector<absl::Duration> sorted(timings_.begin(), timings_.end());
  std::sort(sorted.begin(), sorted.end());
  const double n = static_cast<double>(sorted.size());
  // Nearest rank: ceil(p * n), 1-based, at least 1. The epsilon keeps a product that should be
  // whole (0.7 * 10) from rounding up to the next rank through floating-point error.
  const auto rank = static_cast<size_t>(std::max(1.0, std::ceil(fraction * n - 1e-9)));
  return sorted[std::min(rank, sorted.size()) - 1];
}

}  // namespace pgbackfill::throttle
