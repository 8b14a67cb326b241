// `pgbackfill verify` (basic): under one snapshot, per range, how many rows' `set` columns differ
// from what the plan's expressions compute on the row as it is now, and the first differing keys.
// Full checksums and repair come with the data mover; this answers "did the backfill (and the
// dual-write trigger since) leave every row right?" for UPDATE mode.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "pgbackfill/checkpoint/job_store.h"
#include "pgbackfill/batch/batch_sql.h"
#include "pgbackfill/pg/connection.h"
#include "pgbackfill/plan/plan.h"

namespace pgbackfill::verify {

// Why the plan's result cannot be checked against the current rows, or nullopt when it can:
// an expression that reads a column the plan writes (`n: n + 1`) has no fixed expected value
// once it ran. Copy mode reads one table and writes another, so it always can.
std::optional<std::string> WhyNotVerifiable(const plan::Plan& plan);

// The statement for one range: the rows in the range (lower exclusive, upper inclusive, each only
// when bounded; parameters as batch::UpdateBatchParams minus the batch-only ones: lower, then
// upper) that match `where` and whose `set` columns differ from their expressions. Returns up to
// `limit` rows of (key as text, total differing count), in key order. `types[i]` (format_type of
// set[i]'s column; empty = none) casts the expression as the UPDATE stored it, so numeric(12,2)
// or timestamp(0) columns compare against the rounded value.
std::string DiffSql(const batch::UpdateBatchSpec& spec, sql::RangeEnds ends, int limit,
                    const std::vector<std::string>& types = {});

// Copy mode: the source rows of the range transformed by `columns` and the target rows of the
// same key range (the target key is filled 1:1 from the source key), compared both ways with
// EXCEPT ALL: a row missing, different, doubled or left over in the target shows. Each expression
// is cast to its target column's type so both sides compare as the target stores them. Same
// parameters and result as DiffSql; the key is the target key.
struct CopyCheck {
  plan::QualifiedName source;
  std::vector<sql::KeyColumn> key;  // the source key
  plan::QualifiedName target;
  std::vector<plan::Assignment> columns;   // target column -> expression over the source row (t)
  std::vector<std::string> column_types;   // format_type of each target column, same order
  std::vector<std::string> target_key;     // target_key[i] is filled from key[i]
  std::string where;
};
std::string CopyDiffSql(const CopyCheck& check, sql::RangeEnds ends, int limit);

struct RangeDiff {
  int range = 0;
  int64_t rows = 0;
  std::vector<std::string> first_keys;
};

struct Report {
  int64_t differing = 0;
  std::vector<std::string> first_keys;  // over all ranges, in range order, at most 10
  std::vector<RangeDiff> ranges;        // ranges with differences only
  int ranges_checked = 0;
};

// Runs DiffSql for every range in one REPEATABLE READ READ ONLY transaction (one snapshot), on
// `conn` with the user's search_path (the expressions are the user's), restored afterwards.
absl::StatusOr<Report> Verify(pg::Connection& conn, const batch::UpdateBatchSpec& spec,
                              const std::vector<std::string>& types,
                              const std::vector<checkpoint::RangeRecord>& ranges,
                              const std::string& user_search_path);
absl::StatusOr<Report> Verify(pg::Connection& conn, const CopyCheck& check,
                              const std::vector<checkpoint::RangeRecord>& ranges,
                              const std::string& user_search_path);

}  // namespace pgbackfill::verify
