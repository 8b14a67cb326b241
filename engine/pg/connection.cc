#include "pgbackfill/pg/connection.h"

#include <libpq-fe.h>

#include <optional>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "libpq_util.h"
#include "params.h"
#include "pgbackfill/pg/statement_tag.h"

namespace pgbackfill::pg {

void ConnDeleter::operator()(PGconn* conn) const noexcept { PQfinish(conn); }

absl::StatusOr<ConnHandle> OpenBlocking(const std::string& dsn) {
  return internal::OpenBlocking(dsn, /*replication=*/false);
}

absl::StatusOr<ConnHandle> internal::OpenBlocking(const std::string& dsn, bool replication) {
  // `dbname` with expand_dbname=1 accepts a URI or key=value string; what it leaves out comes
  // from PG* variables and ~/.pgpass, as with psql.
  const internal::ConnectParams params = internal::MakeConnectParams(dsn, replication);
  ConnHandle conn(
      PQconnectdbParams(params.keywords.data(), params.values.data(), /*expand_dbname=*/1));
  if (conn == nullptr) return absl::ResourceExhaustedError("libpq could not allocate a connection");
  internal::SilenceNotices(conn.get());
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    return internal::ConnectError(conn.get(), dsn);
  }
  return conn;
}

absl::StatusOr<Connection> Connection::Connect(const std::string& dsn) {
  auto conn = OpenBlocking(dsn);
  if (!conn.ok()) return conn.status();
  return Connection(std::move(conn).value());
}

namespace {

// Whether `sql` opens a transaction block (after any leading comment, such as the tag).
bool Begins(absl::string_view sql) {
  sql = absl::StripLeadingAsciiWhitespace(sql);
  while (absl::StartsWith(sql, "/*")) {
    const size_t end = sql.find("*/");
    if (end == absl::string_view::npos) return false;
    sql = absl::StripLeadingAsciiWhitespace(sql.substr(end + 2));
  }
  return absl::StartsWithIgnoreCase(sql, "BEGIN") || absl::StartsWithIgnoreCase(sql, "START");
}

}  // namespace

std::string Connection::Tagged(const std::string& sql) const {
  return tag_ && !sql.starts_with(kStatementTag) ? absl::StrCat(kStatementTag, sql) : sql;
}

std::string Connection::Pinned(const std::string& name) const {
  auto it = pins_.find(name);
  return it == pins_.end() ? "" : it->second;
}

std::pair<std::string, std::vector<Param>> Connection::PinStatement() const {
  std::vector<std::string> calls;
  std::vector<Param> params;
  for (const auto& [name, value] : pins_) {
    calls.push_back(absl::StrCat("pg_catalog.set_config($", params.size() + 1, "::text, $",
                                 params.size() + 2, "::text, true)"));
    params.emplace_back(name);
    params.emplace_back(value);
  }
  return {absl::StrCat(kStatementTag, "SELECT ", absl::StrJoin(calls, ", ")), std::move(params)};
}

absl::StatusOr<Result> Connection::ExecPinned(const std::string& sql,
                                              const std::vector<Param>& params, bool begins) {
  // libpq pipeline mode on a blocking connection: PQpipelineSync flushes, PQgetResult blocks.
  // Statements before one sync run in one implicit transaction (unless one is a BEGIN), so the
  // pins' set_config(..., true) lasts exactly as long as the statement's transaction.
  auto [pin_sql, pin_params] = PinStatement();
  internal::ParamArrays pin_arrays(pin_params);
  internal::ParamArrays arrays(params);
  PGconn* conn = conn_.get();
  if (PQenterPipelineMode(conn) != 1) return internal::ConnError(conn, "entering pipeline mode");
  auto send = [&](const std::string& text, internal::ParamArrays& with) {
    return PQsendQueryParams(conn, text.c_str(), with.count(), nullptr, with.values(), nullptr,
                             nullptr, /*resultFormat=*/0) == 1;
  };
  bool sent = begins ? send(sql, arrays) && send(pin_sql, pin_arrays)
                     : send(pin_sql, pin_arrays) && send(sql, arrays);
  sent = sent && PQpipelineSync(conn) == 1;
  if (!sent) {
    absl::Status failed = internal::ConnError(conn, "sending a pipeline");
    (void)PQexitPipelineMode(conn);
    return failed;
  }
  const int statement_index = begins ? 0 : 1;
  absl::Status first_error;
  std::optional<Result> wanted;
  for (int index = 0; index < 2; ++index) {
    while (PGresult* raw = PQgetResult(conn)) {
      ResultHandle result(raw);
      const ExecStatusType status = PQresultStatus(raw);
      if (!internal::IsSuccess(status) && status != PGRES_PIPELINE_ABORTED && first_error.ok()) {
        first_error = internal::ResultError(raw, conn, index == statement_index ? sql : pin_sql);
      }
      if (index == statement_index && internal::IsSuccess(status))
        wanted.emplace(std::move(result));
    }
  }
  // The sync's own result, then out of pipeline mode.
  while (PGresult* raw = PQgetResult(conn)) {
    ResultHandle result(raw);
    if (PQresultStatus(raw) == PGRES_PIPELINE_SYNC) break;
  }
  if (PQexitPipelineMode(conn) != 1 && first_error.ok()) {
    first_error = internal::ConnError(conn, "leaving pipeline mode");
  }
  if (!first_error.ok()) return first_error;
  if (!wanted.has_value()) return internal::ConnError(conn, "query failed");
  return *std::move(wanted);
}

