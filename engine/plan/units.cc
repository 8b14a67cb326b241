#include "pgbackfill/plan/units.h"

#include <limits>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
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

}  // namespace pgbackfill::plan
