// Micro-benchmarks of the throttle governor (throttle/governor.h): one probe round judged per
// iteration (Update, then the Current() every worker asks before a batch), on a FakeClock that
// advances one interval per round. The reading is what a production primary reports: two
// standbys, no lock waiters, a WAL rate and a canary latency, every signal checked.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

// clock.h calls absl::Now() without including its header; until it does, include it first.
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "pgbackfill/throttle/clock.h"
#include "pgbackfill/throttle/governor.h"
#include "pgbackfill/throttle/sample.h"

namespace pgbackfill::throttle {
namespace {

GovernorConfig ProductionConfig() {
  GovernorConfig config;
  config.interval = absl::Seconds(1);
  config.max_replica_lag = absl::Seconds(5);
  config.max_replica_lag_bytes = int64_t{256} << 20;
  config.expected_replicas = {"standby-a", "standby-b"};
  config.max_lock_waiters = 0;
  config.max_wal_bytes_per_second = int64_t{64} << 20;
  config.max_canary_latency = absl::Milliseconds(50);
  config.check_custom = true;
  config.table = "public.users";
  config.workers = 8;
  return config;
}

ReplicaSample Replica(std::string name, absl::Duration lag, int64_t bytes) {
  ReplicaSample replica;
  replica.name = std::move(name);
  replica.replay_lag = lag;
  replica.lag_bytes = bytes;
  return replica;
}

// `lag` on the second standby; 1.2 s is healthy, 7 s vetoes (the reason names it).
Samples Reading(absl::Duration lag, int lock_waiters) {
  Samples samples;
  samples.replicas = std::vector<ReplicaSample>{
      Replica("standby-a", absl::Milliseconds(180), 96 * 1024), Replica("standby-b", lag, 3 << 20)};
  samples.lock_waiters = lock_waiters;
  samples.wal_bytes_per_second = int64_t{12} << 20;
  samples.canary_latency = absl::Microseconds(2400);
  samples.custom = std::string("0");
  return samples;
}

// One round per iteration; `workers` Current() calls per round, as each worker asks once.
void JudgeRounds(benchmark::State& state, const Samples& reading) {
  constexpr int kWorkers = 8;
  FakeClock clock;
  Governor governor(ProductionConfig(), clock);
  Samples samples = reading;
  for (auto _ : state) {
    clock.Advance(absl::Seconds(1));
    samples.taken = clock.Now();
    Decision decision = governor.Update(samples);
    benchmark::DoNotOptimize(decision);
    for (int i = 0; i < kWorkers; ++i) {
      Decision current = governor.Current();
      benchmark::DoNotOptimize(current);
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel("items = rounds (1 Update + 8 Current)");
}

void BM_GovernorHealthy(benchmark::State& state) {
  JudgeRounds(state, Reading(absl::Milliseconds(1200), 0));
}
BENCHMARK(BM_GovernorHealthy);

// A standby over its limit: every round builds the veto reason.
void BM_GovernorReplicaVeto(benchmark::State& state) {
  JudgeRounds(state, Reading(absl::Seconds(7), 0));
}
BENCHMARK(BM_GovernorReplicaVeto);

// Lock waiters: pressure (AIMD cuts) and the lock-waiter veto.
void BM_GovernorLockWaiters(benchmark::State& state) {
  JudgeRounds(state, Reading(absl::Milliseconds(1200), 3));
}
BENCHMARK(BM_GovernorLockWaiters);

// Alternating healthy and vetoing rounds: holds, hysteresis and resumes.
void BM_GovernorFlapping(benchmark::State& state) {
  FakeClock clock;
  Governor governor(ProductionConfig(), clock);
  Samples healthy = Reading(absl::Milliseconds(1200), 0);
  Samples lagging = Reading(absl::Seconds(7), 0);
  int64_t round = 0;
  for (auto _ : state) {
    clock.Advance(absl::Seconds(1));
    Samples& samples = (round++ % 4 == 0) ? lagging : healthy;
    samples.taken = clock.Now();
    Decision decision = governor.Update(samples);
    benchmark::DoNotOptimize(decision);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel("items = rounds");
}
BENCHMARK(BM_GovernorFlapping);

// The token bucket every worker asks before each batch (max_rows_per_second set).
void BM_RateLimiterAcquire(benchmark::State& state) {
  RateLimiter limiter(50'000);
  absl::Time now = absl::FromUnixSeconds(1'700'000'000);
  for (auto _ : state) {
    now += absl::Milliseconds(100);
    absl::Duration wait = limiter.Acquire(5000, now);
    benchmark::DoNotOptimize(wait);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel("items = batches");
}
BENCHMARK(BM_RateLimiterAcquire);

}  // namespace
}  // namespace pgbackfill::throttle
