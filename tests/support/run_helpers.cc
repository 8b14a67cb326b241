#include "support/run_helpers.h"

#include "absl/strings/str_cat.h"
#include "pgbackfill/pg/error.h"
#include "support/status_testing.h"

namespace pgbackfill::testing {
namespace {

// Our sessions on the current database whose current statement is a batch: the batch statement
// is the one with the `batch_end` CTE (engine/exec/batch_sql.cc).
constexpr char kRunningBatches[] =
    " FROM pg_catalog.pg_stat_activity WHERE datname = pg_catalog.current_database()"
    " AND application_name = 'pgbackfill' AND state = 'active'"
    " AND query LIKE '%batch_end%' AND pid <> pg_catalog.pg_backend_pid()";

int64_t Count(TestDatabase& db, const std::string& sql) {
  absl::StatusOr<std::string> count = db.QueryValue(sql);
  EXPECT_OK(count) << sql;
  return count.ok() ? std::stoll(*count) : -1;
}

}  // namespace

std::vector<std::string> RunArgs(const std::string& plan_path, const std::string& dsn) {
  return {"run", plan_path, "--dsn", dsn, "--json"};
}

int64_t RunTest::RowsCommitted(const std::string& job) {
  absl::StatusOr<std::string> rows =
      db_.QueryValue("SELECT COALESCE(sum(rows_done), 0) FROM pgbackfill.ranges"
                    " WHERE $1 = '' OR job_name = $1",
                    {job});
  if (!rows.ok() && pg::SqlStateOf(rows.status()) == "42P01") return 0;  // no store yet
  EXPECT_OK(rows);
  return rows.ok() ? std::stoll(*rows) : -1;
}

void RunTest::ExpectEveryRowOnce(const std::string& table, int64_t rows) {
  ASSERT_OK_AND_ASSIGN(std::string twice,
                       db_.QueryValue(absl::StrCat("SELECT count(*) FROM ", table, " WHERE n > 1")));
  ASSERT_OK_AND_ASSIGN(std::string wrong, db_.QueryValue(absl::StrCat(
                                              "SELECT count(*) FROM ", table,
                                              " WHERE n IS DISTINCT FROM 1")));
  ASSERT_OK_AND_ASSIGN(std::string total,
                       db_.QueryValue(absl::StrCat("SELECT count(*) FROM ", table)));
  EXPECT_EQ(twice, "0") << "rows updated more than once";
  EXPECT_EQ(wrong, "0") << "rows not updated exactly once";
  EXPECT_EQ(total, std::to_string(rows));
}

int64_t BatchesRunning(TestDatabase& db) {
  return Count(db, absl::StrCat("SELECT count(*)", kRunningBatches));
}

int64_t TerminateRunningBatches(TestDatabase& db) {
  return Count(db, absl::StrCat("SELECT count(pg_catalog.pg_terminate_backend(pid))",
                                kRunningBatches));
}

}  // namespace pgbackfill::testing
