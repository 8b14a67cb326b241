// Range planning against the real server: every row of the table falls in exactly one planned
// range, checked with the same row-value predicates the batch SQL uses ((k) > lower AND
// (k) <= upper), for integer keys (min/max split), composite keys (full ordered scan and
// TABLESAMPLE), empty and one-row tables, rows inserted after planning, and awkward names.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "pgbackfill/catalog/catalog.h"
#include "pgbackfill/batch/batch_sql.h"
#include "pgbackfill/plan/plan.h"
#include "pgbackfill/ranges/sampler.h"
#include "pgbackfill/ranges/split.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill::ranges {
namespace {

using testing::TestDatabase;

struct Target {
  catalog::Table table;
  catalog::Key key;
  int64_t estimated_rows = 0;
};

class RangesSamplerTest : public ::testing::Test {
 protected:
  // Looks the table up and chooses its key as preflight does. `harden` pins the session's
  // search_path to pg_catalog first, as the preflight session runs.
  Target Lookup(const std::string& schema, const std::string& name, bool harden = false) {
    catalog::Catalog cat(db_.conn());
    if (harden) {
      EXPECT_OK(cat.Harden());
    }
    Target target;
    auto table = cat.LookupTable({schema, name});
    EXPECT_OK(table);
    if (!table.ok()) return target;
    target.table = *table;
    auto choice = cat.ChooseKey(target.table, {});
    EXPECT_OK(choice);
    if (!choice.ok() || !choice->key.has_value()) {
      ADD_FAILURE() << "no key for " << name;
      return target;
    }
    target.key = *choice->key;
    auto estimate = cat.EstimateRows(target.table);
    EXPECT_OK(estimate);
    if (estimate.ok()) target.estimated_rows = estimate->rows;
    return target;
  }

  // Counts, per range, the rows its batch predicate selects, and checks that every row of the
  // table is selected by exactly one range. The table has an int column `hits` for this.
  std::vector<int64_t> ExpectEachRowInExactlyOneRange(const Target& target,
                                                      const std::vector<KeyRange>& ranges) {
    std::vector<sql::KeyColumn> key;
    for (const catalog::Column& column : target.key.columns) {
      key.push_back({column.name, column.type});
    }
    const std::string table = plan::QuoteQualified(target.table.name);
    EXPECT_OK(db_.Exec(absl::StrCat("UPDATE ", table, " SET hits = 0")));

    std::vector<int64_t> per_range;
    for (const KeyRange& range : ranges) {
      std::vector<pg::Param> params;
      std::vector<std::string> predicate = {"true"};
      if (range.lower) {
        predicate.push_back(absl::StrCat(sql::KeyRow(key), " > ",
                                         sql::ParamRow(key, static_cast<int>(params.size()) + 1)));
        for (const std::string& value : *range.lower) params.emplace_back(value);
      }
      if (range.upper) {
        predicate.push_back(absl::StrCat(
            sql::KeyRow(key), " <= ", sql::ParamRow(key, static_cast<int>(params.size()) + 1)));
        for (const std::string& value : *range.upper) params.emplace_back(value);
      }
      auto updated = db_.Exec(absl::StrCat("UPDATE ", table, " SET hits = hits + 1 WHERE ",
                                           absl::StrJoin(predicate, " AND ")),
                              params);
      EXPECT_OK(updated) << "range " << range.id;
      per_range.push_back(updated.ok() ? updated->AffectedRows() : -1);
    }
    auto wrong = db_.QueryValue(absl::StrCat("SELECT count(*) FROM ", table, " WHERE hits <> 1"));
    EXPECT_OK(wrong);
    if (wrong.ok()) {
      EXPECT_EQ(*wrong, "0") << "rows in no range or in several";
    }
    auto total = db_.QueryValue(absl::StrCat("SELECT count(*) FROM ", table));
    EXPECT_OK(total);
    int64_t sum = 0;
    for (int64_t rows : per_range) sum += rows;
    if (total.ok()) {
      EXPECT_EQ(absl::StrCat(sum), *total);
    }
    return per_range;
  }

  static void ExpectWellFormed(const std::vector<KeyRange>& ranges) {
    ASSERT_FALSE(ranges.empty());
    EXPECT_FALSE(ranges.front().lower.has_value());
    EXPECT_FALSE(ranges.back().upper.has_value());
    for (size_t i = 0; i < ranges.size(); ++i) {
      EXPECT_EQ(ranges[i].id, static_cast<int>(i) + 1);
      if (i + 1 < ranges.size()) {
        EXPECT_EQ(ranges[i].upper, ranges[i + 1].lower);
      }
    }
  }

