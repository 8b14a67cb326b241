#include "pgbackfill/metrics/registry.h"

#include <array>
#include <utility>
#include <variant>

#include "absl/strings/match.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::metrics {
namespace {

constexpr std::array<std::pair<std::string_view, std::string_view>, 4> kRetrySqlStates = {{
    {"40001", "serialization_failure"},
    {"40P01", "deadlock_detected"},
    {"55P03", "lock_not_available"},
    {"57014", "query_canceled"},
}};

// Every retry reason, so each has its series (at 0) from the first scrape: rate() and
// increase() need a sample before the first retry.
constexpr std::array<std::string_view, 6> kRetryReasons = {
    "serialization_failure", "deadlock_detected",      "lock_not_available",
    "query_canceled",        "insufficient_resources", "other"};

// Prefixes of the governor's and the runner's hold reasons, most specific first ("replication
// slot" before "replica").
constexpr std::array<std::pair<std::string_view, std::string_view>, 16> kHoldReasons = {{
    {"paused by", "paused"},
    {"resuming after", "resuming"},
    {"no throttle samples", "stale_samples"},
    {"measuring the application", "baseline"},
    {"the application", "application"},
    {"application", "application"},
    {"replication slot", "replication_slot"},
    {"replica", "replica"},
    {"lock waiter", "lock_waiters"},
    {"WAL rate", "wal_rate"},
    {"canary", "canary"},
    {"custom throttle query", "query"},
    {"throttle command", "command"},
    {"autovacuum", "autovacuum"},
    {"archiver", "archiver"},
    {"held by the throttle", "throttle"},
}};

}  // namespace

std::vector<double> BatchDurationBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

std::string RetryReason(std::string_view sqlstate) {
  for (const auto& [code, name] : kRetrySqlStates) {
    if (sqlstate == code) return std::string(name);
  }
  if (sqlstate.size() == 5 && sqlstate.substr(0, 2) == "53") return "insufficient_resources";
  return "other";
}

std::string HoldReason(std::string_view reason) {
  for (const auto& [prefix, name] : kHoldReasons) {
    if (absl::StartsWith(ToAbsl(reason), ToAbsl(prefix))) return std::string(name);
  }
  return "other";
}

Registry::Registry(std::string job) : job_(std::move(job)) {
  for (const std::string_view reason : kRetryReasons) retries_[std::string(reason)] = 0;
}

void Registry::Fold(const events::Event& event) {
  std::visit([this](const auto& e) { FoldEach(e); }, event);
}

void Registry::FoldEach(const events::JobStarted& e) {
  phase_ = "backfill";  // the backfill announces itself by job_started, not phase_started
  estimated_rows_ = e.estimated_rows;
  ranges_total_ = e.ranges_total;
  ranges_done_ = e.ranges_total - e.ranges_pending;
  max_workers_ = e.workers;
  rows_done_ = e.rows_done_before;
}

void Registry::FoldEach(const events::Progress& e) {
  rows_done_ = e.rows_done;
  estimated_rows_ = e.estimated_rows;
  rows_per_second_ = e.rows_per_second;
  ranges_done_ = e.ranges_done;
  ranges_total_ = e.ranges_total;
  active_workers_ = e.workers;
  pace_ = e.pace_rows_per_second;
  if (e.throttle.has_value()) {
    held_ = HoldReason(*e.throttle);
  } else {
    held_.reset();
  }
  signals_.clear();
  for (const events::ThrottleSignal& signal : e.signals) {
    signals_[{signal.name, ""}] =
        Signal{.value = signal.value, .limit = signal.limit, .baseline = signal.baseline};
  }
  for (const events::ThrottleLimit& limit : e.limits) {
    signals_[{limit.name, limit.object.value_or("")}] =
        Signal{.value = limit.value, .limit = limit.limit, .baseline = std::nullopt};
  }
}

void Registry::FoldEach(const events::Batch& e) {
  rows_ += e.rows;
  ++batches_;
  batch_duration_.Observe(e.seconds);
}

void Registry::FoldEach(const events::Retry& e) { ++retries_[RetryReason(e.sqlstate)]; }

void Registry::FoldEach(const events::Reconnect&) { ++reconnects_; }

void Registry::FoldEach(const events::RangeSplit&) { ++range_splits_; }

void Registry::FoldEach(const events::Throttle& e) {
  if (e.state == "held") {
    held_ = HoldReason(e.reason.value_or(""));
  } else {
    held_.reset();
  }
}

void Registry::FoldEach(const events::Concurrency& e) {
  active_workers_ = e.active_workers;
  max_workers_ = e.max_workers;
  pace_ = e.pace_rows_per_second;
}

void Registry::FoldEach(const events::Settings& e) { max_workers_ = e.workers; }

void Registry::FoldEach(const events::Vacuum& e) {
  ++vacuums_;
  vacuum_seconds_ += e.seconds;
}

void Registry::FoldEach(const events::PhaseStarted& e) { phase_ = e.phase; }

void Registry::FoldEach(const events::JobFinished& e) {
  finished_ = Outcome{.outcome = e.outcome, .exit_code = e.exit_code};
  active_workers_ = 0;
  held_.reset();
}

Labels Registry::JobLabels() const { return {{"job", job_}}; }

std::string Registry::Render() const {
  ExpositionWriter out;
  RenderCounters(out);
  RenderProgress(out);
  RenderThrottle(out);
  return out.text();
}

