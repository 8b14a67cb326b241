#include "pgbackfill/pg/error.h"

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::pg {
namespace {

// Payload key under which engine/pg stores the SQLSTATE on a Status.
constexpr std::string_view kSqlStatePayload = "pgbackfill.dev/sqlstate";

}  // namespace

ErrorClass ClassifySqlState(std::string_view sqlstate) {
  // libpq sets no SQLSTATE for errors it raises itself: lost socket, server closed the connection.
  if (sqlstate.empty()) return ErrorClass::kReconnect;
  if (sqlstate == "40001" ||  // serialization_failure
      sqlstate == "40P01" ||  // deadlock_detected
      sqlstate == "55P03" ||  // lock_not_available: our lock_timeout fired
      sqlstate == "57014") {  // query_canceled: our statement_timeout (callers that cancel on
                              // purpose know it and do not retry)
    return ErrorClass::kRetry;
  }
  // Class 53: insufficient resources (out of memory, disk full, too many connections) tends to
  // pass; retrying with backoff is what an operator would do by hand.
  if (absl::StartsWith(ToAbsl(sqlstate), "53")) return ErrorClass::kRetry;
  // Class 08: connection exceptions. 57P01 admin_shutdown (pg_terminate_backend, fast shutdown),
  // 57P02 crash_shutdown, 57P03 cannot_connect_now (server starting up or in recovery).
  // 25006 read_only_sql_transaction: the session reached a server that takes no writes, a
  // standby after a failover or a primary set read-only; a new session finds the primary again
  // where the DSN lists several hosts with target_session_attrs=read-write.
  if (absl::StartsWith(ToAbsl(sqlstate), "08") || sqlstate == "57P01" || sqlstate == "57P02" ||
      sqlstate == "57P03" || sqlstate == "25006") {
    return ErrorClass::kReconnect;
  }
  return ErrorClass::kFatal;
}

std::string SqlStateOf(const absl::Status& status) {
  if (auto payload = status.GetPayload(ToAbsl(kSqlStatePayload))) return std::string(*payload);
  return "";
}

ErrorClass Classify(const absl::Status& status) {
  if (status.ok()) return ErrorClass::kNone;
  if (auto payload = status.GetPayload(ToAbsl(kSqlStatePayload))) {
    return ClassifySqlState(std::string(*payload));
  }
  if (status.code() == absl::StatusCode::kUnavailable) return ErrorClass::kReconnect;
  return ErrorClass::kFatal;
}

absl::Status MakeError(std::string_view sqlstate, std::string_view message) {
  absl::StatusCode code = absl::StatusCode::kFailedPrecondition;
  switch (ClassifySqlState(sqlstate)) {
    case ErrorClass::kRetry:
      code = absl::StatusCode::kAborted;
      break;
    case ErrorClass::kReconnect:
      code = absl::StatusCode::kUnavailable;
      break;
    case ErrorClass::kNone:
    case ErrorClass::kFatal:
      break;
  }
  absl::Status status(code, ToAbsl(message));
  status.SetPayload(ToAbsl(kSqlStatePayload), absl::Cord(ToAbsl(sqlstate)));
  return status;
}

std::string_view ErrorClassName(ErrorClass error_class) {
  switch (error_class) {
    case ErrorClass::kNone:
      return "none";
    case ErrorClass::kRetry:
      return "retry";
    case ErrorClass::kReconnect:
      return "reconnect";
    case ErrorClass::kFatal:
      return "fatal";
  }
  return "unknown";
}

}  // namespace pgbackfill::pg
