#include "pgbackfill/verify/verify.h"

#include <algorithm>
#include <functional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/sql/lexer.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::verify {
namespace {

constexpr size_t kMaxReportedKeys = 10;

}  // namespace

std::optional<std::string> WhyNotVerifiable(const plan::Plan& plan) {
  if (plan.mode == plan::Mode::kCopy) return std::nullopt;
  for (const plan::Assignment& assignment : plan.set) {
    for (const plan::Assignment& other : plan.set) {
      const std::vector<std::string> names = sql::MentionedIdentifiers(other.expression);
      if (std::find(names.begin(), names.end(), assignment.column) != names.end()) {
        return absl::StrCat("set.", other.column, " reads column ", assignment.column,
                            ", which the plan writes: once a row is filled its expected value is "
                            "gone, so it cannot be compared");
      }
    }
  }
  return std::nullopt;
}

std::string DiffSql(const batch::UpdateBatchSpec& spec, sql::RangeEnds ends, int limit,
                    const std::vector<std::string>& types) {
  const std::string key_row = sql::KeyRow(spec.key);
  std::vector<std::string> conditions;
  int next = 1;
  if (ends.has_lower) {
    conditions.push_back(absl::StrCat(key_row, " > ", sql::ParamRow(spec.key, next)));
    next += static_cast<int>(spec.key.size());
  }
  if (ends.has_upper) {
    conditions.push_back(absl::StrCat(key_row, " <= ", sql::ParamRow(spec.key, next)));
  }
  if (!spec.where.empty()) conditions.push_back(absl::StrCat("(", spec.where, ")"));
  std::vector<std::string> differs;
  for (size_t i = 0; i < spec.set.size(); ++i) {
    const std::string type = i < types.size() ? types[i] : "";
    differs.push_back(absl::StrCat(pg::QuoteIdent(spec.set[i].column), " IS DISTINCT FROM (",
                                   spec.set[i].expression, ")",
                                   type.empty() ? "" : absl::StrCat("::", type)));
  }
  conditions.push_back(absl::StrCat("(", absl::StrJoin(differs, " OR "), ")"));
  // count(*) OVER () is taken before LIMIT: the total, on every returned row. The row is `t`, as
  // in the batches, so expressions mean the same here.
  return absl::StrCat("SELECT ", key_row, "::text, pg_catalog.count(*) OVER () FROM ",
                      plan::QuoteQualified(spec.table), " AS t WHERE ",
                      absl::StrJoin(conditions, " AND "), " ORDER BY ", key_row, " LIMIT ", limit);
}

std::string CopyDiffSql(const CopyCheck& check, sql::RangeEnds ends, int limit) {
  std::vector<sql::KeyColumn> target_key;
  for (size_t i = 0; i < check.target_key.size() && i < check.key.size(); ++i) {
    target_key.push_back(sql::KeyColumn{check.target_key[i], check.key[i].type});
  }
  // The same bound values select the range on both sides: the target key holds the source key.
  auto range = [&](const std::vector<sql::KeyColumn>& key) {
    const std::string row = sql::KeyRow(key);
    std::vector<std::string> conditions;
    int next = 1;
    if (ends.has_lower) {
      conditions.push_back(absl::StrCat(row, " > ", sql::ParamRow(check.key, next)));
      next += static_cast<int>(check.key.size());
    }
    if (ends.has_upper) {
      conditions.push_back(absl::StrCat(row, " <= ", sql::ParamRow(check.key, next)));
    }
    return conditions;
  };
  std::vector<std::string> source_conditions = range(check.key);
  if (!check.where.empty()) source_conditions.push_back(absl::StrCat("(", check.where, ")"));
  std::vector<std::string> computed;
  std::vector<std::string> stored;
  for (size_t i = 0; i < check.columns.size(); ++i) {
    const std::string column = pg::QuoteIdent(check.columns[i].column);
    const std::string type = i < check.column_types.size() ? check.column_types[i] : "";
    computed.push_back(absl::StrCat("(", check.columns[i].expression, ")",
                                    type.empty() ? "" : absl::StrCat("::", type), " AS ", column));
    stored.push_back(column);
  }
  const std::vector<std::string> target_conditions = range(target_key);
  auto where = [](const std::vector<std::string>& conditions) {
    return conditions.empty() ? std::string() : absl::StrCat(" WHERE ", absl::StrJoin(conditions, " AND "));
  };
  const std::string key_row = sql::KeyRow(target_key);
  return absl::StrCat(
      "WITH s AS (SELECT ", absl::StrJoin(computed, ", "), " FROM ",
      plan::QuoteQualified(check.source), " AS t", where(source_conditions), "), d AS (SELECT ",
      absl::StrJoin(stored, ", "), " FROM ", plan::QuoteQualified(check.target),
      where(target_conditions),
      // A changed row shows on both sides; counted once, by its key.
      ") SELECT k::text, pg_catalog.count(*) OVER () FROM (SELECT DISTINCT ", key_row,
      " AS k FROM ((SELECT * FROM s EXCEPT ALL SELECT * FROM d)"
      " UNION ALL (SELECT * FROM d EXCEPT ALL SELECT * FROM s)) x) keys ORDER BY k LIMIT ", limit);
}

