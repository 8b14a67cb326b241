// The probes of what the application feels (throttle/probes.h: statement latency, session load,
// commit latency, slots, archiver, throttle.command) against the real cluster, each test in its
// own database. scripts/pg-cluster preloads pg_stat_statements (track = top) and makes archiving
// fail while $PGBACKFILL_TEST_ARCHIVE_DIR/fail exists.
//
// Other test processes share the server: readings that count the whole server (session load,
// slots, the archiver) are checked "eventually", with exact values only where nobody else can
// change them. Nothing here asserts how fast a probe is.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/use_future.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <thread>

#include "absl/strings/str_cat.h"
#include "pgbackfill/checkpoint/job_store.h"
#include "pgbackfill/pg/connection.h"
#include "pgbackfill/throttle/probes.h"
#include "support/status_testing.h"
#include "support/probe_fixture.h"
#include "support/test_cluster.h"

namespace pgbackfill::throttle {
namespace {

using ::testing::HasSubstr;
using testing::TestDatabase;

constexpr absl::Duration kEventually = absl::Seconds(30);

std::string Message(const absl::Status& status) { return std::string(status.message()); }

// A session of "the application": named so that the session load does not take it for ours.
std::string AppDsn(const TestDatabase& db, const std::string& name = "app") {
  return absl::StrCat(db.dsn(), " application_name=", name);
}

// A statement running on its own session and thread until Stop() cancels it.
class Busy {
 public:
  Busy(const std::string& dsn, std::string sql) {
    absl::StatusOr<pg::Connection> conn = pg::Connection::Connect(dsn);
    if (!conn.ok()) throw std::runtime_error(std::string(conn.status().message()));
    conn_.emplace(*std::move(conn));
    pid_ = conn_->BackendPid();
    thread_ = std::thread([this, sql = std::move(sql)] { (void)conn_->Exec(sql); });
  }
  ~Busy() { Stop(); }
  int pid() const { return pid_; }
  void Stop() {
    if (!thread_.joinable()) return;
    if (absl::StatusOr<pg::Connection> killer = pg::Connection::Connect(testing::ClusterDsn());
        killer.ok()) {
      (void)killer->Exec("SELECT pg_catalog.pg_cancel_backend($1::int)", {std::to_string(pid_)});
    }
    thread_.join();
  }

