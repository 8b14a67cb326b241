// `check` shows how a batch finds its rows: a batch must walk the key's index, and one that
// scans the table costs more the bigger the table (issue found on a composite key: ~200 ms per
// 1,000-row batch on 2M rows, hours per range on 100M).
#include "pgbackfill/preflight/batch_plan.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "pgbackfill/batch/batch_sql.h"
#include "pgbackfill/pg/error.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/util/status.h"
#include "preflighter.h"

namespace pgbackfill::preflight {
namespace {

using nlohmann::json;

bool IsWrittenTable(const json& node) {
  const std::string alias = node.value("Alias", "");
  return alias == "t" || absl::StartsWith(alias, "t_");
}

// The index of a bitmap heap scan: its Bitmap Index Scan, under any BitmapAnd / BitmapOr.
std::string BitmapIndex(const json& node) {
  if (node.value("Node Type", "") == "Bitmap Index Scan") return node.value("Index Name", "");
  for (const json& child : node.value("Plans", json::array())) {
    std::string name = BitmapIndex(child);
    if (!name.empty()) return name;
  }
  return "";
}

std::optional<BatchScan> FindScan(const json& node) {
  const std::string type = node.value("Node Type", "");
  if (IsWrittenTable(node) && absl::EndsWith(type, "Scan")) {
    BatchScan scan;
    if (type == "Index Scan" || type == "Index Only Scan") {
      scan.node = absl::StrCat(type, " using ", node.value("Index Name", ""));
    } else if (type == "Bitmap Heap Scan") {
      scan.node = absl::StrCat("Bitmap Heap Scan on ", BitmapIndex(node));
    } else {
      scan.node = type;
    }
    scan.whole_table = type == "Seq Scan";
    return scan;
  }
  for (const json& child : node.value("Plans", json::array())) {
    std::optional<BatchScan> found = FindScan(child);
    if (found.has_value()) return found;
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<std::optional<BatchScan>> WriteScanOf(std::string_view explain_json) {
  const json parsed = json::parse(explain_json, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_array() || parsed.empty() || !parsed[0].contains("Plan")) {
    return absl::InternalError("EXPLAIN (FORMAT JSON) returned no plan");
  }
  return FindScan(parsed[0]["Plan"]);
}

absl::Status Preflighter::ExplainBatchWrites() {
  if (moves_ || !report_.ok() || !report_.key.has_value() || !report_.min_key.has_value() ||
      !report_.max_key.has_value()) {
    return absl::OkStatus();  // the mover's batches bind known values; an empty table has none
  }
  std::vector<sql::KeyColumn> key;
  for (const Column& column : report_.key->columns) key.push_back({column.name, column.type});
  auto shape = [&](sql::RangeEnds ends) {
    if (plan_.mode == plan::Mode::kUpdate) {
      return batch::UpdateWriteShape({table().name, key, plan_.set, plan_.where}, ends);
    }
    batch::CopyBatchSpec spec;
    spec.source = table().name;
    spec.key = key;
    spec.columns = report_.copy_columns;
    spec.where = plan_.where;
    return batch::CopyWriteShape(spec, ends);
  };
  const std::vector<pg::Param> upper(report_.max_key->begin(), report_.max_key->end());
  std::vector<pg::Param> lower_and_upper(report_.min_key->begin(), report_.min_key->end());
  lower_and_upper.insert(lower_and_upper.end(), upper.begin(), upper.end());
  // The first batch of a range that starts before the smallest key, and a batch after the
  // smallest key, which has the rest of the table above it: the estimate that went wrong.
  ASSIGN_OR_RETURN(std::optional<BatchScan> first, ExplainWrite(shape({false, true}), upper));
  ASSIGN_OR_RETURN(std::optional<BatchScan> later,
                   ExplainWrite(shape({true, true}), lower_and_upper));
  for (auto [scan, name] : {std::pair{&first, "first batch"}, std::pair{&later, "later batch"}}) {
    if (!scan->has_value()) continue;
    (*scan)->batch = name;
    report_.batch_scans.push_back(**scan);
  }
  for (const BatchScan& scan : report_.batch_scans) {
    // On a small table a sequential scan is the right plan; past a few batches' worth of rows it
    // is a cost every batch pays again.
    if (!scan.whole_table || !report_.estimate.has_value() ||
        report_.estimate->rows < 10 * plan_.batch.rows) {
      continue;
    }
    Warn(absl::StrCat("a ", scan.batch, " would scan the whole of ", TableName(), " (~",
                      report_.estimate->rows, " rows) instead of walking the key's index ",
                      pg::QuoteIdent(report_.key->index_name),
                      ": every batch would cost as much as reading the table. Check the "
                      "planner settings (enable_indexscan, enable_bitmapscan, random_page_cost) "
                      "and that the table is analyzed"));
    break;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<BatchScan>> Preflighter::ExplainWrite(
    const std::string& sql, const std::vector<pg::Param>& params) {
  // As CompileExpressions: READ ONLY (EXPLAIN without ANALYZE runs nothing), the user's
  // search_path for the expressions.
  RETURN_IF_ERROR(conn_.Exec("BEGIN READ ONLY").status());
  absl::StatusOr<pg::Result> explained = conn_.Exec(
      "SELECT pg_catalog.set_config('statement_timeout', '10s', true), "
      "pg_catalog.set_config('search_path', $1, true)",
      {user_search_path_});
  if (explained.ok()) explained = conn_.Exec(absl::StrCat("EXPLAIN (FORMAT JSON) ", sql), params);
  RETURN_IF_ERROR(conn_.Exec("ROLLBACK").status());
  if (!explained.ok()) {
    // The expressions' own errors are reported where they are compiled (or, for columns that
    // expand adds, cannot be planned yet): no plan to show then.
    const pg::ErrorClass error_class = pg::Classify(explained.status());
    if (error_class == pg::ErrorClass::kFatal) return std::nullopt;
    if (error_class == pg::ErrorClass::kRetry) {
      return absl::UnavailableError(absl::StrCat(
          "explaining a batch of ", TableName(),
          " waited longer than the plan's lock_timeout: "
          "another session holds a conflicting lock on it (DDL?); try again. Server said: ",
          ServerMessage(explained.status())));
    }
    return explained.status();
  }
  return WriteScanOf(explained->Get(0, 0));
}

}  // namespace pgbackfill::preflight
