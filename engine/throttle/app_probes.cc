#include "pgbackfill/throttle/app_probes.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "pgbackfill/sql/names.h"
#include "pgbackfill/throttle/probe_sql.h"
#include "pgbackfill/util/status.h"

namespace pgbackfill::throttle {
namespace {

std::vector<std::optional<std::string>> RowOf(const pg::Result& result, int row) {
  std::vector<std::optional<std::string>> values;
  for (int c = 0; c < result.Columns(); ++c) values.push_back(result.GetOptional(row, c));
  return values;
}

// Every row of `result` through `parse`; the first row that does not parse is the error.
template <typename Row, typename Parse>
absl::StatusOr<std::vector<Row>> RowsOf(const pg::Result& result, Parse parse) {
  std::vector<Row> rows;
  for (int r = 0; r < result.Rows(); ++r) {
    ASSIGN_OR_RETURN(Row row, parse(RowOf(result, r)));
    rows.push_back(std::move(row));
  }
  return rows;
}

// The one row of a statement that always returns one.
template <typename Parse>
auto OneRowOf(const pg::Result& result, Parse parse) -> decltype(parse(RowOf(result, 0))) {
  if (result.Rows() != 1) return absl::InternalError("a probe statement returned no row");
  return parse(RowOf(result, 0));
}

std::vector<pg::Statement> HeartbeatPipeline(const std::string& job) {
  std::vector<pg::Statement> statements;
  for (std::string& sql : HeartbeatStatements()) statements.push_back(Tag(std::move(sql)));
  statements[2].params.push_back(job);
  return statements;
}

}  // namespace

pg::Statement Tag(std::string sql, std::vector<pg::Param> params) {
  return pg::Statement{sql::Tagged(sql), std::move(params)};
}

std::vector<pg::Statement> ReadOnlyPipeline(const std::string& timeout, std::string sql,
                                            std::vector<pg::Param> params) {
  std::vector<pg::Statement> statements;
  statements.push_back(Tag("BEGIN READ ONLY"));
  statements.push_back(Tag(ProbeSettingsSql(), {timeout}));
  statements.push_back(Tag(std::move(sql), std::move(params)));
  statements.push_back(Tag("COMMIT"));
  return statements;
}

absl::StatusOr<SessionLook> LookOf(const pg::Result& result) {
  return OneRowOf(result, ParseSessionLook);
}

absl::StatusOr<std::vector<SlotWal>> SlotsOf(const pg::Result& result) {
  return RowsOf<SlotWal>(result, ParseSlotRow);
}

absl::StatusOr<ArchiverState> ArchiverOf(const pg::Result& result) {
  return OneRowOf(result, ParseArchiverRow);
}

absl::StatusOr<CpuStallCount> CpuStallOf(const pg::Result& result) {
  return OneRowOf(result, ParseCpuPressureRow);
}

asio::awaitable<absl::StatusOr<std::vector<StatementRow>>> ReadStatements(
    pg::AsyncConnection& conn, absl::StatusOr<const pg::Result*> where, std::string timeout) {
  if (!where.ok()) co_return StatementLatencyError(where.status());
  const pg::Result& row = **where;
  if (row.Rows() != 1) co_return absl::InternalError("the extension lookup returned no row");
  if (row.IsNull(0, kExtensionSchema)) {
    co_return StatementsNotInstalled(std::string(row.Get(0, kExtensionDatabase)));
  }
  if (!conn.IsOpen()) co_return absl::UnavailableError("the monitoring session was lost");
  std::vector<pg::Statement> statements =
      ReadOnlyPipeline(timeout, StatementLatencySql(std::string(row.Get(0, kExtensionSchema))));
  const pg::PipelineResult result = co_await conn.Pipeline(std::move(statements));
  if (!result.ok()) {
    co_return StatementLatencyError(WithMessage(
        result.status, absl::StrCat("reading pg_stat_statements: ", result.status.message())));
  }
  absl::StatusOr<std::vector<StatementRow>> rows =
      RowsOf<StatementRow>(result.results[2], ParseStatementRow);
  if (!rows.ok()) co_return StatementLatencyError(rows.status());
  co_return rows;
}

asio::awaitable<absl::StatusOr<absl::Duration>> TimeHeartbeat(pg::AsyncConnection& conn,
                                                              std::string job) {
  std::vector<pg::Statement> statements = HeartbeatPipeline(job);
  const std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  const pg::PipelineResult result = co_await conn.Pipeline(std::move(statements));
  const std::chrono::steady_clock::duration elapsed = std::chrono::steady_clock::now() - start;
  if (!result.ok()) {
    co_return WithMessage(result.status,
                          absl::StrCat("the heartbeat commit in ", sql::kJobStoreSchema,
                                       ".heartbeat (job store version 4) failed: ",
                                       result.status.message()));
  }
  co_return absl::FromChrono(elapsed);
}

}  // namespace pgbackfill::throttle
