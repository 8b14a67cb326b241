// Micro-benchmarks of the pure code on the batch path. End-to-end throughput lives in scripts/bench.
#include <benchmark/benchmark.h>

#include "pgbackfill/exec/batch_sql.h"
#include "pgbackfill/plan/parse.h"

namespace pgbackfill {
namespace {

void BM_BuildUpdateBatch(benchmark::State& state) {
  exec::UpdateBatchSpec spec;
  spec.table = {"public", "users"};
  spec.key = {{"tenant_id", "text"}, {"id", "uuid"}};
  spec.set = {{"first_name", "split_part(full_name, ' ', 1)", 1},
              {"last_name", "split_part(full_name, ' ', 2)", 2}};
  spec.where = "first_name IS NULL";
  for (auto _ : state) {
    benchmark::DoNotOptimize(exec::BuildUpdateBatch(spec, {true, true}));
  }
}
BENCHMARK(BM_BuildUpdateBatch);

void BM_ParsePlan(benchmark::State& state) {
  const std::string text = R"(version: 1
name: users-split-name
table: public.users
set:
  first_name: split_part(full_name, ' ', 1)
  last_name: split_part(full_name, ' ', 2)
where: first_name IS NULL
batch: { rows: 5000, target: 200ms, min_rows: 100, max_rows: 100000 }
workers: 4
throttle: { max_replica_lag: 5s, lock_timeout: 200ms, statement_timeout: 30s }
)";
  auto env = [](std::string_view) -> std::optional<std::string> { return std::nullopt; };
  for (auto _ : state) {
    auto plan = plan::ParsePlan(text, "bench.yaml", env);
    benchmark::DoNotOptimize(plan);
  }
}
BENCHMARK(BM_ParsePlan);

}  // namespace
}  // namespace pgbackfill
