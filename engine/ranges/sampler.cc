#include "pgbackfill/ranges/sampler.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/ranges/split.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::ranges {
namespace {

// The table's alias in every query here. Key columns are always referenced through it: in ORDER
// BY an unqualified name would first match an output column, and the outputs are the keys cast to
// text, which sort differently (e.g. '10' < '9').
constexpr char kAlias[] = "pgbackfill_t";
constexpr double kPageBytes = 8192.0;

// `pgbackfill_t."a", pgbackfill_t."b"`, each column followed by `suffix`.
std::string KeyColumns(const catalog::Key& key, const std::string& suffix) {
  std::vector<std::string> parts;
  for (const catalog::Column& column : key.columns) {
    parts.push_back(absl::StrCat(kAlias, ".", pg::QuoteIdent(column.name), suffix));
  }
  return absl::StrJoin(parts, ", ");
}

std::vector<KeyRange> OneOpenRange() {
  KeyRange range;
  range.id = 1;
  return {range};
}

std::vector<KeyValue> ReadKeys(const pg::Result& result) {
  std::vector<KeyValue> keys;
  keys.reserve(static_cast<size_t>(result.Rows()));
  for (int row = 0; row < result.Rows(); ++row) {
    KeyValue key;
    for (int column = 0; column < result.Columns(); ++column) {
      key.emplace_back(result.Get(row, column));
    }
    keys.push_back(std::move(key));
  }
  return keys;
}

absl::StatusOr<std::vector<KeyRange>> PlanIntegerRanges(pg::Connection& conn,
                                                        const catalog::Table& table,
                                                        const catalog::Key& key, int count) {
  // min/max of an indexed column are two index probes (the planner's min/max optimisation).
  const std::string column = absl::StrCat(kAlias, ".", pg::QuoteIdent(key.columns[0].name));
  ASSIGN_OR_RETURN(
      pg::Result bounds,
      conn.Exec(absl::StrCat(
          "SELECT pg_catalog.min(", column, ")::pg_catalog.text, pg_catalog.max(", column,
          ")::pg_catalog.text FROM ", plan::QuoteQualified(table.name), " AS ", kAlias)));
  if (bounds.Rows() != 1 || bounds.IsNull(0, 0)) return OneOpenRange();  // empty table
  int64_t min_key = 0;
  int64_t max_key = 0;
  if (!absl::SimpleAtoi(ToAbsl(bounds.Get(0, 0)), &min_key) ||
      !absl::SimpleAtoi(ToAbsl(bounds.Get(0, 1)), &max_key)) {
    return absl::InternalError(absl::StrCat("key bounds of ", plan::QuoteQualified(table.name),
                                            " are not integers: ", ToAbsl(bounds.Get(0, 0)), ", ",
                                            ToAbsl(bounds.Get(0, 1))));
  }
  return SplitIntegerRange(min_key, max_key, count);
}

// TABLESAMPLE SYSTEM percentage expected to return `wanted` keys and to touch at least
// kSampledPagesPerRange pages per range; >= 100 means the sample would read the whole table.
double SamplePercent(const catalog::Table& table, int64_t estimated_rows, int count,
                     int64_t wanted) {
  double percent = 100.0 * static_cast<double>(wanted) /
                   static_cast<double>(std::max<int64_t>(estimated_rows, 1));
  const double pages = static_cast<double>(table.size_bytes) / kPageBytes;
  if (pages >= 1) {
    percent = std::max(percent, 100.0 * count * kSampledPagesPerRange / pages);
  }
  return percent;
}

// Every n-th key of a full ordered scan, n = total / wanted: exact quantiles of the whole table.
// The step is computed in the query from the live row count, so a stale estimate cannot make it
// return far too many or too few keys. Output columns are renamed through the alias list, so a
// key column called like one of ours cannot collide.
absl::StatusOr<std::vector<KeyValue>> EveryNthKey(pg::Connection& conn, const catalog::Table& table,
                                                  const catalog::Key& key, int64_t wanted) {
  std::vector<std::string> names;
  std::vector<std::string> as_text;
  for (size_t i = 0; i < key.columns.size(); ++i) {
    names.push_back(absl::StrCat("k", i + 1));
    as_text.push_back(absl::StrCat("s.k", i + 1, "::pg_catalog.text"));
  }
  const std::string order = KeyColumns(key, "");
  const std::string sql = absl::StrCat(
      "SELECT ", absl::StrJoin(as_text, ", "), " FROM (SELECT ", order,
      ", pg_catalog.row_number() OVER (ORDER BY ", order, "), pg_catalog.count(*) OVER () FROM ",
      plan::QuoteQualified(table.name), " AS ", kAlias, ") AS s (", absl::StrJoin(names, ", "),
      ", rn, total) WHERE pg_catalog.mod(s.rn, GREATEST(s.total OPERATOR(pg_catalog./) "
      "$1::pg_catalog.int8, 1)) OPERATOR(pg_catalog.=) 0 ORDER BY s.rn");
  ASSIGN_OR_RETURN(pg::Result result, conn.Exec(sql, {std::to_string(wanted)}));
  return ReadKeys(result);
}

absl::StatusOr<std::vector<KeyValue>> TableSample(pg::Connection& conn, const catalog::Table& table,
                                                  const catalog::Key& key, double percent) {
  const std::string sql = absl::StrCat(
      "SELECT ", KeyColumns(key, "::pg_catalog.text"), " FROM ", plan::QuoteQualified(table.name),
      " AS ", kAlias, " TABLESAMPLE pg_catalog.system ($1::pg_catalog.float4) ORDER BY ",
      KeyColumns(key, ""));
  ASSIGN_OR_RETURN(pg::Result result, conn.Exec(sql, {absl::StrCat(percent)}));
  return ReadKeys(result);
}

absl::StatusOr<std::vector<KeyRange>> PlanSampledRanges(pg::Connection& conn,
                                                        const catalog::Table& table,
                                                        const catalog::Key& key,
                                                        int64_t estimated_rows, int count) {
  const int64_t wanted = int64_t{count} * kSamplesPerRange;
  if (estimated_rows >= kFullScanMaxRows) {
    const double percent = SamplePercent(table, estimated_rows, count, wanted);
    if (percent < 100.0) {
      ASSIGN_OR_RETURN(std::vector<KeyValue> sample, TableSample(conn, table, key, percent));
      // Too few keys: the estimate was far too high, or the sampled pages were nearly empty
      // (bloat). The full scan below is exact whatever the reason.
      if (std::ssize(sample) >= 2 * int64_t{count}) return SplitAtSamples(sample, count);
    }
  }
  ASSIGN_OR_RETURN(std::vector<KeyValue> sample, EveryNthKey(conn, table, key, wanted));
  return SplitAtSamples(sample, count);
}

}  // namespace

