// Splitting a key space into ranges. Pure: the boundaries come in (key bounds or a sorted key
// sample read by ranges/sampler.h), the ranges go out.
//
// Every function here returns a partition of the whole key space: ids 1..n in key order, the
// first lower bound and the last upper bound open, and each upper bound equal to the next lower
// bound, so every key, including one inserted after planning, falls in exactly one range
// ((b[i-1], b[i]]). Balance depends on the input; correctness never does.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "pgbackfill/ranges/key_range.h"

namespace pgbackfill::ranges {

// Rows per range a large table aims for: ~400 batches of the default 5000 rows, short enough
// that the last range to finish does not keep the job waiting long, long enough that per-range
// bookkeeping (one job-store row, one planning boundary) stays negligible.
inline constexpr int64_t kRowsPerRange = 2'000'000;
// More ranges than workers, so that a worker that finishes early (or whose range is cheap) takes
// another range instead of idling while one slow range holds the job up.
inline constexpr int kRangesPerWorker = 4;
// Upper bound on ranges: one job-store row each, and one boundary each to sample.
inline constexpr int kMaxRanges = 4096;
// Below this many rows a table is walked in a handful of batches anyway: one range per worker.
inline constexpr int64_t kTinyTableRows = 10'000;

// How many ranges to plan for a table of `estimated_rows` rows walked by `workers` workers:
//   tiny table (< kTinyTableRows): `workers` ranges (no point in more, each is a few batches);
//   otherwise max(workers * kRangesPerWorker, ceil(rows / kRowsPerRange)).
// Always in [1, kMaxRanges]; workers < 1 counts as 1. The estimate only affects balance: the last
// range is open-ended, so a stale estimate never loses rows.
int RangeCount(int64_t estimated_rows, int workers);

// Splits an integer key space whose present keys lie in [min_key, max_key] into `count` ranges
// holding an equal share of the key values (b[i] = min + floor(N * i / count) - 1 with
// N = max - min + 1, exact over the whole int64 domain). Gaps in the keys are ignored: the
// arithmetic split is about values, not rows. `count` is reduced to N when the span holds fewer
// values, so boundaries are strictly increasing; count < 1 counts as 1; min > max (no keys) gives
// one open range.
std::vector<KeyRange> SplitIntegerRange(int64_t min_key, int64_t max_key, int count);

// Splits at evenly spaced quantiles of `sorted_sample` (sorted in the key's SQL order, as
// returned by `ORDER BY k1, k2, ...`): boundary i (1 <= i < count) is the sample element at rank
// ceil(i * S / count), so with S samples each range gets S / count of them. Equal consecutive
// boundaries collapse (a sample smaller than `count`, or duplicates in it), so fewer ranges may
// come back. An empty sample or count <= 1 gives one open range.
std::vector<KeyRange> SplitAtSamples(const std::vector<KeyValue>& sorted_sample, int count);

// Splitting at run time: a worker left without a range takes the upper part of the largest
// unfinished one. The donor keeps (lower, point], the new range gets (point, upper] with the
// donor's old upper (open stays open: the new, last piece still takes keys inserted past the
// end), and point lies strictly inside what the donor has left, so no key already done moves.

// A range is split only when its remainder is estimated at this many batches or more: each part
// then gets at least two, and a smaller remainder ends within a few batches anyway, sooner than
// the split (its transaction, and the one batch of the donor it turns stale) would pay back.
inline constexpr int64_t kMinSplitBatches = 4;

// Whether a remainder of `estimated_rows` rows is worth splitting for batches of `batch_rows`.
bool WorthSplitting(int64_t estimated_rows, int64_t batch_rows);

// Where to split a single integer key's remainder whose present keys lie in [min_key, max_key]
// (read after the checkpoint and up to the upper bound): the arithmetic midpoint, rounded down,
// so min_key <= point < max_key and each part holds at least one present key. Measured between
// present keys, not the range's bounds: a range (0, 4e18] holding 3M dense ids splits at 1.5M.
// nullopt when fewer than two distinct keys are there. `estimated_rows` is max - min + 1 (dense),
// an upper bound on the rows.
struct IntegerSplit {
  int64_t point = 0;
  int64_t estimated_rows = 0;
};
std::optional<IntegerSplit> SplitIntegerRemainder(int64_t min_key, int64_t max_key);

// Where to split a remainder from a sorted sample of its keys (strictly after the checkpoint and
// strictly below the upper bound): the sample's median, the lower one of an even count. nullopt
// for an empty sample.
std::optional<KeyValue> SplitSampledRemainder(const std::vector<KeyValue>& sorted_sample);

}  // namespace pgbackfill::ranges
