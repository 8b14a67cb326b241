// The key vocabulary every SQL builder shares: a key's columns, which ends of a range are
// bounded, and the key written as a row of columns or of bind parameters. Pure string building.
#pragma once

#include <string>
#include <vector>

namespace pgbackfill::sql {

struct KeyColumn {
  std::string name;
  std::string type;  // format_type() spelling, used for the casts of bound parameters
};

// Which ends of a range are bounded. The first range of a job starts before the smallest key
// and the last one ends after the largest, so rows inserted outside [min, max] after planning are
// still covered.
struct RangeEnds {
  bool has_lower = true;  // batches start after a known key (exclusive)
  bool has_upper = true;  // the range ends at a known key (inclusive)
};

// `("a", "b")`: the key as a row value (a single column stays a plain parenthesised column).
std::string KeyRow(const std::vector<KeyColumn>& key, const std::string& qualifier = "");
// `($1::text, $2::uuid)`: parameters from `first` cast to the key's types.
std::string ParamRow(const std::vector<KeyColumn>& key, int first);

}  // namespace pgbackfill::sql
