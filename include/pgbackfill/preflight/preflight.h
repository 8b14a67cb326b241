// Preflight: everything `pgbackfill check` verifies before anything is changed. Problems with the
// plan or the target are collected (all of them, not only the first) into a report; a Status
// error means the check itself could not run (server unreachable, connection lost).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "pgbackfill/catalog/catalog.h"
#include "pgbackfill/move/move_sql.h"
#include "pgbackfill/pg/connection.h"
#include "pgbackfill/plan/plan.h"

namespace pgbackfill::preflight {

// How one batch's write reaches its rows (EXPLAIN of batch::UpdateWriteShape / CopyWriteShape).
struct BatchScan {
  std::string batch;         // which batch: "first batch", "later batch"
  std::string node;          // the scan of the table, e.g. "Index Scan using users_pkey"
  bool whole_table = false;  // a Seq Scan: every batch would read the whole table
};

// A trigger of the written table that a batch's write meets (not this job's own).
struct WriteTrigger {
  std::string table;  // where it is defined, as regclass prints it
  std::string name;
  std::string definition;  // CREATE TRIGGER ...
  std::string enabled;     // "origin" (as usual), "always", "replica" (ALTER TABLE ... ENABLE)
  bool fires = true;       // for the batches' writes, under the plan's `triggers`
};

struct PreflightReport {
  std::vector<std::string> problems;  // each: what is wrong, on which object, what to do
  std::vector<std::string> warnings;  // the run may go on, but may not do what the operator thinks
  std::vector<std::string> notes;     // worth knowing, not blocking

  std::string server_version;
  std::string user;
  std::string plan_hash;
  std::optional<catalog::Table> table;
  std::optional<catalog::Key> key;
  std::vector<catalog::RejectedKey> rejected_keys;
  std::optional<catalog::RowEstimate> estimate;
  std::optional<std::vector<std::string>> min_key;
  std::optional<std::vector<std::string>> max_key;
  std::vector<std::string> batch_statements;  // the pipeline of one batch, in order
  std::vector<BatchScan> batch_scans;         // same-database batches on a table with rows
  // The triggers the batches' writes meet: UPDATE ones on `table` (UPDATE OF only for a `set`
  // column), or INSERT and UPDATE ones on `into` in copy mode.
  std::vector<WriteTrigger> triggers;

  // The operator's own search_path (Preflight pins the session's to pg_catalog, pg_temp): plan
  // expressions were compiled under it, and trigger functions (expand/triggers.h) pin it.
  std::string user_search_path;

  // Copy mode, when `into` exists.
  std::optional<catalog::Table> target;
  // What each target column is filled with: `columns` as written, or when omitted every column
  // of `into` that `table` also has (not generated), copied by name (expression = the quoted
  // name, line 0).
  std::vector<plan::Assignment> copy_columns;
  // The target's unique key the copy writes by: target_key[i] is filled from key->columns[i].
  // Empty when `into` has no unique key mapped from the source key (a problem then).
  std::vector<std::string> target_key;
  std::string target_key_index;

  // Copy between databases (plan::MovesBetweenDatabases): `table` was checked on the source,
  // `into` and the job store on the target.
  bool move_binary = true;  // the COPY stream's format (move/copy_format.h)
  std::vector<std::string> target_column_types;  // format_type of each copy_columns column
  std::vector<std::string> target_key_types;     // format_type of each target_key column
  bool target_has_rows = false;  // `into` had rows: a first run writes through the stage
  bool same_encoding = true;     // both databases have the same encoding

  bool ok() const { return problems.empty(); }
};

// Runs every check. Read-only: expressions are compiled with EXPLAIN inside a READ ONLY
// transaction that is rolled back, under the plan's lock_timeout.
absl::StatusOr<PreflightReport> Preflight(pg::Connection& conn, const plan::Plan& plan);

// Copy between databases: the same checks with `table` and the expressions on `source`, and
// `into`, the job store and the written table's privileges on `target`. Also decides the COPY
// stream's format (move/copy_format.h) and says so in a note.
absl::StatusOr<PreflightReport> PreflightMove(pg::Connection& source, pg::Connection& target,
                                              const plan::Plan& plan);

// The plan's preflight from its home database (plan::HomeDsn): Preflight, or PreflightMove with
// a source session opened from plan::SourceDsn(plan, dsn) for the time of the checks.
absl::StatusOr<PreflightReport> PreflightPlan(pg::Connection& home, const plan::Plan& plan,
                                              const std::string& dsn);

// The data mover's SQL spec (move/move_sql.h) from a report whose table, key and target are set.
move::MoveSpec MoveSpecFor(const PreflightReport& report, const plan::Plan& plan);

}  // namespace pgbackfill::preflight
