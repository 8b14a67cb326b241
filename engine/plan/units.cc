#include "pgbackfill/plan/units.h"

#include <cmath>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "pgbackfill/plan/plan.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::plan {

absl::StatusOr<absl::Duration> ParseDurationValue(std::string_view text) {
  absl::Duration value;
  if (!absl::ParseDuration(ToAbsl(text), &value)) {
    double number = 0;
    if (absl::SimpleAtod(ToAbsl(text), &number)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "needs a unit (ms, s, m or h), e.g. %sms or %ss, got \"%s\"", text, text, text));
    }
    return absl::InvalidArgumentError(
        absl::StrFormat("must be a duration such as 200ms, 5s or 1m, got \"%s\"", text));
  }
  if (value < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrFormat("must not be negative, got \"%s\"", text));
  }
  if (value == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrFormat("must be finite, got \"%s\"", text));
  }
  return value;
}

absl::StatusOr<int64_t> ParseByteSize(std::string_view text) {
  struct Unit {
    std::string_view suffix;
    int64_t factor;
  };
  // PostgreSQL's spelling and 1024 multiples, so values can be copied from postgresql.conf or
  // pg_size_pretty() output. Longest suffixes first: "B" would otherwise match "kB".
  static constexpr Unit kUnits[] = {
      {"TB", int64_t{1} << 40},
      {"GB", int64_t{1} << 30},
      {"MB", int64_t{1} << 20},
      {"kB", int64_t{1} << 10},
      {"B", 1},
  };
  std::string_view number = text;
  int64_t factor = 1;
  for (const Unit& unit : kUnits) {
    if (number.size() > unit.suffix.size() && number.ends_with(unit.suffix)) {
      number.remove_suffix(unit.suffix.size());
      number = ToStd(absl::StripTrailingAsciiWhitespace(ToAbsl(number)));
      factor = unit.factor;
      break;
    }
  }
  if (number.starts_with('-')) {
    return absl::InvalidArgumentError(absl::StrFormat("must not be negative, got \"%s\"", text));
  }
  int64_t value = 0;
  if (number.empty() || !absl::ascii_isdigit(static_cast<unsigned char>(number.front())) ||
      !absl::SimpleAtoi(ToAbsl(number), &value)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "must be a byte count such as 1048576, 512kB, 16MB or 1GB, got \"%s\"", text));
  }
  if (value > std::numeric_limits<int64_t>::max() / factor) {
    return absl::InvalidArgumentError(absl::StrFormat("is too large, got \"%s\"", text));
  }
  return value * factor;
}

namespace {

// The absolute part of a limit, in the signal's unit (seconds for durations).
absl::StatusOr<double> LimitValue(std::string_view text, LimitUnit unit) {
  if (unit == LimitUnit::kSeconds) {
    absl::StatusOr<absl::Duration> value = ParseDurationValue(text);
    if (!value.ok()) return value.status();
    return absl::ToDoubleSeconds(*value);
  }
  absl::string_view number = ToAbsl(text);
  const bool percent = unit == LimitUnit::kShare && absl::ConsumeSuffix(&number, "%");
  double value = 0;
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(number), &value) || !std::isfinite(value) ||
      value < 0) {
    return absl::InvalidArgumentError("not a number");
  }
  if (percent) value /= 100;
  if (unit == LimitUnit::kShare && value > 1) {
    return absl::InvalidArgumentError("a share of the time is at most 100%");
  }
  return value;
}

}  // namespace

std::string_view LimitExample(LimitUnit unit) {
  switch (unit) {
    case LimitUnit::kSeconds:
      return "2x, 1.25x + 2ms or 50ms";
    case LimitUnit::kSessions:
      return "2x, 1.5x + 1 or 8";
    case LimitUnit::kShare:
      return "1.25x, 1.25x + 5% or 30%";
  }
  return "";
}

absl::StatusOr<Limit> ParseLimit(std::string_view text, LimitUnit unit) {
  const std::string trimmed(absl::StripAsciiWhitespace(ToAbsl(text)));
  if (trimmed == "off" || trimmed == "0") return Limit{};
  const std::string_view example = LimitExample(unit);
  Limit limit;
  std::string_view rest = trimmed;
  if (const size_t x = rest.find('x'); x != std::string_view::npos) {
    double factor = 0;
    if (!absl::SimpleAtod(ToAbsl(rest.substr(0, x)), &factor) || !std::isfinite(factor) ||
        factor <= 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "must be a limit such as %s (a factor of the baseline before x), got \"%s\"", example,
          text));
    }
    limit.factor = factor;
    rest = ToStd(absl::StripAsciiWhitespace(ToAbsl(rest.substr(x + 1))));
    if (rest.empty()) return limit;
    if (rest.front() != '+') {
      return absl::InvalidArgumentError(absl::StrFormat(
          "must be a limit such as %s (only + may follow the factor), got \"%s\"", example,
          text));
    }
    rest = ToStd(absl::StripAsciiWhitespace(ToAbsl(rest.substr(1))));
  }
  absl::StatusOr<double> offset = LimitValue(rest, unit);
  if (!offset.ok()) {
    return absl::InvalidArgumentError(absl::StrFormat("must be a limit such as %s, got \"%s\"",
                                                      example, text));
  }
  limit.offset = *offset;
  if (!limit.enabled()) return Limit{};
  return limit;
}

}  // namespace pgbackfill::plan
