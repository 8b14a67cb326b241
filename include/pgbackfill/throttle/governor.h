// The throttling governor: turns probe samples into "hold or run", how many workers may run,
// a rate limit and a batch-time scale, with a reason users see. Pure and clock-injected: no I/O,
// no threads, no sleeping. Probes produce Samples (sample.h); the runner calls Update() once per
// probe round and Current() before each batch, and obeys the Decision.
//
// The rules (every duration below is in sample time, `Samples::taken`, except staleness, which
// compares the clock with the newest sample):
//
//  1. Veto. Any checked signal over its threshold holds all work. Thresholds are strict ("more
//     than"): a signal exactly at its limit runs. The reason lists every signal over its limit,
//     in a fixed order (replicas in sample order, lock waiters, WAL rate, canary, custom query,
//     autovacuum), joined by "; ", each naming the signal, the object and measured vs limit,
//     e.g. "replica standby1 replay lag 7.2s > 5.0s". All of them, not the first: an operator
//     fixing one cause should not discover the next only after the next pause.
//  2. Fail closed. A checked signal that could not be read holds, with the probe's error as
//     reason: a failed probe, a reading left NotMeasured(), a standby whose own status is an error
//     or whose checked lag is missing (a standby that is not idle and reports no replay lag
//     holds when time lag is checked). A standby that was expected (`expected_replicas`) or
//     seen in an earlier sample and is absent now holds ("replica X disappeared"): a standby
//     that drops out of pg_stat_replication is exactly the one that may be falling behind.
//     Only ForgetReplica() clears that (an operator removed the standby on purpose), and a
//     failover: a new primary timeline (Samples::primary_timeline) means the run now writes to
//     a promoted standby, whose own standbys are the ones watched from then on (TakeNotice()
//     says so once).
//  3. Staleness. Before the first sample, and whenever the newest sample is older than
//     `stale_intervals` intervals, work holds ("no throttle samples for 4.0s"): a stuck prober
//     must not read as healthy. A sample that arrives after such a gap counts as the end of a hold.
//  4. Hysteresis. Once held, work resumes only after every signal stayed at or below its limit
//     for `resume_intervals` intervals (measured from the first clear sample). Lag drains slowly;
//     resuming at the first good sample would pause and resume every interval.
//  5. Idle standby. Time lag is ignored while a standby reports idle (replay caught up); its byte
//     lag still counts. See ReplicaSample::idle.
//  6. Workers, AIMD. The first sample judged (after any baseline) starts `workers` when it is
//     healthy (not held, no pressure: no signal near its limit); otherwise the job starts at 1
//     worker, as before any sample. Each sample that is healthy at least one interval after the
//     last change adds one worker, up to `workers`. Pressure halves the count (not below
//     1), at most once per interval, and then no growth for `regrow_intervals` intervals.
//     Pressure is: a numeric signal above `pressure_fraction` of its limit (so the cut usually
//     comes before the veto; over the limit counts too), any lock waiter at all, or at least
//     `retry_burst` retryable failures (ReportRetries) since the previous sample. While held no
//     work runs, so no further cuts are made: the lag our earlier work left behind is not a verdict
//     on the current concurrency.
//  7. Batch time. While any lock waiter is seen, `batch_target_scale` is 0.5 (the runner scales
//     the batch sizer's target by it): a batch holds its row locks for its whole duration, so
//     shorter batches are what waiting application sessions need. Otherwise 1.
//  8. Rate. `max_rows_per_second` is passed through as the Decision's rate limit; the runner
//     enforces it with a RateLimiter shared by all workers.
//  9. Pacing, AIMD on the rate. Pressure that finds rule 6 already at 1 worker halves a pace: a
//     rows/s cap starting from the rate of the last interval the job ran unheld (ReportRows), never
//     below 5% of the highest such rate seen. Healthy samples (with rule 6's timing) raise it by
//     2.5% of that peak, and at the peak it is dropped; only then do workers grow again. The
//     Decision's rate limit is the smaller of the pace and `max_rows_per_second`. On/off holds
//     alone make the application's latency swing between the backfill at full speed and none;
//     a pace lets the backfill run at the rate the application leaves free.
// 10. What the application feels, against a budget. The application's statement latency (the
//     mean of its statements, and their tail: mean + 3 standard deviations), commit latency,
//     active sessions and the server's CPU pressure (the share of the interval a runnable task
//     waited for a CPU) are each compared with their limit, absolute or a multiple of the signal's
//     baseline (baseline.h): measured over `baseline_intervals` samples before any work (the job
//     holds meanwhile, "measuring the application's baseline"), again from the samples of a
//     hold that has lasted `kRebaselineAfter` intervals (the median of up to 15 such readings),
//     and anew when rule 12 re-measures.
//     Commit latency (one timed commit per sample), the statement tail and CPU pressure are
//     judged by the median of their last 3 readings, so that one slow flush or a few stray calls
//     do not cut the pace. A `throttle.command` that prints a number is one more signal: the
//     application's latency as a share of its own budget (1 = at the budget), for an SLO kept
//     outside PostgreSQL (a command that never printed one keeps no budget). Their worst ratio
//     reading / limit drives the pace instead of an on/off hold (rule 11); for CPU pressure
//     with a relative limit, the part of its room over the baseline used, (reading - baseline)
//     / (limit - baseline), 0 below the baseline (the job's share of the time adds to the
//     application's); a limit with no room over its baseline (`1x`) is judged as reading / limit.
//     Only above `hold_ratio`, or above 1 with the pace already at its floor, does it hold. A
//     statement-latency sample with no application calls, pg_stat_statements missing or CPU
//     pressure unavailable (FailedPrecondition) says nothing and is left out; any other
//     unreadable signal holds (rule 2). While sessions wait on our locks the batch time is capped
//     at the statement-latency limit (rule 7's stronger form). Replication slots retaining more
//     than `max_slot_wal` (or with WAL lost), an archiver behind by more than `max_archive_pending`
//     (or failing with that much pending), and a `throttle.command` that exits non-zero or prints
//     true veto like rule 1.
// 11. The budget's pace. With any rule 10 signal checked the job keeps a budget rather than
//     swinging: it starts paced at `start_pace` rows/s on one worker (slow start: the first
//     batches after the baseline must not land at full speed) when an application was there while
//     the baseline was measured (statements finished, sessions active, or pg_stat_statements
//     could not tell), or when no baseline was measured; with none seen, rule 6's start applies and
//     the budget still cuts the pace once one shows up. Nobody to protect: while the session
//     look finds no application backend busy within the interval (SessionLoad::recent 0, none
//     active) and no application statement finished, rule 10 judges nothing but unreadable
//     signals (the job's own load on an idle server would otherwise hold it through the commit
//     latency of its own heartbeat). When the first baseline sample finds nobody, the baseline is
//     put off and the job starts at once; the first sample that finds an application holds the
//     job while the baseline is measured, then the slow start applies. The pace aims at 0.95 of the
//     budget: each healthy interval (rule 6's timing) below 0.9 of it, the pace grows by 0.95 /
//     ratio (between 1.05 and 1.15 times: half again over the readings' window of 3 intervals);
//     from 0.9 to 1 it stays (steady). A pace the job does not reach (under half of it over the
//     3 intervals and 3 batches since it was set) grows the workers instead, and at the worker
//     ceiling pacing ends. Over 1 the pace is cut to 0.95 / ratio of the rate the job reached
//     over the 3 intervals the readings judged (between 0.2 and 0.85 of it), at most once per
//     interval, then no growth for `regrow_intervals`; workers are not halved as well. Until
//     the readings judged are all from after a cut (3 intervals: the median's window), the next
//     cut needs a worse ratio than the one that made it: a reading that still shows the rate
//     before the cut, or an overshoot the job did not cause (the application's own burst), would
//     otherwise cut again every interval, down to the floor; a worse ratio in that window is cut
//     from the rate the last cut was made from (it judges the same intervals). From 0.8 of the
//     rate a budget cut was made from, the pace grows by 1.05 at most, and past that rate once
//     per 3 intervals: the readings lag, and a step every interval would land past it again
//     before they show it. Judged within the budget at 1.1 times that rate, it is forgotten: it was
//     not the edge. The floor is a tenth of `start_pace` (5% of the peak rate without one): the
//     budget, not the job's speed, decides how slow it goes.
// 12. Re-measuring. A baseline goes stale when the application's own load changes: readings just
//     over a relative limit then cut the pace again and again for an overshoot the job does not
//     make. When 3 budget cuts in a row, each made for a relative limit and a ratio of at most
//     1.25, took the pace below half the rate the first was made from, the job holds and measures
//     every baseline anew: `kRebaselineAfter` intervals for its last batches to drain, then
//     `baseline_intervals` samples, as before the first batch. It resumes at the pace it had,
//     with the cuts' memory (rule 11's edge) forgotten. A larger overshoot is the job's own
//     doing: it is not counted, and the pace it took does not count towards the half. Growth
//     back to the rate the first cut was made from, or 15 intervals without a counted cut, starts
//     a new row. At most once per 30 intervals: a load that our own work does make costs a few
//     seconds' hold, not a hold each time the pace is cut. Never with `baseline_intervals` 0,
//     nor while the baseline is put off (rule 11). While any baseline is measured no cut is made
//     and the intervals do not count as run: the job is held.
// Durations compared to a multiple of the interval accept 10% less, so that a timer firing a
// little early does not cost a whole extra interval.
//
// Not thread-safe: one governor per job, used from the controller's strand. The Clock must
// outlive the governor.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pgbackfill/plan/plan.h"
#include "pgbackfill/throttle/baseline.h"
#include "pgbackfill/throttle/clock.h"
#include "pgbackfill/throttle/sample.h"

