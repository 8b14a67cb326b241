// The one SQLSTATE classifier. Every libpq failure becomes an absl::Status that carries the
// SQLSTATE as a payload; callers decide what to do with Classify(), never by matching strings.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace pgbackfill::pg {

enum class ErrorClass {
  kNone,       // not an error
  kRetry,      // transient: run the same transaction again after a backoff (40001, 40P01, 55P03,
               // 57014 from our own timeouts, 53xxx)
  kReconnect,  // the session is gone: reconnect, then retry (class 08, 57P01..57P03, lost socket)
  kFatal,      // anything else: a bug in the plan or the target; stop and report
};

// Classifies a SQLSTATE. An empty SQLSTATE means libpq reported the error itself (socket closed,
// server gone) and classifies as kReconnect.
ErrorClass ClassifySqlState(std::string_view sqlstate);

// Classifies a Status produced by engine/pg (uses its SQLSTATE payload). Statuses without one
// classify by code: kUnavailable -> kReconnect, OK -> kNone, anything else -> kFatal.
ErrorClass Classify(const absl::Status& status);

// The SQLSTATE carried by a Status from engine/pg; "" when there is none.
std::string SqlStateOf(const absl::Status& status);

// Builds a Status carrying `sqlstate`; the code follows the class (kAborted for kRetry,
// kUnavailable for kReconnect, kFailedPrecondition for kFatal).
absl::Status MakeError(std::string_view sqlstate, std::string_view message);

std::string_view ErrorClassName(ErrorClass error_class);

}  // namespace pgbackfill::pg