namespace {

// Runs `sql_for(ends)` for every range in one REPEATABLE READ READ ONLY transaction.
absl::StatusOr<Report> VerifyRanges(
    pg::Connection& conn, const std::function<std::string(sql::RangeEnds)>& sql_for,
    const std::vector<checkpoint::RangeRecord>& ranges, const std::string& user_search_path);

}  // namespace

absl::StatusOr<Report> Verify(pg::Connection& conn, const batch::UpdateBatchSpec& spec,
                              const std::vector<std::string>& types,
                              const std::vector<checkpoint::RangeRecord>& ranges,
                              const std::string& user_search_path) {
  return VerifyRanges(
      conn, [&](sql::RangeEnds ends) { return DiffSql(spec, ends, 5, types); }, ranges,
      user_search_path);
}

absl::StatusOr<Report> Verify(pg::Connection& conn, const CopyCheck& check,
                              const std::vector<checkpoint::RangeRecord>& ranges,
                              const std::string& user_search_path) {
  return VerifyRanges(
      conn, [&](sql::RangeEnds ends) { return CopyDiffSql(check, ends, 5); }, ranges,
      user_search_path);
}

namespace {

absl::StatusOr<Report> VerifyRanges(
    pg::Connection& conn, const std::function<std::string(sql::RangeEnds)>& sql_for,
    const std::vector<checkpoint::RangeRecord>& ranges, const std::string& user_search_path) {
  RETURN_IF_ERROR(conn.Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").status());
  auto run = [&]() -> absl::StatusOr<Report> {
    RETURN_IF_ERROR(conn.Exec("SELECT pg_catalog.set_config('search_path', $1, true)",
                              {user_search_path})
                        .status());
    Report report;
    // An empty job (no ranges yet) is the whole table: one range open at both ends.
    std::vector<checkpoint::RangeRecord> all = ranges;
    if (all.empty()) all.push_back(checkpoint::RangeRecord{});
    for (const checkpoint::RangeRecord& range : all) {
      const sql::RangeEnds ends{range.lower.has_value(), range.upper.has_value()};
      std::vector<pg::Param> params;
      if (range.lower) params.insert(params.end(), range.lower->begin(), range.lower->end());
      if (range.upper) params.insert(params.end(), range.upper->begin(), range.upper->end());
      ASSIGN_OR_RETURN(pg::Result rows, conn.Exec(sql_for(ends), params));
      ++report.ranges_checked;
      if (rows.Rows() == 0) continue;
      RangeDiff diff;
      diff.range = range.id;
      diff.rows = std::stoll(std::string(rows.Get(0, 1)));
      for (int row = 0; row < rows.Rows(); ++row) {
        diff.first_keys.emplace_back(rows.Get(row, 0));
        if (report.first_keys.size() < kMaxReportedKeys) {
          report.first_keys.emplace_back(rows.Get(row, 0));
        }
      }
      report.differing += diff.rows;
      report.ranges.push_back(std::move(diff));
    }
    return report;
  };
  absl::StatusOr<Report> report = run();
  // READ ONLY: nothing to keep; ROLLBACK also undoes the local search_path.
  absl::Status ended = conn.Exec("ROLLBACK").status();
  if (!report.ok()) return report.status();
  RETURN_IF_ERROR(ended);
  return report;
}

}  // namespace

}  // namespace pgbackfill::verify
