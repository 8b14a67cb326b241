// The job store against the real server: schema creation and migration (also from two processes
// at once), job and range round trips with awkward key values, state bookkeeping, leases,
// and the text[] literal helpers checked against the server's own parser and printer (their
// server-free tests are tests/unit/checkpoint_text_array_test.cc).
#include "pgbackfill/checkpoint/job_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <latch>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "pgbackfill/batch/batch_sql.h"
#include "pgbackfill/pg/connection.h"
#include "support/run_helpers.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"
#include "support/tricky_strings.h"

namespace pgbackfill::checkpoint {
namespace {

// The version this build's store migrates to: every test that checks it moves with new steps.
const int kCurrentVersion = static_cast<int>(SchemaSteps().size());

using ranges::KeyRange;
using ranges::KeyValue;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using testing::TestDatabase;
using testing::TrickyStrings;

JobRecord SampleJob(const std::string& name) {
  JobRecord job;
  job.name = name;
  job.plan_hash = "sha256:abc";
  job.plan_text = "version: 1\nthrottle: { application: off }\nname: " + name + "\n";
  job.plan_file = "plans/" + name + ".yaml";
  job.estimated_rows = 123456;
  return job;
}

std::vector<KeyRange> SampleRanges() {
  return {
      {1, std::nullopt, KeyValue{"tenant \"a\"", "100"}},
      {2, KeyValue{"tenant \"a\"", "100"}, KeyValue{"b,{c}\\d", ""}},
      {3, KeyValue{"b,{c}\\d", ""}, KeyValue{"é日本🙂", "NULL"}},
      {4, KeyValue{"é日本🙂", "NULL"}, std::nullopt},
  };
}

TEST(JobStoreTest, EnsureSchemaCreatesOnceAndIsIdempotent) {
  TestDatabase db;
  JobStore store(db.conn());
  ASSERT_OK_AND_ASSIGN(bool exists_before, store.Exists());
  EXPECT_FALSE(exists_before);
  ASSERT_OK_AND_ASSIGN(std::string schemas, db.QueryValue("SELECT count(*) FROM "
                                                          "pg_catalog.pg_namespace WHERE "
                                                          "nspname = 'pgbackfill'"));
  EXPECT_EQ(schemas, "0") << "Exists() must not create anything";

  ASSERT_OK(store.EnsureSchema());
  ASSERT_OK_AND_ASSIGN(bool exists_after, store.Exists());
  EXPECT_TRUE(exists_after);
  ASSERT_OK_AND_ASSIGN(int version, store.Version());
  EXPECT_EQ(version, kCurrentVersion);
  EXPECT_EQ(store.KnownVersion(), kCurrentVersion);

  ASSERT_OK_AND_ASSIGN(
      std::string xmin_before,
      db.QueryValue("SELECT xmin::text || ':' || version FROM pgbackfill.store_version"));
  ASSERT_OK(store.EnsureSchema());
  ASSERT_OK(store.EnsureSchema());
  ASSERT_OK_AND_ASSIGN(
      std::string xmin_after,
      db.QueryValue("SELECT xmin::text || ':' || version FROM pgbackfill.store_version"));
  EXPECT_EQ(xmin_before, xmin_after) << "a current store is not written to";
  ASSERT_OK_AND_ASSIGN(std::string rows,
                       db.QueryValue("SELECT count(*) FROM pgbackfill.store_version"));
  EXPECT_EQ(rows, "1");
  for (const char* table : {"pgbackfill.jobs", "pgbackfill.ranges", "pgbackfill.store_version"}) {
    ASSERT_OK_AND_ASSIGN(std::string present,
                         db.QueryValue("SELECT pg_catalog.to_regclass($1) IS NOT NULL", {table}));
    EXPECT_EQ(present, "t") << table;
  }
}

TEST(JobStoreTest, ConcurrentEnsureSchemaBothSucceed) {
  // Several rounds on fresh databases: the race window (both see no store, both try to create it)
  // is small, so one round could pass by luck.
  for (int round = 0; round < 5; ++round) {
    TestDatabase db("round" + std::to_string(round));
    constexpr int kProcesses = 3;
    std::vector<absl::Status> results(kProcesses);
    std::latch start(kProcesses);
    std::vector<std::thread> threads;
    for (int i = 0; i < kProcesses; ++i) {
      threads.emplace_back([&, i] {
        auto conn = pg::Connection::Connect(db.dsn());
        if (!conn.ok()) {
          results[static_cast<size_t>(i)] = conn.status();
          start.count_down();
          return;
        }
        JobStore store(*conn);
        start.arrive_and_wait();
        results[static_cast<size_t>(i)] = store.EnsureSchema();
      });
    }
    for (std::thread& thread : threads) thread.join();
    for (const absl::Status& status : results) EXPECT_OK(status) << "round " << round;
    ASSERT_OK_AND_ASSIGN(std::string version, db.QueryValue("SELECT string_agg(version::text, ',') "
                                                            "FROM pgbackfill.store_version"));
    EXPECT_EQ(version, std::to_string(kCurrentVersion)) << "one row, the current version";
  }
}

TEST(JobStoreTest, RefusesAStoreNewerThanThisBuild) {
  TestDatabase db;
  JobStore store(db.conn());
  ASSERT_OK(store.EnsureSchema());
  ASSERT_OK(db.ExecScript("UPDATE pgbackfill.store_version SET version = 99"));
  absl::Status status = store.EnsureSchema();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(std::string(status.message()),
              HasSubstr(absl::StrCat("job store version 99 is newer than this pgbackfill (knows ",
                                     kCurrentVersion, "): upgrade pgbackfill")));
}

TEST(JobStoreTest, MigratesAnOlderStoreStepByStep) {
  TestDatabase db;
  // A step after this build's last one, as the next release would append it.
  const int next = SchemaSteps().back().version + 1;
  std::vector<SchemaStep> newer = SchemaSteps();
  newer.push_back({next,
                   "ALTER TABLE pgbackfill.jobs ADD COLUMN note text;"
                   "CREATE TABLE pgbackfill.notes (job_name text PRIMARY KEY"
                   " REFERENCES pgbackfill.jobs (name) ON DELETE CASCADE, command text);"});

  JobStore old_store(db.conn());
  ASSERT_OK(old_store.EnsureSchema());
  ASSERT_OK(old_store.CreateJob(SampleJob("kept"), SampleRanges()));

  JobStore new_store(db.conn(), newer);
  EXPECT_EQ(new_store.KnownVersion(), next);
  ASSERT_OK(new_store.EnsureSchema());
  ASSERT_OK_AND_ASSIGN(int version, new_store.Version());
  EXPECT_EQ(version, next);
  ASSERT_OK(db.ExecScript("INSERT INTO pgbackfill.notes VALUES ('kept', 'pause')"));
  ASSERT_OK_AND_ASSIGN(auto kept, new_store.LoadJob("kept"));
  EXPECT_TRUE(kept.has_value()) << "migration keeps existing jobs";

  // The old build now refuses the store rather than writing to a schema it does not know.
  absl::Status refused = old_store.EnsureSchema();
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition) << refused;
  EXPECT_THAT(std::string(refused.message()),
              HasSubstr("version " + std::to_string(next) + " is newer"));

