#include "pgbackfill/pg/connection.h"

#include <libpq-fe.h>

#include "absl/strings/str_cat.h"
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

absl::StatusOr<Result> Connection::Exec(const std::string& sql, const std::vector<Param>& params) {
  internal::ParamArrays arrays(params);
  const std::string text =
      tag_ && !sql.starts_with(kStatementTag) ? absl::StrCat(kStatementTag, sql) : sql;
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
    const std::string text =
        tag_ && !sql.starts_with(kStatementTag) ? absl::StrCat(kStatementTag, sql) : sql;
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
  ResultHandle result(PQexec(conn_.get(), sql.c_str()));
  if (result == nullptr) return internal::ConnError(conn_.get(), "query failed");
  if (!internal::IsSuccess(PQresultStatus(result.get())) &&
      PQresultStatus(result.get()) != PGRES_EMPTY_QUERY) {
    return internal::ResultError(result.get(), conn_.get(), sql);
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
