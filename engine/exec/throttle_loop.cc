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

using nlohmann::json;

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
  return samples;
}

}  // namespace

throttle::GovernorConfig Runner::GovernorConfigFor(const plan::Plan& plan) const {
  throttle::GovernorConfig config = throttle::ConfigFromPlan(plan.throttle, plan.workers);
  config.table = plan::QuoteQualified(report_.table->name);
  // The plan's directly probed standbys must answer every round; the others become required
  // once seen (the governor's rule 2).
  if (prober_ != nullptr) config.expected_replicas = prober_->DirectReplicaNames();
  // A round may take up to the probes' budget (timeouts of twice the interval and more), and its
  // samples are stamped at its start: staleness must allow a whole slow round plus the wait for
  // the next, or a short interval would read every slow-but-answered round as "no samples".
  const absl::Duration round = prober_ != nullptr
                                   ? prober_->RoundBudget()
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
    const absl::Time round = clock_.Now();
    co_await ProbeRound();
    if (workers_running_ == 0) break;
    ReadOperatorControl();
    ApplyDecision();
    const absl::Duration rest = live_.throttle.interval - (clock_.Now() - round);
    if (rest > absl::ZeroDuration()) {
      throttle_timer_->expires_after(absl::ToChronoNanoseconds(rest));
      boost::system::error_code ec;
      co_await throttle_timer_->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }
}

asio::awaitable<void> Runner::ProbeRound() {
  const absl::Time taken = clock_.Now();
  if (prober_ == nullptr) {
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
      decision_ = governor_->Update(Unreadable(
          taken, absl::UnavailableError(absl::StrCat("the monitoring connection failed: ",
                                                     created.status().message()))));
      co_return;
    }
    prober_ = std::move(created).value();
    governor_->SetConfig(GovernorConfigFor(live_));
  }
  throttle::Samples samples = co_await prober_->Sample(taken, WorkerPids());
  decision_ = governor_->Update(samples);
}

void Runner::ReadOperatorControl() {
  // The control row lives in the job store, so `pgbackfill pause|resume|abort|set` work from any
  // host. When it cannot be read, the last known state stands; the probes (same server) hold the
  // job meanwhile if the server is really gone.
  // One statement per interval on a healthy session; the ping and reconnect of EnsureControl()
  // only after a failure.
  if (lock_lost_ || !store_.has_value()) return;
  absl::StatusOr<checkpoint::JobControl> control = store_->LoadControl(plan_.name);
  if (!control.ok()) {
    if (!EnsureControl().ok()) return;
    control = store_->LoadControl(plan_.name);
    if (!control.ok()) return;
  }
  ApplySettings(control->settings);

  const std::string by = control->control_by.empty() ? "an operator" : control->control_by;
  if (control->control != control_seen_) {
    control_seen_ = control->control;
    json event = Event("control");
    event["control"] = control->control;
    event["by"] = by;
    event["at"] = control->control_at;
    events_.Emit(event);
  }
  if (control->control == "pause") {
    operator_hold_ = absl::StrCat("paused by ", by,
                                  control->control_at.empty() ? "" : " at ", control->control_at,
                                  "; `pgbackfill resume ", plan_.name, "` continues");
  } else {
    operator_hold_.clear();
  }
  if (control->control == "abort" && !aborted_by_.has_value()) {
    // Stop after the batches in flight, like a first signal; the job ends as aborted.
    aborted_by_ = by;
    stopping_ = true;
    WakeWorkers();
  }
}

void Runner::ApplySettings(const std::map<std::string, std::string>& settings) {
  if (settings == settings_applied_) return;
  // Always from the plan file, so that a key dropped from the overrides goes back to the plan's
  // value. `pgbackfill set` validated every value already; one that fails here (written by hand,
  // or by a newer pgbackfill) is reported and skipped rather than stopping the job.
  plan::Plan next = plan_;
  json applied = json::object();
  for (const auto& [key, value] : settings) {
    if (absl::Status status = plan::ApplySetting(next, key, value); !status.ok()) {
      json warning = Event("warning");
      warning["message"] =
          absl::StrCat("ignoring the setting ", key, "=", value, ": ", status.message());
      events_.Emit(warning);
      continue;
    }
    applied[key] = value;
  }
  live_ = std::move(next);
  settings_applied_ = settings;
  governor_->SetConfig(GovernorConfigFor(live_));
  for (BatchSizer* sizer : sizers_) sizer->SetTarget(live_.batch.target * batch_scale_);
  SpawnWorkers(live_.workers);

  json event = Event("settings");
  event["settings"] = applied;
  event["workers"] = live_.workers;
  events_.Emit(event);
}

void Runner::ApplyDecision() {
  // Current(), not the last Update(): it also holds when the samples went stale.
  decision_ = governor_->Current();
  const std::string reason =
      !operator_hold_.empty() ? operator_hold_ : (decision_.hold ? decision_.reason : "");
  const bool held = !reason.empty();
  if (held != was_held_) {
    json event = Event("throttle");
    event["state"] = held ? "held" : "running";
    event["reason"] = held ? json(reason) : json();
    events_.Emit(event);
    was_held_ = held;
    if (held) {
      held_since_ = absl::Now();
    } else if (held_since_.has_value()) {
      summary_.held += absl::Now() - *held_since_;
      held_since_.reset();
    }
  }
  throttle_reason_ = reason;

  if (decision_.batch_target_scale != batch_scale_) {
    batch_scale_ = decision_.batch_target_scale;
    for (BatchSizer* sizer : sizers_) sizer->SetTarget(live_.batch.target * batch_scale_);
  }
  if (decision_.rate_limit_rows_per_second != limiter_.rate()) {
    limiter_.SetRate(decision_.rate_limit_rows_per_second, clock_.Now());
  }
  if (!held && (decision_.active_workers != active_reported_ ||
                decision_.pace_rows_per_second != pace_reported_)) {
    json event = Event("concurrency");
    event["active_workers"] = decision_.active_workers;
    event["max_workers"] = live_.workers;
    event["pace_rows_per_second"] = decision_.pace_rows_per_second > 0
                                        ? json(static_cast<int64_t>(decision_.pace_rows_per_second))
                                        : json();
    event["pressure"] = decision_.pressure.empty() ? json() : json(decision_.pressure);
    events_.Emit(event);
    active_reported_ = decision_.active_workers;
    pace_reported_ = decision_.pace_rows_per_second;
  }
  WakeWorkers();
}

std::string Runner::HoldReason(int index) const {
  if (!operator_hold_.empty()) return operator_hold_;
  const throttle::Decision current = governor_->Current();
  if (current.hold) return current.reason.empty() ? "held by the throttle" : current.reason;
  if (Parked(index)) return "parked by the concurrency limit";
  return "";
}

bool Runner::Parked(int index) const {
  const auto it = live_workers_.find(index);
  const auto rank = std::distance(live_workers_.begin(), it);
  return it == live_workers_.end() || rank >= governor_->Current().active_workers;
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
