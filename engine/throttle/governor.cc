#include "pgbackfill/throttle/governor.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::throttle {
namespace {

constexpr absl::Duration kMinInterval = absl::Milliseconds(1);
// A timer may fire a little early; see "10% less" in the header.
constexpr double kTimerTolerance = 0.9;
// Rule 7: batch time while sessions wait on our row locks.
constexpr double kLockWaiterTargetScale = 0.5;
// Rule 9: the pace never falls below this share of the peak rate (the job must still end), and
// grows back by this share of it per healthy interval.
constexpr double kMinPaceFraction = 0.05;
constexpr double kPaceStepFraction = 0.025;
// Rule 10: from this share of the budget up the job keeps its pace (steady); the cut in
// proportion to the overshoot is between these factors; a hold's samples feed the baselines once
// it has lasted this many intervals (our own work has drained by then).
constexpr double kSteadyFrom = 0.9;
constexpr double kMinCut = 0.5;
constexpr double kMaxCut = 0.85;
constexpr int kRebaselineAfter = 2;
// Rule 11: the pace aims at kAim of the budget, growing by kMinGrow to kMaxGrow per interval and
// cut to between kDeepestCut and kMaxCut of the rate reached; kMaxGrow is half again over the
// readings' window of three intervals (1.15^3 = 1.52): a statement tail stays flat until the
// CPU is nearly saturated, so a low reading says little about how far the edge is, and at 1.5
// an interval the pace was 2-3 times past it before the readings showed it;
constexpr double kAim = 0.95;
constexpr double kMinGrow = 1.05;
constexpr double kMaxGrow = 1.15;
constexpr double kDeepestCut = 0.2;
// from this share of the rate at which the application last went over its budget, growth is
// kMinGrow (past it, once per kJudgedReadings intervals); from this multiple of it, judged within
// the budget, it is forgotten;
constexpr double kNearOverBudget = 0.8;
constexpr double kForgetPast = 1.1;
// the floor's share of the start pace; a pace counts as reached when the job made kReachedShare
// of it over kReachedAfter intervals, and at least as many batches.
constexpr double kStartFloorShare = 0.1;
constexpr double kReachedShare = 0.5;
constexpr int kReachedAfter = 3;
// A pace grows to at most this many times the rate reached: past 1 / kReachedShare, so that a
// pace one worker cannot reach is seen as such.
constexpr double kHeadroom = 3;
// Rule 12: this many budget cuts in a row for overshoots of at most kSmallOvershoot, each within
// kCutsApart intervals of the last, below this share of the rate the first was made from,
// re-measure the baselines, at most once per kRemeasureEvery intervals.
constexpr int kRemeasureAfterCuts = 3;
constexpr double kSmallOvershoot = 1.25;
constexpr int kCutsApart = 15;
constexpr double kRemeasureShare = 0.5;
constexpr int kRemeasureEvery = 30;
// No pace above this (rows/s): growth stops long before, this only keeps the arithmetic finite.
constexpr double kMaxPace = 1e9;
// Unheld intervals kept: far more than any window read from them.
constexpr size_t kMaxRan = 1000;

// "250ms" below a second (canary latencies), "7.2s" above (lags, gaps).
std::string HumanDuration(absl::Duration d) {
  if (d < absl::Seconds(1)) return absl::StrFormat("%.0fms", absl::ToDoubleMilliseconds(d));
  return absl::StrFormat("%.1fs", absl::ToDoubleSeconds(d));
}

// PostgreSQL's 1024-based units, as plan files write byte sizes.
std::string HumanBytes(double bytes) {
  static constexpr const char* kUnits[] = {"kB", "MB", "GB", "TB"};
  if (std::abs(bytes) < 1024) return absl::StrFormat("%.0f bytes", bytes);
  int unit = -1;
  while (std::abs(bytes) >= 1024 && unit < 3) {
    bytes /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f%s", bytes, kUnits[unit]);
}

std::string ProbeFailed(std::string_view what, const absl::Status& status) {
  return absl::StrCat(ToAbsl(what), " probe failed: ", status.message());
}

// Adds a veto (and pressure) when `value` is over `limit`, pressure when over `fraction` of it. `text` formats
// both values for the message.
template <typename T, typename Format>
void Check(std::string_view what, T value, T limit, double fraction, Format text,
           std::vector<std::string>& vetoes, std::vector<std::string>& pressure) {
  if (value > limit) {
    // Over the limit is also pressure: the veto stops work, the cut keeps it from restarting
    // at the concurrency that caused it.
    vetoes.push_back(absl::StrCat(ToAbsl(what), " ", text(value), " > ", text(limit)));
    pressure.push_back(vetoes.back());
  } else if (static_cast<double>(value) > fraction * static_cast<double>(limit)) {
    pressure.push_back(absl::StrCat(ToAbsl(what), " ", text(value), " > ",
                                    absl::StrFormat("%.0f", fraction * 100), "% of ",
                                    text(limit)));
  }
}

std::string BytesText(int64_t b) { return HumanBytes(static_cast<double>(b)); }
std::string RateText(int64_t b) { return HumanBytes(static_cast<double>(b)) + "/s"; }

// Check() for durations: absl::Duration has no conversion to double.
void CheckDuration(std::string_view what, absl::Duration value, absl::Duration limit,
                   double fraction, std::vector<std::string>& vetoes,
                   std::vector<std::string>& pressure) {
  Check(what, absl::ToDoubleSeconds(value), absl::ToDoubleSeconds(limit), fraction,
        [](double s) { return HumanDuration(absl::Seconds(s)); }, vetoes, pressure);
}

// A rule 10 value as users read it: latencies in ms (to the microsecond below 1ms, where the
// statements of an OLTP application are), sessions as a number, CPU pressure in percent.
std::string SignalText(std::string_view name, double value) {
  if (name == "active_sessions") return absl::StrFormat("%.1f", value);
  if (name == "cpu_pressure") return absl::StrFormat("%.1f%%", value * 100);
  if (value < 0.001) return absl::StrFormat("%.3fms", value * 1000);
  return absl::StrFormat("%.1fms", value * 1000);
}

std::string LimitText(const plan::Limit& limit, std::string_view name) {
  if (!limit.relative()) return SignalText(name, limit.offset);
  std::string text = absl::StrFormat("%gx", limit.factor);
  if (limit.offset > 0) absl::StrAppend(&text, " + ", SignalText(name, limit.offset));
  return text;
}

GovernorConfig Normalise(GovernorConfig config) {
  config.interval = std::max(config.interval, kMinInterval);
  config.workers = std::max(config.workers, 1);
  config.pressure_fraction = std::clamp(config.pressure_fraction, 0.0, 1.0);
  config.retry_burst = std::max(config.retry_burst, 1);
  config.stale_intervals = std::max(config.stale_intervals, 1);
  config.resume_intervals = std::max(config.resume_intervals, 1);
  config.regrow_intervals = std::max(config.regrow_intervals, 1);
  config.max_rows_per_second = std::max(config.max_rows_per_second, 0.0);
  config.baseline_intervals = std::max(config.baseline_intervals, 0);
  config.hold_ratio = std::max(config.hold_ratio, 1.0);
  return config;
}

}  // namespace

GovernorConfig ConfigFromPlan(const plan::Throttle& throttle, int workers) {
  GovernorConfig config;
  config.interval = throttle.interval;
  config.max_replica_lag = throttle.max_replica_lag;
  config.max_replica_lag_bytes = throttle.max_replica_lag_bytes;
  // The plan's `0` means "any waiter counts", so lock waiters are always checked.
  config.max_lock_waiters = throttle.max_lock_waiters;
  config.max_wal_bytes_per_second = throttle.max_wal_bytes_per_second;
  config.max_canary_latency = throttle.max_canary_latency;
  config.check_custom = !throttle.query.empty();
  config.hold_on_autovacuum = throttle.hold_on_autovacuum;
  config.max_rows_per_second = throttle.max_rows_per_second;
  config.workers = workers;
  config.statement_latency = throttle.max_statement_latency;
  config.statement_tail = throttle.max_statement_tail;
  config.commit_latency = throttle.max_commit_latency;
  config.active_sessions = throttle.max_active_sessions;
  config.cpu_pressure = throttle.max_cpu_pressure;
  config.baseline_intervals = static_cast<int>(
      std::ceil(absl::FDivDuration(throttle.baseline, std::max(throttle.interval, kMinInterval))));
  config.max_slot_wal = throttle.max_slot_wal;
  config.max_archive_pending = throttle.max_archive_pending;
  config.check_command = !throttle.command.empty();
  return config;
}

absl::StatusOr<bool> CustomQueryHolds(std::string_view value) {
  const std::string text = absl::AsciiStrToLower(absl::StripAsciiWhitespace(ToAbsl(value)));
  if (text == "t" || text == "true") return true;
  if (text == "f" || text == "false") return false;
  double number = 0;
  if (absl::SimpleAtod(text, &number) && std::isfinite(number)) return number >= 1;
  return absl::InvalidArgumentError(absl::StrCat(
      "custom throttle query returned '", ToAbsl(value),
      "', expected a boolean or a number (true or >= 1 holds); fix throttle.query"));
}

Governor::Governor(GovernorConfig config, const Clock& clock)
    : config_(Normalise(std::move(config))), clock_(clock) {
  statement_latency_.limit = config_.statement_latency;
  statement_tail_.limit = config_.statement_tail;
  commit_latency_.limit = config_.commit_latency;
  active_sessions_.limit = config_.active_sessions;
  cpu_pressure_.limit = config_.cpu_pressure;
}

void Governor::SetConfig(GovernorConfig config) {
  config_ = Normalise(std::move(config));
  SetWorkers(std::min(active_workers_, config_.workers));
  statement_latency_.limit = config_.statement_latency;
  statement_tail_.limit = config_.statement_tail;
  commit_latency_.limit = config_.commit_latency;
  active_sessions_.limit = config_.active_sessions;
  cpu_pressure_.limit = config_.cpu_pressure;
}

namespace {

// Rule 10's readings as numbers: nullopt when a sample says nothing (no application statement
// finished, or pg_stat_statements is missing).
absl::StatusOr<std::optional<double>> StatementReading(const Samples& samples) {
  if (!samples.statement_latency.ok()) {
    if (samples.statement_latency.status().code() == absl::StatusCode::kFailedPrecondition) {
      return std::optional<double>();
    }
    return samples.statement_latency.status();
  }
  if (samples.statement_latency->calls == 0) return std::optional<double>();
  return std::optional<double>(absl::ToDoubleSeconds(samples.statement_latency->mean));
}

// The same sample as StatementReading's, read at its tail.
absl::StatusOr<std::optional<double>> TailReading(const Samples& samples) {
  absl::StatusOr<std::optional<double>> mean = StatementReading(samples);
  if (!mean.ok() || !mean->has_value()) return mean;
  return std::optional<double>(absl::ToDoubleSeconds(samples.statement_latency->tail));
}

absl::StatusOr<std::optional<double>> CommitReading(const Samples& samples) {
  if (!samples.commit_latency.ok()) return samples.commit_latency.status();
  return std::optional<double>(absl::ToDoubleSeconds(*samples.commit_latency));
}

absl::StatusOr<std::optional<double>> SessionReading(const Samples& samples) {
  if (!samples.session_load.ok()) return samples.session_load.status();
  return std::optional<double>(samples.session_load->active);
}

// Unavailable on this server (FailedPrecondition) says nothing, as pg_stat_statements missing.
absl::StatusOr<std::optional<double>> CpuPressureReading(const Samples& samples) {
  if (samples.cpu_pressure.status().code() == absl::StatusCode::kFailedPrecondition) {
    return std::optional<double>();
  }
  return samples.cpu_pressure;
}

}  // namespace

bool Governor::NobodyThere(const Samples& samples) const {
  // Only a session look that answered can say so; a statement reading that failed (other than
  // not installed, or not checked) may hide an application.
  if (!active_sessions_.limit.enabled() || !samples.session_load.ok()) return false;
  if (samples.session_load->recent > 0 || samples.session_load->active > 0) return false;
  if (samples.statement_latency.ok()) return samples.statement_latency->calls == 0;
  return !ReadsStatements() ||
         samples.statement_latency.status().code() == absl::StatusCode::kFailedPrecondition;
}

bool Governor::ReadsStatements() const {
  return statement_latency_.limit.enabled() || statement_tail_.limit.enabled();
}

bool Governor::AnyRelative() const {
  return statement_latency_.limit.relative() || statement_tail_.limit.relative() ||
         commit_latency_.limit.relative() || active_sessions_.limit.relative() ||
         cpu_pressure_.limit.relative();
}

bool Governor::Measuring() const {
  return AnyRelative() && !baseline_put_off_ && baseline_samples_ < config_.baseline_intervals;
}

void Governor::CountBudgetCut(double ratio, bool relative, double pace_before, absl::Time taken) {
  // Only a limit taken of a baseline can be wrong for want of a new one, and only where one can
  // be measured.
  if (!relative || config_.baseline_intervals <= 0 || baseline_put_off_) return;
  if (ratio > kSmallOvershoot) {
    // A large overshoot is the job's own doing (a ramp past the edge), whatever the baseline:
    // the pace it took is not the small cuts' doing either.
    if (cuts_in_row_ > 0 && pace_before > 0) cuts_from_rate_ *= pace_ / pace_before;
    return;
  }
  if (last_counted_cut_.has_value() && Covers(taken - *last_counted_cut_, kCutsApart)) {
    cuts_in_row_ = 0;  // settled in between: a new row
  }
  if (cuts_in_row_ == 0) cuts_from_rate_ = over_budget_rate_;
  ++cuts_in_row_;
  last_counted_cut_ = taken;
  if (cuts_in_row_ >= kRemeasureAfterCuts && pace_ < kRemeasureShare * cuts_from_rate_ &&
      (!last_remeasure_.has_value() || Covers(taken - *last_remeasure_, kRemeasureEvery))) {
    StartRemeasure(taken);
  }
}

void Governor::StartRemeasure(absl::Time taken) {
  remeasure_why_ = absl::StrFormat("%d budget cuts took the pace from %.0f to %.0f rows/s",
                                   cuts_in_row_, cuts_from_rate_, pace_);
  remeasure_from_ = taken;
  last_remeasure_ = taken;
  baseline_samples_ = 0;
  for (AppSignal* signal :
       {&statement_latency_, &statement_tail_, &commit_latency_, &active_sessions_, &cpu_pressure_}) {
    signal->baseline.Clear();
    signal->recent.Clear();  // read under the job's load
  }
  // The edge the cuts found was judged against the old baselines.
  cuts_in_row_ = 0;
  over_budget_rate_ = 0;
  last_cut_ratio_ = 0;
}

void Governor::Learn(const Samples& samples) {
  if (baseline_put_off_) {
    // An application came: measure its baseline from the next sample on (this one saw the
    // job's batches too), holding meanwhile.
    if (!NobodyThere(samples)) baseline_put_off_ = false;
    return;
  }
  // Rule 12: a re-measure learns nothing until the job's last batches have drained.
  if (remeasure_from_.has_value() && Measuring() &&
      !Covers(samples.taken - *remeasure_from_, kRebaselineAfter)) {
    return;
  }
  if (Measuring() && baseline_samples_ == 0 && NobodyThere(samples)) {
    remeasure_from_.reset();
    baseline_put_off_ = true;
    baseline_measured_ = true;  // measured as nobody: rule 6's start, no slow start
    return;
  }
  const bool measuring = Measuring();
  const bool long_hold = held_ && held_from_.has_value() &&
                         Covers(samples.taken - *held_from_, kRebaselineAfter);
  if (!measuring && !long_hold) return;
  auto learn = [](AppSignal& signal, const absl::StatusOr<std::optional<double>>& reading) {
    if (reading.ok() && reading->has_value()) signal.baseline.Add(**reading);
  };
  learn(statement_latency_, StatementReading(samples));
  learn(statement_tail_, TailReading(samples));
  learn(commit_latency_, CommitReading(samples));
  learn(active_sessions_, SessionReading(samples));
  learn(cpu_pressure_, CpuPressureReading(samples));
  if (measuring) {
    ++baseline_samples_;
    // Rule 11: whether an application was there to protect while the baseline was measured.
    baseline_measured_ = true;
    // Without a session look: statements, or a statement reading that could not tell.
    const bool seen = active_sessions_.limit.enabled()
                          ? !NobodyThere(samples)
                          : !samples.statement_latency.ok() || samples.statement_latency->calls > 0;
    if (seen) application_seen_ = true;
    if (!Measuring()) remeasure_from_.reset();
  }
}

void Governor::JudgeAppSignal(AppSignal& signal,
                              const absl::StatusOr<std::optional<double>>& reading, bool nobody,
                              Verdict& verdict) {
  if (!signal.limit.enabled()) return;
  // CPU pressure is the server's, felt by the application; the others are the application's.
  const bool server = signal.name == "cpu_pressure";
  const std::string what = server ? "CPU pressure" : absl::StrReplaceAll(signal.name, {{"_", " "}});
  if (!reading.ok()) {
    verdict.vetoes.push_back(ProbeFailed(what, reading.status()));
    return;
  }
  // Nobody to protect: the reading is the job's own load (not kept: it would be judged once an
  // application comes).
  if (!reading->has_value() || nobody) return;
  signal.recent.Add(**reading);
  const double value = *signal.recent.Level();
  const std::optional<double> level = signal.baseline.Level();
  // A relative limit without a baseline yet (the application was idle) judges nothing.
  if (signal.limit.relative() && !level.has_value()) return;
  const double limit = signal.limit.Of(level.value_or(0));
  if (limit <= 0) return;
  verdict.signals.push_back(
      SignalReading{.name = signal.name, .value = value, .baseline = level, .limit = limit});
  // The server's CPU pressure is a share of the time that the job's share adds to the
  // application's: its budget is the room over the baseline, and the ratio the part of it used
  // (a 5-point allowance over 27% aimed at 0.9 of 32% would leave the job 2 of its 5 points).
  const double room = server && signal.limit.relative() ? limit - *level : 0;
  const double ratio = room > 0 ? std::max(0.0, (value - *level) / room) : value / limit;
  if (ratio > verdict.budget_ratio) {
    verdict.budget_ratio = ratio;
    verdict.budget_relative = signal.limit.relative();
  }
  if (ratio <= 1) return;
  std::string text =
      absl::StrCat(server ? "server " : "application ", what, " ", SignalText(signal.name, value),
                   " > ", SignalText(signal.name, limit));
  if (signal.limit.relative()) {
    absl::StrAppend(&text, " (", LimitText(signal.limit, signal.name), " of baseline ",
                    SignalText(signal.name, *level), ")");
  }
  if (ratio > config_.hold_ratio) {
    verdict.vetoes.push_back(absl::StrCat(text, ", over ", absl::StrFormat("%g", config_.hold_ratio),
                                          room > 0 ? "x its room over the baseline" : "x its limit"));
  }
  verdict.pressure.push_back(text);
}

void Governor::JudgeApplication(const Samples& samples, Verdict& verdict) {
  const bool nobody = NobodyThere(samples);
  JudgeAppSignal(statement_latency_, StatementReading(samples), nobody, verdict);
  // One probe reads both statement signals: a failure it had is named once, by the mean.
  const absl::StatusOr<std::optional<double>> tail = TailReading(samples);
  if (tail.ok() || !statement_latency_.limit.enabled()) {
    JudgeAppSignal(statement_tail_, tail, nobody, verdict);
  }
  JudgeAppSignal(commit_latency_, CommitReading(samples), nobody, verdict);
  JudgeAppSignal(active_sessions_, SessionReading(samples), nobody, verdict);
  JudgeAppSignal(cpu_pressure_, CpuPressureReading(samples), nobody, verdict);
}

void Governor::JudgeWal(const Samples& samples, Verdict& verdict) {
  if (config_.max_slot_wal > 0) {
    if (!samples.slots.ok()) {
      verdict.vetoes.push_back(ProbeFailed("replication slot", samples.slots.status()));
    } else {
      for (const SlotWal& slot : *samples.slots) {
        const std::string who = absl::StrCat("replication slot ", slot.slot);
        if (slot.wal_status == "lost" || slot.wal_status == "unreserved") {
          verdict.vetoes.push_back(absl::StrCat(who, " is ", slot.wal_status));
          continue;
        }
        Check(who + " retains", slot.retained_bytes, config_.max_slot_wal,
              config_.pressure_fraction, BytesText, verdict.vetoes, verdict.pressure);
        verdict.limits.push_back({.name = "slot_wal_bytes",
                                  .object = slot.slot,
                                  .value = static_cast<double>(slot.retained_bytes),
                                  .limit = static_cast<double>(config_.max_slot_wal)});
      }
    }
  }
  if (config_.max_archive_pending > 0) {
    if (!samples.archiver.ok()) {
      verdict.vetoes.push_back(ProbeFailed("archiver", samples.archiver.status()));
    } else if (samples.archiver->archiving) {
      const std::string who = samples.archiver->failing
                                  ? absl::StrCat("archiver failing (last failed ",
                                                 samples.archiver->last_failed_wal, "), pending")
                                  : std::string("archiver pending");
      Check(who, samples.archiver->pending_bytes, config_.max_archive_pending,
            config_.pressure_fraction, BytesText, verdict.vetoes, verdict.pressure);
      verdict.limits.push_back({.name = "archive_pending_bytes",
                                .object = "",
                                .value = static_cast<double>(samples.archiver->pending_bytes),
                                .limit = static_cast<double>(config_.max_archive_pending)});
    }
  }
}

void Governor::JudgeCommand(const Samples& samples, Verdict& verdict) {
  if (!config_.check_command) return;
  if (!samples.command.ok()) {
    verdict.vetoes.push_back(ProbeFailed("throttle command", samples.command.status()));
    return;
  }
  const CommandResult& result = *samples.command;
  if (result.exit_code != 0) {
    verdict.vetoes.push_back(absl::StrCat("throttle command exited ", result.exit_code,
                                          result.output.empty() ? "" : ": ", result.output));
    return;
  }
  const absl::string_view output = absl::StripAsciiWhitespace(result.output);
  if (output.empty()) return;
  double ratio = 0;
  if (absl::SimpleAtod(output, &ratio) && std::isfinite(ratio)) {
    // The application's latency as a share of its budget: rule 10's fourth signal.
    command_prints_ratio_ = true;
    verdict.signals.push_back(
        SignalReading{.name = "command", .value = ratio, .baseline = std::nullopt, .limit = 1});
    if (ratio > verdict.budget_ratio) {
      verdict.budget_ratio = ratio;
      verdict.budget_relative = false;
    }
    if (ratio <= 1) return;
    const std::string text =
        absl::StrFormat("throttle command printed %g (over 1, its budget)", ratio);
    if (ratio > config_.hold_ratio) {
      verdict.vetoes.push_back(
          absl::StrCat(text, ", over ", absl::StrFormat("%g", config_.hold_ratio), "x"));
    }
    verdict.pressure.push_back(text);
    return;
  }
  absl::StatusOr<bool> holds = CustomQueryHolds(ToStd(output));
  if (!holds.ok()) {
    verdict.vetoes.push_back(absl::StrCat("throttle command printed '", result.output,
                                          "', expected nothing, a boolean or a number"));
  } else if (*holds) {
    verdict.vetoes.push_back(absl::StrCat("throttle command printed ", result.output));
  }
}

std::string Governor::TakeNotice() { return std::exchange(notice_, std::string()); }

void Governor::ForgetReplica(std::string_view name) {
  known_replicas_.erase(ToAbsl(name));
  std::erase(config_.expected_replicas, name);
}

void Governor::ReportRetries(int n) { pending_retries_ += std::max(n, 0); }

void Governor::ReportRows(int64_t rows) {
  pending_rows_ += std::max<int64_t>(rows, 0);
  largest_report_ = std::max(largest_report_, rows);
}

bool Governor::KeepsBudget() const {
  return ReadsStatements() || commit_latency_.limit.enabled() || active_sessions_.limit.enabled() ||
         cpu_pressure_.limit.enabled() || (config_.check_command && command_prints_ratio_);
}

double Governor::PaceFloor() const {
  return KeepsBudget() && config_.start_pace > 0 ? config_.start_pace * kStartFloorShare
                                                 : peak_rate_ * kMinPaceFraction;
}

void Governor::SetPace(double pace) {
  pace_ = std::min(pace, kMaxPace);
  ran_at_pace_ = 0;  // what the job reaches is judged anew
}

void Governor::SetWorkers(int workers) {
  if (workers != active_workers_) ran_at_pace_ = 0;
  active_workers_ = workers;
}

Governor::Run Governor::RecentRun(size_t intervals, absl::Duration enough) const {
  Run run;
  for (auto ran = ran_.rbegin(); ran != ran_.rend() && intervals > 0 && run.length < enough;
       ++ran, --intervals) {
    run.length += ran->length;
    run.rows += ran->rows;
  }
  return run;
}

double Governor::Run::rate() const {
  return length > absl::ZeroDuration() ? static_cast<double>(rows) / absl::ToDoubleSeconds(length)
                                       : 0;
}

std::optional<double> Governor::ReachedRate() const {
  if (pace_ <= 0) return std::nullopt;
  // Rows come a batch at a time: at a slow pace a few intervals may see no batch at all, so the
  // window also covers kReachedAfter batches at the pace.
  const absl::Duration window =
      std::max(config_.interval * kReachedAfter,
               absl::Seconds(kReachedAfter * static_cast<double>(largest_report_) / pace_)) *
      kTimerTolerance;
  const Run run = RecentRun(ran_at_pace_, window);
  if (run.length < window) return std::nullopt;
  return run.rate();
}

void Governor::CutPace(double ratio, absl::Time taken) {
  const bool budget_cut = ratio > 1 && KeepsBudget();
  // From what the job really did: a pace it was not reaching would slow nothing. A budget cut
  // judges the rate of the intervals its readings were taken in.
  const double measured = budget_cut && !ran_.empty() ? JudgedRate()
                          : running_rate_ > 0         ? running_rate_
                                                      : peak_rate_;
  double from = pace_ > 0 ? std::min(pace_, measured) : measured;
  if (pace_ > 0 && from <= 0) from = pace_;  // a paced job may commit nothing in one interval
  // A worse reading before the last budget cut can show still judges the rates before it: this
  // cut is made from the same rate, not compounded on the last (three cuts in five seconds took
  // tpcb-like from 11,700 to 3,400 rows/s where its edge was near 10,000).
  const bool judged_again = budget_cut && last_cut_ratio_ > 0 && last_cut_.has_value() &&
                            !Covers(taken - *last_cut_, kJudgedReadings);
  if (judged_again && over_budget_rate_ > 0) from = over_budget_rate_;
  double cut = 0.5;
  if (ratio > 1) {
    // Rule 10 cuts in proportion to how far over its budget the application is: a small
    // overshoot costs a little pace, a large one most of it.
    cut = KeepsBudget() ? std::clamp(kAim / ratio, kDeepestCut, kMaxCut)
                        : std::clamp(1 / ratio, kMinCut, kMaxCut);
  }
  if (budget_cut) over_budget_rate_ = from;
  double next = std::max(from * cut, PaceFloor());
  if (judged_again && pace_ > 0) next = std::min(next, pace_);
  SetPace(next);
}

void Governor::GrowWithinBudget(double ratio, absl::Time taken) {
  const std::optional<double> reached = ReachedRate();
  if (pace_ > 0 && reached.has_value() && *reached < kReachedShare * pace_) {
    // The job does not reach its pace: more workers, and at the ceiling no pace at all.
    if (active_workers_ < config_.workers) {
      SetWorkers(active_workers_ + 1);
    } else {
      pace_ = 0;
    }
  } else if (pace_ > 0) {
    // Past the rate at which the application last went over its budget, each step is judged
    // before the next: the readings judged lag that many intervals, and a step every interval
    // would be three past the edge before the first shows. (Below it, a step each interval:
    // with a step every three, a cut for the application's own burst at 1,000 rows/s kept
    // tpcb-like near that rate for 40 s.)
    if (over_budget_rate_ > 0 && pace_ >= over_budget_rate_ &&
        !Covers(taken - *last_change_, kJudgedReadings)) {
      return;
    }
    // Judged within the budget well past that rate, it was not the edge (the load eased, or the
    // application's own burst made that cut): growth is the ramp's again, as TCP's CUBIC probes
    // faster once past the window where it last lost.
    if (over_budget_rate_ > 0 && pace_ >= kForgetPast * over_budget_rate_) over_budget_rate_ = 0;
    // Toward the aim in proportion, as the cut: far below the budget fast, near it gently; and
    // not far past what the job shows it does, or a pace it cannot use would only grow.
    double grown = pace_ * (ratio > 0 ? std::clamp(kAim / ratio, kMinGrow, kMaxGrow) : kMaxGrow);
    if (reached.has_value()) grown = std::min(grown, std::max(pace_, kHeadroom * *reached));
    // Near the rate at which the application last went over its budget, gently: the readings
    // judged lag an interval or two, and growing by half an interval would be past that rate
    // again before they show it.
    if (over_budget_rate_ > 0) {
      grown = std::min(grown, std::max(pace_ * kMinGrow, kNearOverBudget * over_budget_rate_));
    }
    pace_ = std::min(grown, kMaxPace);
  } else if (active_workers_ < config_.workers) {
    SetWorkers(active_workers_ + 1);
  }
  // Rule 12: back at the rate the cuts began from (or unpaced), they were not a run down.
  if (pace_ <= 0 || pace_ >= cuts_from_rate_) cuts_in_row_ = 0;
  last_change_ = taken;
}

double Governor::JudgedRate() const {
  return RecentRun(kJudgedReadings, absl::InfiniteDuration()).rate();
}

bool Governor::CutHasShown(double ratio, absl::Time taken) const {
  return !last_cut_.has_value() || last_cut_ratio_ <= 0 || ratio > last_cut_ratio_ ||
         Covers(taken - *last_cut_, kJudgedReadings);
}

bool Governor::Covers(absl::Duration elapsed, int intervals) const {
  return elapsed >= config_.interval * intervals * kTimerTolerance;
}

void Governor::JudgeReplicas(const Samples& samples, Verdict& verdict) {
  if (!samples.replicas.ok()) {
    verdict.vetoes.push_back(ProbeFailed("replica", samples.replicas.status()));
    return;
  }
  const double fraction = config_.pressure_fraction;
  absl::flat_hash_set<std::string> present;
  for (const ReplicaSample& replica : *samples.replicas) {
    present.insert(replica.name);
    known_replicas_.insert(replica.name);
    const std::string who = absl::StrCat("replica ", replica.name);
    if (!replica.status.ok()) {
      verdict.vetoes.push_back(ProbeFailed(who, replica.status));
      continue;
    }
    if (config_.max_replica_lag > absl::ZeroDuration() && !replica.idle) {
      if (!replica.replay_lag.ok()) {
        verdict.vetoes.push_back(absl::StrCat(who, " replay lag unknown: ",
                                              replica.replay_lag.status().message()));
      } else {
        CheckDuration(who + " replay lag", *replica.replay_lag, config_.max_replica_lag, fraction,
                      verdict.vetoes, verdict.pressure);
        verdict.limits.push_back({.name = "replica_lag",
                                  .object = replica.name,
                                  .value = absl::ToDoubleSeconds(*replica.replay_lag),
                                  .limit = absl::ToDoubleSeconds(config_.max_replica_lag)});
      }
    }
    if (config_.max_replica_lag > absl::ZeroDuration() && replica.idle) {
      // Replay has caught up: no time lag to judge, and none to show either.
      verdict.limits.push_back({.name = "replica_lag",
                                .object = replica.name,
                                .value = 0,
                                .limit = absl::ToDoubleSeconds(config_.max_replica_lag)});
    }
    if (config_.max_replica_lag_bytes > 0) {
      if (!replica.lag_bytes.ok()) {
        verdict.vetoes.push_back(absl::StrCat(who, " byte lag unknown: ",
                                              replica.lag_bytes.status().message()));
      } else {
        Check(who + " byte lag", *replica.lag_bytes, config_.max_replica_lag_bytes, fraction,
              BytesText, verdict.vetoes, verdict.pressure);
        verdict.limits.push_back({.name = "replica_lag_bytes",
                                  .object = replica.name,
                                  .value = static_cast<double>(*replica.lag_bytes),
                                  .limit = static_cast<double>(config_.max_replica_lag_bytes)});
      }
    }
  }
  // Sorted, so that the reason is the same from one sample to the next.
  std::vector<std::string> missing;
  for (const std::string& name : known_replicas_) {
    if (!present.contains(name)) missing.push_back(name);
  }
  for (const std::string& name : config_.expected_replicas) {
    if (!present.contains(name) && !known_replicas_.contains(name)) missing.push_back(name);
  }
  std::sort(missing.begin(), missing.end());
  missing.erase(std::unique(missing.begin(), missing.end()), missing.end());
  for (const std::string& name : missing) {
    verdict.vetoes.push_back(
        known_replicas_.contains(name)
            ? absl::StrCat("replica ", name, " disappeared from the replica probe")
            : absl::StrCat("replica ", name, " not reported by the replica probe"));
  }
}

Governor::Verdict Governor::Judge(const Samples& samples) {
  Verdict verdict;
  const double fraction = config_.pressure_fraction;
  if (config_.checks_replicas()) JudgeReplicas(samples, verdict);
  if (config_.max_lock_waiters.has_value()) {
    if (!samples.lock_waiters.ok()) {
      verdict.vetoes.push_back(ProbeFailed("lock waiter", samples.lock_waiters.status()));
    } else {
      const int waiters = *samples.lock_waiters;
      const int limit = *config_.max_lock_waiters;
      verdict.lock_waiters = waiters > 0;
      verdict.limits.push_back({.name = "lock_waiters",
                                .object = "",
                                .value = static_cast<double>(waiters),
                                .limit = static_cast<double>(limit)});
      const std::string text = absl::StrCat("lock waiters ", waiters);
      if (waiters > limit) {
        verdict.vetoes.push_back(absl::StrCat(text, " > ", limit));
        verdict.pressure.push_back(verdict.vetoes.back());
      } else if (waiters > 0) {
        // Rule 6: any waiter is contention with the application, whatever the limit.
        verdict.pressure.push_back(absl::StrCat(text, " (limit ", limit, ")"));
      }
    }
  }
  if (config_.max_wal_bytes_per_second > 0) {
    if (!samples.wal_bytes_per_second.ok()) {
      verdict.vetoes.push_back(ProbeFailed("WAL rate", samples.wal_bytes_per_second.status()));
    } else {
      Check(std::string_view("WAL rate"), *samples.wal_bytes_per_second,
            config_.max_wal_bytes_per_second, fraction, RateText, verdict.vetoes,
            verdict.pressure);
      verdict.limits.push_back({.name = "wal_bytes_per_second",
                                .object = "",
                                .value = static_cast<double>(*samples.wal_bytes_per_second),
                                .limit = static_cast<double>(config_.max_wal_bytes_per_second)});
    }
  }
  if (config_.max_canary_latency > absl::ZeroDuration()) {
    if (!samples.canary_latency.ok()) {
      verdict.vetoes.push_back(ProbeFailed("canary", samples.canary_latency.status()));
    } else {
      CheckDuration("canary latency", *samples.canary_latency, config_.max_canary_latency,
                    fraction, verdict.vetoes, verdict.pressure);
      verdict.limits.push_back({.name = "canary_latency",
                                .object = "",
                                .value = absl::ToDoubleSeconds(*samples.canary_latency),
                                .limit = absl::ToDoubleSeconds(config_.max_canary_latency)});
    }
  }
  if (config_.check_custom) {
    if (!samples.custom.ok()) {
      verdict.vetoes.push_back(ProbeFailed("custom throttle query", samples.custom.status()));
    } else if (absl::StatusOr<bool> holds = CustomQueryHolds(*samples.custom); !holds.ok()) {
      verdict.vetoes.push_back(std::string(holds.status().message()));
    } else if (*holds) {
      verdict.vetoes.push_back(
          absl::StrCat("custom throttle query returned ", *samples.custom));
    }
  }
  if (config_.hold_on_autovacuum) {
    if (!samples.autovacuum.ok()) {
      verdict.vetoes.push_back(ProbeFailed("autovacuum", samples.autovacuum.status()));
    } else if (*samples.autovacuum) {
      verdict.vetoes.push_back(absl::StrCat(
          "autovacuum running on ", config_.table.empty() ? "the target table" : config_.table));
    }
  }
  JudgeApplication(samples, verdict);
  JudgeWal(samples, verdict);
  JudgeCommand(samples, verdict);
  return verdict;
}

Decision Governor::Update(const Samples& samples) {
  const absl::Time taken = samples.taken;
  if (last_taken_.has_value() && taken < *last_taken_) return Current();

  // Rule 3: a gap in the samples is a hold that has just ended, and cools down like one.
  if (last_taken_.has_value() &&
      taken - *last_taken_ > config_.interval * config_.stale_intervals) {
    held_ = true;
    clear_since_.reset();
    last_veto_ = absl::StrCat("no throttle samples for ", HumanDuration(taken - *last_taken_));
  }
  if (!last_change_.has_value()) last_change_ = taken;
  const bool was_held = held_;
  const bool was_measuring = Measuring();
  // Rule 9's measure: the rate of an interval the job ran through, unheld.
  if (last_taken_.has_value() && !was_held && !was_measuring && taken > *last_taken_) {
    running_rate_ = static_cast<double>(pending_rows_) /
                    absl::ToDoubleSeconds(taken - *last_taken_);
    peak_rate_ = std::max(peak_rate_, running_rate_);
    ran_.push_back(Run{.length = taken - *last_taken_, .rows = pending_rows_});
    if (ran_.size() > kMaxRan) ran_.pop_front();
    ran_at_pace_ = std::min(ran_at_pace_ + 1, ran_.size());
  }
  pending_rows_ = 0;
  last_taken_ = taken;

  if (samples.primary_timeline.ok()) {
    if (timeline_.has_value() && *timeline_ != *samples.primary_timeline) {
      // Rule 2: the standbys seen so far belonged to the old primary.
      std::vector<std::string> old(known_replicas_.begin(), known_replicas_.end());
      std::sort(old.begin(), old.end());
      known_replicas_.clear();
      notice_ = absl::StrCat("failover: the primary is on WAL timeline ", *samples.primary_timeline,
                             " (was ", *timeline_, "), a promoted standby; ",
                             old.empty()
                                 ? std::string("watching its standbys")
                                 : absl::StrCat("no longer waiting for ", absl::StrJoin(old, ", "),
                                                ", watching the new primary's standbys"));
    }
    timeline_ = *samples.primary_timeline;
  }
  Learn(samples);
  if (was_measuring && !Measuring()) last_change_ = taken;  // growth waits an interval of running
  Verdict verdict = Judge(samples);
  budget_ratio_ = verdict.budget_ratio;
  signals_ = verdict.signals;
  limits_ = verdict.limits;
  // Rule 11: the slow start, once the baselines are known, where an application was seen.
  if (!slow_started_ && !Measuring() && KeepsBudget() && config_.start_pace > 0 &&
      (application_seen_ || !baseline_measured_)) {
    slow_started_ = true;
    start_decided_ = true;
    SetWorkers(1);
    SetPace(config_.start_pace);
    last_change_ = taken;  // the first pace runs an interval before it grows
  }
  // Rule 10: over budget with nothing left to slow down is a hold, and says so.
  if (verdict.budget_ratio > 1 && (KeepsBudget() || active_workers_ == 1) && pace_ > 0 &&
      pace_ <= PaceFloor() * 1.0001) {
    verdict.vetoes.push_back(absl::StrCat(
        "the application is over its budget (", verdict.pressure.front(),
        ") even at the slowest pace"));
  }
  if (!verdict.vetoes.empty()) {
    if (!held_) held_from_ = taken;
    held_ = true;
    clear_since_.reset();
    reason_ = absl::StrJoin(verdict.vetoes, "; ");
    last_veto_ = reason_;
  } else if (held_) {
    if (!clear_since_.has_value()) clear_since_ = taken;
    if (Covers(taken - *clear_since_, config_.resume_intervals)) {
      held_ = false;
      held_from_.reset();
      reason_.clear();
      last_change_ = taken;  // growth waits an interval of running, not of holding
    } else {
      reason_ = absl::StrCat(
          "resuming after ", HumanDuration(config_.interval * config_.resume_intervals),
          " within limits; held for: ", last_veto_);
    }
  } else {
    reason_.clear();
  }

  // Rule 6: AIMD on the worker count.
  if (pending_retries_ >= config_.retry_burst) {
    verdict.pressure.push_back(
        absl::StrCat(pending_retries_, " retryable failures since the last sample"));
  }
  // Rule 6's start: the first round judged that is healthy starts every worker; one that is not
  // keeps the start at one worker, grown one at a time.
  if (!start_decided_ && !Measuring()) {
    start_decided_ = true;
    if (config_.full_start && verdict.vetoes.empty() && verdict.pressure.empty()) {
      SetWorkers(config_.workers);
      last_change_ = taken;
    }
  }
  pending_retries_ = 0;
  lock_waiters_ = verdict.lock_waiters;
  pressure_ = absl::StrJoin(verdict.pressure, "; ");
  if (!verdict.pressure.empty()) {
    const bool budget_cut = KeepsBudget() && verdict.budget_ratio > 1;
    if (!was_held && !was_measuring && !Measuring() &&
        (!last_cut_.has_value() || Covers(taken - *last_cut_, 1)) &&
        (!budget_cut || CutHasShown(verdict.budget_ratio, taken))) {
      last_cut_ratio_ = budget_cut ? verdict.budget_ratio : 0;
      if (budget_cut) {
        // Rule 11: the rate the application can live with is found by the pace alone; halving
        // workers as well would cut twice.
        const double pace_before = pace_;
        CutPace(verdict.budget_ratio, taken);
        CountBudgetCut(verdict.budget_ratio, verdict.budget_relative, pace_before, taken);
      } else if (active_workers_ > 1) {
        SetWorkers(std::max(1, active_workers_ / 2));
      } else if (peak_rate_ > 0 || pace_ > 0) {
        // Rule 9: one worker is still too much. Holding alone would swing between full speed
        // and none; a rate the application can live with is found by halving it instead.
        CutPace(verdict.budget_ratio, taken);
      }
      last_cut_ = taken;
      last_change_ = taken;
    }
  } else if (!held_ && !Measuring() && verdict.budget_ratio < kSteadyFrom &&
             Covers(taken - *last_change_, 1) &&
             (!last_cut_.has_value() || Covers(taken - *last_cut_, config_.regrow_intervals))) {
    if (KeepsBudget()) {
      GrowWithinBudget(verdict.budget_ratio, taken);
    } else if (pace_ > 0) {
      // Recovery undoes rule 9 before rule 6: the rate first, then the workers.
      pace_ += peak_rate_ * kPaceStepFraction;
      if (pace_ >= peak_rate_) pace_ = 0;
      last_change_ = taken;
    } else if (active_workers_ < config_.workers) {
      SetWorkers(active_workers_ + 1);
      last_change_ = taken;
    }
  }
  return Current();
}

Decision Governor::Current() const {
  Decision decision;
  decision.active_workers = active_workers_;
  decision.rate_limit_rows_per_second = config_.max_rows_per_second;
  if (pace_ > 0) {
    decision.pace_rows_per_second = pace_;
    decision.rate_limit_rows_per_second =
        config_.max_rows_per_second > 0 ? std::min(config_.max_rows_per_second, pace_) : pace_;
  }
  decision.batch_target_scale = lock_waiters_ ? kLockWaiterTargetScale : 1.0;
  decision.pressure = pressure_;
  decision.budget_ratio = budget_ratio_;
  decision.signals = signals_;
  decision.limits = limits_;
  // Rule 10: a batch holds its row locks until it commits, so an application session that meets
  // one waits for the whole batch: cap the batch at what a statement may take.
  if (lock_waiters_ && statement_latency_.limit.enabled()) {
    const std::optional<double> level = statement_latency_.baseline.Level();
    if (!statement_latency_.limit.relative() || level.has_value()) {
      decision.batch_target_cap =
          absl::Seconds(statement_latency_.limit.Of(level.value_or(0)));
    }
  }
  if (!last_taken_.has_value()) {
    decision.hold = true;
    decision.reason = "waiting for the first throttle sample";
    return decision;
  }
  const absl::Duration age = clock_.Now() - *last_taken_;
  // A negative age cannot happen on a monotonic clock; on any other it is a step back, and the
  // samples' freshness is unknown: hold rather than trust them.
  if (age < absl::ZeroDuration() || age > config_.interval * config_.stale_intervals) {
    decision.hold = true;
    decision.reason = absl::StrCat("no throttle samples for ", HumanDuration(age));
    return decision;
  }
  if (Measuring()) {
    decision.hold = true;
    decision.reason = absl::StrCat(remeasure_from_.has_value() ? "re-measuring" : "measuring",
                                   " the application's baseline (", baseline_samples_, " of ",
                                   config_.baseline_intervals, " samples)");
    if (remeasure_from_.has_value()) absl::StrAppend(&decision.reason, ": ", remeasure_why_);
    return decision;
  }
  decision.hold = held_;
  decision.reason = reason_;
  return decision;
}

}  // namespace pgbackfill::throttle