  // A fresh database gets every step in one go.
  TestDatabase fresh("fresh");
  JobStore fresh_store(fresh.conn(), newer);
  ASSERT_OK(fresh_store.EnsureSchema());
  ASSERT_OK_AND_ASSIGN(std::string has_note,
                       fresh.QueryValue("SELECT count(*) FROM pg_catalog.pg_attribute WHERE "
                                        "attrelid = 'pgbackfill.jobs'::regclass AND "
                                        "attname = 'note'"));
  EXPECT_EQ(has_note, "1");
}

TEST(JobStoreTest, FailedStepLeavesTheStoreAsItWas) {
  TestDatabase db;
  const int next = SchemaSteps().back().version + 1;
  std::vector<SchemaStep> broken = SchemaSteps();
  broken.push_back({next, "ALTER TABLE pgbackfill.jobs ADD COLUMN ok text; SELECT 1/0;"});
  JobStore old_store(db.conn());
  ASSERT_OK(old_store.EnsureSchema());
  JobStore store(db.conn(), broken);
  absl::Status status = store.EnsureSchema();
  EXPECT_THAT(std::string(status.message()), HasSubstr("schema version " + std::to_string(next)));
  ASSERT_OK_AND_ASSIGN(int version, old_store.Version());
  EXPECT_EQ(version, next - 1);
  ASSERT_OK_AND_ASSIGN(std::string columns,
                       db.QueryValue("SELECT count(*) FROM pg_catalog.pg_attribute WHERE "
                                     "attrelid = 'pgbackfill.jobs'::regclass AND attname = 'ok'"));
  EXPECT_EQ(columns, "0") << "the step's DDL is rolled back with it";
  EXPECT_OK(db.ExecScript("SELECT 1")) << "the session is usable after the failed migration";
}

// Version 1 as released: the store a pgbackfill from before live control left behind.
std::vector<SchemaStep> V1Steps() { return {SchemaSteps().front()}; }

TEST(JobStoreTest, MigratesAV1StoreToLiveControlKeepingJobs) {
  TestDatabase db;
  JobStore v1(db.conn(), V1Steps());
  ASSERT_OK(v1.EnsureSchema());
  ASSERT_OK(v1.CreateJob(SampleJob("old"), SampleRanges()));
  ASSERT_OK(v1.MarkStarted("old", 77, "host-old"));
  ASSERT_OK(v1.FinishJob("old", "interrupted", "killed"));
  ASSERT_OK(v1.CreateJob(SampleJob("other"), {}));

  // This build reads a v1 store without changing it (`status` creates nothing): defaults.
  JobStore store(db.conn());
  ASSERT_OK_AND_ASSIGN(std::optional<JobRecord> before, store.LoadJob("old"));
  ASSERT_TRUE(before.has_value());
  EXPECT_EQ(before->control, "run");
  EXPECT_EQ(before->control_by, "");
  EXPECT_EQ(before->control_at, "");
  EXPECT_THAT(before->settings, IsEmpty());
  ASSERT_OK_AND_ASSIGN(int still_v1, store.Version());
  EXPECT_EQ(still_v1, 1);
  absl::StatusOr<JobControl> too_old = store.LoadControl("old");
  EXPECT_EQ(too_old.status().code(), absl::StatusCode::kFailedPrecondition) << too_old.status();
  EXPECT_THAT(std::string(too_old.status().message()), HasSubstr("version 1"));
  EXPECT_EQ(store.SetControl("old", "pause", "me").code(), absl::StatusCode::kFailedPrecondition);

  ASSERT_OK(store.EnsureSchema());
  ASSERT_OK_AND_ASSIGN(int version, store.Version());
  EXPECT_EQ(version, kCurrentVersion);
  ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> jobs, store.ListJobs());
  ASSERT_EQ(jobs.size(), 2u) << "migration keeps every job";
  const JobRecord& old = jobs[0];
  EXPECT_EQ(old.name, "old");
  EXPECT_EQ(old.state, "interrupted");
  EXPECT_EQ(old.pid, 77);
  EXPECT_EQ(old.host, "host-old");
  EXPECT_EQ(old.last_error, "killed");
  EXPECT_EQ(old.control, "run");
  EXPECT_EQ(old.control_by, "");
  EXPECT_EQ(old.control_at, "");
  EXPECT_THAT(old.settings, IsEmpty());
  ASSERT_OK_AND_ASSIGN(std::vector<RangeRecord> ranges, store.LoadRanges("old"));
  EXPECT_EQ(ranges.size(), SampleRanges().size());
  ASSERT_OK_AND_ASSIGN(JobControl control, store.LoadControl("other"));
  EXPECT_EQ(control.control, "run");
  EXPECT_THAT(control.settings, IsEmpty());