namespace pgbackfill::throttle {

// What is checked and the limits. For durations and byte counts, 0 means "not checked", as in the
// plan file (docs/plan-reference.md).
struct GovernorConfig {
  absl::Duration interval = absl::Seconds(1);  // the probe period; every cooldown is a multiple
  absl::Duration max_replica_lag = absl::Seconds(5);
  int64_t max_replica_lag_bytes = 0;
  // Standbys that must be present in every sample (names as the replica probe reports them),
  // e.g. the plan's directly probed `replicas`. Others become required once seen.
  std::vector<std::string> expected_replicas;
  std::optional<int> max_lock_waiters = 0;  // hold above this many; nullopt = not checked
  int64_t max_wal_bytes_per_second = 0;
  absl::Duration max_canary_latency = absl::ZeroDuration();
  bool check_custom = false;  // a `throttle.query` is configured
  // Hold while autovacuum processes the target table (Samples::autovacuum). Not a numeric
  // signal: it vetoes but never counts as pressure, since it says nothing about our concurrency.
  bool hold_on_autovacuum = false;
  // The target table as users read it ("public.users"), for the autovacuum reason; the runner
  // fills it, a plan's throttle section does not know the table.
  std::string table;
  // Rule 10. A limit that is not enabled() is not checked.
  plan::Limit statement_latency;  // seconds
  plan::Limit statement_tail;     // seconds
  plan::Limit commit_latency;     // seconds
  plan::Limit active_sessions;    // sessions
  plan::Limit cpu_pressure;       // a share of the time, 0 to 1
  int baseline_intervals = 5;
  double hold_ratio = 1.5;
  int64_t max_slot_wal = 0;
  int64_t max_archive_pending = 0;
  bool check_command = false;
  // Rule 11's first pace, rows/s; 0 = no slow start. The runner derives it from the plan.
  double start_pace = 0;
  double max_rows_per_second = 0;  // 0 = unlimited
  int workers = 4;                 // the ceiling of active workers
  // Rule 6's start: the first healthy round judged starts every worker (false: one, then AIMD).
  bool full_start = true;

