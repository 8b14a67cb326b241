// Micro-benchmarks of the pure code on the batch path. End-to-end throughput lives in
// scripts/bench. The runner builds a batch statement once per shape of range ends and caches the
// text (Runner::BatchStatements), so building is a per-job cost; BatchTransaction (the pipeline's
// statements) and the checkpoint literal (ranges_bench.cc) run for every batch.
#include <benchmark/benchmark.h>

#include "pgbackfill/batch/batch_sql.h"
#include "pgbackfill/plan/parse.h"

namespace pgbackfill {
namespace {

batch::UpdateBatchSpec CompositeKeyUpdate() {
  batch::UpdateBatchSpec spec;
  spec.table = {"public", "users"};
  spec.key = {{"tenant_id", "text"}, {"id", "uuid"}};
  spec.set = {{"first_name", "split_part(full_name, ' ', 1)", 1},
              {"last_name", "split_part(full_name, ' ', 2)", 2}};
  spec.where = "first_name IS NULL";
  return spec;
}

void BM_BuildUpdateBatch(benchmark::State& state) {
  const batch::UpdateBatchSpec spec = CompositeKeyUpdate();
  for (auto _ : state) {
    benchmark::DoNotOptimize(batch::BuildUpdateBatch(spec, {true, true}));
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel("items = statements");
}
BENCHMARK(BM_BuildUpdateBatch);

void BM_BuildUpdateBatchIntegerKey(benchmark::State& state) {
  batch::UpdateBatchSpec spec;
  spec.table = {"public", "pgbench_accounts"};
  spec.key = {{"aid", "integer"}};
  spec.set = {{"c", "abalance * 100", 1}};
  for (auto _ : state) {
    benchmark::DoNotOptimize(batch::BuildUpdateBatch(spec, {true, true}));
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel("items = statements");
}
BENCHMARK(BM_BuildUpdateBatchIntegerKey);

// Copy mode with a composite key: the claim, the FOR SHARE source read and the conflict rule.
void BM_BuildCopyBatchCompositeKey(benchmark::State& state) {
  batch::CopyBatchSpec spec;
  spec.source = {"public", "orders"};
  spec.key = {{"tenant_id", "text"}, {"id", "uuid"}};
  spec.target = {"public", "orders_new"};
  spec.columns = {{"tenant_id", "tenant_id", 1},
                  {"id", "id", 2},
                  {"amount_cents", "(amount * 100)::bigint", 3},
                  {"note", "coalesce(note, '')", 4}};
  spec.target_key = {"tenant_id", "id"};
  spec.on_conflict = plan::OnConflict::kUpdate;
  spec.where = "deleted_at IS NULL";
  for (auto _ : state) {
    benchmark::DoNotOptimize(batch::BuildCopyBatch(spec, {true, true}));
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel("items = statements");
}
BENCHMARK(BM_BuildCopyBatchCompositeKey);

// The whole transaction the runner sends per batch (BEGIN, SET LOCALs, the batch, COMMIT).
void BM_BatchTransaction(benchmark::State& state) {
  const std::string sql = batch::BuildUpdateBatch(CompositeKeyUpdate(), {true, true});
  const plan::Throttle throttle;
  for (auto _ : state) {
    benchmark::DoNotOptimize(batch::BatchTransaction(throttle, plan::Triggers::kFire, sql));
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel("items = transactions");
}
BENCHMARK(BM_BatchTransaction);

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
  state.SetItemsProcessed(state.iterations());
  state.SetLabel("items = plans");
}
BENCHMARK(BM_ParsePlan);

}  // namespace
}  // namespace pgbackfill
