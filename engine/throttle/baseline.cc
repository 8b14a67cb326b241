#include "pgbackfill/throttle/baseline.h"

#include <algorithm>
#include <vector>

namespace pgbackfill::throttle {

void Baseline::Add(double reading) {
  readings_.push_back(reading);
  while (static_cast<int>(readings_.size()) > window_) readings_.pop_front();
}

std::optional<double> Baseline::Level() const {
  if (readings_.empty()) return std::nullopt;
  std::vector<double> sorted(readings_.begin(), readings_.end());
  std::sort(sorted.begin(), sorted.end());
  const size_t n = sorted.size();
  return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

}  // namespace pgbackfill::throttle