absl::StatusOr<std::vector<KeyRange>> PlanRanges(pg::Connection& conn, const catalog::Table& table,
                                                 const catalog::Key& key, int64_t estimated_rows,
                                                 int workers) {
  if (key.columns.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no key to split ", plan::QuoteQualified(table.name), " by"));
  }
  const int count = RangeCount(estimated_rows, workers);
  if (key.IsSingleInteger()) return PlanIntegerRanges(conn, table, key, count);
  // One range needs no boundaries, so no sample.
  if (count == 1) return OneOpenRange();
  return PlanSampledRanges(conn, table, key, estimated_rows, count);
}

namespace {

// `(pgbackfill_t."a", pgbackfill_t."b") <op> ($n::type_a, $n+1::type_b)`.
std::string KeyCompare(const catalog::Key& key, const char* op, int first) {
  std::vector<std::string> params;
  for (size_t i = 0; i < key.columns.size(); ++i) {
    params.push_back(absl::StrCat("$", first + static_cast<int>(i), "::", key.columns[i].type));
  }
  return absl::StrCat("(", KeyColumns(key, ""), ") OPERATOR(pg_catalog.", op, ") (",
                      absl::StrJoin(params, ", "), ")");
}

}  // namespace

std::string SplitProbeSql(const catalog::Table& table, const catalog::Key& key, bool has_start,
                          bool has_upper) {
  const int k = static_cast<int>(key.columns.size());
  const bool integer = key.IsSingleInteger();
  std::vector<std::string> conditions;
  int next = 1;
  if (has_start) {
    conditions.push_back(KeyCompare(key, ">", next));
    next += k;
  }
  if (has_upper) {
    // The sample's median must lie below the upper bound, or the new range would be empty.
    conditions.push_back(KeyCompare(key, integer ? "<=" : "<", next));
    next += k;
  }
  const std::string where =
      conditions.empty() ? "" : absl::StrCat(" WHERE ", absl::StrJoin(conditions, " AND "));
  const std::string from = absl::StrCat(plan::QuoteQualified(table.name), " AS ", kAlias);
  if (integer) {
    // min/max of an indexed column under a range condition: two index descents.
    const std::string column = KeyColumns(key, "");
    return absl::StrCat("SELECT pg_catalog.min(", column, ")::pg_catalog.text, pg_catalog.max(",
                        column, ")::pg_catalog.text FROM ", from, where);
  }
  return absl::StrCat("SELECT ", KeyColumns(key, "::pg_catalog.text"), " FROM ", from,
                      " TABLESAMPLE pg_catalog.system ($", next, "::pg_catalog.float4)", where,
                      " ORDER BY ", KeyColumns(key, ""));
}

double SplitSamplePercent(int64_t estimated_rows) {
  return std::min(100.0, 100.0 * static_cast<double>(kSplitSampleKeys) /
                             static_cast<double>(std::max<int64_t>(estimated_rows, 1)));
}

absl::StatusOr<std::optional<SplitChoice>> ReadSplitProbe(const pg::Result& result,
                                                          const catalog::Key& key, double percent) {
  if (key.IsSingleInteger()) {
    if (result.Rows() != 1 || result.IsNull(0, 0)) return std::nullopt;  // nothing left
    int64_t min_key = 0;
    int64_t max_key = 0;
    if (!absl::SimpleAtoi(ToAbsl(result.Get(0, 0)), &min_key) ||
        !absl::SimpleAtoi(ToAbsl(result.Get(0, 1)), &max_key)) {
      return absl::InternalError(
          absl::StrCat("split probe keys are not integers: ", ToAbsl(result.Get(0, 0)), ", ",
                       ToAbsl(result.Get(0, 1))));
    }
    const std::optional<IntegerSplit> split = SplitIntegerRemainder(min_key, max_key);
    if (!split.has_value()) return std::nullopt;
    return SplitChoice{.point = {std::to_string(split->point)},
                       .estimated_rows = split->estimated_rows};
  }
  const std::vector<KeyValue> sample = ReadKeys(result);
  std::optional<KeyValue> point = SplitSampledRemainder(sample);
  if (!point.has_value()) return std::nullopt;
  const double scale = 100.0 / std::max(percent, 1e-6);
  return SplitChoice{
      .point = std::move(*point),
      .estimated_rows = static_cast<int64_t>(static_cast<double>(sample.size()) * scale)};
}

}  // namespace pgbackfill::ranges
