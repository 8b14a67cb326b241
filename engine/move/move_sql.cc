#include "pgbackfill/move/move_sql.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/sql/names.h"

namespace pgbackfill::move {
namespace {

using sql::KeyColumn;
using sql::RangeEnds;

std::vector<KeyColumn> TargetKey(const MoveSpec& spec) {
  std::vector<KeyColumn> key;
  for (size_t i = 0; i < spec.target_key.size(); ++i) {
    key.push_back(KeyColumn{spec.target_key[i],
                            i < spec.target_key_types.size() ? spec.target_key_types[i] : ""});
  }
  return key;
}

// `(t.a, t.b) > ($1::int, $2::text) AND (t.a, t.b) <= ($3::int, $4::text)`, each end only when
// bounded; "true" when neither is.
std::string ParamSpan(const std::vector<KeyColumn>& key, RangeEnds ends) {
  std::vector<std::string> conditions;
  int next = 1;
  const std::string row = sql::KeyRow(key, "t.");
  if (ends.has_lower) {
    conditions.push_back(absl::StrCat(row, " > ", sql::ParamRow(key, next)));
    next += static_cast<int>(key.size());
  }
  if (ends.has_upper) conditions.push_back(absl::StrCat(row, " <= ", sql::ParamRow(key, next)));
  if (conditions.empty()) return "true";
  return absl::StrJoin(conditions, " AND ");
}

std::string LiteralRow(const std::vector<KeyColumn>& key, const ranges::KeyValue& value) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < key.size() && i < value.size(); ++i) {
    parts.push_back(absl::StrCat(pg::QuoteLiteral(value[i]), "::", key[i].type));
  }
  return absl::StrCat("(", absl::StrJoin(parts, ", "), ")");
}

std::string OrderBy(const std::vector<KeyColumn>& key) {
  std::vector<std::string> parts;
  for (const KeyColumn& column : key) parts.push_back("t." + pg::QuoteIdent(column.name));
  return absl::StrJoin(parts, ", ");
}

std::string TargetColumns(const MoveSpec& spec) {
  std::vector<std::string> names;
  for (const plan::Assignment& assignment : spec.columns) {
    names.push_back(pg::QuoteIdent(assignment.column));
  }
  return absl::StrJoin(names, ", ");
}

// count(*) and the sum of one 64-bit hash per row of `row_text`, as text.
std::string HashSelect(const MoveSpec& spec, const std::string& row_text) {
  const std::string hashed =
      spec.same_encoding ? row_text
                         : absl::StrCat("pg_catalog.encode(pg_catalog.convert_to(", row_text,
                                        ", 'UTF8'), 'hex')");
  return absl::StrCat("SELECT pg_catalog.count(*), COALESCE(pg_catalog.sum(",
                      "pg_catalog.hashtextextended(", hashed, ", 0)), 0)::text");
}

std::string WhereClause(const MoveSpec& spec, const std::string& span) {
  if (spec.where.empty()) return span;
  return absl::StrCat(span, " AND (", spec.where, ")");
}

}  // namespace

std::string BatchEndSql(const MoveSpec& spec, RangeEnds ends) {
  std::vector<std::string> key_cols;
  std::vector<std::string> key_text;
  for (const KeyColumn& column : spec.key) {
    key_cols.push_back("t." + pg::QuoteIdent(column.name));
    key_text.push_back(absl::StrCat("b.", pg::QuoteIdent(column.name), "::text"));
  }
  const int rows_param =
      1 + static_cast<int>(spec.key.size()) * ((ends.has_lower ? 1 : 0) + (ends.has_upper ? 1 : 0));
  // row_number() streams over the index walk and the LIMIT stops it after `rows` keys; only the
  // last one is kept. `where` is not applied: the span is measured in keys, as in the
  // same-database batches, and the COPY filters.
  return absl::StrCat("SELECT b.n, ", absl::StrJoin(key_text, ", "), " FROM (\n  SELECT ",
                      absl::StrJoin(key_cols, ", "), ", pg_catalog.row_number() OVER (ORDER BY ",
                      OrderBy(spec.key), ") AS n\n    FROM ", plan::QuoteQualified(spec.source),
                      " AS t\n   WHERE ", ParamSpan(spec.key, ends), "\n   ORDER BY ",
                      OrderBy(spec.key), "\n   LIMIT $", rows_param,
                      "::bigint\n) AS b\nORDER BY b.n DESC LIMIT 1");
}

