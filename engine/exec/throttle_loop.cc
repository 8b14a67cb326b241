// The runner's throttle loop: once per `throttle.interval` it takes one probe round, lets the
// governor judge it, reads the operator's control row (pause / resume / abort / set) and wakes the
// workers, which ask HoldReason() before every batch. The decisions themselves are the governor's
// (throttle/governor.h) and the plan parser's (plan/settings.h); this file only moves their
// results to where the workers look.
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "pgbackfill/plan/settings.h"
#include "pgbackfill/throttle/probe_sql.h"
#include "pgbackfill/util/strings.h"
#include "runner_internal.h"

namespace pgbackfill::exec::internal {
namespace {

// Governor rule 11's slow start: the first pace is one first-size batch per this period.
constexpr absl::Duration kSlowStartPeriod = absl::Seconds(5);

// Every reading of a round that could not be taken at all (the monitoring connection could not
// be opened), so that the governor holds on whatever it checks, with this reason.
throttle::Samples Unreadable(absl::Time taken, const absl::Status& why) {
  throttle::Samples samples;
  samples.taken = taken;
  samples.replicas = why;
  samples.lock_waiters = why;
  samples.wal_bytes_per_second = why;
  samples.canary_latency = why;
  samples.custom = why;
  samples.autovacuum = why;
  samples.statement_latency = why;
  samples.session_load = why;
  samples.commit_latency = why;
  samples.cpu_pressure = why;
  samples.slots = why;
  samples.archiver = why;
  samples.command = why;
  return samples;
}

// Whether going from `before` to `after` switches one of the probes on or off.
bool ProbesChange(const plan::Plan& before, const plan::Plan& after) {
  const plan::Throttle& a = before.throttle;
  const plan::Throttle& b = after.throttle;
  return a.ReadsStatements() != b.ReadsStatements() ||
         a.max_commit_latency.enabled() != b.max_commit_latency.enabled() ||
         a.max_active_sessions.enabled() != b.max_active_sessions.enabled() ||
         a.max_cpu_pressure.enabled() != b.max_cpu_pressure.enabled() ||
         (a.max_slot_wal > 0) != (b.max_slot_wal > 0) ||
         (a.max_archive_pending > 0) != (b.max_archive_pending > 0);
}

}  // namespace

throttle::GovernorConfig Runner::GovernorConfigFor(const plan::Plan& plan) const {
  throttle::GovernorConfig config = throttle::ConfigFromPlan(plan.throttle, plan.workers);
  config.table = plan::QuoteQualified(report_.table->name);
  // A rate that knows nothing of the table's rows but keeps the first batches far apart.
  config.start_pace =
      static_cast<double>(plan.batch.rows) / absl::ToDoubleSeconds(kSlowStartPeriod);
  // The plan's directly probed standbys must answer every round; the others become required
  // once seen (the governor's rule 2).
  if (throttle_.prober != nullptr) config.expected_replicas = throttle_.prober->DirectReplicaNames();
  // A round may take up to the probes' budget (timeouts of twice the interval and more), and its
  // samples are stamped at its start: staleness must allow a whole slow round plus the wait for
  // the next, or a short interval would read every slow-but-answered round as "no samples".
  const absl::Duration round = throttle_.prober != nullptr
                                   ? throttle_.prober->RoundBudget()
                                   : throttle::ProbeStatementTimeout(plan.throttle.interval) +
                                         absl::Milliseconds(500);
  const double intervals =
      std::ceil(absl::FDivDuration(round + plan.throttle.interval, plan.throttle.interval));
  config.stale_intervals = std::max(config.stale_intervals, static_cast<int>(intervals));
  return config;
}

asio::awaitable<void> Runner::GuardedThrottleLoop() {
  // Spawned detached like the workers: an exception must end the job, not leave every worker
  // waiting for decisions that never come.
  try {
    co_await ThrottleLoop();
  } catch (const std::exception& e) {
    Fail(absl::StrCat("the throttle loop stopped on an internal error: ", e.what()));
  }
}

asio::awaitable<void> Runner::ThrottleLoop() {
  while (workers_running_ > 0) {
    const absl::Time round = throttle_.clock.Now();
    co_await ProbeRound();
    if (workers_running_ == 0) break;
    ReadOperatorControl();
    ApplyDecision();
    const absl::Duration rest = live_.throttle.interval - (throttle_.clock.Now() - round);
    if (rest > absl::ZeroDuration()) {
      throttle_timer_->expires_after(absl::ToChronoNanoseconds(rest));
      boost::system::error_code ec;
      co_await throttle_timer_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }
}

asio::awaitable<void> Runner::ProbeRound() {
  const absl::Time taken = throttle_.clock.Now();
  if (throttle_.prober == nullptr) {
    // The probes watch the written database: between databases the default canary reads `into`
    // by the key it was copied into.
    std::vector<std::string> key_columns;
    for (const catalog::Column& column : report_.key->columns) key_columns.push_back(column.name);
    if (moves_) key_columns = report_.target_key;
    throttle::ProbeConfig config = throttle::ProbeConfigFromPlan(
        live_, moves_ ? report_.target->name : report_.table->name, std::move(key_columns));
    config.dsn = dsn_;  // --dsn wins over the plan's, as for the workers
    auto created = co_await throttle::Prober::Create(std::move(config));
    if (!created.ok()) {
      // Fail closed: every checked signal holds, and says why.
      // (Create is bounded by the probes' connect and statement timeouts.)
      throttle_.decision = throttle_.governor->Update(Unreadable(
          taken, absl::UnavailableError(absl::StrCat("the monitoring connection failed: ",
                                                     created.status().message()))));
      co_return;
    }
    throttle_.prober = std::move(created).value();
    throttle_.governor->SetConfig(GovernorConfigFor(live_));
  }
  throttle::Samples samples = co_await throttle_.prober->Sample(taken, WorkerPids());
  throttle_.decision = throttle_.governor->Update(samples);
  if (std::string notice = throttle_.governor->TakeNotice(); !notice.empty()) {
    events_.Emit(events::Warning{std::move(notice)});
  }
}

void Runner::ReadOperatorControl() {
  // The control row lives in the job store, so `pgbackfill pause|resume|abort|set` work from any
  // host. When it cannot be read, the last known state stands; the probes (same server) hold the
  // job meanwhile if the server is really gone.
  // One statement per interval on a healthy session; the ping and reconnect of EnsureControl()
  // only after a failure.
  if (!store_.has_value()) return;
  absl::StatusOr<checkpoint::JobControl> control = store_->LoadControl(plan_.name);
  if (!control.ok()) {
    if (!EnsureControl().ok()) return;
    control = store_->LoadControl(plan_.name);
    if (!control.ok()) return;
  }
  ApplySettings(control->settings);

  const std::string by = control->control_by.empty() ? "an operator" : control->control_by;
  if (control->control != throttle_.control_seen) {
    throttle_.control_seen = control->control;
    events_.Emit(
        events::Control{.control = control->control, .by = by, .at = control->control_at});
  }
  if (control->control == "pause") {
    throttle_.operator_hold = absl::StrCat("paused by ", by,
                                  control->control_at.empty() ? "" : " at ", control->control_at,
                                  "; `pgbackfill resume ", plan_.name, "` continues");
  } else {
    throttle_.operator_hold.clear();
  }
  if (control->control == "abort" && !throttle_.aborted_by.has_value()) {
    // Stop after the batches in flight, like a first signal; the job ends as aborted.
    throttle_.aborted_by = by;
    stopping_ = true;
    WakeWorkers();
  }
}

void Runner::ApplySettings(const std::map<std::string, std::string>& settings) {
  if (settings == throttle_.settings_applied) return;
  // Always from the plan file, so that a key dropped from the overrides goes back to the plan's
  // value. `pgbackfill set` validated every value already; one that fails here (written by hand,
  // or by a newer pgbackfill) is reported and skipped rather than stopping the job.
  plan::Plan next = plan_;
  std::map<std::string, std::string> applied;
  for (const auto& [key, value] : settings) {
    if (absl::Status status = plan::ApplySetting(next, key, value); !status.ok()) {
      events_.Emit(events::Warning{
          absl::StrCat("ignoring the setting ", key, "=", value, ": ", status.message())});
      continue;
    }
    applied[key] = value;
  }
  // A setting that switches a probe on or off needs a Prober with other readings: the next round
  // makes one (the governor would hold on a reading nobody takes).
  if (throttle_.prober != nullptr && ProbesChange(live_, next)) throttle_.prober.reset();
  live_ = std::move(next);
  throttle_.settings_applied = settings;
  throttle_.governor->SetConfig(GovernorConfigFor(live_));
  throttle_.batch_target = BatchTarget();
  for (BatchSizer* sizer : sizers_) sizer->SetTarget(throttle_.batch_target);
  SpawnWorkers(live_.workers);

  events_.Emit(events::Settings{.settings = std::move(applied), .workers = live_.workers});
}

void Runner::ApplyDecision() {
  // Current(), not the last Update(): it also holds when the samples went stale.
  throttle_.decision = throttle_.governor->Current();
  const std::string reason =
      !throttle_.operator_hold.empty() ? throttle_.operator_hold : (throttle_.decision.hold ? throttle_.decision.reason : "");
  const bool held = !reason.empty();
  if (held != throttle_.was_held) {
    events::Throttle event;
    event.state = held ? "held" : "running";
    if (held) event.reason = reason;
    events_.Emit(event);
    throttle_.was_held = held;
    if (held) {
      throttle_.held_since = absl::Now();
    } else if (throttle_.held_since.has_value()) {
      summary_.held += absl::Now() - *throttle_.held_since;
      throttle_.held_since.reset();
    }
  }
  throttle_.reason = reason;

  if (const absl::Duration target = BatchTarget(); target != throttle_.batch_target) {
    throttle_.batch_target = target;
    for (BatchSizer* sizer : sizers_) sizer->SetTarget(target);
  }
  if (throttle_.decision.rate_limit_rows_per_second != throttle_.limiter.rate()) {
    throttle_.limiter.SetRate(throttle_.decision.rate_limit_rows_per_second, throttle_.clock.Now());
  }
  if (!held && (throttle_.decision.active_workers != throttle_.active_reported ||
                throttle_.decision.pace_rows_per_second != throttle_.pace_reported)) {
    events::Concurrency event;
    event.active_workers = throttle_.decision.active_workers;
    event.max_workers = live_.workers;
    if (throttle_.decision.pace_rows_per_second > 0) {
      event.pace_rows_per_second = static_cast<int64_t>(throttle_.decision.pace_rows_per_second);
    }
    if (!throttle_.decision.pressure.empty()) event.pressure = throttle_.decision.pressure;
    events_.Emit(event);
    throttle_.active_reported = throttle_.decision.active_workers;
    throttle_.pace_reported = throttle_.decision.pace_rows_per_second;
  }
  WakeWorkers();
}

absl::Duration Runner::BatchTarget() const {
  absl::Duration target = live_.batch.target * throttle_.decision.batch_target_scale;
  // While sessions wait on our rows, a batch is what each of them waits for.
  if (throttle_.decision.batch_target_cap > absl::ZeroDuration()) {
    target = std::min(target, throttle_.decision.batch_target_cap);
  }
  return target;
}

std::string Runner::HoldReason(int index) const {
  if (!throttle_.operator_hold.empty()) return throttle_.operator_hold;
  const throttle::Decision current = throttle_.governor->Current();
  if (current.hold) return current.reason.empty() ? "held by the throttle" : current.reason;
  if (Parked(index)) return "parked by the concurrency limit";
  return "";
}

bool Runner::Parked(int index) const {
  const auto it = live_workers_.find(index);
  const auto rank = std::distance(live_workers_.begin(), it);
  return it == live_workers_.end() || rank >= throttle_.governor->Current().active_workers;
}

asio::awaitable<void> Runner::WaitForGate(asio::steady_timer& gate, absl::Duration at_most) {
  gate.expires_after(absl::ToChronoNanoseconds(std::max(at_most, absl::Milliseconds(1))));
  boost::system::error_code ignored;
  co_await gate.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
}

void Runner::WakeWorkers() {
  for (asio::steady_timer* gate : gates_) gate->cancel();
}

std::vector<int> Runner::WorkerPids() const {
  std::vector<int> pids;
  for (const pg::AsyncConnection* conn : connections_) {
    if (conn->BackendPid() != 0) pids.push_back(conn->BackendPid());
  }
  return pids;
}

}  // namespace pgbackfill::exec::internal