absl::StatusOr<Result> Connection::Exec(const std::string& sql, const std::vector<Param>& params) {
  const std::string text = Tagged(sql);
  if (!pins_.empty() && PQtransactionStatus(conn_.get()) == PQTRANS_IDLE) {
    return ExecPinned(text, params, Begins(sql));
  }
  internal::ParamArrays arrays(params);
  ResultHandle result(PQexecParams(conn_.get(), text.c_str(), arrays.count(), nullptr,
                                   arrays.values(), nullptr, nullptr, /*resultFormat=*/0));
  if (result == nullptr) return internal::ConnError(conn_.get(), "query failed");
  if (!internal::IsSuccess(PQresultStatus(result.get()))) {
    return internal::ResultError(result.get(), conn_.get(), sql);
  }
  return Result(std::move(result));
}

absl::StatusOr<Result> Connection::ExecPrepared(const std::string& sql,
                                                const std::vector<Param>& params) {
  auto found = prepared_.find(sql);
  if (found == prepared_.end()) {
    std::string name = absl::StrCat("pgbackfill_", prepared_.size() + 1);
    const std::string text = Tagged(sql);
    ResultHandle made(PQprepare(conn_.get(), name.c_str(), text.c_str(),
                                static_cast<int>(params.size()), nullptr));
    if (made == nullptr) return internal::ConnError(conn_.get(), "prepare failed");
    if (!internal::IsSuccess(PQresultStatus(made.get()))) {
      return internal::ResultError(made.get(), conn_.get(), sql);
    }
    found = prepared_.emplace(sql, std::move(name)).first;
  }
  internal::ParamArrays arrays(params);
  ResultHandle result(PQexecPrepared(conn_.get(), found->second.c_str(), arrays.count(),
                                     arrays.values(), nullptr, nullptr, /*resultFormat=*/0));
  if (result == nullptr) return internal::ConnError(conn_.get(), "query failed");
  if (!internal::IsSuccess(PQresultStatus(result.get()))) {
    return internal::ResultError(result.get(), conn_.get(), sql);
  }
  return Result(std::move(result));
}

absl::Status Connection::ExecScript(const std::string& sql) {
  const bool idle = PQtransactionStatus(conn_.get()) == PQTRANS_IDLE;
  // The tag marks the script's first statement: a job store transaction's BEGIN and COMMIT
  // untagged read as an application's statements in pg_stat_statements (another runner of the
  // job would hold for a baseline on them).
  const std::string text = Tagged(sql);
  ResultHandle result(PQexec(conn_.get(), text.c_str()));
  if (result == nullptr) return internal::ConnError(conn_.get(), "query failed");
  if (!internal::IsSuccess(PQresultStatus(result.get())) &&
      PQresultStatus(result.get()) != PGRES_EMPTY_QUERY) {
    return internal::ResultError(result.get(), conn_.get(), sql);
  }
  if (idle && !pins_.empty() && PQtransactionStatus(conn_.get()) == PQTRANS_INTRANS) {
    auto [pin_sql, pin_params] = PinStatement();
    return Exec(pin_sql, pin_params).status();  // in the transaction just opened: no pins again
  }
  return absl::OkStatus();
}

int Connection::BackendPid() const { return PQbackendPID(conn_.get()); }

int Connection::ServerVersion() const { return PQserverVersion(conn_.get()); }

std::string Connection::Database() const {
  const char* db = PQdb(conn_.get());
  return db != nullptr ? db : "";
}

}  // namespace pgbackfill::pg