std::string CopyOutSql(const MoveSpec& spec, const std::optional<ranges::KeyValue>& after,
                       const std::optional<ranges::KeyValue>& upto) {
  std::vector<std::string> expressions;
  for (const plan::Assignment& assignment : spec.columns) {
    expressions.push_back(absl::StrCat("(", assignment.expression, ")"));
  }
  std::vector<std::string> conditions;
  const std::string row = sql::KeyRow(spec.key, "t.");
  if (after.has_value()) {
    conditions.push_back(absl::StrCat(row, " > ", LiteralRow(spec.key, *after)));
  }
  if (upto.has_value()) {
    conditions.push_back(absl::StrCat(row, " <= ", LiteralRow(spec.key, *upto)));
  }
  const std::string span = conditions.empty() ? "true" : absl::StrJoin(conditions, " AND ");
  return absl::StrCat("COPY (SELECT ", absl::StrJoin(expressions, ", "), " FROM ",
                      plan::QuoteQualified(spec.source), " AS t WHERE ", WhereClause(spec, span),
                      " ORDER BY ", OrderBy(spec.key), ") TO STDOUT (FORMAT ",
                      spec.binary ? "binary" : "text", ")");
}

std::string CopyInSql(const MoveSpec& spec, bool staged) {
  return absl::StrCat(
      "COPY ", staged ? absl::StrCat("pg_temp.", kStageTable) : plan::QuoteQualified(spec.target),
      " (", TargetColumns(spec), ") FROM STDIN (FORMAT ", spec.binary ? "binary" : "text", ")");
}

std::string StageSql(const MoveSpec& spec) {
  // Only these columns, with `into`'s types: the stream was built for them. No constraints, no
  // defaults: the INSERT from it applies `into`'s own.
  return absl::StrCat("CREATE TEMPORARY TABLE IF NOT EXISTS ", kStageTable,
                      " ON COMMIT DELETE ROWS AS SELECT ", TargetColumns(spec), " FROM ",
                      plan::QuoteQualified(spec.target), " WITH NO DATA");
}

std::string InsertFromStageSql(const MoveSpec& spec) {
  const std::string columns = TargetColumns(spec);
  std::string sql =
      absl::StrCat("INSERT INTO ", plan::QuoteQualified(spec.target), " AS x (", columns,
                   ") OVERRIDING SYSTEM VALUE SELECT ", columns, " FROM pg_temp.", kStageTable);
  if (spec.on_conflict == plan::OnConflict::kError) return sql;
  std::vector<std::string> key;
  for (const std::string& name : spec.target_key) key.push_back(pg::QuoteIdent(name));
  absl::StrAppend(&sql, " ON CONFLICT (", absl::StrJoin(key, ", "), ") DO ");
  std::vector<std::string> assignments;
  std::vector<std::string> mine;
  std::vector<std::string> theirs;
  for (const plan::Assignment& assignment : spec.columns) {
    const std::string name = pg::QuoteIdent(assignment.column);
    if (std::find(spec.target_key.begin(), spec.target_key.end(), assignment.column) !=
        spec.target_key.end()) {
      continue;
    }
    assignments.push_back(absl::StrCat(name, " = EXCLUDED.", name));
    mine.push_back("x." + name);
    theirs.push_back("EXCLUDED." + name);
  }
  if (spec.on_conflict == plan::OnConflict::kSkip || assignments.empty()) {
    absl::StrAppend(&sql, "NOTHING");
    return sql;
  }
  // A row that holds our values already is left alone: no new row version, no WAL.
  absl::StrAppend(&sql, "UPDATE SET ", absl::StrJoin(assignments, ", "), " WHERE ROW(",
                  absl::StrJoin(mine, ", "), ") IS DISTINCT FROM ROW(", absl::StrJoin(theirs, ", "),
                  ")");
  return sql;
}