void Registry::RenderCounters(ExpositionWriter& out) const {
  const Labels job = JobLabels();
  out.Family("pgbackfill_rows_total", "counter", "Rows written by this process's batches.");
  out.Sample("pgbackfill_rows_total", job, static_cast<double>(rows_));
  out.Family("pgbackfill_batches_total", "counter", "Batches committed by this process.");
  out.Sample("pgbackfill_batches_total", job, static_cast<double>(batches_));
  out.Family("pgbackfill_retries_total", "counter",
             "Batches retried after a retryable error, by the error's condition.");
  for (const auto& [reason, count] : retries_) {
    Labels labels = job;
    labels.emplace_back("reason", reason);
    out.Sample("pgbackfill_retries_total", labels, static_cast<double>(count));
  }
  out.Family("pgbackfill_reconnects_total", "counter",
             "Batches whose connection was lost; the worker reconnected.");
  out.Sample("pgbackfill_reconnects_total", job, static_cast<double>(reconnects_));
  out.Family("pgbackfill_range_splits_total", "counter",
             "Ranges split at run time by a worker that had none left to take.");
  out.Sample("pgbackfill_range_splits_total", job, static_cast<double>(range_splits_));
  out.Family("pgbackfill_vacuums_total", "counter", "VACUUMs of bloat control that completed.");
  out.Sample("pgbackfill_vacuums_total", job, static_cast<double>(vacuums_));
  out.Family("pgbackfill_vacuum_seconds_total", "counter",
             "Time the completed VACUUMs of bloat control took.");
  out.Sample("pgbackfill_vacuum_seconds_total", job, vacuum_seconds_);
  out.Family("pgbackfill_batch_duration_seconds", "histogram",
             "Round trip of each committed batch's transaction.");
  out.HistogramSamples("pgbackfill_batch_duration_seconds", job, batch_duration_);
}

void Registry::RenderProgress(ExpositionWriter& out) const {
  const Labels job = JobLabels();
  const auto gauge = [&](std::string_view name, std::string_view help, double value) {
    out.Family(name, "gauge", help);
    out.Sample(name, job, value);
  };
  if (phase_.has_value()) {
    out.Family("pgbackfill_phase", "gauge", "The phase running now (1).");
    Labels labels = job;
    labels.emplace_back("phase", *phase_);
    out.Sample("pgbackfill_phase", labels, 1);
  }
  gauge("pgbackfill_job_rows_done", "Rows the job has written over all its runs.",
        static_cast<double>(rows_done_));
  gauge("pgbackfill_estimated_rows", "Rows the job is estimated to write in all.",
        static_cast<double>(estimated_rows_));
  gauge("pgbackfill_rows_per_second", "Rows written per second over the last 10 seconds.",
        static_cast<double>(rows_per_second_));
  gauge("pgbackfill_ranges_done", "Key ranges finished.", ranges_done_);
  gauge("pgbackfill_ranges", "Key ranges of the job.", ranges_total_);
  gauge("pgbackfill_active_workers", "Workers allowed to run batches now (0 while held).",
        active_workers_);
  gauge("pgbackfill_max_workers", "The ceiling of workers (plan or `pgbackfill set`).",
        max_workers_);
  if (finished_.has_value()) {
    out.Family("pgbackfill_job_outcome", "gauge",
               "The command's outcome (1), present once it finished.");
    Labels labels = job;
    labels.emplace_back("outcome", finished_->outcome);
    out.Sample("pgbackfill_job_outcome", labels, 1);
  }
}

void Registry::RenderThrottle(ExpositionWriter& out) const {
  const Labels job = JobLabels();
  out.Family("pgbackfill_held", "gauge",
             "1 while the throttle or an operator holds new batches, with the reason; else 0.");
  Labels held = job;
  if (held_.has_value()) held.emplace_back("reason", *held_);
  out.Sample("pgbackfill_held", held, held_.has_value() ? 1 : 0);
  if (pace_.has_value()) {
    out.Family("pgbackfill_pace_rows_per_second", "gauge",
               "The throttle's rows/s cap while it paces the job.");
    out.Sample("pgbackfill_pace_rows_per_second", job, static_cast<double>(*pace_));
  }
  if (signals_.empty()) return;
  const auto family = [&](std::string_view name, std::string_view help, auto value_of) {
    out.Family(name, "gauge", help);
    for (const auto& [key, signal] : signals_) {
      const std::optional<double> value = value_of(signal);
      if (!value.has_value()) continue;
      Labels labels = job;
      labels.emplace_back("signal", key.first);
      if (!key.second.empty()) labels.emplace_back("object", key.second);
      out.Sample(name, labels, *value);
    }
  };
  family("pgbackfill_throttle_signal",
         "A throttle signal's last reading (seconds, bytes, bytes/s, a count; command: a ratio).",
         [](const Signal& s) { return std::optional<double>(s.value); });
  family("pgbackfill_throttle_signal_limit", "The limit the throttle holds a signal under.",
         [](const Signal& s) { return std::optional<double>(s.limit); });
  family("pgbackfill_throttle_signal_baseline",
         "A signal's baseline, once measured (limits given as a multiple of it).",
         [](const Signal& s) { return s.baseline; });
}

void MetricsSink::Emit(const events::Event& event) {
  std::lock_guard lock(mutex_);
  registry_.Fold(event);
}

std::string MetricsSink::Render() const {
  std::lock_guard lock(mutex_);
  return registry_.Render();
}

}  // namespace pgbackfill::metrics
