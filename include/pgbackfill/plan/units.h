// Values with units as plan files and live `pgbackfill set` commands write them. Messages say
// what is wrong with the value only; callers prefix the file, line and key.
#pragma once

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace pgbackfill::plan {

// A non-negative, finite duration: "200ms", "5s", "1m", "1h30m", "1.5s" or a bare "0"
// (absl::ParseDuration syntax). A bare number other than 0 is refused: "5" is ambiguous.
absl::StatusOr<absl::Duration> ParseDurationValue(std::string_view text);

// A non-negative byte count: "1048576", or with PostgreSQL's memory units "64kB", "16MB",
// "1GB", "1TB" (multiples of 1024, as in postgresql.conf).
absl::StatusOr<int64_t> ParseByteSize(std::string_view text);

// A throttle signal's unit, as its limits are written: a duration ("50ms", in seconds), a plain
// number of sessions ("8"), or a share of the time ("10%" or 0.1).
enum class LimitUnit { kSeconds, kSessions, kShare };

// A throttle limit (plan.h `Limit`): "2x", "1.25x + 2ms", "1.5x + 1", "1.25x + 5%", an absolute
// value, or "0" / "off" (not checked). A share is at most 100%.
struct Limit;
absl::StatusOr<Limit> ParseLimit(std::string_view text, LimitUnit unit);
// Limits in `unit` as examples, for messages: "2x, 1.25x + 2ms or 50ms".
std::string_view LimitExample(LimitUnit unit);

}  // namespace pgbackfill::plan