  double pressure_fraction = 0.7;
  int retry_burst = 3;
  int stale_intervals = 3;
  int resume_intervals = 2;
  int regrow_intervals = 3;

  bool checks_replicas() const {
    return max_replica_lag > absl::ZeroDuration() || max_replica_lag_bytes > 0;
  }
};

// The configuration a plan asks for. expected_replicas stays empty: only the probe wiring knows
// the names it gives the plan's replica DSNs.
GovernorConfig ConfigFromPlan(const plan::Throttle& throttle, int workers);

// One application signal as the last sample read it, for progress and events.
struct SignalReading {
  std::string name;  // statement_latency, statement_tail, commit_latency, active_sessions,
                     // cpu_pressure, command
  double value = 0;  // seconds, sessions, a share of the time (0 to 1) or a ratio
  std::optional<double> baseline;  // unknown until measured
  double limit = 0;
};

// A numeric veto signal (rules 1 and 10's vetoes) as the last sample read it, for progress and
// metrics. Base units: seconds, bytes, bytes per second, a count.
struct LimitReading {
  std::string name;    // replica_lag, replica_lag_bytes, lock_waiters, wal_bytes_per_second,
                       // canary_latency, slot_wal_bytes, archive_pending_bytes
  std::string object;  // the replica or slot it is about; empty for the others
  double value = 0;
  double limit = 0;
};

// What the runner must do now.
struct Decision {
  bool hold = true;    // start no batch (batches in flight finish)
  std::string reason;  // why held, for users; empty when running
  int active_workers = 1;  // workers allowed to run batches (when not held)
  double rate_limit_rows_per_second = 0;  // over all workers; 0 = none
  double pace_rows_per_second = 0;        // rule 9's or 11's part of the limit; 0 = not pacing
  double batch_target_scale = 1.0;        // multiply the batch sizer's target by this
  // While sessions wait on our row locks: the batch time target at most this (rule 10); zero =
  // no cap.
  absl::Duration batch_target_cap = absl::ZeroDuration();
  double budget_ratio = 0;             // rule 10's worst reading / limit in the last sample
  std::vector<SignalReading> signals;  // rule 10's signals in the last sample
  std::vector<LimitReading> limits;    // the numeric veto signals read in the last sample
  std::string pressure;  // signals near or over their limit in the last sample (for logs)
};

// The verdict of a custom throttle query's value: "t"/"true" or a number >= 1 holds, "f"/"false"
// or a number < 1 runs; anything else is an error (and therefore holds).
absl::StatusOr<bool> CustomQueryHolds(std::string_view value);

class Governor {
 public:
  // Invalid settings are normalised: interval >= 1 ms, workers >= 1, interval multiples >= 1.
  Governor(GovernorConfig config, const Clock& clock);

