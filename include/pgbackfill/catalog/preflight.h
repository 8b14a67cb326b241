// Preflight: everything `pgbackfill check` verifies before anything is changed. Problems with the
// plan or the target are collected (all of them, not only the first) into a report; a Status
// error means the check itself could not run (server unreachable, connection lost).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "pgbackfill/catalog/catalog.h"
#include "pgbackfill/pg/connection.h"
#include "pgbackfill/plan/plan.h"

namespace pgbackfill::catalog {

struct PreflightReport {
  std::vector<std::string> problems;  // each: what is wrong, on which object, what to do
  std::vector<std::string> notes;     // worth knowing, not blocking

  std::string server_version;
  std::string user;
  std::string plan_hash;
  std::optional<Table> table;
  std::optional<Key> key;
  std::vector<RejectedKey> rejected_keys;
  std::optional<RowEstimate> estimate;
  std::optional<std::vector<std::string>> min_key;
  std::optional<std::vector<std::string>> max_key;
  std::vector<std::string> batch_statements;  // the pipeline of one batch, in order

  // The operator's own search_path (Preflight pins the session's to pg_catalog, pg_temp): plan
  // expressions were compiled under it, and trigger functions (expand/triggers.h) pin it.
  std::string user_search_path;

  // Copy mode, when `into` exists.
  std::optional<Table> target;
  // What each target column is filled with: `columns` as written, or when omitted every column
  // of `into` that `table` also has (not generated), copied by name (expression = the quoted
  // name, line 0).
  std::vector<plan::Assignment> copy_columns;
  // The target's unique key the copy writes by: target_key[i] is filled from key->columns[i].
  // Empty when `into` has no unique key mapped from the source key (a problem then).
  std::vector<std::string> target_key;
  std::string target_key_index;

  bool ok() const { return problems.empty(); }
};

// Runs every check. Read-only: expressions are compiled with EXPLAIN inside a READ ONLY
// transaction that is rolled back, under the plan's lock_timeout.
absl::StatusOr<PreflightReport> Preflight(pg::Connection& conn, const plan::Plan& plan);

}  // namespace pgbackfill::catalog
