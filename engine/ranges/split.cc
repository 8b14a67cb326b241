#include "pgbackfill/ranges/split.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/numeric/int128.h"

namespace pgbackfill::ranges {
namespace {

// Turns strictly increasing interior boundaries into the ranges between them.
std::vector<KeyRange> RangesBetween(std::vector<KeyValue> boundaries) {
  std::vector<KeyRange> ranges;
  ranges.reserve(boundaries.size() + 1);
  std::optional<KeyValue> lower;
  for (KeyValue& boundary : boundaries) {
    KeyRange range;
    range.id = static_cast<int>(ranges.size()) + 1;
    range.lower = std::move(lower);
    range.upper = boundary;
    lower = std::move(boundary);
    ranges.push_back(std::move(range));
  }
  KeyRange last;
  last.id = static_cast<int>(ranges.size()) + 1;
  last.lower = std::move(lower);
  ranges.push_back(std::move(last));
  return ranges;
}

}  // namespace

int RangeCount(int64_t estimated_rows, int workers) {
  const int64_t w = std::clamp<int64_t>(workers, 1, kMaxRanges);
  if (estimated_rows < kTinyTableRows) return static_cast<int>(w);
  const int64_t by_size = (estimated_rows - 1) / kRowsPerRange + 1;  // ceil, rows >= 1 here
  const int64_t count = std::max(w * kRangesPerWorker, by_size);
  return static_cast<int>(std::min<int64_t>(count, kMaxRanges));
}

std::vector<KeyRange> SplitIntegerRange(int64_t min_key, int64_t max_key, int count) {
  if (min_key > max_key) return RangesBetween({});
  // The number of key values can be 2^64 (INT64_MIN..INT64_MAX), and N * i up to 2^76: both fit
  // 128 bits, and every boundary lies in [min, max - 1], so it fits int64 again.
  const absl::int128 values = absl::int128(max_key) - min_key + 1;
  const absl::int128 n = std::clamp<absl::int128>(count, 1, values);
  std::vector<KeyValue> boundaries;
  boundaries.reserve(static_cast<size_t>(n - 1));
  for (absl::int128 i = 1; i < n; ++i) {
    const absl::int128 boundary = min_key + values * i / n - 1;
    boundaries.push_back({std::to_string(static_cast<int64_t>(boundary))});
  }
  return RangesBetween(std::move(boundaries));
}

std::vector<KeyRange> SplitAtSamples(const std::vector<KeyValue>& sorted_sample, int count) {
  const size_t samples = sorted_sample.size();
  if (samples == 0 || count <= 1) return RangesBetween({});
  const auto n = static_cast<size_t>(count);
  std::vector<KeyValue> boundaries;
  for (size_t i = 1; i < n; ++i) {
    // Rank ceil(i * S / n) (1-based), so range i holds samples up to that rank: S / n each.
    const size_t index = (i * samples + n - 1) / n - 1;
    const KeyValue& boundary = sorted_sample[index];
    // Equal boundaries would make an empty range (b, b]; the sample is sorted, so duplicates
    // are always neighbours.
    if (!boundaries.empty() && boundaries.back() == boundary) continue;
    boundaries.push_back(boundary);
  }
  return RangesBetween(std::move(boundaries));
}

bool WorthSplitting(int64_t estimated_rows, int64_t batch_rows) {
  return estimated_rows >= kMinSplitBatches * std::max<int64_t>(batch_rows, 1);
}

std::optional<IntegerSplit> SplitIntegerRemainder(int64_t min_key, int64_t max_key) {
  if (min_key >= max_key) return std::nullopt;
  // In 128 bits: max - min can be 2^64 - 1.
  const absl::int128 span = absl::int128(max_key) - min_key;
  const absl::int128 rows = std::min<absl::int128>(span + 1, INT64_MAX);
  return IntegerSplit{.point = static_cast<int64_t>(min_key + span / 2),
                      .estimated_rows = static_cast<int64_t>(rows)};
}

std::optional<KeyValue> SplitSampledRemainder(const std::vector<KeyValue>& sorted_sample) {
  if (sorted_sample.empty()) return std::nullopt;
  return sorted_sample[(sorted_sample.size() - 1) / 2];
}

}  // namespace pgbackfill::ranges
