#include "pgbackfill/staging/scratch.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace pgbackfill::staging {
namespace {

plan::Plan UpdatePlan(std::string name) {
  plan::Plan plan;
  plan.name = std::move(name);
  plan.table = {"app", "users"};
  plan.set = {plan::Assignment{.column = "full_name", .expression = "first || last", .line = 5}};
  plan.dual_write = true;
  plan.expand = {"ALTER TABLE app.users ADD COLUMN full_name text"};
  plan.contract = {"ALTER TABLE app.users DROP COLUMN first"};
  plan.rollback = {"ALTER TABLE app.users DROP COLUMN full_name"};
  plan.not_null = {"full_name"};
  return plan;
}

TEST(ScratchForTest, NamesComeFromThePlanInTheJobStoreSchema) {
  const ScratchNames names = ScratchFor(UpdatePlan("users-full-name"));
  EXPECT_EQ(names.table, (plan::QualifiedName{"pgbackfill", "bench users-full-name"}));
  EXPECT_FALSE(names.into.has_value());
  EXPECT_EQ(names.job, "users-full-name:bench") << "':' is not allowed in a plan name";

  plan::Plan copy = UpdatePlan("v2");
  copy.mode = plan::Mode::kCopy;
  copy.into = plan::QualifiedName{"app", "users_v2"};
  EXPECT_EQ(ScratchFor(copy).into, (plan::QualifiedName{"pgbackfill", "bench into v2"}));
}

TEST(ScratchForTest, LongNamesAreCutAtACharacterBoundaryWithin63Bytes) {
  // "é" is two bytes: a cut at byte 63 would split one.
  const ScratchNames names = ScratchFor(UpdatePlan(std::string(56, 'a') + "ééééé"));
  EXPECT_LE(names.table.name.size(), 63u);
  EXPECT_EQ(names.table.name, "bench " + std::string(56, 'a'));
}

TEST(BenchPlanTest, RunsOnTheScratchTableWithoutDdlTriggersOrVerify) {
  const plan::Plan original = UpdatePlan("j");
  const plan::Plan bench = BenchPlan(original, ScratchFor(original));
  EXPECT_EQ(bench.name, "j:bench");
  EXPECT_EQ(bench.table, (plan::QualifiedName{"pgbackfill", "bench j"}));
  EXPECT_FALSE(bench.dual_write);
  EXPECT_TRUE(bench.expand.empty());
  EXPECT_TRUE(bench.contract.empty());
  EXPECT_TRUE(bench.rollback.empty());
  EXPECT_TRUE(bench.not_null.empty());
  EXPECT_FALSE(bench.verify);
  // What the batches compute is the plan's.
  ASSERT_EQ(bench.set.size(), 1u);
  EXPECT_EQ(bench.set[0].expression, "first || last");
  EXPECT_EQ(plan::PlanHash(bench), plan::PlanHash(BenchPlan(original, ScratchFor(original))));
}

TEST(SamplePercentTest, WholeTableOrPagesWithAMargin) {
  EXPECT_EQ(SamplePercent(1'000'000, 500'000), std::nullopt) << "smaller than wanted: all of it";
  EXPECT_EQ(SamplePercent(1'000'000, 0), std::nullopt) << "no estimate: LIMIT decides";
  EXPECT_EQ(SamplePercent(1'000'000, 1'200'000), std::nullopt) << "1.5x the need is over 100%";
  ASSERT_TRUE(SamplePercent(1'000'000, 1'000'000'000).has_value());
  EXPECT_DOUBLE_EQ(*SamplePercent(1'000'000, 1'000'000'000), 0.15);
}

TEST(FillSqlTest, KeyOrderedInsertOfNonGeneratedColumns) {
  EXPECT_EQ(FillSql({"app", "users"}, {"pgbackfill", "bench j"}, {"id", "First Name"}, {"id"},
                    1000, std::nullopt),
            "INSERT INTO \"pgbackfill\".\"bench j\" (\"id\", \"First Name\") OVERRIDING SYSTEM "
            "VALUE\nSELECT \"id\", \"First Name\" FROM \"app\".\"users\"\n ORDER BY \"id\" LIMIT "
            "1000");
  // A sample keeps the rows whose key hashes lowest (spread over the key range), then inserts
  // them in key order.
  EXPECT_EQ(FillSql({"app", "users"}, {"pgbackfill", "bench j"}, {"id"}, {"tenant", "id"}, 5, 0.25),
            "INSERT INTO \"pgbackfill\".\"bench j\" (\"id\") OVERRIDING SYSTEM VALUE\n"
            "SELECT \"id\" FROM (\n"
            "  SELECT \"id\" FROM \"app\".\"users\" TABLESAMPLE SYSTEM (0.25) REPEATABLE (0)\n"
            "   ORDER BY pg_catalog.md5(ROW(\"tenant\", \"id\")::text) LIMIT 5\n"
            ") AS sample\n ORDER BY \"tenant\", \"id\"");
}

}  // namespace
}  // namespace pgbackfill::staging