  // The v1 handle (an older process still attached) reads the new columns too.
  ASSERT_OK(store.SetControl("old", "pause", "me"));
  ASSERT_OK_AND_ASSIGN(std::optional<JobRecord> via_v1, v1.LoadJob("old"));
  EXPECT_EQ(via_v1->control, "pause");
  EXPECT_EQ(v1.EnsureSchema().code(), absl::StatusCode::kFailedPrecondition)
      << "a v1 build refuses the upgraded store";
}

TEST(JobStoreTest, ControlAndSettingsRoundTrip) {
  TestDatabase db;
  JobStore store(db.conn());
  ASSERT_OK(store.EnsureSchema());
  ASSERT_OK(store.CreateJob(SampleJob("ctl"), SampleRanges()));
  ASSERT_OK(store.CreateJob(SampleJob("bystander"), {}));

  ASSERT_OK_AND_ASSIGN(JobControl control, store.LoadControl("ctl"));
  EXPECT_EQ(control.control, "run");
  EXPECT_EQ(control.control_by, "");
  EXPECT_EQ(control.control_at, "");
  EXPECT_THAT(control.settings, IsEmpty());

  ASSERT_OK(store.SetControl("ctl", "pause", "alice@db1 pid 123"));
  ASSERT_OK_AND_ASSIGN(control, store.LoadControl("ctl"));
  EXPECT_EQ(control.control, "pause");
  EXPECT_EQ(control.control_by, "alice@db1 pid 123");
  EXPECT_THAT(control.control_at,
              ::testing::MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\\.[0-9]{6}Z"));
  ASSERT_OK_AND_ASSIGN(std::optional<JobRecord> job, store.LoadJob("ctl"));
  EXPECT_EQ(job->control, "pause");
  EXPECT_EQ(job->control_by, "alice@db1 pid 123");
  EXPECT_EQ(job->control_at, control.control_at);
  EXPECT_EQ(job->state, "pending") << "control does not change the state";

  // Settings merge key by key; values travel as text, whatever they hold.
  const std::string tricky = "say \"hi\" \\ é日本🙂 {x}";
  ASSERT_OK(store.MergeSettings("ctl", {{"workers", "2"}, {"throttle.max_replica_lag", "10s"}},
                                "bob@db2 pid 9"));
  ASSERT_OK(
      store.MergeSettings("ctl", {{"workers", "3"}, {"batch.target", tricky}}, "carol@db3 pid 7"));
  ASSERT_OK_AND_ASSIGN(control, store.LoadControl("ctl"));
  EXPECT_EQ(control.settings,
            (std::map<std::string, std::string>{
                {"batch.target", tricky}, {"throttle.max_replica_lag", "10s"}, {"workers", "3"}}));
  EXPECT_EQ(control.control, "pause") << "settings leave control alone";
  EXPECT_EQ(control.control_by, "carol@db3 pid 7");
  ASSERT_OK_AND_ASSIGN(std::string stored, db.QueryValue("SELECT settings->>'workers' FROM "
                                                         "pgbackfill.jobs WHERE name = 'ctl'"));
  EXPECT_EQ(stored, "3") << "a jsonb object of text values";
  ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> jobs, store.ListJobs());
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_THAT(jobs[0].settings, IsEmpty()) << jobs[0].name;
  EXPECT_EQ(jobs[1].settings.size(), 3u) << jobs[1].name;

  // ClearAbort turns abort into run and nothing else.
  ASSERT_OK(store.ClearAbort("ctl"));
  ASSERT_OK_AND_ASSIGN(control, store.LoadControl("ctl"));
  EXPECT_EQ(control.control, "pause") << "a paused job starts paused";
  ASSERT_OK(store.SetControl("ctl", "abort", "dave@db4 pid 1"));
  // The abort stands: a resume sent right after it must not undo it unseen.
  const absl::Status resumed = store.SetControl("ctl", "run", "frank@db6 pid 3");
  EXPECT_EQ(resumed.code(), absl::StatusCode::kFailedPrecondition) << resumed;
  EXPECT_THAT(std::string(resumed.message()), HasSubstr("aborted by dave@db4 pid 1"));
  // A run that started before the abort was asked does not clear it: the abort is for that run.
  ASSERT_OK(store.ClearAbort("ctl", "2000-01-01 00:00:00+00"));
  ASSERT_OK_AND_ASSIGN(control, store.LoadControl("ctl"));
  EXPECT_EQ(control.control, "abort");
  ASSERT_OK(store.ClearAbort("ctl"));
  ASSERT_OK_AND_ASSIGN(control, store.LoadControl("ctl"));
  EXPECT_EQ(control.control, "run");
  EXPECT_EQ(control.control_by, "dave@db4 pid 1") << "who aborted stays on record";
  EXPECT_EQ(control.settings.size(), 3u);
  ASSERT_OK(store.SetControl("ctl", "run", "erin@db5 pid 2"));
  ASSERT_OK_AND_ASSIGN(control, store.LoadControl("ctl"));
  EXPECT_EQ(control.control, "run");

  ASSERT_OK_AND_ASSIGN(control, store.LoadControl("bystander"));
  EXPECT_EQ(control.control, "run") << "other jobs are untouched";

  EXPECT_EQ(store.SetControl("ctl", "stop", "x").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(db.Exec("UPDATE pgbackfill.jobs SET control = 'stop'").ok())
      << "the CHECK constraint guards control";
  EXPECT_FALSE(db.Exec("UPDATE pgbackfill.jobs SET settings = '[1]'").ok())
      << "settings is always an object";
  EXPECT_EQ(store.LoadControl("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store.SetControl("nope", "pause", "x").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store.MergeSettings("nope", {{"workers", "1"}}, "x").code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store.ClearAbort("nope").code(), absl::StatusCode::kNotFound);
}

TEST(JobStoreTest, SettingsFromTwoSessionsBothStay) {
  // `||` merges on the server: two operators changing different keys never lose one.
  TestDatabase db;
  JobStore store(db.conn());
  ASSERT_OK(store.EnsureSchema());
  ASSERT_OK(store.CreateJob(SampleJob("shared"), {}));
  ASSERT_OK_AND_ASSIGN(pg::Connection other_conn, pg::Connection::Connect(db.dsn()));
  JobStore other(other_conn);
  ASSERT_OK(store.MergeSettings("shared", {{"workers", "2"}}, "a"));
  ASSERT_OK(other.MergeSettings("shared", {{"throttle.lock_timeout", "1s"}}, "b"));
  ASSERT_OK_AND_ASSIGN(JobControl merged, store.LoadControl("shared"));
  EXPECT_EQ(merged.settings, (std::map<std::string, std::string>{{"throttle.lock_timeout", "1s"},
                                                                 {"workers", "2"}}));
}

TEST(JobStoreTest, CreateAndLoadRoundTrip) {
  TestDatabase db;
  JobStore store(db.conn());
  ASSERT_OK(store.EnsureSchema());
  ASSERT_OK_AND_ASSIGN(auto missing, store.LoadJob("nope"));
  EXPECT_FALSE(missing.has_value());

  // The key value columns themselves hold every tricky string, as one composite value per range.
  std::vector<KeyRange> ranges = SampleRanges();
  const std::vector<std::string>& tricky = TrickyStrings();
  for (size_t i = 0; i + 1 < tricky.size(); ++i) {
    const int id = static_cast<int>(ranges.size()) + 1;
    ranges.push_back({id, KeyValue{tricky[i], tricky[i + 1]}, KeyValue{tricky[i + 1], tricky[i]}});
  }

  JobRecord job = SampleJob("users-split-name");
  job.plan_text = "set:\n  a: 'it''s'\n  b: \"\\\\\"\n";
  ASSERT_OK(store.CreateJob(job, ranges));

  ASSERT_OK_AND_ASSIGN(std::optional<JobRecord> loaded, store.LoadJob(job.name));
  ASSERT_TRUE(loaded.has_value());
  EXPECT_EQ(loaded->name, job.name);
  EXPECT_EQ(loaded->plan_hash, job.plan_hash);
  EXPECT_EQ(loaded->plan_text, job.plan_text);
  EXPECT_EQ(loaded->plan_file, job.plan_file);
  EXPECT_EQ(loaded->state, "pending");
  EXPECT_EQ(loaded->phase, "backfill");
  EXPECT_EQ(loaded->estimated_rows, 123456);
  EXPECT_EQ(loaded->rows_done, 0);
  EXPECT_EQ(loaded->retries, 0);
  EXPECT_EQ(loaded->errors, 0);
  EXPECT_EQ(loaded->pid, 0);
  EXPECT_EQ(loaded->host, "");
  EXPECT_EQ(loaded->last_error, "");
  EXPECT_THAT(loaded->created_at,
              ::testing::MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\\.[0-9]{6}Z"));
  EXPECT_EQ(loaded->updated_at, loaded->created_at);
  EXPECT_EQ(loaded->started_at, "");
  EXPECT_EQ(loaded->finished_at, "");
  EXPECT_EQ(loaded->control, "run");
  EXPECT_EQ(loaded->control_by, "");
  EXPECT_EQ(loaded->control_at, "");
  EXPECT_THAT(loaded->settings, IsEmpty());

  ASSERT_OK_AND_ASSIGN(std::vector<RangeRecord> stored, store.LoadRanges(job.name));
  ASSERT_EQ(stored.size(), ranges.size());
  for (size_t i = 0; i < ranges.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "range " << ranges[i].id);
    EXPECT_EQ(stored[i].id, ranges[i].id);
    EXPECT_EQ(stored[i].lower, ranges[i].lower);
    EXPECT_EQ(stored[i].upper, ranges[i].upper);
    EXPECT_EQ(stored[i].done_upto, std::nullopt);
    EXPECT_EQ(stored[i].rows_done, 0);
    EXPECT_EQ(stored[i].state, "pending");
  }

  // Open ends are SQL NULL, and the server sees the composite values element by element.
  ASSERT_OK_AND_ASSIGN(std::string open_ends,
                       db.QueryValue("SELECT count(*) FROM pgbackfill.ranges "
                                     "WHERE lower IS NULL OR upper IS NULL"));
  EXPECT_EQ(open_ends, "2");
  ASSERT_OK_AND_ASSIGN(std::string second,
                       db.QueryValue("SELECT upper[1] FROM pgbackfill.ranges WHERE range_id = 2"));
  EXPECT_EQ(second, "b,{c}\\d");

  // The batch statement writes done_upto as ARRAY[key::text, ...]; that reads back too.
  ASSERT_OK(
      db.Exec("UPDATE pgbackfill.ranges SET done_upto = ARRAY[$1, $2], rows_done = 7, "
              "state = 'running' WHERE job_name = $3 AND range_id = 2",
              {"say \"hi\"", "", job.name}));
  ASSERT_OK_AND_ASSIGN(stored, store.LoadRanges(job.name));
  EXPECT_EQ(stored[1].done_upto, (KeyValue{"say \"hi\"", ""}));
  EXPECT_EQ(stored[1].rows_done, 7);
  EXPECT_EQ(stored[1].state, "running");

  ASSERT_OK_AND_ASSIGN(std::vector<RangeRecord> none, store.LoadRanges("nope"));
  EXPECT_THAT(none, IsEmpty());
}

TEST(JobStoreTest, BatchStatementAdvancesTheStoredCheckpoint) {
  // batch::BuildUpdateBatch writes pgbackfill.ranges directly; its columns and types must be ours.
  TestDatabase db;
  JobStore store(db.conn());
  ASSERT_OK(store.EnsureSchema());
  ASSERT_OK(db.ExecScript(
      "CREATE TABLE public.t (tenant text, id int, v int, PRIMARY KEY (tenant, id));"
      "INSERT INTO public.t SELECT 'te,\"n' || (g % 2), g, 0 FROM generate_series(1, 10) g;"));
  ASSERT_OK(store.CreateJob(SampleJob("batch"), {{1, std::nullopt, std::nullopt}}));

  batch::UpdateBatchSpec spec;
  spec.table = {"public", "t"};
  spec.key = {{"tenant", "text"}, {"id", "integer"}};
  spec.set = {{"v", "v + 1", 1}};
  const sql::RangeEnds open{false, false};
  const batch::BatchParams p = batch::UpdateBatchParams(spec.key.size(), open);
  std::vector<pg::Param> params(static_cast<size_t>(p.count));
  params[static_cast<size_t>(p.rows - 1)] = "4";
  params[static_cast<size_t>(p.job - 1)] = "batch";
  params[static_cast<size_t>(p.range - 1)] = "1";
  ASSERT_OK(db.Exec(batch::BuildUpdateBatch(spec, open), params));

  ASSERT_OK_AND_ASSIGN(std::vector<RangeRecord> stored, store.LoadRanges("batch"));
  ASSERT_EQ(stored.size(), 1u);
  ASSERT_OK_AND_ASSIGN(std::string fourth,
                       db.QueryValue("SELECT ARRAY[tenant, id::text]::text FROM public.t "
                                     "ORDER BY tenant, id OFFSET 3 LIMIT 1"));
  ASSERT_OK_AND_ASSIGN(auto expected, ParseTextArray(fourth));
  EXPECT_EQ(stored[0].done_upto, expected);
  EXPECT_EQ(stored[0].rows_done, 4);
  EXPECT_EQ(stored[0].state, "running");
  ASSERT_OK(store.RecordProgress("batch", 0, 0, ""));
  ASSERT_OK_AND_ASSIGN(auto job, store.LoadJob("batch"));
  EXPECT_EQ(job->rows_done, 4);
}

TEST(JobStoreTest, JobWithoutRangesAndListing) {
  TestDatabase db;
  JobStore store(db.conn());
  ASSERT_OK(store.EnsureSchema());
  ASSERT_OK(store.CreateJob(SampleJob("b-job"), {}));
  JobRecord second = SampleJob("a-job");
  second.state = "running";
  second.phase = "verify";
  second.plan_file = "";
  ASSERT_OK(store.CreateJob(second, SampleRanges()));
  ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> jobs, store.ListJobs());
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0].name, "a-job");
  EXPECT_EQ(jobs[0].state, "running");
  EXPECT_EQ(jobs[0].phase, "verify");
  EXPECT_EQ(jobs[0].plan_file, "");
  EXPECT_EQ(jobs[1].name, "b-job");
  ASSERT_OK_AND_ASSIGN(std::string null_file,
                       db.QueryValue("SELECT plan_file IS NULL FROM pgbackfill.jobs "
                                     "WHERE name = 'a-job'"));
  EXPECT_EQ(null_file, "t");

  // The CHECK constraint guards the states.
  JobRecord bad = SampleJob("bad");
  bad.state = "sleeping";
  EXPECT_FALSE(store.CreateJob(bad, {}).ok());
}

