// Reading the scan of a batch's write out of EXPLAIN (FORMAT JSON), on plans as PostgreSQL 15
// prints them (trimmed to the keys that matter).
#include <gtest/gtest.h>

#include "pgbackfill/preflight/batch_plan.h"
#include "support/status_testing.h"

namespace pgbackfill::preflight {
namespace {

TEST(WriteScanOfTest, AnIndexScanUnderTheUpdateNamesItsIndex) {
  ASSERT_OK_AND_ASSIGN(std::optional<BatchScan> scan, WriteScanOf(R"([{"Plan": {
      "Node Type": "ModifyTable", "Operation": "Update", "Relation Name": "ck", "Alias": "t",
      "Plans": [
        {"Node Type": "CTE Scan", "Alias": "bound"},
        {"Node Type": "Limit", "Plans": [{"Node Type": "Index Only Scan", "Index Name": "ck_pkey",
                                          "Relation Name": "ck", "Alias": "s"}]},
        {"Node Type": "Index Scan", "Index Name": "ck_pkey", "Relation Name": "ck",
         "Alias": "t"}]}}])"));
  ASSERT_TRUE(scan.has_value());
  EXPECT_EQ(scan->node, "Index Scan using ck_pkey");
  EXPECT_FALSE(scan->whole_table);
}

TEST(WriteScanOfTest, ABitmapScanNamesTheIndexBelowAnyBitmapAnd) {
  ASSERT_OK_AND_ASSIGN(std::optional<BatchScan> scan, WriteScanOf(R"([{"Plan": {
      "Node Type": "Bitmap Heap Scan", "Relation Name": "ck", "Alias": "t", "Plans": [
        {"Node Type": "BitmapAnd", "Plans": [
          {"Node Type": "Bitmap Index Scan", "Index Name": "ck_pkey"},
          {"Node Type": "Bitmap Index Scan", "Index Name": "ck_other"}]}]}}])"));
  ASSERT_TRUE(scan.has_value());
  EXPECT_EQ(scan->node, "Bitmap Heap Scan on ck_pkey");
  EXPECT_FALSE(scan->whole_table);
}

TEST(WriteScanOfTest, ASeqScanOfTheWrittenTableReadsTheWholeTable) {
  ASSERT_OK_AND_ASSIGN(std::optional<BatchScan> scan, WriteScanOf(R"([{"Plan": {
      "Node Type": "LockRows", "Plans": [
        {"Node Type": "Seq Scan", "Relation Name": "other", "Alias": "o"},
        {"Node Type": "Seq Scan", "Relation Name": "src", "Alias": "t"}]}}])"));
  ASSERT_TRUE(scan.has_value());
  EXPECT_EQ(scan->node, "Seq Scan");
  EXPECT_TRUE(scan->whole_table);
}

TEST(WriteScanOfTest, APartitionScanCountsAndAProvedEmptyWriteHasNone) {
  ASSERT_OK_AND_ASSIGN(std::optional<BatchScan> partition, WriteScanOf(R"([{"Plan": {
      "Node Type": "Append", "Plans": [
        {"Node Type": "Seq Scan", "Relation Name": "p1", "Alias": "t_1"}]}}])"));
  ASSERT_TRUE(partition.has_value());
  EXPECT_TRUE(partition->whole_table);
  ASSERT_OK_AND_ASSIGN(std::optional<BatchScan> none, WriteScanOf(R"([{"Plan": {
      "Node Type": "Result", "One-Time Filter": "false"}}])"));
  EXPECT_FALSE(none.has_value());
}

TEST(WriteScanOfTest, TextThatIsNotAPlanIsAnError) {
  EXPECT_FALSE(WriteScanOf("not json").ok());
  EXPECT_FALSE(WriteScanOf("[]").ok());
  EXPECT_FALSE(WriteScanOf(R"({"Plan": {}})").ok());
}

}  // namespace
}  // namespace pgbackfill::preflight
