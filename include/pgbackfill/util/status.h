// Propagation helpers for absl::Status / absl::StatusOr across module boundaries.
// abseil 20220623 (Debian 12) ships no RETURN_IF_ERROR / ASSIGN_OR_RETURN, so these are ours.
#pragma once

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/cord.h"
#include "absl/strings/string_view.h"

#define PGBF_CONCAT_INNER_(a, b) a##b
#define PGBF_CONCAT_(a, b) PGBF_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                                  \
  do {                                                         \
    if (absl::Status pgbf_status_ = (expr); !pgbf_status_.ok()) \
      return pgbf_status_;                                     \
  } while (false)

// `lhs = *expr` when `expr` (a StatusOr) is OK; returns its status otherwise.
#define ASSIGN_OR_RETURN(lhs, expr) \
  PGBF_ASSIGN_OR_RETURN_IMPL_(PGBF_CONCAT_(pgbf_statusor_, __LINE__), lhs, expr)
#define PGBF_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return std::move(tmp).status();    \
  lhs = std::move(tmp).value()

// The same for coroutines returning asio::awaitable<absl::Status...>.
#define CO_RETURN_IF_ERROR(expr)                               \
  do {                                                         \
    if (absl::Status pgbf_status_ = (expr); !pgbf_status_.ok()) \
      co_return pgbf_status_;                                  \
  } while (false)

#define CO_ASSIGN_OR_RETURN(lhs, expr) \
  PGBF_CO_ASSIGN_OR_RETURN_IMPL_(PGBF_CONCAT_(pgbf_statusor_, __LINE__), lhs, expr)
#define PGBF_CO_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) co_return std::move(tmp).status();    \
  lhs = std::move(tmp).value()

namespace pgbackfill {

// `status` with another message: same code, same payloads (the SQLSTATE among them, so that
// pg::Classify still reads it).
inline absl::Status WithMessage(const absl::Status& status, const std::string& message) {
  absl::Status out(status.code(), message);
  status.ForEachPayload(
      [&](absl::string_view key, const absl::Cord& value) { out.SetPayload(key, value); });
  return out;
}

}  // namespace pgbackfill