TEST(JobStoreTest, DuplicateCreateIsAlreadyExistsAndChangesNothing) {
  TestDatabase db;
  JobStore store(db.conn());
  ASSERT_OK(store.EnsureSchema());
  ASSERT_OK(store.CreateJob(SampleJob("dup"), SampleRanges()));
  JobRecord again = SampleJob("dup");
  again.plan_hash = "sha256:other";
  absl::Status status = store.CreateJob(again, {{1, std::nullopt, std::nullopt}});
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("'dup'"));
  ASSERT_OK_AND_ASSIGN(auto job, store.LoadJob("dup"));
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->plan_hash, "sha256:abc");
  ASSERT_OK_AND_ASSIGN(std::vector<RangeRecord> stored, store.LoadRanges("dup"));
  EXPECT_EQ(stored.size(), SampleRanges().size());
  EXPECT_OK(store.CreateJob(SampleJob("other"), {})) << "the session is usable afterwards";
}

// Two runs adding the ranges of a job `expand` created: the one that waited for the other's
// lock finds its ranges and says so, rather than insert the same range ids again. Made
// deterministic by holding the job row's lock by hand while the second AddRanges waits for it.
TEST(JobStoreTest, AddRangesThatWaitedForAnotherFindsItsRanges) {
  TestDatabase db;
  JobStore store(db.conn());
  ASSERT_OK(store.EnsureSchema());
  ASSERT_OK(store.CreateJob(SampleJob("racing"), {}));
  ASSERT_OK_AND_ASSIGN(pg::Connection first, pg::Connection::Connect(db.dsn()));
  ASSERT_OK(first.ExecScript("BEGIN"));
  ASSERT_OK(first.Exec("SELECT FROM pgbackfill.jobs WHERE name = 'racing' FOR UPDATE").status());

  absl::Status second_added;
  std::thread second([&] {
    auto conn = pg::Connection::Connect(db.dsn());
    if (!conn.ok()) {
      second_added = conn.status();
      return;
    }
    second_added = JobStore(*conn).AddRanges("racing", SampleRanges());
  });
  ASSERT_TRUE(testing::Eventually([&] {
    absl::StatusOr<std::string> waiting = db.QueryValue(
        "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND datname = pg_catalog.current_database()");
    return waiting.ok() && *waiting == "1";
  })) << "the second AddRanges should wait for the job row";
  // The first run's ranges (ids 1-4, as SampleRanges), committed with the lock's release.
  ASSERT_OK(
      first.ExecScript("INSERT INTO pgbackfill.ranges (job_name, range_id)"
                       " SELECT 'racing', g FROM generate_series(1, 4) g; COMMIT"));
  second.join();
  EXPECT_EQ(second_added.code(), absl::StatusCode::kAlreadyExists) << second_added;
  ASSERT_OK_AND_ASSIGN(std::vector<RangeRecord> stored, store.LoadRanges("racing"));
  EXPECT_EQ(stored.size(), SampleRanges().size()) << "the first run's ranges, once";
}

