#include "libpq_util.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "pgbackfill/pg/dsn.h"
#include "pgbackfill/pg/error.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::pg::internal {
namespace {

absl::string_view Field(const PGresult* result, int code) {
  const char* value = result != nullptr ? PQresultErrorField(result, code) : nullptr;
  return value != nullptr ? absl::string_view(value) : absl::string_view();
}

absl::string_view Trimmed(const char* message) {
  if (message == nullptr) return {};
  return absl::StripTrailingAsciiWhitespace(message);
}

}  // namespace

ConnectParams MakeConnectParams(const std::string& dsn, bool replication) {
  // `dsn` must outlive the result: its c_str() is borrowed. A keyword after dbname overrides what
  // the expanded DSN set.
  // A walsender prints the change stream's values with its session's settings, which the
  // target then parses: one text form for dates, intervals, floats and bytea, whatever the
  // source's defaults.
  return ConnectParams{
      {"fallback_application_name", "connect_timeout", "keepalives", "keepalives_idle",
       "keepalives_interval", "keepalives_count", "tcp_user_timeout", "dbname",
       replication ? "replication" : nullptr, replication ? "options" : nullptr, nullptr},
      {"pgbackfill", "30", "1", "30", "10", "3", "60000", dsn.c_str(),
       replication ? "database" : nullptr,
       replication ? "-c DateStyle=ISO,MDY -c IntervalStyle=postgres -c extra_float_digits=3 "
                     "-c bytea_output=hex -c TimeZone=UTC"
                   : nullptr,
       nullptr}};
}

void SilenceNotices(PGconn* conn) {
  PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
}

absl::Status ResultError(const PGresult* result, const PGconn* conn, std::string_view sql) {
  absl::string_view sqlstate = Field(result, PG_DIAG_SQLSTATE);
  std::string message(Field(result, PG_DIAG_MESSAGE_PRIMARY));
  if (message.empty()) {
    message = std::string(result != nullptr ? Trimmed(PQresultErrorMessage(result)) : "");
  }
  if (message.empty()) message = std::string(Trimmed(PQerrorMessage(conn)));
  if (absl::string_view detail = Field(result, PG_DIAG_MESSAGE_DETAIL); !detail.empty()) {
    absl::StrAppend(&message, "; DETAIL: ", detail);
  }
  if (absl::string_view hint = Field(result, PG_DIAG_MESSAGE_HINT); !hint.empty()) {
    absl::StrAppend(&message, "; HINT: ", hint);
  }
  if (!sqlstate.empty()) absl::StrAppend(&message, " (SQLSTATE ", sqlstate, ")");
  if (!sql.empty()) absl::StrAppend(&message, " in: ", ToAbsl(sql));
  if (sqlstate.empty() && PQstatus(conn) == CONNECTION_OK) {
    // A client-side failure on a healthy connection: not something a reconnect would fix.
    return absl::InternalError(message);
  }
  return MakeError(ToStd(sqlstate), message);
}

absl::Status ConnError(const PGconn* conn, std::string_view what) {
  std::string message = absl::StrCat(ToAbsl(what), ": ", Trimmed(PQerrorMessage(conn)));
  if (conn == nullptr || PQstatus(conn) == CONNECTION_BAD) return MakeError("", message);
  return absl::InternalError(message);
}

absl::Status ConnectError(const PGconn* conn, std::string_view dsn) {
  const absl::Status status = ConnError(conn, "could not connect to PostgreSQL");
  return WithMessage(status, ScrubDsnSecrets(ToStd(status.message()), dsn));
}

}  // namespace pgbackfill::pg::internal
