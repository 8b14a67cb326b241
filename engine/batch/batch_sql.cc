#include "pgbackfill/batch/batch_sql.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/sql/names.h"

namespace pgbackfill::batch {

BatchParams UpdateBatchParams(size_t key_columns, RangeEnds ends) {
  const int k = static_cast<int>(key_columns);
  BatchParams params;
  int next = 1;
  if (ends.has_lower) {
    params.lower = next;
    next += k;
  }
  if (ends.has_upper) {
    params.upper = next;
    next += k;
  }
  params.rows = next++;
  params.job = next++;
  params.range = next++;
  params.checkpoint = next++;
  params.claimed_upper = next++;
  params.count = next - 1;
  return params;
}

namespace {

using sql::KeyRow;
using sql::ParamRow;

std::string RangesTable() {
  return absl::StrCat(pg::QuoteIdent(sql::kJobStoreSchema), ".\"ranges\"");
}

// The head every batch shares: `WITH claim ..., batch_end ..., [range_end ...,] bound AS (...`,
// left open so the caller continues with `), <its write> AS (`. The write bounds its rows by
// `<= (SELECT <key> FROM bound)` (and `> lower` when the range has one).
std::string BatchHead(const plan::QualifiedName& source, const std::vector<KeyColumn>& key,
                      RangeEnds ends, const BatchParams& p) {
  const std::string table = plan::QuoteQualified(source);
  const std::string key_row = KeyRow(key);

  std::vector<std::string> key_cols;
  std::vector<std::string> key_desc;
  for (const KeyColumn& column : key) {
    key_cols.push_back(pg::QuoteIdent(column.name));
    key_desc.push_back(absl::StrCat(pg::QuoteIdent(column.name), " DESC"));
  }
  const std::string cols = absl::StrJoin(key_cols, ", ");
  const std::string lower =
      ends.has_lower ? absl::StrCat(key_row, " > ", ParamRow(key, p.lower)) : "";
  const std::string upper =
      ends.has_upper ? absl::StrCat(key_row, " <= ", ParamRow(key, p.upper)) : "";
  std::vector<std::string> range;
  if (!lower.empty()) range.push_back(lower);
  if (!upper.empty()) range.push_back(upper);

  // claim: lock the range's checkpoint row first and go on only if it still says what this batch
  // starts from. A batch of an earlier, killed run may still be finishing on the server; it holds
  // that row until it ends, and if it committed, the checkpoint moved and this batch does nothing
  // (the worker reloads the checkpoint) instead of applying the same rows twice. The range's upper
  // bound is claimed too: a split (ranges/split.h) moves it down under the same row lock, and the
  // keys past the new bound belong to the new range; a batch bounded by the old one does nothing.
  std::string sql = absl::StrCat("WITH claim AS MATERIALIZED (\n  SELECT 1 FROM ", RangesTable(),
                                 "\n   WHERE job_name = $", p.job, "::text AND range_id = $",
                                 p.range, "::int\n     AND done_upto IS NOT DISTINCT FROM $",
                                 p.checkpoint, "::text[]\n     AND upper IS NOT DISTINCT FROM $",
                                 p.claimed_upper, "::text[]\n     FOR UPDATE\n");
  // batch_end: the key `rows` rows past the checkpoint, walking the key's index.
  range.insert(range.begin(), "EXISTS (SELECT FROM claim)");
  absl::StrAppend(&sql, "), batch_end AS (\n  SELECT ", cols, " FROM ", table, "\n",
                  "  WHERE ", absl::StrJoin(range, " AND "), "\n", "  ORDER BY ", cols,
                  "\n  OFFSET $", p.rows, "::bigint - 1 LIMIT 1\n");
  // bound: batch_end, or when fewer rows remain, the range's end. A range open above ends at the
  // largest key present now (a run gives such ranges an end of its own when it starts, exec's
  // EndOpenRangesAtLargestKey, so this form is what `check` shows and a rare fallback); no row at
  // all when nothing is left past the checkpoint.
  // The bound is one scalar (row) value so that the write's key condition stays an index range.
  if (ends.has_upper) {
    absl::StrAppend(&sql, "), bound AS (\n  SELECT ", cols, ", false AS range_done FROM batch_end\n"
                    "  UNION ALL\n  SELECT ");
    std::vector<std::string> upper_params;
    for (size_t i = 0; i < key.size(); ++i) {
      upper_params.push_back(absl::StrCat("$", p.upper + static_cast<int>(i), "::",
                                          key[i].type));
    }
    absl::StrAppend(&sql, absl::StrJoin(upper_params, ", "),
                    ", true WHERE NOT EXISTS (SELECT FROM batch_end)"
                    " AND EXISTS (SELECT FROM claim)\n");
  } else {
    absl::StrAppend(&sql, "), range_end AS (\n  SELECT ", cols, " FROM ", table, "\n",
                    lower.empty() ? "" : absl::StrCat("  WHERE ", lower, "\n"), "  ORDER BY ",
                    absl::StrJoin(key_desc, ", "), " LIMIT 1\n"
                    "), bound AS (\n  SELECT ", cols, ", false AS range_done FROM batch_end\n"
                    "  UNION ALL\n  SELECT ", cols, ", true FROM range_end\n"
                    "   WHERE NOT EXISTS (SELECT FROM batch_end)"
                    " AND EXISTS (SELECT FROM claim)\n");
  }
  return sql;
}

// The key condition of the write, over the table aliased `t`: the row comparisons that select
// exactly the batch's rows, and, on the key's first column, a scalar range the planner can
// estimate. The batch's bound is an InitPlan output the planner cannot see, and PostgreSQL
// estimates `row <= (unknown)` as a third of what lies past the lower bound (row comparisons are
// never treated as a range), or of the whole table when there is no lower bound: on a
// composite key, or any key's first batch, that chose a sequential scan of the table for every
// batch. A pair `first >= x AND first <= (unknown)` is a range, estimated at 0.5% at most.
std::vector<std::string> WriteRange(const plan::QualifiedName& table,
                                    const std::vector<KeyColumn>& key, RangeEnds ends,
                                    const BatchParams& p) {
  std::vector<std::string> conditions;
  const std::string first = absl::StrCat("t.", pg::QuoteIdent(key.front().name));
  if (ends.has_lower) {
    conditions.push_back(absl::StrCat(KeyRow(key, "t."), " > ", ParamRow(key, p.lower)));
    if (key.size() > 1) {
      conditions.push_back(absl::StrCat(first, " >= $", p.lower, "::", key.front().type));
    }
  } else {
    // Where the range starts before the smallest key: that key, found by one index descent.
    const std::string column = pg::QuoteIdent(key.front().name);
    conditions.push_back(absl::StrCat(first, " >= (SELECT s.", column, " FROM ",
                                      plan::QuoteQualified(table), " AS s ORDER BY s.", column,
                                      " LIMIT 1)"));
  }
  std::vector<std::string> key_cols;
  for (const KeyColumn& column : key) key_cols.push_back(pg::QuoteIdent(column.name));
  conditions.push_back(absl::StrCat(KeyRow(key, "t."), " <= (SELECT ",
                                    absl::StrJoin(key_cols, ", "), " FROM bound)"));
  if (key.size() > 1) {
    conditions.push_back(absl::StrCat(first, " <= (SELECT ", key_cols.front(), " FROM bound)"));
  }
  return conditions;
}

// The tail every batch shares: counts the rows of CTE `written` (one `RETURNING 1` per row),
// moves the checkpoint to the bound and returns the result row as `<count_name>, done_upto,
// range_done`. Continues after the write's CTE body.
std::string BatchTail(const std::vector<KeyColumn>& key, const BatchParams& p,
                      const char* written, const char* count_name) {
  std::vector<std::string> key_text;
  for (const KeyColumn& column : key) {
    key_text.push_back(absl::StrCat(pg::QuoteIdent(column.name), "::text"));
  }
  return absl::StrCat(
      // Counted once: the checkpoint and the result both need the number, and every scan of
      // the write's CTE walks all of the batch's rows again.
      "), counted AS (\n  SELECT count(*) AS n FROM ", written, "\n"
      "), checkpoint AS (\n"
      "  UPDATE ", RangesTable(), " AS r\n"
      "     SET done_upto = COALESCE((SELECT ARRAY[", absl::StrJoin(key_text, ", "),
      "] FROM bound), r.done_upto),\n"
      "         rows_done = r.rows_done + (SELECT n FROM counted),\n"
      "         state = CASE WHEN COALESCE((SELECT range_done FROM bound), true)\n"
      "                      THEN 'done' ELSE 'running' END,\n"
      "         updated_at = pg_catalog.clock_timestamp()\n"
      "   WHERE r.job_name = $", p.job, "::text AND r.range_id = $", p.range, "::int\n"
      "     AND EXISTS (SELECT FROM claim)\n"
      "  RETURNING r.done_upto, r.state = 'done' AS range_done\n"
      ")\n"
      "SELECT (SELECT n FROM counted) AS ", count_name, ", c.done_upto, c.range_done\n"
      "  FROM checkpoint c");
}

std::vector<std::string> UpdateWhere(const UpdateBatchSpec& spec, RangeEnds ends,
                                     const BatchParams& p) {
  std::vector<std::string> conditions = WriteRange(spec.table, spec.key, ends, p);
  if (!spec.where.empty()) conditions.push_back(absl::StrCat("(", spec.where, ")"));
  return conditions;
}

std::string UpdateWrite(const UpdateBatchSpec& spec, const std::vector<std::string>& where) {
  std::vector<std::string> assignments;
  for (const plan::Assignment& assignment : spec.set) {
    assignments.push_back(
        absl::StrCat(pg::QuoteIdent(assignment.column), " = (", assignment.expression, ")"));
  }
  return absl::StrCat("UPDATE ", plan::QuoteQualified(spec.table), " AS t SET ",
                      absl::StrJoin(assignments, ", "), "\n  WHERE ",
                      absl::StrJoin(where, "\n    AND "));
}

std::vector<std::string> CopyWhere(const CopyBatchSpec& spec, RangeEnds ends,
                                   const BatchParams& p) {
  std::vector<std::string> conditions = WriteRange(spec.source, spec.key, ends, p);
  if (!spec.where.empty()) conditions.push_back(absl::StrCat("(", spec.where, ")"));
  return conditions;
}

// The batch's source rows through `columns`, locked FOR SHARE (see BuildCopyBatch).
std::string SourceRows(const CopyBatchSpec& spec, const std::vector<std::string>& where) {
  std::vector<std::string> exprs;
  for (const plan::Assignment& assignment : spec.columns) {
    exprs.push_back(
        absl::StrCat("(", assignment.expression, ") AS ", pg::QuoteIdent(assignment.column)));
  }
  return absl::StrCat("SELECT ", absl::StrJoin(exprs, ", "), "\n    FROM ",
                      plan::QuoteQualified(spec.source), " AS t\n   WHERE ",
                      absl::StrJoin(where, "\n     AND "), "\n     FOR SHARE OF t");
}

// `WITH bound AS MATERIALIZED (SELECT $i::type AS "col", ...)`: the batch's bound as the write
// sees it, a value the planner does not know, from parameter `first` on.
std::string BoundStandIn(const std::vector<KeyColumn>& key, int first) {
  std::vector<std::string> columns;
  for (size_t i = 0; i < key.size(); ++i) {
    columns.push_back(absl::StrCat("$", first + static_cast<int>(i), "::", key[i].type, " AS ",
                                   pg::QuoteIdent(key[i].name)));
  }
  return absl::StrCat("WITH bound AS MATERIALIZED (SELECT ", absl::StrJoin(columns, ", "), ")\n");
}

// Parameters of a write shape: the lower bound (when has_lower), then the bound.
BatchParams ShapeParams(size_t key_columns, RangeEnds ends) {
  BatchParams p;
  p.lower = ends.has_lower ? 1 : 0;
  p.upper = (ends.has_lower ? static_cast<int>(key_columns) : 0) + 1;
  p.count = p.upper + static_cast<int>(key_columns) - 1;
  return p;
}

}  // namespace

std::string BuildUpdateBatch(const UpdateBatchSpec& spec, RangeEnds ends) {
  const BatchParams p = UpdateBatchParams(spec.key.size(), ends);
  std::string sql = BatchHead(spec.table, spec.key, ends, p);

  absl::StrAppend(&sql, "), updated AS (\n  ", UpdateWrite(spec, UpdateWhere(spec, ends, p)),
                  "\n  RETURNING 1\n", BatchTail(spec.key, p, "updated", "rows_updated"));
  return sql;
}

std::string UpdateWriteShape(const UpdateBatchSpec& spec, RangeEnds ends) {
  const BatchParams p = ShapeParams(spec.key.size(), ends);
  return absl::StrCat(BoundStandIn(spec.key, p.upper),
                      UpdateWrite(spec, UpdateWhere(spec, ends, p)));
}

std::string CopyWriteShape(const CopyBatchSpec& spec, RangeEnds ends) {
  const BatchParams p = ShapeParams(spec.key.size(), ends);
  return absl::StrCat(BoundStandIn(spec.key, p.upper), SourceRows(spec, CopyWhere(spec, ends, p)));
}

std::string BuildCopyBatch(const CopyBatchSpec& spec, RangeEnds ends) {
  const BatchParams p = UpdateBatchParams(spec.key.size(), ends);
  std::string sql = BatchHead(spec.source, spec.key, ends, p);

  std::vector<std::string> columns;
  std::vector<std::string> non_key;
  for (const plan::Assignment& assignment : spec.columns) {
    const std::string column = pg::QuoteIdent(assignment.column);
    columns.push_back(column);
    if (std::find(spec.target_key.begin(), spec.target_key.end(), assignment.column) ==
        spec.target_key.end()) {
      non_key.push_back(column);
    }
  }
  std::vector<std::string> target_key;
  for (const std::string& column : spec.target_key) target_key.push_back(pg::QuoteIdent(column));
  const std::string column_list = absl::StrJoin(columns, ", ");

  const std::vector<std::string> source_where = CopyWhere(spec, ends, p);

  // src: the batch's source rows, locked FOR SHARE until the batch commits. A concurrent UPDATE or
  // DELETE of such a row waits for us, and its trigger then writes after our row: no row comes
  // back after its DELETE (ghost) and no old version lands after a newer one (lost update). One
  // that committed first is seen by the lock: READ COMMITTED rechecks the newest version of the
  // row against the WHERE and computes the expressions over it, or drops a deleted row. FOR KEY
  // SHARE would let an UPDATE of a non-key column through between our read and our write.
  // (A row-lock clause needs UPDATE privilege on some column of the source; preflight checks it.)
  absl::StrAppend(&sql, "), src AS MATERIALIZED (\n  ", SourceRows(spec, source_where), "\n");

  // A target row with the key already there is either one the sync trigger wrote (the current
  // value: the source row is locked, so whatever wrote it finished before our lock) or one the
  // target held before the job.
  std::string conflict;
  const std::string target_row = absl::StrCat("ROW(", [&] {
    std::vector<std::string> parts;
    for (const std::string& column : non_key) parts.push_back(absl::StrCat("dst.", column));
    return absl::StrJoin(parts, ", ");
  }(), ")::text");
  const std::string new_row = absl::StrCat("ROW(", [&] {
    std::vector<std::string> parts;
    for (const std::string& column : non_key) parts.push_back(absl::StrCat("EXCLUDED.", column));
    return absl::StrJoin(parts, ", ");
  }(), ")::text");
  switch (spec.on_conflict) {
    case plan::OnConflict::kSkip:
      conflict = "DO NOTHING";
      break;
    case plan::OnConflict::kUpdate:
      // Overwrite with the value read under our lock: current by the argument above. Rows that
      // already hold it (the trigger's) are left alone: no dead tuple, no WAL.
      if (non_key.empty()) {
        conflict = "DO NOTHING";
        break;
      }
      {
        std::vector<std::string> sets;
        for (const std::string& column : non_key) {
          sets.push_back(absl::StrCat(column, " = EXCLUDED.", column));
        }
        conflict = absl::StrCat("DO UPDATE SET ", absl::StrJoin(sets, ", "), "\n    WHERE ",
                                target_row, " IS DISTINCT FROM ", new_row);
      }
      break;
    case plan::OnConflict::kError:
      // A row equal to ours is the trigger's copy (an application write since expand) and is
      // fine; a different one was there before the job, and fails the batch. SQL has no RAISE:
      // the cast of the message to integer is what raises (SQLSTATE 22P02, fatal), with the
      // message in the error text. It depends on EXCLUDED, so the planner cannot fold it early.
      if (non_key.empty()) {
        conflict = "DO NOTHING";
        break;
      }
      conflict = absl::StrCat(
          "DO UPDATE SET ", non_key.front(), " = EXCLUDED.", non_key.front(),
          "\n    WHERE CASE WHEN ", target_row, " IS DISTINCT FROM ", new_row, "\n"
          "      THEN (", pg::QuoteLiteral(absl::StrCat(
                            "pgbackfill: on_conflict is error, and ",
                            plan::QuoteQualified(spec.target),
                            " already holds a different row with key ")),
          " || ROW(", [&] {
            std::vector<std::string> parts;
            for (const std::string& column : target_key) {
              parts.push_back(absl::StrCat("EXCLUDED.", column));
            }
            return absl::StrJoin(parts, ", ");
          }(),
          ")::text)::integer = 0 ELSE false END");
      break;
  }

  absl::StrAppend(&sql, "), written AS (\n  INSERT INTO ", plan::QuoteQualified(spec.target),
                  " AS dst (", column_list, ") OVERRIDING SYSTEM VALUE\n  SELECT ", column_list,
                  " FROM src\n  ON CONFLICT (", absl::StrJoin(target_key, ", "), ") ", conflict,
                  "\n  RETURNING 1\n", BatchTail(spec.key, p, "written", "rows_written"));
  return sql;
}

std::vector<std::string> BatchTransaction(const plan::Throttle& throttle, plan::Triggers triggers,
                                          std::string batch_sql) {
  std::vector<std::string> statements;
  statements.reserve(5);
  // Tagged, as is everything else the run sends (sql/names.h): the application's statement
  // latency must not average in our BEGIN and COMMIT.
  statements.push_back(sql::Tagged("BEGIN"));
  statements.push_back(sql::SetLocalTimeout("lock_timeout", throttle.lock_timeout));
  // With the statement timeout, the marker the dual-write trigger looks for (expand/triggers.h):
  // the batch has computed `set` from the row as it was, and the trigger must not compute it again
  // from the updated row (a non-idempotent `n = n + 1` would be applied twice, and a `where` with
  // a cost would be paid per row). One statement for both keeps the pipeline at five. With
  // triggers: skip it also sets the replication role: then the dual-write trigger, an ordinary
  // one, does not fire at all in the batch, which is what in_batch makes it do anyway.
  statements.push_back(
      sql::BatchSettings(throttle.statement_timeout, triggers == plan::Triggers::kSkip));
  statements.push_back(std::move(batch_sql));
  statements.push_back(sql::Tagged("COMMIT"));
  return statements;
}

}  // namespace pgbackfill::batch
