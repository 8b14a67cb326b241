// The spool keeps arrival order across memory and segment files, stays inside its memory limit,
// removes what was read, and reports a segment cut inside a record as lost changes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "pgbackfill/follow/spool.h"
#include "support/status_testing.h"

namespace pgbackfill::follow {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::path(::testing::TempDir()) /
            absl::StrCat("spool-", ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  int SegmentFiles() const {
    int count = 0;
    for (const auto& entry : fs::directory_iterator(dir_)) count += entry.is_regular_file();
    return count;
  }

  std::string dir_;
};

std::string Payload(int i) {
  return absl::StrCat("change-", i, std::string(static_cast<size_t>(i % 7), 'x'));
}

TEST_F(SpoolTest, RecordsComeBackInArrivalOrderThroughMemoryAndFiles) {
  ASSERT_OK_AND_ASSIGN(Spool spool, Spool::Open(dir_, {.memory_bytes = 200, .segment_bytes = 300}));
  int appended = 0;
  int taken = 0;
  // Bursts bigger than memory, taken in smaller bites: memory fills, files take the rest; then the
  // reader catches up and memory takes records again.
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 60; ++i, ++appended) {
      ASSERT_OK(spool.Append(static_cast<uint64_t>(appended), Payload(appended)));
      EXPECT_LE(spool.memory_bytes(), 200);
    }
    EXPECT_GT(spool.disk_bytes(), 0) << "round " << round;
    EXPECT_GT(SegmentFiles(), 1) << "segments are closed at their size";
    for (int i = 0; i < 45; ++i, ++taken) {
      ASSERT_OK_AND_ASSIGN(std::optional<SpoolRecord> record, spool.Take());
      ASSERT_TRUE(record.has_value());
      EXPECT_EQ(record->lsn, static_cast<uint64_t>(taken));
      EXPECT_EQ(record->payload, Payload(taken));
    }
  }
  auto drain = [&] {
    while (true) {
      absl::StatusOr<std::optional<SpoolRecord>> record = spool.Take();
      ASSERT_OK(record.status());
      if (!record->has_value()) break;
      EXPECT_EQ((*record)->lsn, static_cast<uint64_t>(taken));
      EXPECT_EQ((*record)->payload, Payload(taken));
      ++taken;
    }
  };
  drain();
  EXPECT_EQ(SegmentFiles(), 0) << "every segment read is removed";
  // Caught up: memory first again, then files again, in order.
  for (int i = 0; i < 60; ++i, ++appended) {
    ASSERT_OK(spool.Append(static_cast<uint64_t>(appended), Payload(appended)));
  }
  EXPECT_GT(spool.disk_bytes(), 0);
  drain();
  EXPECT_EQ(taken, appended);
  EXPECT_EQ(spool.records(), 0);
  EXPECT_EQ(spool.disk_bytes(), 0);
  EXPECT_EQ(SegmentFiles(), 0) << "every segment read is removed";

  // Empty again: new records stay in memory.
  ASSERT_OK(spool.Append(1000, "again"));
  EXPECT_EQ(spool.disk_bytes(), 0);
  ASSERT_OK_AND_ASSIGN(std::optional<SpoolRecord> again, spool.Take());
  EXPECT_EQ(again->payload, "again");
}

TEST_F(SpoolTest, ASegmentCutInsideARecordIsLostChangesNotASkip) {
  // One record a segment: the second Append closes the first segment.
  ASSERT_OK_AND_ASSIGN(Spool spool, Spool::Open(dir_, {.memory_bytes = 0, .segment_bytes = 1}));
  ASSERT_OK(spool.Append(1, "first"));
  ASSERT_OK(spool.Append(2, "second"));
  const fs::path segment = fs::path(dir_) / "segment-0.spool";
  fs::resize_file(segment, fs::file_size(segment) - 3);
  EXPECT_THAT(spool.Take().status().message(),
              HasSubstr("ends before its record 1 of 1: changes were lost"));
}

TEST_F(SpoolTest, ASegmentShortByAWholeRecordIsLostChangesNotASkip) {
  ASSERT_OK_AND_ASSIGN(Spool spool, Spool::Open(dir_, {.memory_bytes = 0, .segment_bytes = 40}));
  ASSERT_OK(spool.Append(1, "first"));   // 17 bytes
  ASSERT_OK(spool.Append(2, "second"));  // 18: the segment is past 40 after the next
  ASSERT_OK(spool.Append(3, "third"));
  ASSERT_OK(spool.Append(4, "fourth"));  // the next segment
  const fs::path segment = fs::path(dir_) / "segment-0.spool";
  fs::resize_file(segment, 17 + 18);  // "third" cut off at a record boundary
  ASSERT_OK_AND_ASSIGN(std::optional<SpoolRecord> first, spool.Take());
  ASSERT_OK_AND_ASSIGN(std::optional<SpoolRecord> second, spool.Take());
  EXPECT_EQ(second->payload, "second");
  EXPECT_THAT(spool.Take().status().message(), HasSubstr("record 3 of 3: changes were lost"));
  EXPECT_FALSE(spool.Take().ok()) << "a spool that lost changes stays failed";
}

TEST_F(SpoolTest, OpenRemovesWhatAnEarlierProcessLeftAndTheSpoolRemovesItsOwn) {
  fs::create_directories(dir_);
  std::ofstream(fs::path(dir_) / "segment-7.spool") << "left by a killed run";
  std::ofstream(fs::path(dir_) / "keep.txt") << "not ours";
  {
    ASSERT_OK_AND_ASSIGN(Spool spool, Spool::Open(dir_, {.memory_bytes = 0}));
    EXPECT_FALSE(fs::exists(fs::path(dir_) / "segment-7.spool"));
    ASSERT_OK_AND_ASSIGN(std::optional<SpoolRecord> none, spool.Take());
    EXPECT_FALSE(none.has_value());
    ASSERT_OK(spool.Append(1, "x"));
    EXPECT_EQ(SegmentFiles(), 2);
  }
  EXPECT_EQ(SegmentFiles(), 1);
  EXPECT_TRUE(fs::exists(fs::path(dir_) / "keep.txt"));
}

}  // namespace
}  // namespace pgbackfill::follow
