#include "pgbackfill/util/backoff.h"

#include <algorithm>
#include <limits>

namespace pgbackfill {
namespace {

// 2^62 * base overflows any Duration; the window has long been capped by `max` before that.
constexpr int kMaxShift = 62;

}  // namespace

uint64_t Backoff::RandomSeed() {
  std::random_device device;
  return (uint64_t{device()} << 32) ^ device();
}

Backoff::Backoff(absl::Duration base, absl::Duration max, uint64_t seed)
    : base_(base > absl::ZeroDuration() ? base : absl::Milliseconds(1)),
      max_(std::max(max, base_)),
      random_(seed) {}

absl::Duration Backoff::Ceiling() const {
  const int shift = std::min(attempts_, kMaxShift - 1) + 1;
  // Duration * int64 saturates to InfiniteDuration instead of overflowing.
  return std::min(max_, base_ * (int64_t{1} << shift));
}

absl::Duration Backoff::Next() {
  const int64_t low = absl::ToInt64Nanoseconds(base_);
  const int64_t high = absl::ToInt64Nanoseconds(Ceiling());
  std::uniform_int_distribution<int64_t> delay(low, std::max(low, high));
  if (attempts_ < std::numeric_limits<int>::max()) ++attempts_;
  return absl::Nanoseconds(delay(random_));
}

}  // namespace pgbackfill
