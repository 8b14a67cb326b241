// What a running command's /metrics shows, folded from the engine's events (events/events.h) and
// nothing else: counters add up the events of one kind (batch, retry, reconnect, vacuum), gauges
// keep the last reading of progress, throttle, concurrency and phase events. Labels come only
// from the job's name, signal names and fixed reason names, never from free text, so no DSN or
// password can reach a metric. README.md ("Metrics") lists every metric.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pgbackfill/events/events.h"
#include "pgbackfill/metrics/exposition.h"

namespace pgbackfill::metrics {

// The upper bounds of pgbackfill_batch_duration_seconds: batches aim at batch.target (200 ms by
// default), a lock wait ends at lock_timeout, a statement at statement_timeout (30 s).
std::vector<double> BatchDurationBuckets();

// The `reason` label of a retry: the condition name of its SQLSTATE (serialization_failure,
// deadlock_detected, lock_not_available, query_canceled, insufficient_resources for class 53),
// or "other".
std::string RetryReason(std::string_view sqlstate);

// The `reason` label of a hold, from the start of the hold's text (throttle/governor.h writes
// each reason beginning with the signal it names): paused, resuming, stale_samples, baseline,
// application, replica, replication_slot, lock_waiters, wal_rate, canary, query, command,
// autovacuum, archiver, throttle; anything else "other".
std::string HoldReason(std::string_view reason);

// The fold. Pure; not thread-safe (MetricsSink below is).
class Registry {
 public:
  explicit Registry(std::string job);

  void Fold(const events::Event& event);
  // The text exposition of everything folded so far.
  std::string Render() const;

 private:
  struct Signal {
    double value = 0;
    double limit = 0;
    std::optional<double> baseline;
  };
  struct Outcome {
    std::string outcome;
    int exit_code = 0;
  };

  void FoldEach(const events::JobStarted& e);
  void FoldEach(const events::Progress& e);
  void FoldEach(const events::Batch& e);
  void FoldEach(const events::Retry& e);
  void FoldEach(const events::Reconnect& e);
  void FoldEach(const events::RangeSplit& e);
  void FoldEach(const events::Throttle& e);
  void FoldEach(const events::Concurrency& e);
  void FoldEach(const events::Settings& e);
  void FoldEach(const events::Vacuum& e);
  void FoldEach(const events::PhaseStarted& e);
  void FoldEach(const events::JobFinished& e);
  template <typename Other>
  void FoldEach(const Other&) {}

  Labels JobLabels() const;
  void RenderCounters(ExpositionWriter& out) const;
  void RenderProgress(ExpositionWriter& out) const;
  void RenderThrottle(ExpositionWriter& out) const;

  std::string job_;
  // Counters, this process.
  int64_t rows_ = 0;
  int64_t batches_ = 0;
  std::map<std::string, int64_t> retries_;  // by reason
  int64_t reconnects_ = 0;
  int64_t range_splits_ = 0;
  int64_t vacuums_ = 0;
  double vacuum_seconds_ = 0;
  Histogram batch_duration_{BatchDurationBuckets()};
  // Gauges, the last reading.
  std::optional<std::string> phase_;
  int64_t rows_done_ = 0;  // the job's, over all runs
  int64_t estimated_rows_ = 0;
  int64_t rows_per_second_ = 0;
  int ranges_done_ = 0;
  int ranges_total_ = 0;
  int active_workers_ = 0;
  int max_workers_ = 0;
  std::optional<int64_t> pace_;
  std::optional<std::string> held_;  // the hold's reason label; nullopt while running
  // By (signal, object): the application signals (no object) and the veto signals' readings.
  std::map<std::pair<std::string, std::string>, Signal> signals_;
  std::optional<Outcome> finished_;
};

// The Registry behind a mutex: the engine emits on its thread, the HTTP server renders on its own.
class MetricsSink : public events::EventSink {
 public:
  explicit MetricsSink(std::string job) : registry_(std::move(job)) {}

  void Emit(const events::Event& event) override;
  std::string Render() const;

 private:
  mutable std::mutex mutex_;
  Registry registry_;
};

}  // namespace pgbackfill::metrics
