// GoogleTest assertions for absl::Status and absl::StatusOr (abseil 20220623 in Debian 12 ships
// no status matchers). Failure messages print the status, so a failed test says what went wrong.
//
//   EXPECT_OK(db.ExecScript("CREATE TABLE t (id int)"));
//   ASSERT_OK(conn.Exec("SELECT 1")) << "while preparing";
//   ASSERT_OK_AND_ASSIGN(pg::Result rows, db.Exec("SELECT * FROM t"));
#pragma once

#include <gtest/gtest.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "pgbackfill/util/status.h"

namespace pgbackfill::testing::internal {

inline const absl::Status& StatusOf(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

template <typename T>
::testing::AssertionResult IsOk(const char* expression, const T& value) {
  const absl::Status& status = StatusOf(value);
  if (status.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << expression << " is not OK: " << status;
}

}  // namespace pgbackfill::testing::internal

#define EXPECT_OK(expr) EXPECT_PRED_FORMAT1(::pgbackfill::testing::internal::IsOk, expr)
#define ASSERT_OK(expr) ASSERT_PRED_FORMAT1(::pgbackfill::testing::internal::IsOk, expr)

// `lhs = *expr`, or a fatal failure naming the status. Usable only where ASSERT_* is.
#define ASSERT_OK_AND_ASSIGN(lhs, expr) \
  PGBF_ASSERT_OK_AND_ASSIGN_IMPL_(PGBF_CONCAT_(pgbf_test_statusor_, __LINE__), lhs, expr)
#define PGBF_ASSERT_OK_AND_ASSIGN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                    \
  ASSERT_OK(tmp);                                       \
  lhs = std::move(tmp).value()
