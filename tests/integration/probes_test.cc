// The throttle probes (throttle/probes.h) against the real cluster: the primary and the streaming
// standby that scripts/pg-cluster names "standby" in pg_stat_replication.
//
// Tests that pause replay or stop the standby hold a ClusterDisruption for their whole scope:
// every other test process shares that standby. Waits are "eventually within N seconds"; nothing
// here asserts how fast a probe is.
#include "pgbackfill/throttle/probes.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_future.hpp>
#include <functional>
#include <future>
#include <thread>

#include "pgbackfill/pg/connection.h"
#include "pgbackfill/pg/replication.h"
#include "support/probe_fixture.h"
#include "support/run_helpers.h"
#include "support/status_testing.h"
#include "support/test_cluster.h"

namespace pgbackfill::throttle {
namespace {

using testing::ClusterCtl;
using testing::ClusterDisruption;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::TestDatabase;

constexpr absl::Duration kEventually = absl::Seconds(30);

std::string Message(const absl::Status& status) { return std::string(status.message()); }

// The standby's DSN; a cluster without one fails the test (never a skip).
std::string StandbyDsnOrDie() {
  std::optional<std::string> dsn = testing::StandbyDsn();
  if (!dsn.has_value()) throw std::runtime_error("the test cluster has no standby (--standby)");
  return *dsn;
}

absl::Status OnStandby(const std::string& sql) {
  ASSIGN_OR_RETURN(pg::Connection conn, pg::Connection::Connect(StandbyDsnOrDie()));
  return conn.ExecScript(sql);
}

// Resumes replay whatever the test did, also when an assertion failed.
struct ResumeReplay {
  ~ResumeReplay() { (void)OnStandby("SELECT pg_catalog.pg_wal_replay_resume()"); }
};

const ReplicaSample* Find(const Samples& samples, const std::string& name) {
  if (!samples.replicas.ok()) return nullptr;
  for (const ReplicaSample& replica : *samples.replicas) {
    if (replica.name == name) return &replica;
  }
  return nullptr;
}

class ProbeTest : public testing::ProbeFixture {
 protected:
  // Samples every 100 ms until `done` or `timeout`; returns the last round.
  Samples SampleUntil(Prober& prober, const std::function<bool(const Samples&)>& done,
                      absl::Duration timeout = kEventually, std::vector<int> our_pids = {},
                      const std::function<void()>& between = nullptr) {
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      Samples samples = Sample(prober, our_pids);
      if (done(samples) || absl::Now() > deadline) return samples;
      if (between) between();
      absl::SleepFor(absl::Milliseconds(100));
    }
  }
};

TEST_F(ProbeTest, ReadsEveryPrimarySignalOnAQuietTable) {
  ProbeConfig config = Config();
  config.custom_sql = "SELECT false";
  config.check_autovacuum = true;
  std::unique_ptr<Prober> prober = Create(config);
  ASSERT_NE(prober, nullptr);
  EXPECT_TRUE(prober->DirectReplicaNames().empty());

  const absl::Time taken = absl::FromUnixSeconds(1'700'000'000);
  Samples samples = Run(prober->Sample(taken, {}));
  EXPECT_EQ(samples.taken, taken);
  ASSERT_OK(samples.replicas);
  ASSERT_OK(samples.lock_waiters);
  EXPECT_EQ(*samples.lock_waiters, 0);
  ASSERT_OK(samples.wal_bytes_per_second) << "primed by Create";
  EXPECT_GE(*samples.wal_bytes_per_second, 0);
  ASSERT_OK(samples.canary_latency);
  EXPECT_GT(*samples.canary_latency, absl::ZeroDuration());
  ASSERT_OK(samples.custom);
  EXPECT_EQ(*samples.custom, "f");
  ASSERT_OK(samples.autovacuum);
  EXPECT_FALSE(*samples.autovacuum);
}

TEST_F(ProbeTest, UnconfiguredReadingsStayNotMeasured) {
  std::unique_ptr<Prober> prober = Create(Config());
  ASSERT_NE(prober, nullptr);
  Samples samples = Sample(*prober);
  EXPECT_EQ(samples.custom.status(), NotMeasured());
  EXPECT_EQ(samples.autovacuum.status(), NotMeasured());
}

TEST_F(ProbeTest, CaughtUpStandbyAppearsIdle) {
  (void)StandbyDsnOrDie();
  std::unique_ptr<Prober> prober = Create(Config());
  ASSERT_NE(prober, nullptr);
  ASSERT_OK(testing::WaitForStandbyCatchUp());
  Samples first = Sample(*prober);
  const ReplicaSample* standby = Find(first, "standby");
  ASSERT_NE(standby, nullptr) << "pg_stat_replication lists the test standby as 'standby'";
  EXPECT_OK(standby->status);
  EXPECT_OK(standby->lag_bytes);

  // Other test processes may be writing: caught up is "eventually", not "at once".
  Samples samples = SampleUntil(*prober, [](const Samples& s) {
    const ReplicaSample* r = Find(s, "standby");
    return r != nullptr && r->idle;
  });
  standby = Find(samples, "standby");
  ASSERT_NE(standby, nullptr);
  EXPECT_TRUE(standby->idle);
  ASSERT_OK(standby->lag_bytes);
  EXPECT_EQ(*standby->lag_bytes, 0);
}

// A move that follows its source keeps a walsender session open on the source while its copy
// reads the slot's snapshot: connected to a database, holding no slot between two commands. It
// is not a standby; counted as one it had no replay report, then "disappeared", and held every
// backfill on that server for good (found in CI beside the follow tests).
TEST_F(ProbeTest, ALogicalReplicationSessionIsNotAStandby) {
  ASSERT_OK_AND_ASSIGN(pg::ReplicationConnection session,
                       pg::ReplicationConnection::Connect(
                           absl::StrCat(db_.dsn(), " application_name=logical_consumer")));
  ASSERT_OK(session.CreateLogicalSlot("probe_test_consumer", "pgoutput").status());
  std::unique_ptr<Prober> prober = Create(Config());
  ASSERT_NE(prober, nullptr);
  Samples samples = Sample(*prober);
  ASSERT_OK(samples.replicas.status());
  EXPECT_EQ(Find(samples, "logical_consumer"), nullptr) << "the walsender counted as a standby";
  // Still not one once it has gone.
  { pg::ReplicationConnection gone = std::move(session); }
  Idle(absl::Milliseconds(300));
  Samples after = Sample(*prober);
  EXPECT_EQ(Find(after, "logical_consumer"), nullptr);
  ASSERT_OK(db_.Exec("SELECT pg_drop_replication_slot('probe_test_consumer')").status());
}

TEST_F(ProbeTest, PausedReplayGrowsByteLagThenTimeLag) {
  ClusterDisruption disruption;
  ResumeReplay resume;
  std::unique_ptr<Prober> prober = Create(Config());
  ASSERT_NE(prober, nullptr);
  ASSERT_OK(testing::WaitForStandbyCatchUp());
  ASSERT_OK(OnStandby("SELECT pg_catalog.pg_wal_replay_pause()"));

  // Writes keep coming so that WAL flows and the standby keeps replying (its replies carry the
  // replay position the primary's replay_lag is interpolated from).
  int next_id = 100000;
  auto write = [&] {
    ASSERT_OK(
        db_.Exec("INSERT INTO items (id, pad) SELECT g, repeat('x', 200) "
                 "FROM generate_series($1::bigint, $1::bigint + 499) g",
                 {std::to_string(next_id)}));
    next_id += 500;
  };
  write();
  Samples samples = SampleUntil(
      *prober,
      [](const Samples& s) {
        const ReplicaSample* r = Find(s, "standby");
        return r != nullptr && r->lag_bytes.ok() && *r->lag_bytes > 256 * 1024 && !r->idle;
      },
      kEventually, {}, write);
  const ReplicaSample* standby = Find(samples, "standby");
  ASSERT_NE(standby, nullptr);
  ASSERT_OK(standby->lag_bytes);
  EXPECT_GT(*standby->lag_bytes, 256 * 1024);
  EXPECT_FALSE(standby->idle);
  const int64_t lag_bytes = *standby->lag_bytes;

  samples = SampleUntil(
      *prober,
      [](const Samples& s) {
        const ReplicaSample* r = Find(s, "standby");
        return r != nullptr && r->replay_lag.ok() && *r->replay_lag > absl::Seconds(2);
      },
      absl::Seconds(60), {}, write);
  standby = Find(samples, "standby");
  ASSERT_NE(standby, nullptr);
  ASSERT_OK(standby->replay_lag);
  EXPECT_GT(*standby->replay_lag, absl::Seconds(2));
  ASSERT_OK(standby->lag_bytes);
  EXPECT_GT(*standby->lag_bytes, lag_bytes) << "still paused, and we kept writing";

  ASSERT_OK(OnStandby("SELECT pg_catalog.pg_wal_replay_resume()"));
  samples = SampleUntil(*prober, [](const Samples& s) {
    const ReplicaSample* r = Find(s, "standby");
    return r != nullptr && r->idle;
  });
  standby = Find(samples, "standby");
  ASSERT_NE(standby, nullptr);
  EXPECT_TRUE(standby->idle) << "replay resumed and caught up";
}

// "host=/dir port=N ..." -> "/dir:N", as pg::DescribeDsn names it.
std::string HostPort(const std::string& dsn) {
  const std::string host = testing::DsnValue(dsn, "host");
  const std::string port = testing::DsnValue(dsn, "port");
  EXPECT_FALSE(host.empty() || port.empty()) << dsn;
  return host + ":" + port;
}

TEST_F(ProbeTest, DirectStandbyIsNamedHostPort) {
  const std::string standby_dsn = StandbyDsnOrDie();
  const std::string name = HostPort(standby_dsn);
  ProbeConfig config = Config();
  config.replica_dsns = {standby_dsn};
  std::unique_ptr<Prober> prober = Create(config);
  ASSERT_NE(prober, nullptr);
  EXPECT_THAT(prober->DirectReplicaNames(), ElementsAre(name));

  ASSERT_OK(testing::WaitForStandbyCatchUp());
  Samples samples = SampleUntil(*prober, [&](const Samples& s) {
    const ReplicaSample* r = Find(s, name);
    return r != nullptr && r->idle;
  });
  const ReplicaSample* direct = Find(samples, name);
  ASSERT_NE(direct, nullptr);
  EXPECT_OK(direct->status);
  ASSERT_OK(direct->lag_bytes);
  EXPECT_EQ(*direct->lag_bytes, 0);
  EXPECT_TRUE(direct->idle);
  EXPECT_OK(direct->replay_lag) << "the standby replayed this test's CREATE DATABASE at least";
  EXPECT_NE(Find(samples, "standby"), nullptr) << "pg_stat_replication's view of it is kept too";
}

TEST_F(ProbeTest, DirectProbeOfAPrimaryIsNotAStandby) {
  ProbeConfig config = Config();
  config.replica_dsns = {testing::ClusterDsn()};
  std::unique_ptr<Prober> prober = Create(config);
  ASSERT_NE(prober, nullptr);
  Samples samples = Sample(*prober);
  const ReplicaSample* direct = Find(samples, prober->DirectReplicaNames()[0]);
  ASSERT_NE(direct, nullptr);
  EXPECT_THAT(Message(direct->status), HasSubstr("is not a standby"));
}

TEST_F(ProbeTest, StoppedStandbyLeavesPgStatReplicationAndFailsTheDirectProbe) {
  ClusterDisruption disruption;
  const std::string standby_dsn = StandbyDsnOrDie();
  const std::string name = HostPort(standby_dsn);
  ProbeConfig config = Config();
  config.replica_dsns = {standby_dsn};
  std::unique_ptr<Prober> prober = Create(config);
  ASSERT_NE(prober, nullptr);
  Samples samples = SampleUntil(*prober, [&](const Samples& s) {
    return Find(s, "standby") != nullptr && Find(s, name) != nullptr && Find(s, name)->status.ok();
  });
  ASSERT_NE(Find(samples, "standby"), nullptr);
  ASSERT_NE(Find(samples, name), nullptr);
  ASSERT_OK(Find(samples, name)->status);

  ASSERT_OK(ClusterCtl({"stop-node", "standby"}));
  samples = SampleUntil(
      *prober, [&](const Samples& s) { return s.replicas.ok() && Find(s, "standby") == nullptr; });
  ASSERT_OK(samples.replicas);
  EXPECT_EQ(Find(samples, "standby"), nullptr);
  const ReplicaSample* direct = Find(samples, name);
  ASSERT_NE(direct, nullptr) << "a failing direct probe stays in the list under its name";
  EXPECT_FALSE(direct->status.ok());
  // The primary's own readings are unaffected.
  EXPECT_OK(samples.lock_waiters);
  EXPECT_OK(samples.canary_latency);

  // Back: both views return, the direct probe over a new connection.
  ASSERT_OK(ClusterCtl({"start-node", "standby"}));
  samples = SampleUntil(*prober, [&](const Samples& s) {
    return Find(s, "standby") != nullptr && Find(s, name) != nullptr && Find(s, name)->status.ok();
  });
  ASSERT_NE(Find(samples, "standby"), nullptr);
  ASSERT_NE(Find(samples, name), nullptr);
  EXPECT_OK(Find(samples, name)->status);
}

TEST_F(ProbeTest, SessionBlockedByOurLockIsALockWaiter) {
  ASSERT_OK_AND_ASSIGN(pg::Connection ours, pg::Connection::Connect(db_.dsn()));
  ASSERT_OK(ours.ExecScript("BEGIN; UPDATE items SET v = 1 WHERE id = 1;"));
  ASSERT_OK_AND_ASSIGN(pg::Connection app, pg::Connection::Connect(db_.dsn()));
  const int ours_pid = ours.BackendPid();
  const int app_pid = app.BackendPid();
  std::thread blocked([&app] {
    // Waits for `ours` to end its transaction.
    EXPECT_OK(app.Exec("UPDATE items SET v = 2 WHERE id = 1"));
  });

  std::unique_ptr<Prober> prober = Create(Config());
  ASSERT_NE(prober, nullptr);
  Samples samples = SampleUntil(
      *prober, [](const Samples& s) { return s.lock_waiters.ok() && *s.lock_waiters == 1; },
      kEventually, {ours_pid});
  ASSERT_OK(samples.lock_waiters);
  EXPECT_EQ(*samples.lock_waiters, 1);

  // Nobody is ours: nobody waits on us. Both are ours: a worker waiting on a worker is not an
  // application session waiting.
  EXPECT_EQ(*Sample(*prober, {}).lock_waiters, 0);
  EXPECT_EQ(*Sample(*prober, {ours_pid, app_pid}).lock_waiters, 0);

  ASSERT_OK(ours.ExecScript("ROLLBACK"));
  blocked.join();
  EXPECT_EQ(*Sample(*prober, {ours_pid}).lock_waiters, 0);
}

TEST_F(ProbeTest, WalRateAfterWrites) {
  std::unique_ptr<Prober> prober = Create(Config());
  ASSERT_NE(prober, nullptr);
  ASSERT_OK(db_.ExecScript(
      "INSERT INTO items (id, pad) SELECT g, repeat('w', 500) FROM generate_series(2001, 7000) g"));
  Samples samples = Sample(*prober);
  ASSERT_OK(samples.wal_bytes_per_second);
  EXPECT_GT(*samples.wal_bytes_per_second, 0);
}

TEST_F(ProbeTest, CanaryErrorsAndTimeoutsAreErrorReadings) {
  ProbeConfig config = Config();
  config.canary_sql = "SELECT * FROM no_such_table";
  std::unique_ptr<Prober> prober = Create(config);
  ASSERT_NE(prober, nullptr);
  Samples samples = Sample(*prober);
  EXPECT_THAT(Message(samples.canary_latency.status()), HasSubstr("no_such_table"));
  EXPECT_OK(samples.lock_waiters) << "the canary runs on its own";

  // statement_timeout = max(2 * 200ms, 1s): a stuck canary is an error, not a stuck round.
  config.canary_sql = "SELECT pg_catalog.pg_sleep(30)";
  prober = Create(config);
  ASSERT_NE(prober, nullptr);
  samples = Sample(*prober);
  EXPECT_THAT(Message(samples.canary_latency.status()), HasSubstr("statement timeout"));
  // The session is usable again in the next round.
  EXPECT_OK(Sample(*prober).lock_waiters);
}

TEST_F(ProbeTest, CancelStopsTheProbeInFlight) {
  ProbeConfig config = Config();
  config.interval = absl::Seconds(20);  // statement_timeout 40s: only Cancel() ends the sleep
  config.canary_sql = "SELECT pg_catalog.pg_sleep(30)";
  std::unique_ptr<Prober> prober = Create(config);
  ASSERT_NE(prober, nullptr);
  std::thread canceller([&] {
    ASSERT_OK_AND_ASSIGN(pg::Connection watcher, pg::Connection::Connect(db_.dsn()));
    EXPECT_TRUE(testing::Eventually([&] {
      auto running = watcher.Exec(
          "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE datname = current_database() "
          "AND state = 'active' AND pid <> pg_catalog.pg_backend_pid() "
          // The probes tag their statements (sql::kTag): the canary is in the middle.
          "AND query LIKE '%SELECT pg_catalog.pg_sleep(30)%'");
      EXPECT_OK(running);
      return !running.ok() || running->Get(0, 0) == "1";
    }, absl::Seconds(20))) << "the canary never showed as running";
    prober->Cancel();
  });
  Samples samples = Sample(*prober);
  canceller.join();
  EXPECT_THAT(Message(samples.canary_latency.status()), HasSubstr("canceling statement"));
}

TEST_F(ProbeTest, DefaultCanaryLatencyIsTheWindowsP99) {
  std::unique_ptr<Prober> prober = Create(Config());
  ASSERT_NE(prober, nullptr);
  absl::Duration largest = absl::ZeroDuration();
  for (int i = 0; i < 3; ++i) {
    Samples samples = Sample(*prober);
    ASSERT_OK(samples.canary_latency);
    // With 5 timings kept, p99 is the largest so far: it never decreases within the window.
    EXPECT_GE(*samples.canary_latency, largest);
    largest = *samples.canary_latency;
  }
  EXPECT_LT(largest, absl::Seconds(10));
}

TEST_F(ProbeTest, CustomQueryValues) {
  auto custom = [&](const std::string& sql) {
    ProbeConfig config = Config();
    config.custom_sql = sql;
    std::unique_ptr<Prober> prober = Create(config);
    EXPECT_NE(prober, nullptr);
    return prober != nullptr ? Sample(*prober) : Samples{};
  };
  EXPECT_EQ(*custom("SELECT true").custom, "t");
  EXPECT_EQ(*custom("SELECT false").custom, "f");
  EXPECT_EQ(*custom("SELECT 0.5").custom, "0.5");
  EXPECT_EQ(Message(custom("SELECT NULL::boolean").custom.status()),
            "throttle.query returned NULL");
  EXPECT_EQ(Message(custom("SELECT true WHERE false").custom.status()),
            "throttle.query returned no row");
  // A failing custom query fails only its own reading.
  Samples failing = custom("SELECT 1 / 0");
  EXPECT_THAT(Message(failing.custom.status()), HasSubstr("division by zero"));
  EXPECT_OK(failing.replicas);
  EXPECT_OK(failing.lock_waiters);
  EXPECT_OK(failing.wal_bytes_per_second);
  EXPECT_OK(failing.canary_latency);
}

TEST_F(ProbeTest, CustomQueryRunsUnderTheSessionsSearchPath) {
  ASSERT_OK(db_.ExecScript(
      "CREATE SCHEMA app; CREATE TABLE app.flags (hold boolean); INSERT INTO app.flags VALUES "
      "(true); ALTER DATABASE " +
      db_.name() + " SET search_path = app, public"));
  ProbeConfig config = Config();
  config.custom_sql = "SELECT hold FROM flags";
  std::unique_ptr<Prober> prober = Create(config);
  ASSERT_NE(prober, nullptr);
  Samples samples = Sample(*prober);
  ASSERT_OK(samples.custom);
  EXPECT_EQ(*samples.custom, "t");
}

TEST_F(ProbeTest, AutovacuumOfAMissingTableIsAnError) {
  ProbeConfig config = Config();
  config.table = {"public", "missing"};
  config.check_autovacuum = true;
  std::unique_ptr<Prober> prober = Create(config);
  ASSERT_NE(prober, nullptr);
  Samples samples = Sample(*prober);
  EXPECT_THAT(Message(samples.autovacuum.status()), HasSubstr("does not exist"));
}

TEST_F(ProbeTest, HostileSearchPathDoesNotMatter) {
  // Types named like the ones the probe SQL casts to, first in the search_path: an unqualified
  // `::text` or `::int4[]` would resolve to them and fail.
  ASSERT_OK(
      db_.ExecScript("CREATE SCHEMA evil;"
                     "CREATE TYPE evil.text AS (x int);"
                     "CREATE TYPE evil.int4 AS (x int);"
                     "CREATE TYPE evil.bigint AS (x int);"
                     "ALTER DATABASE " +
                     db_.name() + " SET search_path = evil, pg_catalog, public"));
  ProbeConfig config = Config();
  config.check_autovacuum = true;
  config.custom_sql = "SELECT 1";
  std::unique_ptr<Prober> prober = Create(config);
  ASSERT_NE(prober, nullptr);
  Samples samples = Sample(*prober, {12345});
  EXPECT_OK(samples.replicas);
  EXPECT_OK(samples.lock_waiters);
  EXPECT_OK(samples.wal_bytes_per_second);
  EXPECT_OK(samples.canary_latency);
  EXPECT_OK(samples.custom);
  EXPECT_OK(samples.autovacuum);
}

TEST_F(ProbeTest, ARoundDoesNotWaitForASlowServer) {
  ProbeConfig config = Config();  // 200ms interval: statement_timeout 1s, round budget 1.5s
  // Each statement stays within the timeout, together they do not: the round gives up.
  config.custom_sql = "SELECT false FROM pg_catalog.pg_sleep(0.95)";
  config.canary_sql = "SELECT pg_catalog.pg_sleep(5)";
  std::unique_ptr<Prober> prober = Create(config);
  ASSERT_NE(prober, nullptr);
  EXPECT_EQ(prober->RoundBudget(), absl::Milliseconds(1500));
  Samples late = Sample(*prober);
  EXPECT_THAT(Message(late.lock_waiters.status()),
              HasSubstr("no answer from the primary within 1.5s"));
  EXPECT_FALSE(late.replicas.ok());
  EXPECT_FALSE(late.canary_latency.ok());
  // The probe still runs (its canary times out at about 1.95s): this round does not queue
  // behind it on the same session.
  Samples next = Sample(*prober);
  EXPECT_THAT(Message(next.lock_waiters.status()), HasSubstr("from an earlier round"));
}

TEST_F(ProbeTest, ASilentReplicaTimesOutInsteadOfHoldingTheRound) {
  // Accepts TCP connections (the kernel does, from the backlog) and never answers: libpq waits
  // for the server's first message forever unless the connect has a deadline.
  asio::ip::tcp::acceptor silent(io_, {asio::ip::make_address("127.0.0.1"), 0});
  const std::string dsn = "host=127.0.0.1 port=" + std::to_string(silent.local_endpoint().port()) +
                          " user=postgres dbname=postgres";
  ProbeConfig config = Config();
  config.replica_dsns = {dsn};
  std::unique_ptr<Prober> prober = Create(config);
  ASSERT_NE(prober, nullptr);
  const std::string name = prober->DirectReplicaNames()[0];
  EXPECT_EQ(name, "127.0.0.1:" + std::to_string(silent.local_endpoint().port()));
  Samples samples = Sample(*prober);
  const ReplicaSample* replica = Find(samples, name);
  ASSERT_NE(replica, nullptr);
  EXPECT_THAT(Message(replica->status), HasSubstr("could not connect to PostgreSQL within 1s"));
  EXPECT_OK(samples.lock_waiters) << "the primary answered in time";
}

TEST_F(ProbeTest, AutovacuumWorkerOnTheTableIsSeen) {
  // autovacuum_naptime is cluster-wide: other test processes must not run meanwhile.
  ClusterDisruption disruption;
  auto on_primary = [](const std::string& sql) -> absl::Status {
    ASSIGN_OR_RETURN(pg::Connection conn, pg::Connection::Connect(testing::ClusterDsn()));
    return conn.Exec(sql).status();
  };
  struct ResetNaptime {
    std::function<absl::Status(const std::string&)> run;
    ~ResetNaptime() {
      (void)run("ALTER SYSTEM RESET autovacuum_naptime");
      (void)run("SELECT pg_catalog.pg_reload_conf()");
    }
  } reset{on_primary};
  ASSERT_OK(on_primary("ALTER SYSTEM SET autovacuum_naptime = '1s'"));
  ASSERT_OK(on_primary("SELECT pg_catalog.pg_reload_conf()"));
  {
    // A table autovacuum picks up at once and then crawls through (cost limit 1 per 100ms), so
    // the worker is still on it while the probe looks. The session ends here, which flushes
    // its statistics, where autovacuum learns about the dead rows.
    ASSERT_OK_AND_ASSIGN(pg::Connection writer, pg::Connection::Connect(db_.dsn()));
    // Autovacuum works on partitions, never on the partitioned parent.
    ASSERT_OK(writer.ExecScript(
        "CREATE TABLE vac (id int, pad text) PARTITION BY RANGE (id);"
        "CREATE TABLE vac_1 PARTITION OF vac FOR VALUES FROM (0) TO (1000000) "
        "WITH (autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0, "
        "autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1);"
        "INSERT INTO vac SELECT g, repeat('v', 100) FROM generate_series(1, 50000) g;"
        "DELETE FROM vac;"));
  }
  auto autovacuum_on = [&](const std::string& table, absl::Duration timeout) {
    ProbeConfig config = Config();
    config.table = {"public", table};
    config.check_autovacuum = true;
    std::unique_ptr<Prober> prober = Create(config);
    if (prober == nullptr) return Samples{};
    return SampleUntil(
        *prober, [](const Samples& s) { return s.autovacuum.ok() && *s.autovacuum; }, timeout);
  };
  Samples partition = autovacuum_on("vac_1", absl::Seconds(60));
  ASSERT_OK(partition.autovacuum);
  EXPECT_TRUE(*partition.autovacuum);
  Samples parent = autovacuum_on("vac", absl::Seconds(10));
  ASSERT_OK(parent.autovacuum);
  EXPECT_TRUE(*parent.autovacuum) << "a partition's autovacuum counts for the partitioned table";
  // Another table of the same database is not the target.
  Samples items = autovacuum_on("items", absl::ZeroDuration());
  ASSERT_OK(items.autovacuum);
  EXPECT_FALSE(*items.autovacuum);
}

TEST_F(ProbeTest, ReconnectsTheMonitoringSessionOnALaterRound) {
  std::unique_ptr<Prober> prober = Create(Config());
  ASSERT_NE(prober, nullptr);
  ASSERT_OK(Sample(*prober).lock_waiters);
  ASSERT_OK(db_.Exec(
      "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity "
      "WHERE datname = pg_catalog.current_database() AND pid <> pg_catalog.pg_backend_pid()"));
  Samples broken = SampleUntil(
      *prober, [](const Samples& s) { return !s.lock_waiters.ok(); }, absl::Seconds(10));
  EXPECT_FALSE(broken.lock_waiters.ok()) << "the round that finds the session gone reports it";
  EXPECT_FALSE(broken.replicas.ok());
  Samples healed = SampleUntil(*prober, [](const Samples& s) { return s.lock_waiters.ok(); });
  EXPECT_OK(healed.lock_waiters);
  EXPECT_OK(healed.replicas);
  EXPECT_OK(healed.canary_latency);
}

TEST_F(ProbeTest, CreateFailsWithoutAPrimary) {
  ProbeConfig config = Config();
  config.dsn = "host=127.0.0.1 port=1 user=postgres dbname=postgres";
  absl::StatusOr<std::unique_ptr<Prober>> unreachable = Run(Prober::Create(config));
  EXPECT_FALSE(unreachable.ok());
  EXPECT_THAT(Message(unreachable.status()), HasSubstr("throttle probe"));

  config = Config();
  config.dsn = StandbyDsnOrDie();
  absl::StatusOr<std::unique_ptr<Prober>> standby = Run(Prober::Create(config));
  EXPECT_FALSE(standby.ok());
  EXPECT_THAT(Message(standby.status()), HasSubstr("must point at the primary"));

  config = Config();
  config.replica_dsns = {"host=h password=s3cret", "not a dsn"};
  absl::StatusOr<std::unique_ptr<Prober>> bad = Run(Prober::Create(config));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(bad.status()), HasSubstr("throttle.replicas[1]"));
}

}  // namespace
}  // namespace pgbackfill::throttle
