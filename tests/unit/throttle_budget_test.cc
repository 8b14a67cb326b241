// Rule 10 of the governor: what the application feels, against a budget. The closed-loop tests
// put the governor in front of a simple model of a server, whose application statement latency
// grows with the backfill's rate, and check that the job settles near the best rate that keeps
// the budget, without swinging between full speed and hold.
#include <algorithm>
#include <cmath>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pgbackfill/throttle/baseline.h"
#include "pgbackfill/throttle/clock.h"
#include "pgbackfill/throttle/governor.h"

namespace pgbackfill::throttle {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kInterval = absl::Seconds(1);

GovernorConfig BudgetConfig(plan::Limit statement_latency) {
  GovernorConfig config;
  config.interval = kInterval;
  config.max_replica_lag = absl::ZeroDuration();  // only rule 10 here
  config.max_lock_waiters = std::nullopt;
  config.workers = 4;
  config.statement_latency = statement_latency;
  config.baseline_intervals = 5;
  return config;
}

Samples WithLatency(absl::Time taken, absl::Duration mean, int64_t calls = 1000) {
  Samples samples;
  samples.taken = taken;
  StatementLatency latency;
  latency.calls = calls;
  latency.mean = mean;
  samples.statement_latency = latency;
  return samples;
}

// A server whose application latency is `base` plus `cost` per 1,000 rows/s of backfill above
// `knee` rows/s (none below it: a CPU with room to spare).
struct Model {
  absl::Duration base = absl::Milliseconds(2);
  absl::Duration cost_per_krows = absl::Microseconds(125);  // 20k rows/s adds 2.5ms
  double rows_per_worker = 10'000;
  double knee = 0;

  absl::Duration Latency(double rate) const {
    return base + cost_per_krows * (std::max(0.0, rate - knee) / 1000);
  }
  // The best rate that keeps `limit`: where the latency reaches it.
  double Oracle(absl::Duration limit) const {
    return knee + absl::FDivDuration(limit - base, cost_per_krows) * 1000;
  }
};

// Which statistic of the statements the model's latency shows in: their mean, or only their tail
// (a few calls that wait for the CPU or a row lock, in thousands of quick ones); or none of
// them, only the server's CPU pressure (a share of 100 times the latency in seconds: 2ms = 20%).
enum class Shows { kMean, kTail, kCpuPressure };

// Drives the governor with the model for `intervals` intervals; the rate each interval.
class Loop {
 public:
  explicit Loop(GovernorConfig config, Shows shows = Shows::kMean)
      : governor_(std::move(config), clock_), shows_(shows) {}

  // The backfill's rate in the interval that starts now, by the current decision.
  double Rate(const Model& model) const {
    const Decision decision = governor_.Current();
    if (decision.hold) return 0;
    double rate = decision.active_workers * model.rows_per_worker;
    if (decision.rate_limit_rows_per_second > 0) {
      rate = std::min(rate, decision.rate_limit_rows_per_second);
    }
    return rate;
  }

  std::vector<double> Run(const Model& model, int intervals) {
    std::vector<double> rates;
    for (int i = 0; i < intervals; ++i) {
      const double rate = Rate(model);
      rates.push_back(rate);
      governor_.ReportRows(static_cast<int64_t>(rate * absl::ToDoubleSeconds(kInterval)));
      clock_.Advance(kInterval);
      Samples samples = WithLatency(clock_.Now(), model.Latency(rate));
      if (shows_ == Shows::kTail) {
        samples.statement_latency->tail = samples.statement_latency->mean;
        samples.statement_latency->mean = absl::Microseconds(20);
      }
      if (shows_ == Shows::kCpuPressure) {
        samples.cpu_pressure = absl::ToDoubleSeconds(samples.statement_latency->mean) * 100;
        samples.statement_latency->mean = absl::Microseconds(20);
      }
      const Decision decision = governor_.Update(samples);
      holds_ += decision.hold ? 1 : 0;
      if (decision.hold) reasons_.push_back(decision.reason);
      last_ = decision;
    }
    return rates;
  }

  int holds() const { return holds_; }
  const Decision& last() const { return last_; }
  // How many holds gave a reason that contains `text`.
  int HeldFor(std::string_view text) const {
    return static_cast<int>(std::count_if(reasons_.begin(), reasons_.end(), [&](const auto& r) {
      return r.find(text) != std::string::npos;
    }));
  }

