// Planning the ranges of a job against the database: reads key bounds or a key sample through a
// blocking pg::Connection and splits with ranges/split.h. Read-only.
//
// Every identifier is quoted, every function and operator named with pg_catalog., and every value
// (sample size, percentage) travels as a bind parameter, so neither a hostile name nor the
// session's search_path changes what runs.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "pgbackfill/catalog/catalog.h"
#include "pgbackfill/pg/connection.h"
#include "pgbackfill/ranges/key_range.h"

namespace pgbackfill::ranges {

// Samples per planned range: quantiles of ~50 samples per range keep ranges within a few percent
// of each other in row count while the sample stays small (~200k keys to sort at 4096 ranges).
inline constexpr int kSamplesPerRange = 50;
// Below this many estimated rows the sample is a full ordered scan (every n-th key), exact and
// cheap; TABLESAMPLE on a small table reads few pages and gives lumpy quantiles.
inline constexpr int64_t kFullScanMaxRows = 100'000;
// TABLESAMPLE SYSTEM samples whole pages, and keys that follow the physical order (a composite
// key led by a tenant that was loaded tenant by tenant) make all rows of a page neighbours. The
// percentage is raised so that at least this many pages per range are expected.
inline constexpr int kSampledPagesPerRange = 4;

// The ranges of a job over `table` walked by `key` with `workers` workers
// (RangeCount(estimated_rows, workers) of them, fewer when the keys do not allow that many).
//   - A single int2/int4/int8 key: `SELECT min(k), max(k)` (two index probes), then
//     SplitIntegerRange; an empty table gives one open range.
//   - Any other key: a sorted sample of the key, `TABLESAMPLE SYSTEM (pct)` sized for
//     count * kSamplesPerRange keys (and kSampledPagesPerRange pages per range); a full ordered
//     scan keeping every n-th key (`row_number()`) instead when the table is estimated below
//     kFullScanMaxRows rows or the sample came back with fewer than 2 * count keys; then
//     SplitAtSamples.
// `conn` is used only for the duration of the call. Server errors come back unchanged (their
// SQLSTATE payload intact for pg::Classify).
absl::StatusOr<std::vector<KeyRange>> PlanRanges(pg::Connection& conn, const catalog::Table& table,
                                                 const catalog::Key& key, int64_t estimated_rows,
                                                 int workers);

}  // namespace pgbackfill::ranges
