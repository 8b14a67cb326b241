// Adaptive batch size: how many rows the next batch of one range should cover so that it takes
// about `target` (the chunk-time rule of pt-online-schema-change and Spirit). Short batches keep
// row locks brief and the statement well inside lock_timeout / statement_timeout; long enough
// batches amortise the round trip and the per-batch checkpoint.
//
// Pure and clock-free: the caller measures each batch and reports it. Not thread-safe; one sizer
// per worker (or per range), used from one coroutine at a time.
#pragma once

#include <cstdint>

#include "absl/time/time.h"

namespace pgbackfill::exec {

struct BatchSizerConfig {
  int64_t initial_rows = 5000;
  int64_t min_rows = 100;
  int64_t max_rows = 100000;
  absl::Duration target = absl::Milliseconds(200);
  double max_growth = 1.5;  // the next batch is at most this many times the current size
};

// The rule, per reported batch:
//   - The batch's rate is rows / elapsed; elapsed below 1 ms counts as 1 ms, and growth is capped
//     at max_growth x per batch anyway, so a batch that took ~0 s never causes a jump.
//   - Batch within target: the rate joins an exponentially weighted average (weight 0.5, so about
//     the last three batches count), and the next size is average * target, at most max_growth x
//     the current size. Growth is smoothed and stepwise so that one lucky batch (cached pages, no
//     contention) does not produce a batch that holds locks far too long.
//   - Batch over target (any overrun): the average is replaced by this batch's rate and the next
//     size drops at once to rate * target, never above the current size. No smoothing on the way
//     down: an overrun is time application queries may have spent waiting on our row locks, and
//     the overrun ratio itself says how much smaller the next batch must be.
//   - A batch of 0 rows (an empty tail of a range) carries no rate and changes nothing.
// Every size is clamped to [min_rows, max_rows].
class BatchSizer {
 public:
  // Invalid settings are normalised rather than rejected (the plan parser validates what users
  // write): min_rows >= 1, max_rows >= min_rows, max_growth >= 1, target >= 1 ms.
  explicit BatchSizer(BatchSizerConfig config);

  // Rows for the next batch.
  int64_t rows() const { return rows_; }
  // The smoothed rate in rows/s; 0 before the first measured batch.
  double rows_per_second() const { return rate_; }
  absl::Duration target() const { return config_.target; }

  // `rows` actually covered by the committed batch, `elapsed` its wall time as the worker saw it.
  void OnSuccess(int64_t rows, absl::Duration elapsed);
  // Lock timeout, deadlock, serialization failure or statement timeout: halve at once (not below
  // min_rows). A smaller batch holds fewer row locks for less time, which is what contention
  // needs; the next successes grow it back at most max_growth x per batch.
  void OnRetryableFailure();
  // Live changes (`pgbackfill set`). A lower target shrinks the next batch at once from the
  // measured rate; a higher one is approached through the usual stepwise growth.
  void SetTarget(absl::Duration target);
  void SetLimits(int64_t min_rows, int64_t max_rows);

 private:
  int64_t Clamp(double rows) const;

  BatchSizerConfig config_;
  int64_t rows_ = 0;
  double rate_ = 0;  // rows/s, 0 = not measured yet
};

// A paced job's batch: at most one `interval` of the pace `rows_per_second` (never below
// `min_rows`), so that its writes come as many small bursts rather than one large one the
// application's tail latency feels; `rows` itself when not paced (rate <= 0).
int64_t CapRowsToPace(int64_t rows, int64_t min_rows, double rows_per_second,
                      absl::Duration interval);

}  // namespace pgbackfill::exec