 private:
  FakeClock clock_;
  Governor governor_;
  Shows shows_;
  int holds_ = 0;
  std::vector<std::string> reasons_;
  Decision last_;
};

double Mean(const std::vector<double>& values, size_t from) {
  double sum = 0;
  for (size_t i = from; i < values.size(); ++i) sum += values[i];
  return sum / static_cast<double>(values.size() - from);
}

TEST(BaselineTest, MedianOfTheLastReadings) {
  Baseline baseline(3);
  EXPECT_FALSE(baseline.Level().has_value());
  baseline.Add(5);
  baseline.Add(1);
  EXPECT_EQ(*baseline.Level(), 3);
  baseline.Add(100);  // one spike does not move the median far
  EXPECT_EQ(*baseline.Level(), 5);
  baseline.Add(2);
  baseline.Add(2);  // the window slides: 100, 2, 2
  EXPECT_EQ(*baseline.Level(), 2);
}

TEST(BudgetTest, HoldsWhileMeasuringTheBaselineThenRuns) {
  FakeClock clock;
  Governor governor(BudgetConfig({.factor = 1.25, .offset = 0.002}), clock);
  for (int i = 1; i <= 5; ++i) {
    clock.Advance(kInterval);
    const Decision decision = governor.Update(WithLatency(clock.Now(), absl::Milliseconds(2)));
    if (i < 5) {
      EXPECT_TRUE(decision.hold);
      EXPECT_THAT(decision.reason, HasSubstr("measuring the application's baseline"));
    } else {
      EXPECT_FALSE(decision.hold) << decision.reason;
    }
  }
  ASSERT_EQ(governor.Current().signals.size(), 1u);
  EXPECT_DOUBLE_EQ(*governor.Current().signals[0].baseline, 0.002);
  EXPECT_DOUBLE_EQ(governor.Current().signals[0].limit, 1.25 * 0.002 + 0.002);
}

// The slow start protects an application. On a server where the session look finds nobody (no
// backend busy within the interval, no statement finished) there is nobody to protect: the
// baseline is put off and the job starts at once with every worker. The first sample that finds
// an application holds the job while its baseline is measured, then the slow start applies.
TEST(BudgetTest, NobodyAtTheStartRunsAtOnceAndAnApplicationThatComesGetsItsBaselineAndSlowStart) {
  FakeClock clock;
  GovernorConfig config = BudgetConfig({.factor = 1.25, .offset = 0.002});
  config.active_sessions = {.factor = 2, .offset = 1};
  config.start_pace = 500;
  Governor governor(config, clock);
  auto sample = [&](int64_t calls, double active, int recent) {
    Samples samples = WithLatency(clock.Now(), absl::Milliseconds(2), calls);
    samples.session_load = SessionLoad{.active = active, .looks = 4, .recent = recent};
    return samples;
  };
  clock.Advance(kInterval);
  Decision decision = governor.Update(sample(0, 0, 0));
  EXPECT_FALSE(decision.hold) << "nobody to measure a baseline of: " << decision.reason;
  EXPECT_EQ(decision.active_workers, 4);
  EXPECT_EQ(decision.rate_limit_rows_per_second, 0) << "no slow start";
  for (int i = 0; i < 10; ++i) {
    governor.ReportRows(100'000);
    clock.Advance(kInterval);
    decision = governor.Update(sample(0, 0, 0));
    EXPECT_FALSE(decision.hold) << decision.reason;
  }

  // An application connects: an idle pooled session that ran a statement within the interval.
  governor.ReportRows(100'000);
  clock.Advance(kInterval);
  decision = governor.Update(sample(0, 0, 3));
  EXPECT_TRUE(decision.hold);
  EXPECT_THAT(decision.reason, HasSubstr("measuring the application's baseline"));
  for (int i = 0; i < 5; ++i) {
    clock.Advance(kInterval);
    decision = governor.Update(sample(1000, 1, 3));
  }
  EXPECT_FALSE(decision.hold) << decision.reason;
  EXPECT_EQ(decision.active_workers, 1);
  EXPECT_DOUBLE_EQ(decision.pace_rows_per_second, 500) << "the slow start, for the application";
}

// The job's own writes slow the commit of its heartbeat on an idle server; with nobody there that
// is no reason to hold, and an unreadable signal still holds.
TEST(BudgetTest, WithNobodyThereTheJobsOwnCommitLatencyDoesNotHoldItButAFailedProbeDoes) {
  FakeClock clock;
  GovernorConfig config = BudgetConfig({});
  config.statement_latency = {};
  config.commit_latency = {.factor = 2, .offset = 0.002};
  config.active_sessions = {.factor = 2, .offset = 1};
  Governor governor(config, clock);
  auto sample = [&](absl::Duration commit, int recent) {
    Samples samples;
    samples.taken = clock.Now();
    samples.statement_latency =
        absl::FailedPreconditionError("pg_stat_statements is not installed");
    samples.session_load = SessionLoad{.looks = 4, .recent = recent};
    samples.commit_latency = commit;
    return samples;
  };
  Decision decision;
  for (int i = 0; i < 10; ++i) {
    governor.ReportRows(100'000);
    clock.Advance(kInterval);
    decision = governor.Update(sample(absl::Milliseconds(40), 0));  // 100x an idle commit
    EXPECT_FALSE(decision.hold) << "interval " << i << ": " << decision.reason;
  }
  EXPECT_EQ(decision.active_workers, 4);
  Samples failed = sample(absl::Milliseconds(1), 0);
  failed.commit_latency = absl::UnavailableError("connection lost");
  clock.Advance(kInterval);
  failed.taken = clock.Now();
  decision = governor.Update(failed);
  EXPECT_TRUE(decision.hold);
  EXPECT_THAT(decision.reason, HasSubstr("connection lost"));
}

// Without a session look (max_active_sessions off) nothing can say "nobody": the baseline is
// measured before any work, as before.
TEST(BudgetTest, WithoutASessionLookTheBaselineIsStillMeasured) {
  FakeClock clock;
  Governor governor(BudgetConfig({.factor = 1.25, .offset = 0.002}), clock);
  Decision decision;
  for (int i = 1; i <= 5; ++i) {
    clock.Advance(kInterval);
    decision = governor.Update(WithLatency(clock.Now(), absl::Milliseconds(2), /*calls=*/0));
    if (i < 5) {
      EXPECT_TRUE(decision.hold);
      EXPECT_THAT(decision.reason, HasSubstr("measuring the application's baseline"));
    }
  }
  EXPECT_FALSE(decision.hold) << decision.reason;
}

TEST(BudgetTest, AnApplicationAtTheBaselineKeepsTheSlowStart) {
  FakeClock clock;
  GovernorConfig config = BudgetConfig({.factor = 1.25, .offset = 0.002});
  config.start_pace = 500;
  Governor governor(config, clock);
  Decision decision;
  for (int i = 1; i <= 5; ++i) {
    clock.Advance(kInterval);
    decision = governor.Update(WithLatency(clock.Now(), absl::Milliseconds(2)));
  }
  EXPECT_EQ(decision.active_workers, 1);
  EXPECT_DOUBLE_EQ(decision.pace_rows_per_second, 500);
}

TEST(BudgetTest, AnAbsoluteLimitNeedsNoBaseline) {
  FakeClock clock;
  Governor governor(BudgetConfig({.factor = 0, .offset = 0.010}), clock);
  clock.Advance(kInterval);
  EXPECT_FALSE(governor.Update(WithLatency(clock.Now(), absl::Milliseconds(3))).hold);
  clock.Advance(kInterval);
  const Decision over = governor.Update(WithLatency(clock.Now(), absl::Milliseconds(30)));
  EXPECT_TRUE(over.hold);
  EXPECT_THAT(over.reason, HasSubstr("application statement latency 30.0ms > 10.0ms"));
}

TEST(BudgetTest, IdleApplicationAndMissingExtensionSayNothingButOtherErrorsHold) {
  FakeClock clock;
  Governor governor(BudgetConfig({.factor = 0, .offset = 0.010}), clock);
  clock.Advance(kInterval);
  EXPECT_FALSE(governor.Update(WithLatency(clock.Now(), absl::Seconds(9), /*calls=*/0)).hold);
  Samples missing;
  missing.statement_latency = absl::FailedPreconditionError("pg_stat_statements is not installed");
  clock.Advance(kInterval);
  missing.taken = clock.Now();
  EXPECT_FALSE(governor.Update(missing).hold);
  Samples failed;
  failed.statement_latency = absl::UnavailableError("connection lost");
  clock.Advance(kInterval);
  failed.taken = clock.Now();
  const Decision decision = governor.Update(failed);
  EXPECT_TRUE(decision.hold);
  EXPECT_THAT(decision.reason, HasSubstr("statement latency probe failed: connection lost"));
}

TEST(BudgetTest, AFailedStatementProbeHoldsOnceNamedWithEitherLimit) {
  // The mean and the tail come from one probe: its failure holds with one reason, and with
  // the tail's limit alone it still holds.
  Samples failed;
  failed.statement_latency = absl::UnavailableError("connection lost");
  for (const bool mean : {true, false}) {
    GovernorConfig config =
        BudgetConfig(mean ? plan::Limit{.factor = 0, .offset = 0.010} : plan::Limit{});
    config.statement_tail = {.factor = 0, .offset = 0.020};
    FakeClock clock;
    Governor governor(config, clock);
    clock.Advance(kInterval);
    failed.taken = clock.Now();
    const Decision decision = governor.Update(failed);
    EXPECT_TRUE(decision.hold) << "mean limit " << mean;
    EXPECT_EQ(decision.reason, mean ? "statement latency probe failed: connection lost"
                                    : "statement tail probe failed: connection lost");
  }
}

TEST(BudgetTest, SettlesNearTheBestRateThatKeepsTheBudgetWithoutHolding) {
  const plan::Limit limit{.factor = 1.25, .offset = 0.002};
  Model model;
  const double oracle = model.Oracle(absl::Milliseconds(2) * 1.25 + absl::Milliseconds(2));
  Loop loop(BudgetConfig(limit));
  const std::vector<double> rates = loop.Run(model, 300);
  const double settled = Mean(rates, 200);
  EXPECT_GE(settled, 0.7 * oracle) << "oracle " << oracle;
  EXPECT_LE(settled, 1.05 * oracle) << "oracle " << oracle;
  // After the start: never back to full speed, never a hold.
  for (size_t i = 200; i < rates.size(); ++i) {
    EXPECT_GT(rates[i], 0.4 * oracle) << "interval " << i;
    EXPECT_LT(rates[i], 1.2 * oracle) << "interval " << i;
  }
  EXPECT_LE(loop.holds(), 5 + 3);  // the baseline, and at most a few at the start
}

TEST(BudgetTest, SettlesAgainAfterTheApplicationGetsTwiceAsSensitive) {
  const plan::Limit limit{.factor = 1.25, .offset = 0.002};
  Model model;
  Loop loop(BudgetConfig(limit));
  loop.Run(model, 200);
  const int holds_before = loop.holds();
  model.cost_per_krows *= 2;  // a step change in load: the same rate now costs twice as much
  const double oracle = model.Oracle(absl::Milliseconds(2) * 1.25 + absl::Milliseconds(2));
  const std::vector<double> rates = loop.Run(model, 200);
  const double settled = Mean(rates, 100);
  EXPECT_GE(settled, 0.7 * oracle) << "oracle " << oracle;
  EXPECT_LE(settled, 1.05 * oracle) << "oracle " << oracle;
  for (size_t i = 100; i < rates.size(); ++i) {
    EXPECT_LT(rates[i], 1.2 * oracle) << "interval " << i;
  }
  EXPECT_LE(loop.holds() - holds_before, 3);
}

// The shape this machine's benchmark shows: one worker reaches 150k rows/s, and the application
// keeps its budget only below about 1% of that.
Model NarrowModel() {
  Model model;
  model.rows_per_worker = 150'000;
  model.cost_per_krows = absl::Microseconds(1500);  // the oracle is 1,667 rows/s
  return model;
}

TEST(BudgetTest, StartsSlowAfterTheBaselineInsteadOfAtFullSpeed) {
  const plan::Limit limit{.factor = 1.25, .offset = 0.002};
  const Model model = NarrowModel();
  const double oracle = model.Oracle(absl::Milliseconds(2) * 1.25 + absl::Milliseconds(2));
  GovernorConfig config = BudgetConfig(limit);
  config.start_pace = 1000;
  Loop loop(config);
  const std::vector<double> rates = loop.Run(model, 120);
  // The first interval after the 5 of the baseline runs at the start pace, on one worker.
  EXPECT_EQ(rates[4], 0);
  EXPECT_DOUBLE_EQ(rates[5], 1000);
  // No interval ever comes near full speed (150k rows/s): the overshoots stay small.
  for (size_t i = 5; i < rates.size(); ++i) {
    EXPECT_LT(rates[i], 2.5 * oracle) << "interval " << i;
  }
  const double settled = Mean(rates, 60);
  EXPECT_GE(settled, 0.7 * oracle) << "oracle " << oracle;
  EXPECT_LE(settled, 1.05 * oracle) << "oracle " << oracle;
  EXPECT_LE(loop.holds(), 5);  // only the baseline
}

TEST(BudgetTest, TheFirstRampLandsAtMostHalfAgainPastAnEdgeTheReadingsDidNotForeshow) {
  // The application feels nothing up to 5,000 rows/s, then much (its tail, judged by the median
  // of three readings): a low reading says nothing of how near the edge is, so the ramp must be
  // gentle enough that the lagging readings stop it soon past the edge.
  const plan::Limit limit{.factor = 1.25, .offset = 0.002};
  Model model = NarrowModel();
  model.knee = 5000;
  const double oracle = model.Oracle(absl::Milliseconds(2) * 1.25 + absl::Milliseconds(2));
  GovernorConfig config = BudgetConfig({});
  config.statement_tail = limit;
  config.start_pace = 1000;
  Loop loop(config, Shows::kTail);
  const std::vector<double> rates = loop.Run(model, 60);
  EXPECT_LT(*std::max_element(rates.begin(), rates.end()), 1.6 * oracle) << "oracle " << oracle;
  EXPECT_GE(Mean(rates, 30), 0.7 * oracle) << "oracle " << oracle;
}

TEST(BudgetTest, AfterASlowStartTheJobStillGetsTheWorkersTheBudgetAllows) {
  // One worker makes 10k rows/s and the budget allows 20k: a paced start must not end on one.
  const plan::Limit limit{.factor = 1.25, .offset = 0.002};
  Model model;
  const double oracle = model.Oracle(absl::Milliseconds(2) * 1.25 + absl::Milliseconds(2));
  GovernorConfig config = BudgetConfig(limit);
  config.start_pace = 1000;
  Loop loop(config);
  const std::vector<double> rates = loop.Run(model, 200);
  const double settled = Mean(rates, 120);
  EXPECT_GE(settled, 0.7 * oracle) << "oracle " << oracle;
  EXPECT_LE(settled, 1.05 * oracle) << "oracle " << oracle;
  EXPECT_GE(loop.last().active_workers, 2);
  EXPECT_LT(loop.last().rate_limit_rows_per_second, 1e6) << "the pace grew past any use";
}

TEST(BudgetTest, ALargeOvershootCutsDeeplyAtOnce) {
  // Unpaced at 150k rows/s when the budget is noticed 30x over: one cut, not a dozen halvings.
  const Model model = NarrowModel();
  GovernorConfig config = BudgetConfig({.factor = 0, .offset = 0.0045});
  config.workers = 1;
  config.hold_ratio = 100;  // keep running, to see the cut itself
  FakeClock clock;
  Governor governor(config, clock);
  governor.ReportRows(150'000);
  clock.Advance(kInterval);
  governor.Update(WithLatency(clock.Now(), model.Latency(0)));
  governor.ReportRows(150'000);
  clock.Advance(kInterval);
  const Decision cut = governor.Update(WithLatency(clock.Now(), model.Latency(150'000)));
  EXPECT_FALSE(cut.hold);
  EXPECT_DOUBLE_EQ(cut.pace_rows_per_second, 150'000 * 0.2);
}

// One worker at 10,000 rows/s against an absolute budget of 2 ms, kept running over it to see
// the cuts themselves: each interval it reports the rows of the pace last decided.
class OneWorkerAt10000 {
 public:
  // The pace decided after an interval whose application latency was `latency`.
  double Interval(absl::Duration latency) {
    governor_.ReportRows(static_cast<int64_t>(rate_));
    clock_.Advance(kInterval);
    const Decision decision = governor_.Update(WithLatency(clock_.Now(), latency));
    EXPECT_FALSE(decision.hold) << decision.reason;
    if (decision.rate_limit_rows_per_second > 0) rate_ = decision.rate_limit_rows_per_second;
    return decision.pace_rows_per_second;
  }

 private:
  static GovernorConfig Config() {
    GovernorConfig config = BudgetConfig({.factor = 0, .offset = 0.002});
    config.workers = 1;
    config.hold_ratio = 100;
    return config;
  }

  FakeClock clock_;
  Governor governor_{Config(), clock_};
  double rate_ = 10'000;
};

TEST(BudgetTest, AnOvershootIsCutOnceUntilTheReadingsCanShowTheCut) {
  // The application 1.2x over its budget for reasons of its own: the job's rate does not move the
  // reading. One cut per three intervals (the readings judged after a cut are all from after it),
  // not one per interval down to the floor; a worse reading is cut at once.
  OneWorkerAt10000 job;
  auto interval = [&](absl::Duration latency) { return job.Interval(latency); };
  interval(absl::Milliseconds(1));
  const double first = interval(absl::Microseconds(2400));
  EXPECT_NEAR(first, 10'000 * 0.95 / 1.2, 1e-6);
  EXPECT_DOUBLE_EQ(interval(absl::Microseconds(2400)), first);
  EXPECT_DOUBLE_EQ(interval(absl::Microseconds(2400)), first);
  const double second = interval(absl::Microseconds(2400));
  EXPECT_NEAR(second, first * 0.95 / 1.2, 1) << "still over once the cut can show";  // whole rows
  // Worse at once, from readings that still judge the rate before `second`: cut from that rate.
  EXPECT_NEAR(interval(absl::Microseconds(3000)), first * 0.95 / 1.5, 1) << "worse";
}

TEST(BudgetTest, ABudgetCutIsMadeFromTheRateOfTheIntervalsItsReadingsJudged) {
  // Rows come a batch at a time: 1,000, 3,000 and 1,000 rows in three intervals is a rate of
  // 1,667 rows/s, and the median of three readings judged all three. A cut from the last
  // interval's 1,000 alone would remember a rate far under the one that went over the budget.
  GovernorConfig config = BudgetConfig({.factor = 0, .offset = 0.002});
  config.workers = 1;
  config.hold_ratio = 100;
  FakeClock clock;
  Governor governor(config, clock);
  auto interval = [&](int64_t rows, absl::Duration latency) {
    governor.ReportRows(rows);
    clock.Advance(kInterval);
    return governor.Update(WithLatency(clock.Now(), latency));
  };
  interval(1000, absl::Milliseconds(1));
  interval(1000, absl::Milliseconds(1));
  interval(3000, absl::Milliseconds(1));
  const Decision cut = interval(1000, absl::Microseconds(2400));
  EXPECT_FALSE(cut.hold) << cut.reason;
  EXPECT_NEAR(cut.pace_rows_per_second, 5000.0 / 3 * 0.95 / 1.2, 1e-6);
}

TEST(BudgetTest, AWorseReadingBeforeTheCutShowsIsCutFromTheRateItJudges) {
  // Over the budget at 10,000 rows/s, and the next two readings worse still: they judge the
  // intervals before the first cut, so each cut is made from 10,000 rows/s, not compounded on
  // the last; and the job grows back fast to 0.8 of that rate, not of a pace already cut.
  OneWorkerAt10000 job;
  auto interval = [&](absl::Duration latency) { return job.Interval(latency); };
  interval(absl::Milliseconds(1));
  EXPECT_NEAR(interval(absl::Microseconds(2400)), 10'000 * 0.95 / 1.2, 1);
  EXPECT_NEAR(interval(absl::Microseconds(2880)), 10'000 * 0.95 / 1.44, 1);
  double before = interval(absl::Microseconds(3200));
  EXPECT_NEAR(before, 10'000 * 0.95 / 1.6, 1);
  bool fast = false;
  for (int i = 0; i < 10; ++i) {
    const double now = interval(absl::Milliseconds(1));
    fast = fast || now > before * 1.05 + 1e-6;
    before = now;
  }
  EXPECT_TRUE(fast) << "under 0.8 of 10,000 rows/s the pace grows fast";
  EXPECT_GE(before, 0.8 * 10'000);
}

TEST(BudgetTest, NearTheRateThatWentOverTheBudgetThePaceGrowsGentlyUntilWellPastIt) {
  // Far under the budget the pace grows by 15% an interval. Once the application went over
  // its budget at some rate, the pace grows back fast only to 0.8 of it, then by 5% at most,
  // and past it a step every three intervals: lagging readings would otherwise see the same
  // overshoot again every few intervals. Judged within the budget at 1.1 times that rate, it was
  // not the edge, and the pace grows fast again.
  GovernorConfig config = BudgetConfig({.factor = 0, .offset = 0.002});
  config.workers = 1;
  config.start_pace = 1000;
  config.hold_ratio = 100;
  FakeClock clock;
  Governor governor(config, clock);
  double rate = 0;
  std::vector<double> rates;
  auto interval = [&](absl::Duration latency) {
    governor.ReportRows(static_cast<int64_t>(rate));
    rates.push_back(rate);
    clock.Advance(kInterval);
    const Decision decision = governor.Update(WithLatency(clock.Now(), latency));
    rate = decision.rate_limit_rows_per_second;
    return rate;
  };
  interval(absl::Milliseconds(1));
  ASSERT_DOUBLE_EQ(rate, 1000);
  EXPECT_DOUBLE_EQ(interval(absl::Milliseconds(1)), 1150) << "at most 1.15x, even far under";
  for (int i = 0; i < 5; ++i) interval(absl::Milliseconds(1));
  const double cut = interval(absl::Milliseconds(4));
  // The readings judged the job's last three intervals: the cut is made from their rate.
  const double over = Mean(rates, rates.size() - 3);
  EXPECT_NEAR(cut, over * 0.95 / 2, 1);
  double before = cut;
  bool fast = false;
  bool fast_past = false;
  int last_near_step = -100;
  for (int i = 0; i < 60; ++i) {
    const double now = interval(absl::Milliseconds(1));
    if (before < 1.1 * over) {
      EXPECT_LE(now, std::max(before * 1.05, 0.8 * over) + 1e-6) << "interval " << i;
      fast = fast || now > before * 1.05 + 1e-6;
      if (before >= over && now > before) {
        // Each step past that rate is judged (three readings) before the next.
        EXPECT_GE(i - last_near_step, 3) << "interval " << i;
        last_near_step = i;
      }
    } else {
      fast_past = fast_past || now > before * 1.05 + 1e-6;
    }
    before = now;
  }
  EXPECT_TRUE(fast) << "under 0.8 of that rate, growth is fast again";
  EXPECT_TRUE(fast_past) << "and well past it, judged within the budget, fast again";
}

TEST(BudgetTest, AShortHoldsReadingsDoNotReplaceTheBaseline) {
  // A baseline of 50 us measured before the first batch, then a hold (a lock waiter) whose
  // readings come in at 30 us, within the application's own swing: four of them must not make
  // the limit 40% tighter for the rest of the run.
  GovernorConfig config = BudgetConfig({.factor = 1.5, .offset = 0});
  config.max_lock_waiters = 0;
  FakeClock clock;
  Governor governor(config, clock);
  auto sample = [&](int micros, int waiters) {
    clock.Advance(kInterval);
    Samples samples = WithLatency(clock.Now(), absl::Microseconds(micros));
    samples.lock_waiters = waiters;
    return governor.Update(samples);
  };
  for (const int micros : {45, 55, 50, 45, 55}) sample(micros, 0);
  Decision decision;
  for (int i = 0; i < 6; ++i) decision = sample(30, 1);
  EXPECT_TRUE(decision.hold);
  ASSERT_FALSE(decision.signals.empty());
  EXPECT_NEAR(*decision.signals[0].baseline, 45e-6, 1e-12);
}

TEST(BudgetTest, ACommandPrintingTheBudgetRatioPacesAndFarAboveHolds) {
  FakeClock clock;
  GovernorConfig config = BudgetConfig({});
  config.check_command = true;
  config.start_pace = 500;
  Governor governor(config, clock);
  Samples samples;
  samples.command = CommandResult{.exit_code = 0, .output = "0.3"};
  clock.Advance(kInterval);
  samples.taken = clock.Now();
  Decision decision = governor.Update(samples);
  EXPECT_FALSE(decision.hold);
  EXPECT_DOUBLE_EQ(decision.pace_rows_per_second, 500);  // the command alone keeps a budget
  ASSERT_EQ(decision.signals.size(), 1u);
  EXPECT_EQ(decision.signals[0].name, "command");
  EXPECT_DOUBLE_EQ(decision.budget_ratio, 0.3);

  governor.ReportRows(500);
  samples.command = CommandResult{.exit_code = 0, .output = "1.2"};
  clock.Advance(kInterval);
  samples.taken = clock.Now();
  decision = governor.Update(samples);
  EXPECT_FALSE(decision.hold) << decision.reason;
  // 0.95 / 1.2 of the rate reached: the cut aims just under the budget.
  EXPECT_NEAR(decision.pace_rows_per_second, 500 * 0.95 / 1.2, 1e-9);
  EXPECT_THAT(decision.pressure, HasSubstr("throttle command printed 1.2"));

  samples.command = CommandResult{.exit_code = 0, .output = "2"};
  clock.Advance(kInterval);
  samples.taken = clock.Now();
  decision = governor.Update(samples);
  EXPECT_TRUE(decision.hold);
  EXPECT_THAT(decision.reason, HasSubstr("throttle command printed 2"));
}

// With `config` (the statement mean's limit and one more signal, `signal`, whose baseline the
// model puts at `baseline`), the job settles between 0.7 and 1.05 times `oracle`, holding only
// for the baseline and the slow start; with `without` (the same but that signal) it does not.
void ExpectSettlesOnlyWithTheSignal(const GovernorConfig& config, const GovernorConfig& without,
                                    Shows shows, double oracle, const std::string& signal,
                                    double baseline) {
  const Model model;
  Loop loop(config, shows);
  const double settled = Mean(loop.Run(model, 300), 200);
  EXPECT_GE(settled, 0.7 * oracle) << "oracle " << oracle;
  EXPECT_LE(settled, 1.05 * oracle) << "oracle " << oracle;
  EXPECT_LE(loop.holds(), 5 + 3);
  ASSERT_EQ(loop.last().signals.size(), 2u);
  EXPECT_EQ(loop.last().signals[1].name, signal);
  EXPECT_NEAR(*loop.last().signals[1].baseline, baseline, 1e-9);

  Loop blind(without, shows);
  EXPECT_GT(Mean(blind.Run(model, 300), 200), 2 * oracle) << "without " << signal;
}

TEST(BudgetTest, TheStatementTailKeepsTheBudgetWhereTheMeanDoesNotMove) {
  // pgbench -S beside a backfill on one core: the mean of ~20 us reads stays put while the few
  // calls that wait for the CPU grow the tail. The mean's limit alone would never slow the job.
  const GovernorConfig mean_only = BudgetConfig({.factor = 1.25, .offset = 0});
  GovernorConfig config = mean_only;
  config.statement_tail = {.factor = 1.5, .offset = 0};
  ExpectSettlesOnlyWithTheSignal(config, mean_only, Shows::kTail,
                                 Model().Oracle(absl::Milliseconds(2) * 1.5), "statement_tail",
                                 0.002);
}

TEST(BudgetTest, TheServersCpuPressureKeepsTheBudgetWhereTheStatementsShowNothing) {
  // A batch's CPU burst queues the application's backends behind it: the share of the time a task
  // waits for a CPU grows with the backfill's rate long before the statements show it. The model:
  // 20% alone, +1.25 points per 1,000 rows/s; the default limit 1x + 5% = 25% at 4,000 rows/s.
  GovernorConfig statements_only = BudgetConfig({.factor = 1.25, .offset = 0});
  statements_only.start_pace = 1000;  // as the runner sets it: 40,000 rows/s at once is 10x past
                                      // the edge, a hold on either start
  GovernorConfig config = statements_only;
  config.cpu_pressure = plan::Throttle{}.max_cpu_pressure;
  ExpectSettlesOnlyWithTheSignal(config, statements_only, Shows::kCpuPressure,
                                 Model().Oracle(absl::Seconds(config.cpu_pressure.Of(0.2) / 100)),
                                 "cpu_pressure", 0.2);
}

TEST(BudgetTest, ABaselineTheApplicationOutgrewIsMeasuredAnewInsteadOfCuttingToTheFloor) {
  // tpcb-like at half its maximum: its own CPU pressure wanders by 3-6 points within a minute, so
  // a baseline taken in its first seconds can sit that far under it later. The model: 20% alone
  // at first, 24% from interval 60, +1.25 points per 1,000 rows/s; the default limit 1x + 5%
  // allows 4,000 rows/s against either baseline, and 800 against the old one once it is stale.
  GovernorConfig config = BudgetConfig({.factor = 1.25, .offset = 0});
  config.cpu_pressure = plan::Throttle{}.max_cpu_pressure;
  config.start_pace = 1000;  // as the runner sets it for 1,000-row batches
  Model model;
  Loop loop(config, Shows::kCpuPressure);
  loop.Run(model, 60);
  EXPECT_EQ(loop.HeldFor("re-measuring"), 0) << "the job's own load alone re-measures nothing";
  const int holds_before = loop.holds();
  std::vector<double> rates;
  for (int i = 0; i < 240; ++i) {
    if (i < 20) model.base += absl::Microseconds(20);  // a fifth of a point an interval
    rates.push_back(loop.Run(model, 1).front());
  }
  const double oracle = 4000;
  const double settled = Mean(rates, 120);
  EXPECT_GE(settled, 0.7 * oracle);
  EXPECT_LE(settled, 1.05 * oracle);
  // One re-measure, said as such: its drain and its samples, the only holds.
  EXPECT_THAT(loop.HeldFor("re-measuring the application's baseline"), ::testing::AllOf(
                                                                             ::testing::Ge(5),
                                                                             ::testing::Le(7)));
  EXPECT_EQ(loop.holds() - holds_before, loop.HeldFor("re-measuring"));
}

TEST(BudgetTest, CutsForAnAbsoluteLimitReMeasureNothing) {
  // The same climb of the application's own latency against `max_statement_latency: 4.5ms`: no
  // baseline makes that limit right or wrong, so the cuts it makes are only cuts, even with a
  // relative limit (the tail's) beside it.
  GovernorConfig config = BudgetConfig({.factor = 0, .offset = 0.0045});
  config.statement_tail = {.factor = 2, .offset = 0};
  config.start_pace = 1000;
  Model model;
  Loop loop(config);
  loop.Run(model, 60);
  for (int i = 0; i < 240; ++i) {
    if (i < 20) model.base += absl::Microseconds(75);  // 2ms to 3.5ms: the edge from 20k to 8k
    loop.Run(model, 1);
  }
  EXPECT_LT(loop.Rate(model), 8000 * 1.05);
  EXPECT_EQ(loop.HeldFor("re-measuring"), 0);
}

TEST(BudgetTest, AServerWithoutPressureFiguresLeavesThemOutButAFailedReadHolds) {
  FakeClock clock;
  GovernorConfig config = BudgetConfig({});
  config.cpu_pressure = {.factor = 0, .offset = 0.3};
  Governor governor(config, clock);
  Samples samples;
  samples.cpu_pressure = absl::FailedPreconditionError("no /proc/pressure/cpu");
  clock.Advance(kInterval);
  samples.taken = clock.Now();
  EXPECT_FALSE(governor.Update(samples).hold);
  samples.cpu_pressure = 0.9;
  clock.Advance(kInterval);
  samples.taken = clock.Now();
  const Decision over = governor.Update(samples);
  EXPECT_TRUE(over.hold);
  EXPECT_THAT(over.reason, HasSubstr("server CPU pressure 90.0% > 30.0%"));
  samples.cpu_pressure = absl::UnavailableError("connection lost");
  clock.Advance(kInterval);
  samples.taken = clock.Now();
  EXPECT_THAT(governor.Update(samples).reason,
              HasSubstr("CPU pressure probe failed: connection lost"));
}

TEST(BudgetTest, OneSlowCommitDoesNotCutThePace) {
  // Commit latency is one timed commit per sample: judged by the median of the last three.
  FakeClock clock;
  GovernorConfig config = BudgetConfig({});
  config.commit_latency = {.factor = 0, .offset = 0.005};
  Governor governor(config, clock);
  Decision decision;
  for (const int ms : {1, 1, 40, 1, 1}) {
    governor.ReportRows(1000);
    clock.Advance(kInterval);
    Samples samples;
    samples.taken = clock.Now();
    samples.commit_latency = absl::Milliseconds(ms);
    decision = governor.Update(samples);
    EXPECT_FALSE(decision.hold) << decision.reason;
    EXPECT_EQ(decision.pressure, "") << "after a commit of " << ms << "ms";
  }
}

TEST(BudgetTest, KeepsTheBudgetByHoldingWhenNoRateDoes) {
  // The application is over its budget whatever we do: the job must hold, and say so.
  FakeClock clock;
  Governor governor(BudgetConfig({.factor = 0, .offset = 0.002}), clock);
  governor.ReportRows(10'000);
  Decision decision;
  for (int i = 0; i < 40; ++i) {
    clock.Advance(kInterval);
    governor.ReportRows(decision.hold ? 0 : 10'000);
    decision = governor.Update(WithLatency(clock.Now(), absl::Microseconds(2500)));
  }
  EXPECT_TRUE(decision.hold);
  EXPECT_THAT(decision.reason, HasSubstr("application statement latency 2.5ms > 2.0ms"));
}

TEST(BudgetTest, LockWaitersCapTheBatchAtTheStatementBudget) {
  FakeClock clock;
  GovernorConfig config = BudgetConfig({.factor = 0, .offset = 0.050});
  config.max_lock_waiters = 5;
  Governor governor(config, clock);
  Samples samples = WithLatency(clock.Now() + kInterval, absl::Milliseconds(3));
  samples.lock_waiters = 1;
  clock.Advance(kInterval);
  const Decision decision = governor.Update(samples);
  EXPECT_EQ(decision.batch_target_cap, absl::Milliseconds(50));
  samples.lock_waiters = 0;
  clock.Advance(kInterval);
  samples.taken = clock.Now();
  EXPECT_EQ(governor.Update(samples).batch_target_cap, absl::ZeroDuration());
}

TEST(WalAndCommandTest, SlotsArchiverAndCommandVeto) {
  FakeClock clock;
  GovernorConfig config = BudgetConfig({});
  config.max_slot_wal = 1 << 30;
  config.max_archive_pending = 64 << 20;
  config.check_command = true;
  Governor governor(config, clock);
  Samples samples;
  SlotWal slot;
  slot.slot = "cdc";
  slot.retained_bytes = int64_t{2} << 30;
  slot.wal_status = "extended";
  samples.slots = std::vector<SlotWal>{slot};
  samples.archiver = ArchiverState{
      .archiving = true, .pending_bytes = 128 << 20, .failing = true, .last_failed_wal = "0001"};
  samples.command = CommandResult{.exit_code = 3, .output = "slo burning"};
  clock.Advance(kInterval);
  samples.taken = clock.Now();
  const Decision decision = governor.Update(samples);
  EXPECT_TRUE(decision.hold);
  EXPECT_THAT(decision.reason, HasSubstr("replication slot cdc retains 2.0GB > 1.0GB"));
  EXPECT_THAT(decision.reason, HasSubstr("archiver failing (last failed 0001), pending 128.0MB"));
  EXPECT_THAT(decision.reason, HasSubstr("throttle command exited 3: slo burning"));

  slot.retained_bytes = 0;
  slot.wal_status = "lost";
  samples.slots = std::vector<SlotWal>{slot};
  samples.archiver = ArchiverState{};
  samples.command = CommandResult{.exit_code = 0, .output = "0.2"};
  clock.Advance(kInterval);
  samples.taken = clock.Now();
  const Decision lost = governor.Update(samples);
  EXPECT_THAT(lost.reason, HasSubstr("replication slot cdc is lost"));
  EXPECT_THAT(lost.reason, ::testing::Not(HasSubstr("archiver")));
  EXPECT_THAT(lost.reason, ::testing::Not(HasSubstr("command")));

  samples.command = absl::DeadlineExceededError("ran past 2s");
  clock.Advance(kInterval);
  samples.taken = clock.Now();
  EXPECT_THAT(governor.Update(samples).reason, HasSubstr("throttle command probe failed"));
}

}  // namespace
}  // namespace pgbackfill::throttle
