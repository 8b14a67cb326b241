// Private to engine/pg: turning libpq's error reporting into Status values.
#pragma once

#include <libpq-fe.h>

#include <array>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "pgbackfill/pg/connection.h"

namespace pgbackfill::pg::internal {

// The error of a failed result: message, DETAIL, HINT and SQLSTATE (as payload, see pg/error.h).
// `sql` (may be empty) is named in the message so a user sees which statement failed.
absl::Status ResultError(const PGresult* result, const PGconn* conn, std::string_view sql);

// An error libpq raised on the connection itself (PQerrorMessage). Classified kReconnect when the
// connection is bad, kFatal otherwise.
absl::Status ConnError(const PGconn* conn, std::string_view what);

// ConnError for a connection to `dsn` that could not be opened, the DSN's secrets scrubbed: libpq
// quotes parts of a connection string it cannot parse.
absl::Status ConnectError(const PGconn* conn, std::string_view dsn);

// Keyword/value arrays for PQconnectdbParams / PQconnectStartParams. `dsn` (URI or key=value) is
// expanded as `dbname` after our defaults, so whatever it sets wins. The defaults make a silent
// network partition surface as an error in about a minute instead of hours of TCP retransmits:
// TCP keepalives and tcp_user_timeout (ignored on Unix sockets), and a connect timeout.
// `replication` adds replication=database after it (a walsender session, pg/replication.h).
struct ConnectParams {
  static constexpr int kCount = 10;
  std::array<const char*, kCount + 1> keywords;
  std::array<const char*, kCount + 1> values;
};
ConnectParams MakeConnectParams(const std::string& dsn, bool replication = false);

// OpenBlocking (pg/connection.h), or a walsender session with `replication`.
absl::StatusOr<ConnHandle> OpenBlocking(const std::string& dsn, bool replication);

// Server notices (NOTICE, WARNING outside a statement's result) are dropped instead of going to
// stderr, where libpq prints them by default: a `DROP ... IF EXISTS` in a DDL step would otherwise
// interleave "does not exist, skipping" with the progress line and the JSON a caller parses.
void SilenceNotices(PGconn* conn);

// Whether a result status means success for a statement.
inline bool IsSuccess(ExecStatusType status) {
  return status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
}

}  // namespace pgbackfill::pg::internal