TEST(JobStoreTest, DeleteJobTakesItsRangesAlong) {
  TestDatabase db;
  JobStore store(db.conn());
  ASSERT_OK(store.EnsureSchema());
  ASSERT_OK(store.CreateJob(SampleJob("gone"), SampleRanges()));
  ASSERT_OK(store.CreateJob(SampleJob("stays"), SampleRanges()));
  ASSERT_OK(store.DeleteJob("gone"));
  ASSERT_OK_AND_ASSIGN(auto job, store.LoadJob("gone"));
  EXPECT_FALSE(job.has_value());
  ASSERT_OK_AND_ASSIGN(std::string left, db.QueryValue("SELECT count(*) FROM pgbackfill.ranges "
                                                       "WHERE job_name = 'gone'"));
  EXPECT_EQ(left, "0");
  ASSERT_OK_AND_ASSIGN(std::vector<RangeRecord> others, store.LoadRanges("stays"));
  EXPECT_EQ(others.size(), SampleRanges().size());
  EXPECT_EQ(store.DeleteJob("gone").code(), absl::StatusCode::kNotFound);
}

TEST(JobStoreTest, StateTransitionsAndBookkeeping) {
  TestDatabase db;
  JobStore store(db.conn());
  ASSERT_OK(store.EnsureSchema());
  ASSERT_OK(store.CreateJob(SampleJob("job"), SampleRanges()));

  ASSERT_OK(store.MarkStarted("job", 4242, "host-a"));
  ASSERT_OK_AND_ASSIGN(auto job, store.LoadJob("job"));
  EXPECT_EQ(job->state, "running");
  EXPECT_EQ(job->pid, 4242);
  EXPECT_EQ(job->host, "host-a");
  EXPECT_THAT(job->started_at, Not(IsEmpty()));
  const std::string first_start = job->started_at;

  // Batches advance the ranges; RecordProgress folds them into the job.
  ASSERT_OK(db.ExecScript("UPDATE pgbackfill.ranges SET rows_done = range_id * 100"));
  ASSERT_OK(store.RecordProgress("job", 2, 1, "replica lag 6s > 5s"));
  ASSERT_OK_AND_ASSIGN(job, store.LoadJob("job"));
  EXPECT_EQ(job->rows_done, 1000);
  EXPECT_EQ(job->retries, 2);
  EXPECT_EQ(job->errors, 1);
  EXPECT_EQ(job->throttle_reason, "replica lag 6s > 5s");
  EXPECT_GE(job->updated_at, job->started_at);

  ASSERT_OK(store.RecordProgress("job", 1, 0, ""));
  ASSERT_OK_AND_ASSIGN(job, store.LoadJob("job"));
  EXPECT_EQ(job->retries, 3);
  EXPECT_EQ(job->errors, 1);
  EXPECT_EQ(job->throttle_reason, "");

  ASSERT_OK(store.RecordProgress("job", 0, 0, "lock waiters"));
  ASSERT_OK(db.ExecScript("UPDATE pgbackfill.ranges SET rows_done = rows_done + 1"));
  ASSERT_OK(store.FinishJob("job", "interrupted", ""));
  ASSERT_OK_AND_ASSIGN(job, store.LoadJob("job"));
  EXPECT_EQ(job->state, "interrupted");
  EXPECT_EQ(job->rows_done, 1004);
  EXPECT_EQ(job->finished_at, "") << "an interrupted job is not finished";
  EXPECT_EQ(job->throttle_reason, "");

  ASSERT_OK(store.MarkStarted("job", 5151, "host-b"));
  ASSERT_OK(store.FinishJob("job", "failed", "division by zero (SQLSTATE 22012)"));
  ASSERT_OK_AND_ASSIGN(job, store.LoadJob("job"));
  EXPECT_EQ(job->state, "failed");
  EXPECT_EQ(job->started_at, first_start) << "started_at is the first start";
  EXPECT_EQ(job->pid, 5151);
  EXPECT_EQ(job->host, "host-b");
  EXPECT_EQ(job->last_error, "division by zero (SQLSTATE 22012)");
  EXPECT_THAT(job->finished_at, Not(IsEmpty()));

  ASSERT_OK(store.MarkStarted("job", 6, "host-c"));
  ASSERT_OK_AND_ASSIGN(job, store.LoadJob("job"));
  EXPECT_EQ(job->finished_at, "") << "a resumed job is no longer finished";
  ASSERT_OK(store.FinishJob("job", "done", ""));
  ASSERT_OK_AND_ASSIGN(job, store.LoadJob("job"));
  EXPECT_EQ(job->state, "done");
  EXPECT_EQ(job->last_error, "division by zero (SQLSTATE 22012)") << "kept for the record";
  EXPECT_THAT(job->finished_at, Not(IsEmpty()));

  EXPECT_EQ(store.FinishJob("job", "running", "").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store.MarkStarted("nope", 1, "h").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store.FinishJob("nope", "done", "").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store.RecordProgress("nope", 0, 0, "").code(), absl::StatusCode::kNotFound);
}

