#include "pgbackfill/exec/batch_sizer.h"

#include <algorithm>
#include <cmath>

namespace pgbackfill::exec {
namespace {

// Weight of the newest batch in the rate average.
constexpr double kRateWeight = 0.5;
// Shorter measurements are dominated by the clock's and the network's granularity.
constexpr absl::Duration kMinElapsed = absl::Milliseconds(1);

}  // namespace

BatchSizer::BatchSizer(BatchSizerConfig config) : config_(config) {
  config_.max_growth = std::max(config_.max_growth, 1.0);
  config_.target = std::max(config_.target, kMinElapsed);
  SetLimits(config_.min_rows, config_.max_rows);
  rows_ = Clamp(static_cast<double>(config_.initial_rows));
}

int64_t BatchSizer::Clamp(double rows) const {
  // Clamp in floating point first: a huge rate * target must not overflow the conversion.
  const double clamped = std::clamp(rows, static_cast<double>(config_.min_rows),
                                    static_cast<double>(config_.max_rows));
  return std::clamp(static_cast<int64_t>(std::llround(clamped)), config_.min_rows,
                    config_.max_rows);
}

void BatchSizer::OnSuccess(int64_t rows, absl::Duration elapsed) {
  if (rows <= 0) return;
  const double seconds = absl::ToDoubleSeconds(std::max(elapsed, kMinElapsed));
  const double rate = static_cast<double>(rows) / seconds;
  const double target = absl::ToDoubleSeconds(config_.target);
  if (elapsed > config_.target) {
    rate_ = rate;
    rows_ = Clamp(std::min(static_cast<double>(rows_), rate * target));
    return;
  }
  rate_ = rate_ > 0 ? kRateWeight * rate + (1 - kRateWeight) * rate_ : rate;
  rows_ = Clamp(std::min(rate_ * target, static_cast<double>(rows_) * config_.max_growth));
}

void BatchSizer::OnRetryableFailure() { rows_ = std::max(config_.min_rows, rows_ / 2); }

void BatchSizer::SetTarget(absl::Duration target) {
  config_.target = std::max(target, kMinElapsed);
  if (rate_ > 0) {
    const double ideal = rate_ * absl::ToDoubleSeconds(config_.target);
    rows_ = Clamp(std::min(static_cast<double>(rows_), ideal));
  }
}

void BatchSizer::SetLimits(int64_t min_rows, int64_t max_rows) {
  config_.min_rows = std::max<int64_t>(min_rows, 1);
  config_.max_rows = std::max(max_rows, config_.min_rows);
  rows_ = std::clamp(rows_, config_.min_rows, config_.max_rows);
}

int64_t CapRowsToPace(int64_t rows, int64_t min_rows, double rows_per_second,
                      absl::Duration interval) {
  if (rows_per_second <= 0) return rows;
  const double per_interval = rows_per_second * absl::ToDoubleSeconds(interval);
  const double cap = std::max(static_cast<double>(min_rows), std::ceil(per_interval));
  return static_cast<double>(rows) > cap ? static_cast<int64_t>(cap) : rows;
}

}  // namespace pgbackfill::exec
