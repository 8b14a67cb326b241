#include "pgbackfill/exec/bloat_control.h"

#include <gtest/gtest.h>

namespace pgbackfill::exec {
namespace {

TEST(VacuumEveryRowsTest, ShareOfTheEstimateOrRowCount) {
  EXPECT_EQ(VacuumEveryRows(plan::VacuumEvery{.fraction = 0.05, .rows = 0}, 3'000'000), 150'000);
  EXPECT_EQ(VacuumEveryRows(plan::VacuumEvery{.fraction = 0, .rows = 1234}, 3'000'000), 1234);
  EXPECT_EQ(VacuumEveryRows(plan::VacuumEvery{}, 3'000'000), 0) << "off";
}

TEST(VacuumEveryRowsTest, AShareOfATinyOrUnknownEstimateHasAFloor) {
  // A never-analysed table can estimate 0 rows: a VACUUM after every batch would follow.
  EXPECT_EQ(VacuumEveryRows(plan::VacuumEvery{.fraction = 0.05, .rows = 0}, 0),
            kMinVacuumEveryRows);
  EXPECT_EQ(VacuumEveryRows(plan::VacuumEvery{.fraction = 0.05, .rows = 0}, -1),
            kMinVacuumEveryRows);
  EXPECT_EQ(VacuumEveryRows(plan::VacuumEvery{.fraction = 0.01, .rows = 0}, 100'000),
            kMinVacuumEveryRows);
  // An explicit row count is the operator's: no floor.
  EXPECT_EQ(VacuumEveryRows(plan::VacuumEvery{.fraction = 0, .rows = 10}, 0), 10);
}

TEST(VacuumSqlTest, NeverWaitsNeverTruncatesSkipsIndexes) {
  EXPECT_EQ(VacuumSql(plan::QualifiedName{.schema = "My Schema", .name = "t\"x"}),
            "/* pgbackfill */ VACUUM (SKIP_LOCKED, INDEX_CLEANUP OFF, TRUNCATE false) \"My Schema\".\"t\"\"x\"");
}

TEST(DescribeVacuumEveryTest, AsWritten) {
  EXPECT_EQ(DescribeVacuumEvery(plan::VacuumEvery{.fraction = 0.05, .rows = 0}), "5%");
  EXPECT_EQ(DescribeVacuumEvery(plan::VacuumEvery{.fraction = 0.005, .rows = 0}), "0.5%");
  EXPECT_EQ(DescribeVacuumEvery(plan::VacuumEvery{.fraction = 0, .rows = 500000}), "500000");
  EXPECT_EQ(DescribeVacuumEvery(plan::VacuumEvery{}), "off");
}

}  // namespace
}  // namespace pgbackfill::exec