// Leases replace the session lock: a runner's lease holds while it renews it, from any session
// (nothing lives in the session that registered it), and ends when it is not renewed in time.
TEST(JobStoreTest, LeasesHoldWhileRenewedAndExpireWithoutAHeartbeat) {
  TestDatabase db;
  JobStore observer(db.conn());
  ASSERT_OK(observer.EnsureSchema());
  ASSERT_OK_AND_ASSIGN(std::vector<RunnerRecord> nobody, observer.ListRunners("job"));
  EXPECT_TRUE(nobody.empty());

  auto runner = [](std::string id, std::string kind, std::string host, int pid) {
    RunnerRecord record;
    record.id = std::move(id);
    record.kind = std::move(kind);
    record.host = std::move(host);
    record.pid = pid;
    return record;
  };
  const RunnerRecord first = runner("a:1:00000001@x", "run", "a", 1);
  const RunnerRecord second = runner("b:2:00000002@y", "contract", "b", 2);
  {
    // Registered on a session that then goes away, as a pooler's server connection would.
    ASSERT_OK_AND_ASSIGN(pg::Connection gone, pg::Connection::Connect(db.dsn()));
    JobStore store(gone);
    ASSERT_OK(store.RegisterRunner("job", first, absl::Seconds(60)));
  }
  ASSERT_OK(observer.RegisterRunner("job", second, absl::Milliseconds(300)));
  ASSERT_OK_AND_ASSIGN(std::vector<RunnerRecord> runners, observer.ListRunners("job"));
  ASSERT_EQ(runners.size(), 2u);
  EXPECT_EQ(runners[0].id, first.id);
  EXPECT_EQ(runners[0].kind, "run");
  EXPECT_EQ(runners[0].host, "a");
  EXPECT_EQ(runners[0].pid, 1);
  EXPECT_TRUE(runners[0].live) << "the lease outlives the session that took it";
  EXPECT_TRUE(runners[1].live);
  ASSERT_OK_AND_ASSIGN(bool renewed, observer.RenewRunner("job", first.id, absl::Seconds(60)));
  EXPECT_TRUE(renewed);

  absl::SleepFor(absl::Milliseconds(400));
  ASSERT_OK_AND_ASSIGN(runners, observer.ListRunners("job"));
  EXPECT_TRUE(runners[0].live);
  EXPECT_FALSE(runners[1].live) << "no heartbeat within its timeout: expired";
  ASSERT_OK_AND_ASSIGN(renewed, observer.RenewRunner("job", second.id, absl::Seconds(60)));
  EXPECT_FALSE(renewed) << "an expired lease is not renewed: others may own its ranges now";

  ASSERT_OK(observer.ExpireRunner("job", first.id));
  ASSERT_OK_AND_ASSIGN(runners, observer.ListRunners("job"));
  EXPECT_FALSE(runners[0].live) << "expired at once";
  ASSERT_OK(observer.UnregisterRunner("job", first.id));
  ASSERT_OK(observer.UnregisterRunner("job", second.id));
  ASSERT_OK_AND_ASSIGN(runners, observer.ListRunners("job"));
  EXPECT_TRUE(runners.empty());
}

