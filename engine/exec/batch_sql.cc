#include "pgbackfill/exec/batch_sql.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "pgbackfill/pg/quote.h"

namespace pgbackfill::exec {

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
  params.count = next - 1;
  return params;
}

std::string KeyRow(const std::vector<KeyColumn>& key, const std::string& qualifier) {
  std::vector<std::string> parts;
  for (const KeyColumn& column : key) {
    parts.push_back(absl::StrCat(qualifier, pg::QuoteIdent(column.name)));
  }
  return absl::StrCat("(", absl::StrJoin(parts, ", "), ")");
}

std::string ParamRow(const std::vector<KeyColumn>& key, int first) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < key.size(); ++i) {
    parts.push_back(absl::StrCat("$", first + static_cast<int>(i), "::", key[i].type));
  }
  return absl::StrCat("(", absl::StrJoin(parts, ", "), ")");
}

std::string BuildUpdateBatch(const UpdateBatchSpec& spec, RangeEnds ends) {
  const BatchParams p = UpdateBatchParams(spec.key.size(), ends);
  const std::string table = plan::QuoteQualified(spec.table);
  const std::string key_row = KeyRow(spec.key);

  std::vector<std::string> key_cols;
  std::vector<std::string> key_text;
  std::vector<std::string> key_desc;
  for (const KeyColumn& column : spec.key) {
    key_cols.push_back(pg::QuoteIdent(column.name));
    key_text.push_back(absl::StrCat(pg::QuoteIdent(column.name), "::text"));
    key_desc.push_back(absl::StrCat(pg::QuoteIdent(column.name), " DESC"));
  }
  const std::string cols = absl::StrJoin(key_cols, ", ");
  const std::string lower =
      ends.has_lower ? absl::StrCat(key_row, " > ", ParamRow(spec.key, p.lower)) : "";
  const std::string upper =
      ends.has_upper ? absl::StrCat(key_row, " <= ", ParamRow(spec.key, p.upper)) : "";
  std::vector<std::string> range;
  if (!lower.empty()) range.push_back(lower);
  if (!upper.empty()) range.push_back(upper);

  const std::string ranges_table = absl::StrCat(pg::QuoteIdent(kJobStoreSchema), ".\"ranges\"");
  // claim: lock the range's checkpoint row first and go on only if it still says what this batch
  // starts from. A batch of an earlier, killed run may still be finishing on the server; it holds
  // that row until it ends, and if it committed, the checkpoint moved and this batch does nothing
  // (the worker reloads the checkpoint) instead of applying the same rows twice.
  std::string sql = absl::StrCat(
      "WITH claim AS MATERIALIZED (\n"
      "  SELECT 1 FROM ", ranges_table, "\n"
      "   WHERE job_name = $", p.job, "::text AND range_id = $", p.range, "::int\n"
      "     AND done_upto IS NOT DISTINCT FROM $", p.checkpoint, "::text[]\n"
      "     FOR UPDATE\n");
  // batch_end: the key `rows` rows past the checkpoint, walking the key's index.
  range.insert(range.begin(), "EXISTS (SELECT FROM claim)");
  absl::StrAppend(&sql, "), batch_end AS (\n  SELECT ", cols, " FROM ", table, "\n",
                  "  WHERE ", absl::StrJoin(range, " AND "), "\n", "  ORDER BY ", cols,
                  "\n  OFFSET $", p.rows, "::bigint - 1 LIMIT 1\n");
  // bound: batch_end, or when fewer rows remain, the range's end. An open-ended last range ends at
  // the largest key present now; it has no row at all when nothing is left past the checkpoint.
  // The bound is one scalar (row) value so that the UPDATE's key condition stays an index range.
  if (ends.has_upper) {
    absl::StrAppend(&sql, "), bound AS (\n  SELECT ", cols, ", false AS range_done FROM batch_end\n"
                    "  UNION ALL\n  SELECT ");
    std::vector<std::string> upper_params;
    for (size_t i = 0; i < spec.key.size(); ++i) {
      upper_params.push_back(absl::StrCat("$", p.upper + static_cast<int>(i), "::",
                                          spec.key[i].type));
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

  std::vector<std::string> assignments;
  for (const plan::Assignment& assignment : spec.set) {
    assignments.push_back(
        absl::StrCat(pg::QuoteIdent(assignment.column), " = (", assignment.expression, ")"));
  }
  std::vector<std::string> update_where;
  if (ends.has_lower) {
    update_where.push_back(
        absl::StrCat(KeyRow(spec.key, "t."), " > ", ParamRow(spec.key, p.lower)));
  }
  update_where.push_back(
      absl::StrCat(KeyRow(spec.key, "t."), " <= (SELECT ", cols, " FROM bound)"));
  if (!spec.where.empty()) update_where.push_back(absl::StrCat("(", spec.where, ")"));

  absl::StrAppend(
      &sql, "), updated AS (\n  UPDATE ", table, " AS t SET ", absl::StrJoin(assignments, ", "),
      "\n  WHERE ", absl::StrJoin(update_where, "\n    AND "), "\n  RETURNING 1\n"
      // Counted once: the checkpoint and the result both need the number, and every scan of
      // `updated` walks all of the batch's rows again.
      "), counted AS (\n  SELECT count(*) AS n FROM updated\n"
      "), checkpoint AS (\n"
      "  UPDATE ", ranges_table, " AS r\n"
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
      "SELECT (SELECT n FROM counted) AS rows_updated, c.done_upto, c.range_done\n"
      "  FROM checkpoint c");
  return sql;
}

std::vector<std::string> BatchTransaction(const plan::Throttle& throttle, std::string batch_sql) {
  auto set_local = [](const char* setting, absl::Duration value) {
    return absl::StrCat("SET LOCAL ", setting, " = '", absl::ToInt64Milliseconds(value), "ms'");
  };
  std::vector<std::string> statements;
  statements.reserve(5);
  statements.emplace_back("BEGIN");
  statements.push_back(set_local("lock_timeout", throttle.lock_timeout));
  statements.push_back(set_local("statement_timeout", throttle.statement_timeout));
  statements.push_back(std::move(batch_sql));
  statements.emplace_back("COMMIT");
  return statements;
}

}  // namespace pgbackfill::exec
