// WAL positions (pg_lsn) as numbers, so that lag in bytes between readings taken on different
// servers (the primary's current position, a standby's replay position) is a subtraction on the
// client. Pure.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace pgbackfill::pg {

// Parses pg_lsn's text form "X/Y" (two hex numbers of at most 8 digits each, as PostgreSQL
// prints them, e.g. "16/B374D848") into (X << 32) | Y. InvalidArgument otherwise.
absl::StatusOr<uint64_t> ParseLsn(std::string_view text);

// The inverse, in PostgreSQL's spelling (upper-case hex, no leading zeros): "16/B374D848".
std::string FormatLsn(uint64_t lsn);

}  // namespace pgbackfill::pg
