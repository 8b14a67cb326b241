// Quoting for SQL text we generate. Values should travel as bind parameters; these are for
// identifiers (always) and for the rare literal that cannot be a parameter (DDL, SET).
// Pure functions: they assume standard_conforming_strings=on (the default since 9.1).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace pgbackfill::pg {

// NAMEDATALEN - 1: the server cuts longer identifiers (with a NOTICE) to this many bytes.
inline constexpr size_t kMaxIdentifierBytes = 63;

// "name" with embedded double quotes doubled. Always quotes, so case and reserved words survive.
std::string QuoteIdent(std::string_view name);

// 'text' with embedded single quotes doubled; uses the E'' form (backslashes doubled) when the
// text holds a backslash, as PQescapeLiteral does. Rejects nothing: NUL bytes cannot occur in a
// std::string_view we get from libpq or YAML, and are dropped if present.
std::string QuoteLiteral(std::string_view text);

}  // namespace pgbackfill::pg
