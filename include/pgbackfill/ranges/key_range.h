// The unit of parallel work: a contiguous slice of the key space that one worker walks in
// batches. Bounds use the same convention as batch::BuildUpdateBatch: lower exclusive, upper
// inclusive, and an absent bound is open, so the first and last ranges of a job also cover keys
// inserted below the smallest or above the largest key after planning.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace pgbackfill::ranges {

// A key value: one text per key column, in key order, as PostgreSQL prints it; cast back with the
// column type (the job store keeps it as text[]).
using KeyValue = std::vector<std::string>;

struct KeyRange {
  int id = 0;  // 1-based, in key order as planned; a split at run time takes the next free id
  std::optional<KeyValue> lower;  // exclusive; nullopt = before the first key (open)
  std::optional<KeyValue> upper;  // inclusive; nullopt = after the last key (open)

  bool operator==(const KeyRange&) const = default;
};

}  // namespace pgbackfill::ranges