// The runners list in the order they registered, also when the server's clock stepped back
// between two registrations (made here by a first registration dated an hour ahead): the
// phases decide which of two processes came first by this order.
TEST(JobStoreTest, RunnersListInTheOrderTheyRegisteredWhateverTheClockSays) {
  TestDatabase db;
  JobStore store(db.conn());
  ASSERT_OK(store.EnsureSchema());
  RunnerRecord early;
  early.id = "a:1:00000001@x";
  early.kind = "expand";
  RunnerRecord late = early;
  late.id = "b:2:00000002@x";
  ASSERT_OK(store.RegisterRunner("job", early, absl::Seconds(60)));
  ASSERT_OK(db.ExecScript("UPDATE pgbackfill.runners SET started_at = started_at + interval '1h'"));
  ASSERT_OK(store.RegisterRunner("job", late, absl::Seconds(60)));
  ASSERT_OK_AND_ASSIGN(std::vector<RunnerRecord> runners, store.ListRunners("job"));
  ASSERT_EQ(runners.size(), 2u);
  EXPECT_EQ(runners[0].id, early.id);
  EXPECT_EQ(runners[1].id, late.id);
}

// Ranges are taken one at a time, each by one runner: free ones first by id, never one another
// live runner owns or one locked by a batch in flight, and a dead runner's after its lease.
TEST(JobStoreTest, TakeRangeGivesEachRangeToOneRunnerAndADeadRunnersToAnother) {
  TestDatabase db;
  JobStore store(db.conn());
  ASSERT_OK(store.EnsureSchema());
  ASSERT_OK(store.CreateJob(SampleJob("job"), SampleRanges()));
  for (const char* id : {"a", "b"}) {
    RunnerRecord runner;
    runner.id = id;
    ASSERT_OK(store.RegisterRunner("job", runner, absl::Seconds(60)));
  }
  auto take = [&](const std::string& runner) -> int {
    absl::StatusOr<pg::Result> taken = db.Exec(TakeRangeSql(), {"job", runner});
    EXPECT_OK(taken.status());
    if (!taken.ok() || taken->Rows() == 0) return -1;
    return std::stoi(std::string(taken->Get(0, 0)));
  };
  const int ranges = static_cast<int>(SampleRanges().size());
  std::set<int> by_a;
  std::set<int> by_b;
  for (int i = 0; i < ranges; ++i) {
    const int id = take(i % 2 == 0 ? "a" : "b");
    ASSERT_GE(id, 0);
    (i % 2 == 0 ? by_a : by_b).insert(id);
  }
  EXPECT_EQ(static_cast<int>(by_a.size() + by_b.size()), ranges) << "no range twice";
  EXPECT_EQ(take("b"), -1) << "nothing free: a's ranges are a's while its lease holds, and b's "
                              "own are not taken again";

  ASSERT_OK(store.ExpireRunner("job", "a"));
  // One of a's ranges is locked by a batch still finishing: skipped, not waited for.
  ASSERT_OK_AND_ASSIGN(pg::Connection batch, pg::Connection::Connect(db.dsn()));
  ASSERT_OK(batch.ExecScript("BEGIN"));
  ASSERT_OK(batch
                .Exec("SELECT 1 FROM pgbackfill.ranges WHERE job_name = 'job' AND range_id = $1"
                      " FOR UPDATE",
                      {std::to_string(*by_a.begin())})
                .status());
  std::set<int> taken_over;
  for (int id = take("b"); id >= 0 && !taken_over.contains(id); id = take("b")) {
    taken_over.insert(id);
  }
  std::set<int> expected = by_a;
  expected.erase(*by_a.begin());
  EXPECT_EQ(taken_over, expected) << "the dead runner's ranges, but the one a batch has locked";
  ASSERT_OK(batch.ExecScript("ROLLBACK"));
  EXPECT_EQ(take("b"), *by_a.begin());
}

