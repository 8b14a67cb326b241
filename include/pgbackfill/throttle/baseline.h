// A signal's normal level: the median of the readings taken while the backfill did not run (the
// baseline window before the first batch, and the readings of a hold once it has lasted long
// enough for our own work to have drained). Relative limits (`1.25x + 2ms`) are taken of it. Pure.
#pragma once

#include <deque>
#include <optional>

namespace pgbackfill::throttle {

class Baseline {
 public:
  // The median is over the last `window` readings.
  explicit Baseline(int window = 5) : window_(window < 1 ? 1 : window) {}

  void Add(double reading);
  // The median of the kept readings; nullopt before the first.
  std::optional<double> Level() const;
  int count() const { return static_cast<int>(readings_.size()); }
  // Forgets every reading: the level is measured anew.
  void Clear() { readings_.clear(); }

 private:
  int window_;
  std::deque<double> readings_;
};

}  // namespace pgbackfill::throttle