  TestDatabase db_;
};

TEST_F(RangesSamplerTest, IntegerKeyWithGapsAndNegativeKeys) {
  ASSERT_OK(
      db_.ExecScript("CREATE TABLE public.t (id int8 PRIMARY KEY, hits int NOT NULL DEFAULT 0);"
                     "INSERT INTO public.t (id) SELECT g * 37 FROM generate_series(-7000, 7000) g"
                     " WHERE g % 5 <> 0;"));
  const Target target = Lookup("public", "t");
  ASSERT_TRUE(target.key.IsSingleInteger());
  ASSERT_EQ(target.estimated_rows, 11200);
  ASSERT_OK_AND_ASSIGN(std::vector<KeyRange> ranges,
                       PlanRanges(db_.conn(), target.table, target.key, target.estimated_rows, 4));
  ExpectWellFormed(ranges);
  // min/max of the keys, split arithmetically: the gaps do not matter.
  EXPECT_EQ(ranges, SplitIntegerRange(-6999 * 37, 6999 * 37, 16));
  ExpectEachRowInExactlyOneRange(target, ranges);

  // Keys inserted after planning, below the smallest and above the largest: the open ends.
  ASSERT_OK(
      db_.ExecScript("INSERT INTO public.t (id) VALUES (-9223372036854775808), (-1000000),"
                     " (1000000), (9223372036854775807)"));
  ExpectEachRowInExactlyOneRange(target, ranges);
}

TEST_F(RangesSamplerTest, AwkwardNamesAndSmallIntegerTypes) {
  ASSERT_OK(db_.ExecScript(
      "CREATE SCHEMA \"My Schema\";"
      "CREATE TABLE \"My Schema\".\"Odd \"\"Table\"\"\" (\"select\" int2 PRIMARY KEY,"
      " hits int NOT NULL DEFAULT 0);"
      "INSERT INTO \"My Schema\".\"Odd \"\"Table\"\"\" (\"select\")"
      " SELECT g FROM generate_series(-32768, 32767, 3) g;"
      "CREATE TABLE \"My Schema\".\"t4\" (\"Id\" int4 PRIMARY KEY, hits int NOT NULL DEFAULT 0);"
      "INSERT INTO \"My Schema\".\"t4\" VALUES (7);"));
  const Target odd = Lookup("My Schema", "Odd \"Table\"");
  ASSERT_OK_AND_ASSIGN(std::vector<KeyRange> ranges,
                       PlanRanges(db_.conn(), odd.table, odd.key, odd.estimated_rows, 2));
  ExpectWellFormed(ranges);
  EXPECT_EQ(ranges.size(), 8u);
  ExpectEachRowInExactlyOneRange(odd, ranges);

  const Target one = Lookup("My Schema", "t4");
  ASSERT_OK_AND_ASSIGN(ranges, PlanRanges(db_.conn(), one.table, one.key, one.estimated_rows, 4));
  ASSERT_EQ(ranges.size(), 1u);  // one key value: one open range
  ExpectEachRowInExactlyOneRange(one, ranges);
}

TEST_F(RangesSamplerTest, EmptyTablesGetOneOpenRange) {
  ASSERT_OK(
      db_.ExecScript("CREATE TABLE public.ints (id int8 PRIMARY KEY, hits int NOT NULL DEFAULT 0);"
                     "CREATE TABLE public.pairs (a text, b uuid, hits int NOT NULL DEFAULT 0,"
                     " PRIMARY KEY (a, b));"));
  for (const char* name : {"ints", "pairs"}) {
    SCOPED_TRACE(name);
    const Target target = Lookup("public", name);
    ASSERT_OK_AND_ASSIGN(
        std::vector<KeyRange> ranges,
        PlanRanges(db_.conn(), target.table, target.key, target.estimated_rows, 4));
    ASSERT_EQ(ranges.size(), 1u);
    EXPECT_EQ(ranges[0], (KeyRange{1, std::nullopt, std::nullopt}));
  }
  // Whatever arrives later is in that range.
  ASSERT_OK(
      db_.ExecScript("INSERT INTO public.pairs (a, b) SELECT 'x' || g, gen_random_uuid()"
                     " FROM generate_series(1, 50) g"));
  const Target pairs = Lookup("public", "pairs");
  ExpectEachRowInExactlyOneRange(pairs, {KeyRange{1, std::nullopt, std::nullopt}});
}

TEST_F(RangesSamplerTest, OneRowTables) {
  ASSERT_OK(
      db_.ExecScript("CREATE TABLE public.ints (id int8 PRIMARY KEY, hits int NOT NULL DEFAULT 0);"
                     "INSERT INTO public.ints (id) VALUES (-5);"
                     "CREATE TABLE public.pairs (a text, b uuid, hits int NOT NULL DEFAULT 0,"
                     " PRIMARY KEY (a, b));"
                     "INSERT INTO public.pairs (a, b) VALUES ('only', gen_random_uuid());"));
  for (const char* name : {"ints", "pairs"}) {
    SCOPED_TRACE(name);
    const Target target = Lookup("public", name);
    ASSERT_OK_AND_ASSIGN(
        std::vector<KeyRange> ranges,
        PlanRanges(db_.conn(), target.table, target.key, target.estimated_rows, 4));
    ExpectWellFormed(ranges);
    EXPECT_LE(ranges.size(), 2u);
    ExpectEachRowInExactlyOneRange(target, ranges);
  }
}

class CompositeKeyTest : public RangesSamplerTest {
 protected:
  void SetUp() override {
    // Inserted in random order, so the physical order says nothing about the key order.
    ASSERT_OK(db_.ExecScript(
        "CREATE TABLE public.users (tenant text, id uuid, hits int NOT NULL DEFAULT 0,"
        " PRIMARY KEY (tenant, id));"
        "INSERT INTO public.users (tenant, id)"
        " SELECT 'tenant-' || (g % 37), gen_random_uuid() FROM generate_series(1, 20000) g"
        " ORDER BY random();"
        "ANALYZE public.users;"));
  }
};

TEST_F(CompositeKeyTest, FullOrderedScanGivesEvenRanges) {
  const Target target = Lookup("public", "users", /*harden=*/true);
  ASSERT_EQ(target.key.columns.size(), 2u);
  ASSERT_LT(target.estimated_rows, kFullScanMaxRows);
  ASSERT_OK_AND_ASSIGN(std::vector<KeyRange> ranges,
                       PlanRanges(db_.conn(), target.table, target.key, target.estimated_rows, 4));
  ExpectWellFormed(ranges);
  ASSERT_EQ(ranges.size(), 16u);
  // Every 25th key of 20'000: exact quantiles, 1250 rows per range.
  for (int64_t rows : ExpectEachRowInExactlyOneRange(target, ranges)) {
    EXPECT_GE(rows, 1200);
    EXPECT_LE(rows, 1300);
  }
}

TEST_F(CompositeKeyTest, TableSampleOfALargeEstimate) {
  const Target target = Lookup("public", "users", /*harden=*/true);
  // Pretend the table is big enough for TABLESAMPLE (16 ranges at 4 workers either way).
  ASSERT_OK_AND_ASSIGN(std::vector<KeyRange> ranges,
                       PlanRanges(db_.conn(), target.table, target.key, 1'000'000, 4));
  ExpectWellFormed(ranges);
  EXPECT_EQ(ranges.size(), 16u);
  for (int64_t rows : ExpectEachRowInExactlyOneRange(target, ranges)) {
    EXPECT_GE(rows, 1250 / 2);
    EXPECT_LE(rows, 1250 * 2);
  }
}

TEST_F(CompositeKeyTest, SampleTooSmallFallsBackToFullScan) {
  // At fillfactor 10 a page holds ~13 rows, so the sample needs 8 of ~1,500 pages for 2 keys per
  // range (at ~135 rows a page, one page, picked once in ~250 runs, was enough).
  ASSERT_OK(db_.ExecScript("ALTER TABLE public.users SET (fillfactor = 10)"));
  ASSERT_OK(db_.ExecScript("VACUUM FULL public.users"));
  Target target = Lookup("public", "users");
  // A wildly high estimate and no size: TABLESAMPLE at 0.0025 % picks ~0.04 pages, far below 2
  // keys per range, and the full scan takes over.
  target.table.size_bytes = 0;
  ASSERT_EQ(RangeCount(100'000'000, 4), 50);
  ASSERT_OK_AND_ASSIGN(std::vector<KeyRange> ranges,
                       PlanRanges(db_.conn(), target.table, target.key, 100'000'000, 4));
  ExpectWellFormed(ranges);
  EXPECT_EQ(ranges.size(), 50u);
  for (int64_t rows : ExpectEachRowInExactlyOneRange(target, ranges)) {
    EXPECT_GE(rows, 350);
    EXPECT_LE(rows, 450);
  }
}

// An integer first column in a composite key must be sampled in numeric order (as text, '10' sorts
// before '9'), and key columns named like the sampler's own output columns must not collide.
TEST_F(RangesSamplerTest, CompositeKeyOrderIsTheKeyTypesOrder) {
  ASSERT_OK(db_.ExecScript(
      "CREATE TABLE public.g (rn int4, k1 text, total int8, hits int NOT NULL DEFAULT 0,"
      " PRIMARY KEY (rn, k1, total));"
      "INSERT INTO public.g (rn, k1, total) SELECT g % 30, 'n' || g, -g"
      " FROM generate_series(1, 12000) g;"));
  const Target target = Lookup("public", "g");
  ASSERT_EQ(target.key.columns.size(), 3u);
  ASSERT_OK_AND_ASSIGN(std::vector<KeyRange> ranges,
                       PlanRanges(db_.conn(), target.table, target.key, target.estimated_rows, 4));
  ExpectWellFormed(ranges);
  EXPECT_EQ(ranges.size(), 16u);
  for (int64_t rows : ExpectEachRowInExactlyOneRange(target, ranges)) EXPECT_EQ(rows, 750);

  ASSERT_OK_AND_ASSIGN(ranges, PlanRanges(db_.conn(), target.table, target.key, 1'000'000, 4));
  ExpectWellFormed(ranges);
  ExpectEachRowInExactlyOneRange(target, ranges);
}

}  // namespace
}  // namespace pgbackfill::ranges
