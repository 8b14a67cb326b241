// SQL text of one batch in one database (UPDATE mode, copy mode). Pure string building,
// unit-tested without a server; the worker sends the result inside BEGIN / SET LOCAL lock_timeout / SET LOCAL
// statement_timeout / COMMIT as one pipeline.
//
// The batch is one statement so that its upper bound is computed once: the `batch_end` CTE finds
// the key `rows` rows past the checkpoint (an index-only walk of the key), and that same value
// bounds the UPDATE and becomes the range's new checkpoint. A second look could see other rows
// under concurrent inserts. When fewer than `rows` keys remain, the bound is the range's own end,
// given explicitly: "done" is never inferred from a short batch.
#pragma once

#include <string>
#include <vector>

#include "pgbackfill/plan/plan.h"
#include "pgbackfill/sql/key.h"

namespace pgbackfill::batch {

using sql::KeyColumn;
using sql::RangeEnds;

struct UpdateBatchSpec {
  plan::QualifiedName table;  // schema set
  std::vector<KeyColumn> key;  // in index order
  std::vector<plan::Assignment> set;
  std::string where;  // empty = none
};

// Parameter layout of BuildUpdateBatch, in order ($1...). k = number of key columns.
//   lower bound, k values  (only when has_lower; exclusive)
//   upper bound, k values  (only when has_upper; inclusive)
//   batch rows  (bigint, >= 1)
//   job name    (text)
//   range id    (int)
//   checkpoint  (text[]: the range's done_upto this batch starts from, NULL when none)
//   claimed upper (text[]: the range's upper bound as the batch's bounds have it, NULL when open)
// Result: one row (rows_updated bigint, done_upto text[], range_done bool), or no row when the
// checkpoint in the job store is no longer `checkpoint` (another run moved it) or its upper bound
// is no longer `claimed upper` (a split moved it, ranges/split.h): nothing was changed then, and
// the caller reloads the range.
struct BatchParams {
  int lower = 0;  // first parameter number of the lower bound, 0 when absent
  int upper = 0;  // first parameter number of the upper bound, 0 when absent
  int rows = 0;
  int job = 0;
  int range = 0;
  int checkpoint = 0;
  int claimed_upper = 0;
  int count = 0;
};
BatchParams UpdateBatchParams(size_t key_columns, RangeEnds ends);

std::string BuildUpdateBatch(const UpdateBatchSpec& spec, RangeEnds ends);

// One copy-mode batch: the same claim, batch_end and bound over `source`, then the source rows of
// the batch (matching `where`) read FOR SHARE and inserted into `target` through `columns`, and
// the checkpoint moved, all in one statement. Parameter layout: UpdateBatchParams. Result: one
// row (rows_written bigint, done_upto text[], range_done bool), no row when the claim fails.
//
// The source rows stay locked until the batch commits, so a concurrent UPDATE or DELETE of one
// of them runs (and its copy trigger, expand/triggers.h, writes) after our write: the value we
// write is the current one, never older than what the trigger wrote. A conflict on `target_key`:
//   skip    keep the target row (DO NOTHING)
//   update  overwrite it with our (current) values, unless it holds them already
//   error   accept it when it holds exactly our values (the trigger's copy of an application
//           write); fail the batch (SQLSTATE 22P02, the message names the key) when it differs
// Identity columns of the target are written as given (OVERRIDING SYSTEM VALUE).
struct CopyBatchSpec {
  plan::QualifiedName source;  // schema set
  std::vector<KeyColumn> key;  // the source key, in index order
  plan::QualifiedName target;  // schema set
  std::vector<plan::Assignment> columns;  // target column -> expression over the source row (t)
  std::vector<std::string> target_key;    // target columns of a unique key, filled from `key`
  plan::OnConflict on_conflict = plan::OnConflict::kError;
  std::string where;  // over the source row; empty = none
};
std::string BuildCopyBatch(const CopyBatchSpec& spec, RangeEnds ends);

// The write of one batch alone, for `check` to EXPLAIN (the job store need not exist): the same
// key conditions, `set` or `columns` and `where` as the batch, with the batch's bound a
// MATERIALIZED stand-in the planner cannot see into, as it cannot see the real one. Parameters:
// the lower bound (k values, when has_lower), then the bound (k values). Copy mode: the source
// rows' SELECT ... FOR SHARE.
std::string UpdateWriteShape(const UpdateBatchSpec& spec, RangeEnds ends);
std::string CopyWriteShape(const CopyBatchSpec& spec, RangeEnds ends);

// The statements of one batch's pipeline, in order: BEGIN, SET LOCAL lock_timeout, the
// transaction-local statement_timeout and pgbackfill.in_batch (and with triggers: skip
// session_replication_role = replica), `batch_sql`, COMMIT. The runner sends exactly these and
// `check` prints them, so what a user reviews is what runs. The batch is at kBatchStatementIndex.
inline constexpr size_t kBatchStatementIndex = 3;
std::vector<std::string> BatchTransaction(const plan::Throttle& throttle, plan::Triggers triggers,
                                          std::string batch_sql);

}  // namespace pgbackfill::batch
