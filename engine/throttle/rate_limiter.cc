#include <algorithm>

#include "pgbackfill/throttle/governor.h"

namespace pgbackfill::throttle {

RateLimiter::RateLimiter(double rows_per_second, absl::Duration burst)
    : rate_(std::max(rows_per_second, 0.0)),
      burst_(std::max(burst, absl::ZeroDuration())),
      tokens_(rate_ * absl::ToDoubleSeconds(burst_)) {}

void RateLimiter::Refill(absl::Time now) {
  if (last_.has_value() && now > *last_) {
    const double capacity = rate_ * absl::ToDoubleSeconds(burst_);
    tokens_ = std::min(capacity, tokens_ + rate_ * absl::ToDoubleSeconds(now - *last_));
  }
  // A clock that steps back neither refills nor moves the reference backwards.
  if (!last_.has_value() || now > *last_) last_ = now;
}

absl::Duration RateLimiter::Acquire(int64_t rows, absl::Time now) {
  if (rate_ <= 0) return absl::ZeroDuration();
  Refill(now);
  tokens_ -= static_cast<double>(std::max<int64_t>(rows, 0));
  if (tokens_ >= 0) return absl::ZeroDuration();
  // The debt is paid back at `rate_`; the refill reference stays at `now`.
  return absl::Seconds(-tokens_ / rate_) + (*last_ - now);
}

void RateLimiter::SetRate(double rows_per_second, absl::Time now) {
  const double rate = std::max(rows_per_second, 0.0);
  if (rate_ <= 0) {
    // Coming from unlimited: nothing was counted, start with a full bucket.
    rate_ = rate;
    tokens_ = rate_ * absl::ToDoubleSeconds(burst_);
    last_ = now;
    return;
  }
  Refill(now);
  rate_ = rate;
  tokens_ = std::min(tokens_, rate_ * absl::ToDoubleSeconds(burst_));
}

}  // namespace pgbackfill::throttle
