#include "pgbackfill/cli/check_command.h"

#include <ostream>

#include "absl/strings/str_join.h"
#include "pgbackfill/cli/cli.h"
#include "pgbackfill/pg/error.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/plan/parse.h"

namespace pgbackfill::cli {
namespace {

nlohmann::json KeyValues(const std::optional<std::vector<std::string>>& values) {
  if (!values.has_value()) return nullptr;
  return *values;
}

std::string ModeName(plan::Mode mode) { return mode == plan::Mode::kUpdate ? "update" : "copy"; }

}  // namespace

nlohmann::json CheckReportJson(const plan::Plan& plan, const preflight::PreflightReport& report) {
  nlohmann::json json = {
      {"ok", report.ok()},
      {"plan",
       {{"file", plan.file},
        {"name", plan.name},
        {"hash", report.plan_hash},
        {"mode", ModeName(plan.mode)}}},
      {"server_version", report.server_version},
      {"user", report.user},
      {"problems", report.problems},
      {"warnings", report.warnings},
      {"notes", report.notes},
      {"triggers", nlohmann::json::array()},
      {"table", nullptr},
      {"key", nullptr},
      {"rejected_keys", nlohmann::json::array()},
      {"estimated_rows", nullptr},
      {"estimate_source", nullptr},
      {"min_key", KeyValues(report.min_key)},
      {"max_key", KeyValues(report.max_key)},
      {"batch_sql", report.batch_statements},
      {"batch_scans", nlohmann::json::array()},
  };
  for (const preflight::BatchScan& scan : report.batch_scans) {
    json["batch_scans"].push_back(
        {{"batch", scan.batch}, {"node", scan.node}, {"whole_table", scan.whole_table}});
  }
  if (report.table.has_value()) {
    json["table"] = {{"schema", report.table->name.schema},
                     {"name", report.table->name.name},
                     {"oid", report.table->oid},
                     {"size_bytes", report.table->size_bytes}};
  }
  if (report.key.has_value()) {
    nlohmann::json columns = nlohmann::json::array();
    for (const catalog::Column& column : report.key->columns) {
      columns.push_back({{"name", column.name}, {"type", column.type}});
    }
    json["key"] = {{"columns", columns},
                   {"index", report.key->index_name},
                   {"primary", report.key->primary},
                   {"split", report.key->IsSingleInteger() ? "arithmetic" : "sampled"}};
  }
  for (const preflight::WriteTrigger& trigger : report.triggers) {
    json["triggers"].push_back({{"table", trigger.table},
                                {"name", trigger.name},
                                {"definition", trigger.definition},
                                {"enabled", trigger.enabled},
                                {"fires", trigger.fires}});
  }
  for (const catalog::RejectedKey& rejected : report.rejected_keys) {
    json["rejected_keys"].push_back({{"index", rejected.index_name}, {"reason", rejected.reason}});
  }
  if (report.estimate.has_value()) {
    json["estimated_rows"] = report.estimate->rows;
    json["estimate_source"] = report.estimate->source;
  }
  return json;
}

void PrintCheckReport(const plan::Plan& plan, const preflight::PreflightReport& report,
                      std::ostream& out) {
  out << "plan      " << plan.file << " (job " << plan.name << ", " << ModeName(plan.mode)
      << " mode, hash " << report.plan_hash << ")\n";
  if (!report.server_version.empty()) {
    out << "server    PostgreSQL " << report.server_version << " as " << report.user << "\n";
  }
  if (report.table.has_value()) {
    out << "table     " << plan::QuoteQualified(report.table->name) << "\n";
  }
  if (report.key.has_value()) {
    out << "key       " << report.key->Describe() << ", "
        << (report.key->IsSingleInteger() ? "ranges split arithmetically"
                                          : "ranges split at sampled keys, keyset batches")
        << "\n";
  }
  if (report.estimate.has_value()) {
    out << "rows      ~" << report.estimate->rows << " (from " << report.estimate->source << ")\n";
  }
  if (report.min_key.has_value() && report.max_key.has_value()) {
    out << "key span  (" << absl::StrJoin(*report.min_key, ", ") << ") .. ("
        << absl::StrJoin(*report.max_key, ", ") << ")\n";
  } else if (report.key.has_value()) {
    out << "key span  empty table\n";
  }
  for (const preflight::BatchScan& scan : report.batch_scans) {
    out << "batch     " << scan.batch << " reaches its rows by " << scan.node
        << (scan.whole_table ? " (the whole table)" : "") << "\n";
  }
  for (const preflight::WriteTrigger& trigger : report.triggers) {
    out << "trigger   " << pg::QuoteIdent(trigger.name) << " on " << trigger.table
        << (trigger.fires ? " fires" : " skipped")
        << " for every row written: " << trigger.definition << "\n";
  }
  for (const std::string& warning : report.warnings) out << "warning   " << warning << "\n";
  for (const std::string& note : report.notes) out << "note      " << note << "\n";
  if (!report.batch_statements.empty()) {
    out << "\nEach batch is one transaction, sent as one pipeline (one round trip):\n";
    for (const std::string& statement : report.batch_statements) out << statement << ";\n";
    out << "\n";
  }
  if (report.ok()) {
    out << "OK: the plan can run.\n";
    return;
  }
  out << report.problems.size() << (report.problems.size() == 1 ? " problem" : " problems")
      << " found; nothing was changed:\n";
  for (const std::string& problem : report.problems) out << "  - " << problem << "\n";
}

int RunCheck(const CheckOptions& options, std::ostream& out, std::ostream& err) {
  auto plan = plan::LoadPlanFile(options.plan_path, plan::ProcessEnv());
  if (!plan.ok()) {
    err << "pgbackfill: " << plan.status().message() << "\n";
    return kExitBadInput;
  }
  // Between databases the home is the target (job store, `into`); the source is opened too.
  auto conn = pg::Connection::Connect(plan::HomeDsn(*plan, options.dsn));
  if (!conn.ok()) {
    err << "pgbackfill: " << conn.status().message()
        << "\n(set the connection with --dsn, `dsn:` in the plan, or PG* environment variables)\n";
    return kExitError;
  }
  auto report = preflight::PreflightPlan(*conn, *plan, options.dsn);
  if (!report.ok()) {
    err << "pgbackfill: preflight could not finish: " << report.status().message() << "\n";
    return kExitError;
  }
  if (options.json) {
    out << CheckReportJson(*plan, *report)
               .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
        << "\n";
  } else {
    PrintCheckReport(*plan, *report, out);
  }
  return report->ok() ? kExitOk : kExitBadInput;
}

}  // namespace pgbackfill::cli
