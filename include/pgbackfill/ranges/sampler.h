// Planning the ranges of a job against the database: reads key bounds or a key sample through a
// blocking pg::Connection and splits with ranges/split.h. Read-only.
//
// Every identifier is quoted, every function and operator named with pg_catalog., and every value
// (sample size, percentage) travels as a bind parameter, so neither a hostile name nor the
// session's search_path changes what runs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
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

// Splitting at run time (split.h): the query that finds where to split what a range has left,
// the keys after `start` (its checkpoint or lower bound; absent when both are open) up to its
// upper bound (absent when open). Parameters: the start's values when has_start, the upper
// bound's when has_upper, then for a sampled key the sample percentage (SplitSamplePercent).
//   - A single integer key: min and max of the key in the remainder, two index descents.
//   - Any other key: the remainder's keys in `TABLESAMPLE SYSTEM (pct)`, sorted, strictly below
//     the upper bound (its median is the split point, which must leave the new range a key).
// Neither reads the table: the plan is two index probes, or pct of its pages.
std::string SplitProbeSql(const catalog::Table& table, const catalog::Key& key, bool has_start,
                          bool has_upper);
// Keys a split's sample expects from the whole table: a range holding a hundredth of it still
// gets ~100 of them.
inline constexpr int64_t kSplitSampleKeys = 10'000;
// TABLESAMPLE SYSTEM percentage for kSplitSampleKeys of a table of `estimated_rows`, at most 100.
double SplitSamplePercent(int64_t estimated_rows);

// Where a split goes and how many rows the remainder holds, by estimate.
struct SplitChoice {
  KeyValue point;
  int64_t estimated_rows = 0;
};
// The answer of SplitProbeSql read into a split point: nullopt when the remainder has fewer than
// two keys (integer) or none in the sample.
absl::StatusOr<std::optional<SplitChoice>> ReadSplitProbe(const pg::Result& result,
                                                          const catalog::Key& key, double percent);

}  // namespace pgbackfill::ranges
