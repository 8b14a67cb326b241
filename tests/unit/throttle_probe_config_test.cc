#include "pgbackfill/throttle/probes.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/time/time.h"
#include "pgbackfill/plan/plan.h"

namespace pgbackfill::throttle {
namespace {

using ::testing::ElementsAre;

TEST(ProbeConfigFromPlanTest, TakesTheThrottleSection) {
  plan::Plan plan;
  plan.dsn = "dbname=app";
  plan.throttle.replicas = {"host=r1", "host=r2"};
  plan.throttle.canary = "SELECT 1";
  plan.throttle.query = "SELECT false";
  plan.throttle.hold_on_autovacuum = true;
  plan.throttle.interval = absl::Milliseconds(500);
  ProbeConfig config = ProbeConfigFromPlan(plan, {"public", "users"}, {"id"});
  EXPECT_EQ(config.dsn, "dbname=app");
  EXPECT_THAT(config.replica_dsns, ElementsAre("host=r1", "host=r2"));
  EXPECT_EQ(config.table, (plan::QualifiedName{"public", "users"}));
  EXPECT_THAT(config.key_columns, ElementsAre("id"));
  EXPECT_EQ(config.canary_sql, "SELECT 1");
  EXPECT_EQ(config.custom_sql, "SELECT false");
  EXPECT_TRUE(config.check_autovacuum);
  EXPECT_EQ(config.interval, absl::Milliseconds(500));

  plan.mode = plan::Mode::kCopy;
  plan.target_dsn = "dbname=warehouse";
  EXPECT_EQ(ProbeConfigFromPlan(plan, {"public", "users"}, {}).dsn, "dbname=warehouse");
}

}  // namespace
}  // namespace pgbackfill::throttle