  // Judges one probe round. A sample older than the newest one already seen is ignored.
  Decision Update(const Samples& samples);
  // The decision as of now: the last Update's verdict, held if samples went stale.
  Decision Current() const;
  // Retryable batch failures (lock timeout, deadlock, ...) since the last report; they count
  // towards rule 6's burst at the next Update.
  void ReportRetries(int n);
  // Rows committed since the last report: the backfill's own rate, which rules 9 and 11 pace.
  void ReportRows(int64_t rows);
  // Live change (`pgbackfill set`). Workers and rate apply at once (active workers are clamped
  // to the new ceiling); thresholds apply from the next Update. Known replicas are kept: a
  // config change is no reason to stop watching a standby.
  void SetConfig(GovernorConfig config);
  // Stop requiring a standby that was removed on purpose.
  void ForgetReplica(std::string_view name);
  // What the last Update found that the user should hear of once (a failover); empty if none.
  std::string TakeNotice();

  const GovernorConfig& config() const { return config_; }

 private:
  struct Verdict {
    std::vector<std::string> vetoes;
    std::vector<std::string> pressure;
    bool lock_waiters = false;
    double budget_ratio = 0;  // rule 10
    bool budget_relative = false;  // its worst signal's limit is taken of a baseline
    std::vector<SignalReading> signals;
    std::vector<LimitReading> limits;
  };
  // The slowest rule 10 signals are judged by the median of this many readings.
  static constexpr int kJudgedReadings = 3;
  // A baseline is the median of this many readings taken while no batch ran: the first
  // `baseline_intervals`, then those of holds. A statement tail swings by half from one second
  // to the next with the application alone, and a hold's two or three readings must not move
  // every limit by that much.
  static constexpr int kBaselineReadings = 15;
  // Rule 10's signals and their baselines.
  struct AppSignal {
    std::string name;
    plan::Limit limit;
    Baseline baseline;
    Baseline recent = Baseline(1);  // the reading judged: the median of the last few
  };

