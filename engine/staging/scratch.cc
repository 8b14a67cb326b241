#include "pgbackfill/staging/scratch.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "pgbackfill/preflight/preflight.h"
#include "pgbackfill/checkpoint/job_store.h"
#include "pgbackfill/sql/names.h"
#include "pgbackfill/pg/connection.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::staging {
namespace {

// PostgreSQL truncates identifiers to 63 bytes; cut before that, at a character boundary, so the
// name we quote is the name the server keeps.
std::string IdentifierOf(std::string_view prefix, std::string_view name) {
  const std::string full = std::string(prefix) + std::string(name);
  return std::string(Utf8Prefix(full, pg::kMaxIdentifierBytes));
}

std::string Quoted(const plan::QualifiedName& name) { return plan::QuoteQualified(name); }

// Drops what an earlier bench of the plan may have left (killed before it cleaned up).
absl::Status DropScratch(pg::Connection& conn, const ScratchNames& scratch) {
  RETURN_IF_ERROR(conn.ExecScript(absl::StrCat("DROP TABLE IF EXISTS ", Quoted(scratch.table))));
  if (scratch.into.has_value()) {
    RETURN_IF_ERROR(conn.ExecScript(absl::StrCat("DROP TABLE IF EXISTS ", Quoted(*scratch.into))));
  }
  checkpoint::JobStore store(conn);
  ASSIGN_OR_RETURN(bool exists, store.Exists());
  if (!exists) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::optional<checkpoint::JobRecord> job, store.LoadJob(scratch.job));
  if (job.has_value()) RETURN_IF_ERROR(store.DeleteJob(scratch.job));
  return absl::OkStatus();
}

}  // namespace

ScratchNames ScratchFor(const plan::Plan& plan) {
  ScratchNames names;
  names.table = plan::QualifiedName{sql::kJobStoreSchema, IdentifierOf("bench ", plan.name)};
  if (plan.mode == plan::Mode::kCopy) {
    names.into = plan::QualifiedName{sql::kJobStoreSchema, IdentifierOf("bench into ", plan.name)};
  }
  // ':' is not allowed in a plan's name, so no real job can be called this (and be dropped).
  names.job = absl::StrCat(plan.name, ":bench");
  return names;
}

plan::Plan BenchPlan(const plan::Plan& plan, const ScratchNames& scratch) {
  plan::Plan bench = plan;
  bench.name = scratch.job;
  bench.table = scratch.table;
  if (scratch.into.has_value()) bench.into = scratch.into;
  // Nobody writes the scratch table but the bench: no trigger to keep it in step, and no DDL.
  bench.dual_write = false;
  bench.expand.clear();
  bench.contract.clear();
  bench.rollback.clear();
  bench.not_null.clear();
  bench.verify = false;
  return bench;
}

std::optional<double> SamplePercent(int64_t rows, int64_t estimated_rows) {
  if (estimated_rows <= 0 || rows >= estimated_rows) return std::nullopt;
  // Half again as many pages as the average density needs: LIMIT cuts the surplus, and a page
  // share below the need would leave the copy short.
  const double percent =
      100.0 * 1.5 * static_cast<double>(rows) / static_cast<double>(estimated_rows);
  if (percent >= 100) return std::nullopt;
  return percent;
}

std::string FillSql(const plan::QualifiedName& source, const plan::QualifiedName& scratch,
                    const std::vector<std::string>& columns, const std::vector<std::string>& key,
                    int64_t rows, std::optional<double> sample_percent) {
  std::vector<std::string> quoted;
  for (const std::string& column : columns) quoted.push_back(pg::QuoteIdent(column));
  std::vector<std::string> order;
  for (const std::string& column : key) order.push_back(pg::QuoteIdent(column));
  const std::string list = absl::StrJoin(quoted, ", ");
  const std::string key_list = absl::StrJoin(order, ", ");
  if (!sample_percent.has_value()) {
    return absl::StrCat("INSERT INTO ", Quoted(scratch), " (", list,
                        ") OVERRIDING SYSTEM VALUE\nSELECT ", list, " FROM ", Quoted(source),
                        "\n ORDER BY ", key_list, " LIMIT ", rows);
  }
  // The sample has about 1.5x the rows wanted: which ones to keep is decided by a hash of the key
  // (deterministic, spread over the whole key range), not by the key itself, which would keep
  // only the lowest keys and leave the top of the range out.
  return absl::StrCat(
      "INSERT INTO ", Quoted(scratch), " (", list, ") OVERRIDING SYSTEM VALUE\n"
      "SELECT ", list, " FROM (\n"
      "  SELECT ", list, " FROM ", Quoted(source), " TABLESAMPLE SYSTEM (", *sample_percent,
      ") REPEATABLE (0)\n"
      "   ORDER BY pg_catalog.md5(ROW(", key_list, ")::text) LIMIT ", rows, "\n"
      ") AS sample\n ORDER BY ", key_list);
}

