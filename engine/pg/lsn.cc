#include "pgbackfill/pg/lsn.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::pg {
namespace {

// One half of an LSN: 1 to 8 hex digits. absl::SimpleHexAtoi alone would accept a sign, a "0x"
// prefix and surrounding whitespace, none of which pg_lsn prints.
bool ParseHalf(std::string_view text, uint32_t* out) {
  if (text.empty() || text.size() > 8) return false;
  for (char c : text) {
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex) return false;
  }
  return absl::SimpleHexAtoi(ToAbsl(text), out);
}

}  // namespace

absl::StatusOr<uint64_t> ParseLsn(std::string_view text) {
  const size_t slash = text.find('/');
  uint32_t high = 0;
  uint32_t low = 0;
  if (slash == std::string_view::npos || !ParseHalf(text.substr(0, slash), &high) ||
      !ParseHalf(text.substr(slash + 1), &low)) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a WAL position (pg_lsn X/Y): '", ToAbsl(text), "'"));
  }
  return (uint64_t{high} << 32) | low;
}

std::string FormatLsn(uint64_t lsn) {
  return absl::StrFormat("%X/%X", lsn >> 32, lsn & 0xFFFFFFFFu);
}

}  // namespace pgbackfill::pg