std::string ClaimSql() {
  return absl::StrCat("SELECT 1 FROM ", pg::QuoteIdent(sql::kJobStoreSchema),
                      ".\"ranges\" AS r WHERE r.job_name = $1::text AND r.range_id = $2::int"
                      " AND r.done_upto IS NOT DISTINCT FROM $3::text[] AND r.state <> 'done'"
                      " AND r.upper IS NOT DISTINCT FROM $4::text[]"
                      " FOR UPDATE");
}

std::string AdvanceSql() {
  return absl::StrCat(
      "UPDATE ", pg::QuoteIdent(sql::kJobStoreSchema),
      ".\"ranges\" AS r SET done_upto = $3::text[], rows_done = r.rows_done + $4::bigint,"
      " state = CASE WHEN $5::bool THEN 'done' ELSE 'running' END,"
      " updated_at = pg_catalog.clock_timestamp()"
      " WHERE r.job_name = $1::text AND r.range_id = $2::int");
}

std::string SourceHashSql(const MoveSpec& spec, RangeEnds ends) {
  std::vector<std::string> expressions;
  for (size_t i = 0; i < spec.columns.size(); ++i) {
    const std::string type = i < spec.column_types.size() ? spec.column_types[i] : "";
    expressions.push_back(type.empty()
                              ? absl::StrCat("(", spec.columns[i].expression, ")")
                              : absl::StrCat("(", spec.columns[i].expression, ")::", type));
  }
  return absl::StrCat(HashSelect(spec, absl::StrCat("ROW(", absl::StrJoin(expressions, ", "),
                                                   ")::text")),
                      " FROM ", plan::QuoteQualified(spec.source), " AS t WHERE ",
                      WhereClause(spec, ParamSpan(spec.key, ends)));
}

std::string TargetHashSql(const MoveSpec& spec, RangeEnds ends) {
  std::vector<std::string> columns;
  for (const plan::Assignment& assignment : spec.columns) {
    columns.push_back("t." + pg::QuoteIdent(assignment.column));
  }
  return absl::StrCat(
      HashSelect(spec, absl::StrCat("ROW(", absl::StrJoin(columns, ", "), ")::text")), " FROM ",
      plan::QuoteQualified(spec.target), " AS t WHERE ", ParamSpan(TargetKey(spec), ends));
}

std::string VerifySessionSettings() {
  return "SET client_encoding = 'UTF8'; SET DateStyle = 'ISO, MDY';"
         " SET IntervalStyle = 'postgres'; SET TimeZone = 'UTC'; SET extra_float_digits = 1;"
         " SET bytea_output = 'hex'";
}

std::string DeleteTargetRangeSql(const MoveSpec& spec, RangeEnds ends) {
  return absl::StrCat("DELETE FROM ", plan::QuoteQualified(spec.target), " AS t WHERE ",
                      ParamSpan(TargetKey(spec), ends));
}

TargetTransaction BuildTargetTransaction(const MoveSpec& spec, const plan::Throttle& throttle,
                                         plan::Triggers triggers, bool staged) {
  TargetTransaction transaction;
  // The claim first, so that nothing is copied for a checkpoint that moved (a batch of a killed
  // run that committed late). in_batch as in one database's batches, so that a trigger on `into`
  // can tell the copy's writes from the application's (README: the table's own triggers).
  transaction.head = {
      sql::Tagged("BEGIN"), sql::SetLocalTimeout("lock_timeout", throttle.lock_timeout),
      sql::BatchSettings(throttle.statement_timeout, triggers == plan::Triggers::kSkip),
      ClaimSql()};
  if (staged) transaction.head.push_back(StageSql(spec));
  transaction.copy_in = CopyInSql(spec, staged);
  if (staged) transaction.tail.push_back(InsertFromStageSql(spec));
  transaction.advance_index = transaction.tail.size();
  transaction.tail.push_back(AdvanceSql());
  transaction.tail.push_back(sql::Tagged("COMMIT"));
  return transaction;
}

}  // namespace pgbackfill::move