absl::StatusOr<BenchReport> RunBench(const plan::Plan& plan, const BenchOptions& options,
                                     events::EventSink& events) {
  if (plan::MovesBetweenDatabases(plan)) {
    // The scratch copy lives beside the table; a copy between databases would need a scratch
    // target on the other side as well, which bench does not make.
    return absl::InvalidArgumentError(absl::StrCat(
        plan.file, ": `pgbackfill bench` runs copies within one database only; this plan copies "
        "between databases (source_dsn/target_dsn). Run it on a test pair of databases instead"));
  }
  const std::string dsn = options.dsn.empty() ? plan.dsn : options.dsn;
  ASSIGN_OR_RETURN(pg::Connection conn, pg::Connection::Connect(dsn));
  // The plan as it would run for real: a bench of a plan that cannot run says why, first.
  ASSIGN_OR_RETURN(preflight::PreflightReport report, preflight::Preflight(conn, plan));
  if (!report.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "preflight of ", plan.file, " found ", report.problems.size(), " problem(s):\n  ",
        absl::StrJoin(report.problems, "\n  ")));
  }
  if (plan.mode == plan::Mode::kCopy && !report.target.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat(
        plan.file, ": into: ", plan::QuoteQualified(*plan.into),
        " does not exist yet; the bench copies its definition, so run `pgbackfill expand` (in "
        "staging) first"));
  }
  BenchReport bench;
  bench.source = report.table->name;
  bench.scratch = ScratchFor(plan);
  bench.production_rows = report.estimate->rows;
  bench.production_estimate_source = report.estimate->source;

  checkpoint::JobStore store(conn);
  RETURN_IF_ERROR(store.EnsureSchema());
  RETURN_IF_ERROR(DropScratch(conn, bench.scratch));

  // The copy. Only SELECTs read the original; everything written is in the scratch tables.
  const absl::Time copy_start = absl::Now();
  const std::optional<double> sample = SamplePercent(options.rows, bench.production_rows);
  const auto make_copy = [&]() -> absl::Status {
    RETURN_IF_ERROR(conn.ExecScript(absl::StrCat("CREATE TABLE ", Quoted(bench.scratch.table),
                                                 " (LIKE ", Quoted(bench.source),
                                                 " INCLUDING ALL)")));
    // LIKE leaves storage parameters behind; fillfactor decides whether an UPDATE can stay on its
    // page (HOT), so the copy must have the original's.
    ASSIGN_OR_RETURN(pg::Result options_row,
                     conn.Exec("SELECT pg_catalog.array_to_string(reloptions, ',') FROM "
                               "pg_catalog.pg_class WHERE oid = $1::pg_catalog.oid",
                               {std::to_string(report.table->oid)}));
    if (options_row.Rows() == 1 && !options_row.GetOptional(0, 0).value_or("").empty()) {
      std::vector<std::string> settings;
      const std::string text = *options_row.GetOptional(0, 0);
      for (absl::string_view option : absl::StrSplit(ToAbsl(text), ',')) {
        const size_t equals = option.find('=');
        if (equals == absl::string_view::npos) continue;
        settings.push_back(absl::StrCat(pg::QuoteIdent(ToStd(option.substr(0, equals))), " = ",
                                        pg::QuoteLiteral(ToStd(option.substr(equals + 1)))));
      }
      RETURN_IF_ERROR(conn.ExecScript(absl::StrCat("ALTER TABLE ", Quoted(bench.scratch.table),
                                                   " SET (", absl::StrJoin(settings, ", "), ")")));
    }
    std::vector<std::string> columns;
    for (const catalog::Column& column : report.table->columns) {
      if (!column.generated) columns.push_back(column.name);
    }
    std::vector<std::string> key;
    for (const catalog::Column& column : report.key->columns) key.push_back(column.name);
    ASSIGN_OR_RETURN(pg::Result filled,
                     conn.Exec(FillSql(bench.source, bench.scratch.table, columns, key,
                                       options.rows, sample)));
    bench.scratch_rows = filled.AffectedRows();
    if (bench.scratch.into.has_value()) {
      RETURN_IF_ERROR(conn.ExecScript(absl::StrCat("CREATE TABLE ", Quoted(*bench.scratch.into),
                                                   " (LIKE ", Quoted(report.target->name),
                                                   " INCLUDING ALL)")));
    }
    // Settled like a table loaded long ago: all-visible pages, fresh statistics.
    return conn.ExecScript(absl::StrCat("VACUUM ANALYZE ", Quoted(bench.scratch.table)));
  };
  if (absl::Status made = make_copy(); !made.ok()) {
    // A half-made copy is of no use to anyone: drop it before saying why.
    (void)DropScratch(conn, bench.scratch);
    return made;
  }
  bench.whole_table = !sample.has_value() && bench.scratch_rows < options.rows;
  bench.copy_time = absl::Now() - copy_start;

  exec::RunOptions run_options;
  run_options.dsn = dsn;
  run_options.restart = true;
  run_options.scratch = true;
  absl::StatusOr<exec::RunSummary> run =
      exec::RunBackfill(BenchPlan(plan, bench.scratch), run_options, events);
  if (!options.keep) {
    // Also after a failed or interrupted run: the scratch copy is of no use to a later one.
    if (absl::Status dropped = DropScratch(conn, bench.scratch); !dropped.ok() && run.ok()) {
      return dropped;
    }
  }
  if (!run.ok()) return run.status();
  bench.run = *std::move(run);
  const double seconds = absl::ToDoubleSeconds(bench.run.elapsed);
  if (bench.run.rows > 0 && seconds > 0) {
    bench.rows_per_second = static_cast<double>(bench.run.rows) / seconds;
    bench.production_time =
        absl::Seconds(static_cast<double>(bench.production_rows) / bench.rows_per_second);
  }
  return bench;
}

}  // namespace pgbackfill::staging
