#include "pgbackfill/events/events.h"

#include <algorithm>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pgbackfill::events {
namespace {

Event RoundTrip(const Event& event) {
  const nlohmann::json json = ToJson(event, "2026-01-02T03:04:05.678Z");
  // As a reader gets it: text.
  std::optional<Event> read = FromJson(nlohmann::json::parse(json.dump()));
  EXPECT_TRUE(read.has_value()) << json.dump();
  return read.value_or(Event(Warning{}));
}

TEST(EventsTest, EveryEventCarriesItsNameAndTime) {
  const nlohmann::json json = ToJson(RangeDone{.range = 3, .rows = 40}, "T");
  EXPECT_EQ(json["event"], "range_done");
  EXPECT_EQ(json["time"], "T");
  EXPECT_EQ(json["range"], 3);
  EXPECT_EQ(json["rows"], 40);
}

TEST(EventsTest, UnknownOptionalsAreNullAndReadBackUnknown) {
  Progress progress;
  progress.rows_done = 5;
  const nlohmann::json json = ToJson(progress, "T");
  EXPECT_TRUE(json["eta_seconds"].is_null());
  EXPECT_TRUE(json["throttle"].is_null());
  const Progress read = std::get<Progress>(RoundTrip(progress));
  EXPECT_FALSE(read.eta_seconds.has_value());
  EXPECT_EQ(read.rows_done, 5);

  progress.eta_seconds = 12;
  progress.throttle = "replica lag 6s > 5s";
  const Progress held = std::get<Progress>(RoundTrip(progress));
  EXPECT_EQ(held.eta_seconds, 12);
  EXPECT_EQ(held.throttle, "replica lag 6s > 5s");
}

TEST(EventsTest, RangeSplitRoundTripsWithItsPointAndBothRanges) {
  const RangeSplit split{
      .worker = 1, .range = 1, .new_range = 9, .at = "(1500000)", .estimated_rows = 1500000};
  const nlohmann::json json = ToJson(split, "T");
  EXPECT_EQ(json["event"], "range_split");
  const RangeSplit read = std::get<RangeSplit>(RoundTrip(split));
  EXPECT_EQ(read.worker, 1);
  EXPECT_EQ(read.range, 1);
  EXPECT_EQ(read.new_range, 9);
  EXPECT_EQ(read.at, "(1500000)");
  EXPECT_EQ(read.estimated_rows, 1500000);
}

TEST(EventsTest, ThrottleLimitsRoundTripWithTheirObject) {
  Progress progress;
  progress.limits.push_back(
      {.name = "replica_lag", .object = "standby1", .value = 0.5, .limit = 5});
  progress.limits.push_back(
      {.name = "lock_waiters", .object = std::nullopt, .value = 1, .limit = 0});
  const Progress read = std::get<Progress>(RoundTrip(progress));
  ASSERT_EQ(read.limits.size(), 2u);
  EXPECT_EQ(read.limits[0].object, "standby1");
  EXPECT_EQ(read.limits[0].limit, 5);
  EXPECT_FALSE(read.limits[1].object.has_value());
  EXPECT_TRUE(ToJson(progress, "T")["limits"][1]["object"].is_null());
}

TEST(EventsTest, NestedAndMapFieldsRoundTrip) {
  Verified verified;
  verified.job = "j";
  verified.differing_rows = 2;
  verified.ranges.push_back({.range = 4, .rows = 2, .first_keys = {"(7)", "(9)"}});
  const Verified read = std::get<Verified>(RoundTrip(verified));
  ASSERT_EQ(read.ranges.size(), 1u);
  EXPECT_EQ(read.ranges[0].first_keys, (std::vector<std::string>{"(7)", "(9)"}));

  const Settings settings{.settings = {{"workers", "3"}}, .workers = 3};
  EXPECT_EQ(std::get<Settings>(RoundTrip(settings)).settings.at("workers"), "3");
}

TEST(EventsTest, TheTwoVerifyEventsAreToldApartByTheirFields) {
  MoveVerified moved;
  moved.differing_ranges = 1;
  moved.ranges.push_back({.range = 2, .source_rows = 10, .target_rows = 9, .repaired = false});
  EXPECT_EQ(ToJson(moved, "T")["event"], "verify");
  EXPECT_TRUE(std::holds_alternative<MoveVerified>(RoundTrip(moved)));
  EXPECT_TRUE(std::holds_alternative<Verified>(RoundTrip(Verified{})));
}

TEST(EventsTest, NamesAreUniqueButForVerify) {
  std::vector<std::string> names;
  for (const Event& event :
       {Event(JobStarted{}),   Event(Progress{}),  Event(Batch{}),       Event(RangeDone{}),
        Event(RangeSplit{}),   Event(Retry{}),     Event(Reconnect{}),   Event(Reconnected{}),
        Event(Signal{}),       Event(Throttle{}),  Event(Concurrency{}), Event(Control{}),
        Event(Settings{}),     Event(Vacuum{}),    Event(Snapshot{}),    Event(Warning{}),
        Event(PhaseStarted{}), Event(PhaseDone{}), Event(Ddl{}),         Event(DdlRetry{}),
        Event(Verified{}),     Event(Following{}), Event(CutOver{}),     Event(JobFinished{}),
        Event(BenchFinished{})}) {
    names.emplace_back(TypeName(event));
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(std::adjacent_find(names.begin(), names.end()), names.end());
  EXPECT_EQ(names.size() + 1, std::variant_size_v<Event>);  // + MoveVerified, also "verify"
}

TEST(EventsTest, WhatIsNotAnEventReadsAsNone) {
  EXPECT_FALSE(FromJson(nlohmann::json::parse(R"({"event": "no_such_event"})")).has_value());
  EXPECT_FALSE(FromJson(nlohmann::json::parse(R"({"rows": 1})")).has_value());
  EXPECT_FALSE(FromJson(nlohmann::json::parse(R"([1, 2])")).has_value());
  EXPECT_FALSE(
      FromJson(nlohmann::json::parse(R"({"event": "range_done", "rows": "many"})")).has_value());
}

}  // namespace
}  // namespace pgbackfill::events
