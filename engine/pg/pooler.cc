#include "pgbackfill/pg/pooler.h"

#include <string>

#include "pgbackfill/util/status.h"

namespace pgbackfill::pg {
namespace {

constexpr char kBackendPid[] = "SELECT pg_catalog.pg_backend_pid()::text";

}  // namespace

absl::StatusOr<bool> BehindTransactionPooler(Connection& conn, const std::string& dsn) {
  ASSIGN_OR_RETURN(Result first, conn.Exec(kBackendPid));
  const std::string server_pid(first.Get(0, 0));
  if (server_pid == std::to_string(conn.BackendPid())) return false;
  ASSIGN_OR_RETURN(Connection other, Connection::Connect(dsn));
  RETURN_IF_ERROR(other.ExecScript("BEGIN"));
  ASSIGN_OR_RETURN(Result held, other.Exec(kBackendPid));
  absl::StatusOr<Result> again = conn.Exec(kBackendPid);
  (void)other.ExecScript("ROLLBACK");
  if (!again.ok()) return again.status();
  return held.Get(0, 0) == server_pid || again->Get(0, 0) != server_pid;
}

}  // namespace pgbackfill::pg