 private:
  std::optional<pg::Connection> conn_;
  int pid_ = 0;
  std::thread thread_;
};

class AppProbeTest : public testing::ProbeFixture {
 protected:
  // Samples until `done` or kEventually, running io_ between rounds (not sleeping): the session
  // load's looks run on timers between rounds, as in the runner.
  Samples SampleUntil(Prober& prober, const std::function<bool(const Samples&)>& done,
                      std::vector<int> our_pids = {},
                      const std::function<void()>& between = nullptr) {
    const absl::Time deadline = absl::Now() + kEventually;
    while (true) {
      Samples samples = Sample(prober, our_pids);
      if (done(samples) || absl::Now() > deadline) return samples;
      if (between) between();
      Idle(absl::Milliseconds(100));
    }
  }
};

TEST_F(AppProbeTest, StatementLatencySeesTheApplicationAndNotPgbackfill) {
  ASSERT_OK(db_.ExecScript(
      "CREATE EXTENSION pg_stat_statements;"
      // A batch-like statement: ours name the job store schema.
      "CREATE SCHEMA pgbackfill; CREATE TABLE pgbackfill.t (x int); INSERT INTO pgbackfill.t "
      "VALUES (1);"));
  ProbeConfig config = Config();
  config.statement_latency = true;
  // Every other probe too: none of their statements may show up as the application's.
  config.session_load = true;
  config.slots = true;
  config.archiver = true;
  config.custom_sql = "SELECT 1";
  // Connected before the first round: whatever a connect runs is not the workload.
  ASSERT_OK_AND_ASSIGN(pg::Connection app, pg::Connection::Connect(AppDsn(db_)));
  std::unique_ptr<Prober> prober = Create(config);
  ASSERT_NE(prober, nullptr);

  Samples primed = Sample(*prober);
  ASSERT_OK(primed.statement_latency);
  EXPECT_EQ(primed.statement_latency->calls, 0) << "the first round only primes";
  Samples idle = Sample(*prober);
  ASSERT_OK(idle.statement_latency);
  EXPECT_EQ(idle.statement_latency->calls, 0)
      << "the probes' own statements are not counted: " << idle.statement_latency->worst_query;

  for (int i = 0; i < 4; ++i) ASSERT_OK(app.Exec("SELECT pg_catalog.pg_sleep(0.05)").status());
  ASSERT_OK(app.Exec("SELECT pg_catalog.pg_sleep(0.5) FROM pgbackfill.t").status());

  // The app's statements are done before this round, so one round sees them all.
  Samples samples = Sample(*prober);
  ASSERT_OK(samples.statement_latency);
  const StatementLatency& latency = *samples.statement_latency;
  EXPECT_EQ(latency.calls, 4);
  EXPECT_GE(latency.mean, absl::Milliseconds(45));
  EXPECT_LT(latency.mean, absl::Milliseconds(150)) << "the 0.5 s batch-like statement is left out";
  EXPECT_GE(latency.worst_busy, absl::Milliseconds(45));
  EXPECT_THAT(latency.worst_query, HasSubstr("pg_sleep($1)"));
  EXPECT_LT(latency.tail, latency.mean + absl::Milliseconds(30)) << "four calls alike";

  // Nine calls of 10 ms and one of 200 ms: mean 29 ms, standard deviation 57 ms, tail ~200 ms,
  // from pg_stat_statements' own stddev_exec_time.
  for (int i = 0; i < 9; ++i) ASSERT_OK(app.Exec("SELECT pg_catalog.pg_sleep(0.01)").status());
  ASSERT_OK(app.Exec("SELECT pg_catalog.pg_sleep(0.2)").status());
  samples = Sample(*prober);
  ASSERT_OK(samples.statement_latency);
  EXPECT_EQ(samples.statement_latency->calls, 10);
  EXPECT_GE(samples.statement_latency->mean, absl::Milliseconds(28));
  EXPECT_LT(samples.statement_latency->mean, absl::Milliseconds(60));
  EXPECT_GE(samples.statement_latency->tail, absl::Milliseconds(180));
  EXPECT_LT(samples.statement_latency->tail, absl::Milliseconds(300));
}

TEST_F(AppProbeTest, StatementLatencyWithoutTheExtensionIsFailedPrecondition) {
  ProbeConfig config = Config();
  config.statement_latency = true;
  std::unique_ptr<Prober> prober = Create(config);
  ASSERT_NE(prober, nullptr);
  Samples samples = Sample(*prober);
  EXPECT_EQ(samples.statement_latency.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Message(samples.statement_latency.status()),
            absl::StrCat("pg_stat_statements is not installed in database ", db_.name()));
  EXPECT_OK(samples.lock_waiters) << "the other readings are not affected";
  EXPECT_OK(samples.canary_latency);
}

TEST_F(AppProbeTest, SessionLoadCountsSleepersAndLockWaitersButNotOurs) {
  // pg_sleep waits with wait_event_type Timeout (PgSleep): active, but not on a CPU.
  Busy sleeper1(AppDsn(db_), "SELECT pg_catalog.pg_sleep(60)");
  Busy sleeper2(AppDsn(db_), "SELECT pg_catalog.pg_sleep(60)");
  Busy ours(AppDsn(db_), "SELECT pg_catalog.pg_sleep(60)");
  Busy named_ours(AppDsn(db_, "pgbackfill-worker"), "SELECT pg_catalog.pg_sleep(60)");
  ASSERT_OK_AND_ASSIGN(pg::Connection blocker, pg::Connection::Connect(AppDsn(db_)));
  ASSERT_OK(blocker.ExecScript("BEGIN; SELECT * FROM items WHERE id = 1 FOR UPDATE;"));
  Busy waiter(AppDsn(db_), "UPDATE items SET v = v + 1 WHERE id = 1");

  ProbeConfig config = Config();
  config.session_load = true;
  config.session_looks = 4;
  std::unique_ptr<Prober> prober = Create(config);
  ASSERT_NE(prober, nullptr);
  const std::vector<int> our_pids = {ours.pid()};
  Samples samples = SampleUntil(
      *prober,
      [](const Samples& s) {
        return s.session_load.ok() && s.session_load->active == 3 && s.session_load->lock == 1;
      },
      our_pids);
  ASSERT_OK(samples.session_load);
  EXPECT_EQ(samples.session_load->active, 3) << "two sleepers and the lock waiter";
  EXPECT_EQ(samples.session_load->lock, 1);
  EXPECT_LE(samples.session_load->cpu, 1) << "sleepers wait on Timeout, not a CPU";
  // Other tests' sessions may add to it (the look counts every database), never take away.
  EXPECT_GE(samples.session_load->recent, 4) << "the sleepers, the waiter, the idle transaction";

  // A whole interval between rounds: every look answers.
  Idle(config.interval + absl::Milliseconds(50));
  samples = Sample(*prober, our_pids);
  ASSERT_OK(samples.session_load);
  EXPECT_EQ(samples.session_load->looks, config.session_looks);

  ASSERT_OK(blocker.ExecScript("ROLLBACK"));
}

TEST_F(AppProbeTest, CommitLatencyUpsertsTheHeartbeat) {
  checkpoint::JobStore store(db_.conn());
  ASSERT_OK(store.EnsureSchema());
  ProbeConfig config = Config();
  config.commit_latency = true;
  config.job = "heartbeat job";
  std::unique_ptr<Prober> prober = Create(config);
  ASSERT_NE(prober, nullptr);
  for (int round = 0; round < 2; ++round) {
    Samples samples = Sample(*prober);
    ASSERT_OK(samples.commit_latency);
    EXPECT_GT(*samples.commit_latency, absl::ZeroDuration());
  }
  ASSERT_OK_AND_ASSIGN(std::string rows,
                       db_.QueryValue("SELECT count(*) FROM pgbackfill.heartbeat "
                                      "WHERE job_name = 'heartbeat job'"));
  EXPECT_EQ(rows, "1");
}

TEST_F(AppProbeTest, CommitLatencyWithoutTheHeartbeatTableIsAnError) {
  ProbeConfig config = Config();
  config.commit_latency = true;
  config.job = "j";
  std::unique_ptr<Prober> prober = Create(config);
  ASSERT_NE(prober, nullptr);
  Samples samples = Sample(*prober);
  EXPECT_FALSE(samples.commit_latency.ok());
  EXPECT_THAT(Message(samples.commit_latency.status()), HasSubstr("heartbeat"));
  EXPECT_OK(samples.canary_latency);
}

TEST_F(AppProbeTest, SlotRetainsMoreWalAfterWrites) {
  // Slots are per cluster: a name of this process's own, dropped whatever happens.
  const std::string slot = absl::StrCat("pgbackfill_test_", ::getpid());
  ASSERT_OK(db_.Exec("SELECT pg_catalog.pg_create_physical_replication_slot($1, true)", {slot})
                .status());
  struct Drop {
    TestDatabase& db;
    std::string slot;
    ~Drop() { (void)db.Exec("SELECT pg_catalog.pg_drop_replication_slot($1)", {slot}); }
  } drop{db_, slot};

  ProbeConfig config = Config();
  config.slots = true;
  std::unique_ptr<Prober> prober = Create(config);
  ASSERT_NE(prober, nullptr);
  auto find = [&](const Samples& s) -> const SlotWal* {
    if (!s.slots.ok()) return nullptr;
    for (const SlotWal& w : *s.slots) {
      if (w.slot == slot) return &w;
    }
    return nullptr;
  };
  Samples first = Sample(*prober);
  ASSERT_OK(first.slots);
  const SlotWal* before = find(first);
  ASSERT_NE(before, nullptr);
  EXPECT_EQ(before->wal_status, "reserved");
  // scripts/pg-cluster caps what a slot may keep (max_slot_wal_keep_size = 8GB): the probe reads
  // how much is left before the cap.
  ASSERT_TRUE(before->safe_wal_size.has_value());
  EXPECT_GT(*before->safe_wal_size, int64_t{4} << 30);
  const int64_t retained = before->retained_bytes;
  EXPECT_GE(retained, 0);

  ASSERT_OK(db_.ExecScript("INSERT INTO items (id, pad) SELECT g, repeat('x', 500) "
                           "FROM generate_series(10001, 20000) g"));
  Samples samples = SampleUntil(*prober, [&](const Samples& s) {
    const SlotWal* w = find(s);
    return w != nullptr && w->retained_bytes > retained + 1024 * 1024;
  });
  const SlotWal* after = find(samples);
  ASSERT_NE(after, nullptr);
  EXPECT_GT(after->retained_bytes, retained + 1024 * 1024);
}

TEST_F(AppProbeTest, ArchiverFailsWhileTheArchiveCommandFails) {
  const char* dir = std::getenv("PGBACKFILL_TEST_ARCHIVE_DIR");
  ASSERT_NE(dir, nullptr) << "scripts/pg-cluster exports PGBACKFILL_TEST_ARCHIVE_DIR";
  const std::filesystem::path fail = std::filesystem::path(dir) / "fail";
  struct Heal {
    std::filesystem::path fail;
    ~Heal() {
      std::error_code ignored;
      std::filesystem::remove(fail, ignored);
    }
  } heal{fail};
  std::ofstream(fail).put('\n');

  ProbeConfig config = Config();
  config.archiver = true;
  std::unique_ptr<Prober> prober = Create(config);
  ASSERT_NE(prober, nullptr);
  auto switch_wal = [&] {
    // pg_switch_wal does nothing when nothing was written since the last switch.
    ASSERT_OK(db_.ExecScript("UPDATE items SET v = v + 1 WHERE id = 2;"
                             "SELECT pg_catalog.pg_switch_wal();"));
  };
  switch_wal();
  Samples samples = SampleUntil(
      *prober,
      [](const Samples& s) {
        return s.archiver.ok() && s.archiver->failing && s.archiver->pending_bytes > 0;
      },
      {}, switch_wal);
  ASSERT_OK(samples.archiver);
  EXPECT_TRUE(samples.archiver->archiving);
  EXPECT_TRUE(samples.archiver->failing);
  EXPECT_FALSE(samples.archiver->last_failed_wal.empty());
  EXPECT_GE(samples.archiver->pending_bytes, 16 * 1024 * 1024);
}

TEST_F(AppProbeTest, CommandReportsExitStatusAndOutput) {
  ProbeConfig config = Config();
  config.command = "echo 0.5; exit 3";
  std::unique_ptr<Prober> prober = Create(config);
  ASSERT_NE(prober, nullptr);
  Samples samples = Sample(*prober);
  ASSERT_OK(samples.command);
  EXPECT_EQ(samples.command->exit_code, 3);
  EXPECT_EQ(samples.command->output, "0.5");
}

TEST_F(AppProbeTest, CommandPastTheBudgetIsAnError) {
  ProbeConfig config = Config();
  config.command = "sleep 30";
  std::unique_ptr<Prober> prober = Create(config);
  ASSERT_NE(prober, nullptr);
  const absl::Time start = absl::Now();
  Samples samples = Sample(*prober);
  EXPECT_FALSE(samples.command.ok());
  EXPECT_LE(absl::Now() - start, prober->RoundBudget() + absl::Seconds(1));
  EXPECT_OK(samples.canary_latency) << "the servers' probes do not wait for the command";
}

}  // namespace
}  // namespace pgbackfill::throttle