TEST(JobStoreTextArrayTest, AgreesWithTheServer) {
  TestDatabase db;
  const std::vector<std::string>& tricky = TrickyStrings();
  const std::optional<std::string> literal = TextArrayLiteral(tricky);

  // The server's parser reads our literal as exactly the inputs, element by element.
  ASSERT_OK_AND_ASSIGN(pg::Result elements, db.Exec("SELECT e FROM pg_catalog.unnest($1::text[]) "
                                                    "WITH ORDINALITY AS u(e, n) ORDER BY n",
                                                    {literal}));
  ASSERT_EQ(static_cast<size_t>(elements.Rows()), tricky.size());
  for (int i = 0; i < elements.Rows(); ++i) {
    EXPECT_FALSE(elements.IsNull(i, 0));
    EXPECT_EQ(elements.Get(i, 0), tricky[static_cast<size_t>(i)]) << "element " << i;
  }

  // Our parser reads the server's printing of our literal...
  ASSERT_OK_AND_ASSIGN(pg::Result echoed, db.Exec("SELECT $1::text[]", {literal}));
  ASSERT_OK_AND_ASSIGN(auto from_echo, ParseTextArray(echoed.GetOptional(0, 0)));
  EXPECT_EQ(from_echo, std::optional<KeyValue>(tricky)) << echoed.Get(0, 0);

  // ...and of ARRAY[...] built from the inputs as separate parameters, as the batch builds
  // done_upto.
  std::string array_sql = "SELECT ARRAY[";
  std::vector<pg::Param> params;
  for (size_t i = 0; i < tricky.size(); ++i) {
    if (i > 0) array_sql += ", ";
    array_sql += "$" + std::to_string(i + 1) + "::text";
    params.push_back(tricky[i]);
  }
  array_sql += "]::text[]";
  ASSERT_OK_AND_ASSIGN(pg::Result built, db.Exec(array_sql, params));
  ASSERT_OK_AND_ASSIGN(auto from_array, ParseTextArray(built.GetOptional(0, 0)));
  EXPECT_EQ(from_array, std::optional<KeyValue>(tricky)) << built.Get(0, 0);

  // Hand-written literals with bare elements read as array_in reads them.
  for (const char* hand :
       {"{a, b c ,\\ d\\ ,\"\"}", "{ x }", "{\\NULL,\"NULL\"}", "{}", "{\"a\\\\b\",c\\,d}"}) {
    ASSERT_OK_AND_ASSIGN(pg::Result server, db.Exec("SELECT e FROM pg_catalog.unnest($1::text[]) "
                                                    "WITH ORDINALITY AS u(e, n) ORDER BY n",
                                                    {std::string(hand)}));
    KeyValue expected;
    for (int i = 0; i < server.Rows(); ++i) expected.emplace_back(server.Get(i, 0));
    ASSERT_OK_AND_ASSIGN(auto ours, ParseTextArray(std::string(hand)));
    EXPECT_EQ(ours, std::optional<KeyValue>(expected)) << hand;
  }

  // One element at a time, so a failure names the string.
  for (const std::string& s : tricky) {
    ASSERT_OK_AND_ASSIGN(pg::Result one, db.Exec("SELECT ARRAY[$1::text]", {s}));
    ASSERT_OK_AND_ASSIGN(auto parsed, ParseTextArray(one.GetOptional(0, 0)));
    EXPECT_EQ(parsed, std::optional<KeyValue>(KeyValue{s})) << one.Get(0, 0);
  }
}

}  // namespace
}  // namespace pgbackfill::checkpoint