  Verdict Judge(const Samples& samples);
  void JudgeReplicas(const Samples& samples, Verdict& verdict);
  void JudgeApplication(const Samples& samples, Verdict& verdict);
  // One rule 10 signal: its ratio into the verdict, a veto when unreadable; nullopt reading or
  // `nobody` (no application there, rule 11) = nothing to judge this time.
  void JudgeAppSignal(AppSignal& signal, const absl::StatusOr<std::optional<double>>& reading,
                      bool nobody, Verdict& verdict);
  void JudgeWal(const Samples& samples, Verdict& verdict);
  void JudgeCommand(const Samples& samples, Verdict& verdict);
  // A statement limit is checked, so pg_stat_statements is read.
  bool ReadsStatements() const;
  // Rule 11: the session look answered and found no application backend busy within the
  // interval, none active, and no application statement finished.
  bool NobodyThere(const Samples& samples) const;
  // Before the first batch and during a long hold: the samples feed the baselines.
  void Learn(const Samples& samples);
  bool Measuring() const;
  // Some rule 10 limit is a multiple of a baseline (or offset from one).
  bool AnyRelative() const;
  // Rule 12: counts a budget cut (its ratio, whether the limit it was made for is relative, the
  // pace before it) into the current row of them; starts a re-measure when due.
  void CountBudgetCut(double ratio, bool relative, double pace_before, absl::Time taken);
  // Rule 12: forgets every baseline and the cuts' edge; Measuring() holds until measured anew.
  void StartRemeasure(absl::Time taken);
  // Rule 11 applies: a rule 10 signal is checked.
  bool KeepsBudget() const;
  // Rule 9's and 11's cut of the pace; `ratio` is rule 10's worst (0 = pressure of another kind).
  void CutPace(double ratio, absl::Time taken);
  double PaceFloor() const;
  // Rule 11's growth on a healthy interval.
  void GrowWithinBudget(double ratio, absl::Time taken);
  // Rule 11: the last budget cut can be seen in the readings judged now (all taken after it),
  // or `ratio` is worse than the one that made it; otherwise another cut would cut for the same
  // overshoot twice.
  bool CutHasShown(double ratio, absl::Time taken) const;
  // Unheld intervals the job ran: their length and the rows committed in them.
  struct Run {
    absl::Duration length;
    int64_t rows = 0;
    double rate() const;  // rows/s; 0 over no time
  };
  // The newest `intervals` of ran_, fewer once they cover `enough`.
  Run RecentRun(size_t intervals, absl::Duration enough) const;
  // The job's rate over its last unheld intervals at this pace and worker count, when they
  // cover long enough to tell (3 intervals and 3 batches).
  std::optional<double> ReachedRate() const;
  // The job's rate over its last 3 unheld intervals, whatever its pace: the rate the readings
  // judged now were taken at (a single interval swings by whole batches).
  double JudgedRate() const;
  // Changing either starts ReachedRate's window anew.
  void SetPace(double pace);
  void SetWorkers(int workers);
  // `elapsed` covers `intervals` intervals, with the 10% timer tolerance.
  bool Covers(absl::Duration elapsed, int intervals) const;

