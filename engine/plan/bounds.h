// How much a plan file may hold (private to engine/plan): bounds that keep reading any file,
// however large or strange, to a fraction of a second, each refused with a `file:line:` message.
// parse.cc checks the file against them before yaml-cpp builds its nodes.
#pragma once

#include <cstddef>
#include <string_view>

#include "absl/status/status.h"

namespace pgbackfill::plan::internal {

// 1 MiB. 1,600 columns of 500-byte expressions and their DDL fit; a larger file is not a plan
// anyone reviewed (a dump, a log, the wrong file), and all of it would be parsed and stored.
inline constexpr size_t kMaxPlanBytes = size_t{1} << 20;
// Entries of one mapping or list. `set` and `columns` name distinct columns of one table, and
// PostgreSQL's limit on a table's columns (MaxHeapAttributeNumber) is 1,600, so no plan that could
// run has more there; no other mapping or list of a plan comes near.
inline constexpr size_t kMaxEntries = 1600;
// Mappings and lists inside one another; a plan needs three (throttle: replicas: [...]).
inline constexpr size_t kMaxDepth = 16;

// Refuses a plan of more than kMaxPlanBytes; `bytes` is how many were read (reading may stop at
// one more).
absl::Status CheckPlanSize(size_t bytes, std::string_view file);

// Refuses what is not UTF-8 text: NUL and other control characters (tab, CR and LF aside) and
// bytes that are not UTF-8. yaml-cpp would stop at a NUL or guess another encoding from the
// first bytes, and report a binary file as something it is not.
absl::Status CheckPlanText(std::string_view text, std::string_view file);

// Reads the YAML events without building nodes and refuses a second document, nesting deeper than
// kMaxDepth, a mapping or list of more than kMaxEntries entries, and aliases. An alias (*name)
// shares the node its anchor (&name) names, so a few lines make a graph that a walk visits a
// billion times (the "billion laughs"); a plan, with its unique keys and short values, has no use
// for one. Deep flow brackets ([[[...) are found in the text first, so that yaml-cpp never
// tokenizes a megabyte of them. Syntax errors escape as YAML::Exception.
absl::Status CheckPlanShape(std::string_view text, std::string_view file);

}  // namespace pgbackfill::plan::internal
