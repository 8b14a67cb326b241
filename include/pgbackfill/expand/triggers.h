// SQL text of the triggers that keep application writes in step with a backfill. Pure string
// building, unit-tested without a server; the expand phase runs the statements in one transaction
// under a short lock_timeout (expand/ddl.h), rollback and contract run DropTriggerSql.
//
//   - dual write (update mode, `dual_write: true`): a BEFORE INSERT OR UPDATE row trigger on
//     `table` computes every `set` column from the row being written, for rows matching `where`,
//     so rows the application writes during and after the backfill come out as the backfill would
//     have made them.
//   - copy (copy mode, always): an AFTER INSERT OR UPDATE OR DELETE row trigger on `table` mirrors
//     each write into `into`: the transformed row is upserted (the application's write is the
//     newest truth, whatever `on_conflict` says about batches), a row that changed its key or
//     stopped matching `where` has its old target row deleted, a deleted row's target row goes.
//
// The trigger functions live in the job-store schema (`pgbackfill`, created by
// checkpoint::JobStore::EnsureSchema before expand runs) and pin `search_path` to the operator's
// own (what preflight compiled the expressions under) with pg_temp last. The copy function is
// SECURITY DEFINER: it acts for pgbackfill, with the privileges the batches have (preflight checks
// them), so an application role that cannot write `into` is not broken by the copy. The
// dual-write function only changes NEW and runs as the writing role (SECURITY INVOKER), so code
// planted in a schema of that search_path never runs with pgbackfill's rights through it. Expressions see the
// row under the alias `t`, as in the batches (exec/batch_sql.h) and preflight's compile check.
//
// Not carried over: TRUNCATE of the source (the target may hold rows of its own), and writes made
// through another database (source_dsn/target_dsn).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "pgbackfill/plan/plan.h"

namespace pgbackfill::expand {

struct TriggerNames {
  std::string function_schema;  // the job store schema, sql::kJobStoreSchema
  std::string function;         // unqualified, catalog spelling
  std::string trigger;          // on the table; catalog spelling
};

// `pgbackfill_<kind>_<job>_<8 hex>` for both the function and the trigger (catalog spelling, always
// quoted in SQL). The job part is cut so the name fits PostgreSQL's 63 bytes; the 8 hex digits are
// a hash (FNV-1a) of the whole job name, so two jobs whose names share a long prefix still get
// different objects. Stable across builds: rollback of an old job finds what expand created.
// `kind` is "dw" (dual write) or "copy".
TriggerNames NamesFor(std::string_view job, std::string_view kind);

struct DualWriteSpec {
  std::string job;
  plan::QualifiedName table;           // schema set
  std::vector<plan::Assignment> set;   // column -> expression over the row (alias t)
  std::string where;                   // empty = every row
  // The operator's search_path (preflight::PreflightReport::user_search_path).
  std::string search_path;
};

// CREATE OR REPLACE FUNCTION + CREATE OR REPLACE TRIGGER: idempotent, so expand can run again.
std::vector<std::string> DualWriteInstallSql(const DualWriteSpec& spec);

struct CopySpec {
  std::string job;
  plan::QualifiedName source;            // `table`, schema set
  std::vector<std::string> source_key;   // the key batches walk, in key order
  plan::QualifiedName target;            // `into`, schema set
  // Target column -> expression over the source row: the effective mapping
  // (preflight::PreflightReport::copy_columns, which fills in the by-name default).
  std::vector<plan::Assignment> columns;
  // target_key[i] is the target column filled from source_key[i]; together they are a unique key
  // of the target (preflight::PreflightReport::target_key).
  std::vector<std::string> target_key;
  plan::OnConflict on_conflict = plan::OnConflict::kError;  // batches only: see the file comment
  std::string where;                     // empty = every row
  std::string search_path;
};

// CREATE OR REPLACE FUNCTION + CREATE OR REPLACE TRIGGER on the source: idempotent.
std::vector<std::string> CopyTriggerInstallSql(const CopySpec& spec);

// DROP TRIGGER IF EXISTS ... ON table; DROP FUNCTION IF EXISTS ... CASCADE: idempotent, also
// when the table is gone, and the CASCADE drops the trigger also from a table renamed since
// (a contract that swapped the tables).
std::vector<std::string> DropTriggerSql(const plan::QualifiedName& table,
                                        const TriggerNames& names);

// ` SET search_path TO '<each element>', ..., 'pg_temp'` for a function: `search_path` as
// current_setting('search_path') prints it, split the way the server reads it (unquoted elements
// folded to lower case, "quoted" ones kept), one literal per element, pg_temp appended unless
// listed (a temporary object must never shadow what the function calls).
std::string FunctionSearchPath(std::string_view search_path);

}  // namespace pgbackfill::expand