  GovernorConfig config_;
  const Clock& clock_;
  absl::flat_hash_set<std::string> known_replicas_;
  std::optional<std::string> timeline_;  // the primary's, as last read
  std::string notice_;
  std::optional<absl::Time> last_taken_;
  bool held_ = false;  // by a veto or a gap; before any sample, Current() holds anyway
  std::string reason_;                    // the hold reason of the last Update
  std::string last_veto_;                 // what caused the current hold, for the cooldown message
  std::optional<absl::Time> clear_since_;  // first clear sample of the current hold
  int active_workers_ = 1;
  std::optional<absl::Time> last_change_;  // last change of active_workers_ (or resume)
  std::optional<absl::Time> last_cut_;
  double last_cut_ratio_ = 0;  // rule 10's worst ratio that made the last cut; 0 = another cause
  int pending_retries_ = 0;
  // Rule 9: pacing. Below one worker there is nothing left to halve but the rate.
  int64_t pending_rows_ = 0;
  double running_rate_ = 0;  // rows/s over the last interval the job ran unheld
  double peak_rate_ = 0;     // the largest such rate: pacing ends when the pace gets back to it
  double pace_ = 0;          // the adaptive rows/s cap; 0 = none
  double over_budget_rate_ = 0;  // rule 11: the rate the last budget cut was made from; 0 = none
  // Rule 11: the unheld intervals run (the newest ran_at_pace_ of them since the pace or the
  // workers last changed); the largest ReportRows (about one batch); whether the slow start was
  // applied; whether the command printed a number (a command that only holds keeps no budget).
  std::deque<Run> ran_;
  size_t ran_at_pace_ = 0;
  int64_t largest_report_ = 0;
  bool slow_started_ = false;
  bool start_decided_ = false;      // rule 6's start, or rule 11's slow start, was applied
  bool application_seen_ = false;   // statements, busy sessions (or no way to tell) at baseline
  bool baseline_put_off_ = false;   // rule 11: nobody was there to measure; measure when one is
  bool baseline_measured_ = false;  // without a baseline, whether one is there is not known
  bool command_prints_ratio_ = false;
  bool lock_waiters_ = false;
  std::string pressure_;
  // Rule 10.
  AppSignal statement_latency_{"statement_latency", {}, Baseline(kBaselineReadings)};
  AppSignal statement_tail_{
      "statement_tail", {}, Baseline(kBaselineReadings), Baseline(kJudgedReadings)};
  AppSignal commit_latency_{
      "commit_latency", {}, Baseline(kBaselineReadings), Baseline(kJudgedReadings)};
  AppSignal active_sessions_{"active_sessions", {}, Baseline(kBaselineReadings)};
  AppSignal cpu_pressure_{
      "cpu_pressure", {}, Baseline(kBaselineReadings), Baseline(kJudgedReadings)};
  int baseline_samples_ = 0;  // samples taken into the baselines being measured
  // Rule 12: the run of budget cuts (the rate the first was made from, how many); the re-measure
  // under way (when it began) and the last one; what made it, for the hold's reason.
  double cuts_from_rate_ = 0;
  int cuts_in_row_ = 0;
  std::optional<absl::Time> last_counted_cut_;
  std::optional<absl::Time> remeasure_from_;
  std::optional<absl::Time> last_remeasure_;
  std::string remeasure_why_;
  std::optional<absl::Time> held_from_;  // when the current hold began
  double budget_ratio_ = 0;
  std::vector<SignalReading> signals_;
  std::vector<LimitReading> limits_;
};

// Token bucket for `throttle.max_rows_per_second`, shared by all workers: a worker asks before
// writing a batch and waits the returned time. Reservations may run into debt, so a batch larger
// than the bucket is not refused, it just makes the following callers wait longer; over any
// window the rows written stay within rate * window + burst. Pure (time is passed in); not
// thread-safe, one per job on the controller's strand.
class RateLimiter {
 public:
  // rows_per_second <= 0: unlimited. The bucket holds `burst` worth of rows and starts full.
  explicit RateLimiter(double rows_per_second, absl::Duration burst = absl::Seconds(1));

  // Reserves `rows`; returns how long to wait before writing them (zero if they fit now).
  absl::Duration Acquire(int64_t rows, absl::Time now);
  // Live change; the balance is kept (debt is not forgiven), capped at the new bucket size.
  void SetRate(double rows_per_second, absl::Time now);
  double rate() const { return rate_; }

 private:
  void Refill(absl::Time now);

  double rate_;
  absl::Duration burst_;
  double tokens_;  // may be negative: rows reserved ahead of the rate
  std::optional<absl::Time> last_;
};

}  // namespace pgbackfill::throttle
