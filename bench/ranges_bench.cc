// Micro-benchmarks of range planning (ranges/split.h) and of the checkpoint text[] round trip
// every batch makes (checkpoint/job_store.h). Planning runs once per job, so its numbers matter
// only at the extremes (kMaxRanges, a full int64 key space, a 200k-key sample); the checkpoint
// round trip runs once per batch on the runner's thread.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "pgbackfill/checkpoint/job_store.h"
#include "pgbackfill/ranges/sampler.h"
#include "pgbackfill/ranges/split.h"

namespace pgbackfill {
namespace {

// A 1e9-row table with an integer key and 4 workers: RangeCount gives 500 ranges of 2M keys.
void BM_PlanIntegerKeyBillionRows(benchmark::State& state) {
  constexpr int64_t kRows = 1'000'000'000;
  int64_t ranges = 0;
  for (auto _ : state) {
    const int count = ranges::RangeCount(kRows, 4);
    std::vector<ranges::KeyRange> planned = ranges::SplitIntegerRange(1, kRows, count);
    ranges += static_cast<int64_t>(planned.size());
    benchmark::DoNotOptimize(planned);
  }
  state.SetItemsProcessed(ranges);
  state.SetLabel("items = ranges");
}
BENCHMARK(BM_PlanIntegerKeyBillionRows);

// The widest split there is: kMaxRanges over INT64_MIN..INT64_MAX (128-bit arithmetic).
void BM_SplitFullInt64SpaceMaxRanges(benchmark::State& state) {
  int64_t ranges = 0;
  for (auto _ : state) {
    std::vector<ranges::KeyRange> planned =
        ranges::SplitIntegerRange(std::numeric_limits<int64_t>::min(),
                                  std::numeric_limits<int64_t>::max(), ranges::kMaxRanges);
    ranges += static_cast<int64_t>(planned.size());
    benchmark::DoNotOptimize(planned);
  }
  state.SetItemsProcessed(ranges);
  state.SetLabel("items = ranges");
}
BENCHMARK(BM_SplitFullInt64SpaceMaxRanges);

// A composite (tenant text, id uuid-like) key sampled for `ranges` ranges: kSamplesPerRange
// sorted samples per range, split at quantiles. Items are samples walked.
void BM_SplitCompositeKeyAtSamples(benchmark::State& state) {
  const int count = static_cast<int>(state.range(0));
  const int samples = count * ranges::kSamplesPerRange;
  std::vector<ranges::KeyValue> sample;
  sample.reserve(static_cast<size_t>(samples));
  for (int i = 0; i < samples; ++i) {
    // Zero-padded, so text order is the generation order (the sample arrives sorted).
    sample.push_back({absl::StrFormat("tenant %05d", i / 1000),
                      absl::StrFormat("%08x-0000-4000-8000-%012x", i, i * 7)});
  }
  for (auto _ : state) {
    std::vector<ranges::KeyRange> planned = ranges::SplitAtSamples(sample, count);
    benchmark::DoNotOptimize(planned);
  }
  state.SetItemsProcessed(state.iterations() * samples);
  state.SetLabel("items = samples");
}
BENCHMARK(BM_SplitCompositeKeyAtSamples)->Arg(500)->Arg(ranges::kMaxRanges);

// One batch's checkpoint: the new done_upto comes back as a text[] literal and is parsed, and the
// next batch sends it again as a literal. Integer and composite keys.
void CheckpointRoundTrip(benchmark::State& state, const ranges::KeyValue& key) {
  const std::optional<std::string> literal = checkpoint::TextArrayLiteral(key);
  for (auto _ : state) {
    auto parsed = checkpoint::ParseTextArray(literal);
    if (!parsed.ok()) {
      state.SkipWithError("ParseTextArray failed");
      break;
    }
    std::optional<std::string> again = checkpoint::TextArrayLiteral(*parsed);
    benchmark::DoNotOptimize(again);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel("items = checkpoints");
}

void BM_CheckpointRoundTripIntegerKey(benchmark::State& state) {
  CheckpointRoundTrip(state, {"987654321"});
}
BENCHMARK(BM_CheckpointRoundTripIntegerKey);

void BM_CheckpointRoundTripCompositeKey(benchmark::State& state) {
  CheckpointRoundTrip(state, {"tenant \"north\", eu", "4c7d5c2e-9a7b-4d0e-8f55-0b2b8b0e7a11"});
}
BENCHMARK(BM_CheckpointRoundTripCompositeKey);

}  // namespace
}  // namespace pgbackfill
