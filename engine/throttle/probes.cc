#include "pgbackfill/throttle/probes.h"

#include <atomic>
#include <exception>
#include <mutex>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "pgbackfill/pg/async_connection.h"
#include "pgbackfill/pg/dsn.h"
#include "pgbackfill/pg/error.h"
#include "pgbackfill/pg/lsn.h"
#include "pgbackfill/sql/names.h"
#include "pgbackfill/throttle/app_probes.h"
#include "pgbackfill/throttle/probe_command.h"
#include "pgbackfill/throttle/probe_readings.h"
#include "pgbackfill/throttle/probe_sql.h"
#include "pgbackfill/util/offload.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::throttle {

// One probed server: the primary's monitoring session or a direct standby. Shared between the
// Prober and the probe coroutines, which may outlive a round (and the Prober).
struct Prober::Target {
  std::string name;
  std::string dsn;
  std::mutex mu;  // guards the `conn` pointer against Cancel() from other threads
  std::unique_ptr<pg::AsyncConnection> conn;
  bool busy = false;  // a probe runs on it; io thread only
  bool looking = false;  // a session load look between rounds runs on it; io thread only
};

// The session load looks between rounds: taken on the primary's session by LookBetweenRounds and
// collected by the next round. io thread only, except `stopped`.
struct Prober::SessionLooks {
  explicit SessionLooks(const asio::any_io_executor& executor) : timer(executor) {}
  std::vector<SessionLook> taken;  // since the last round
  std::vector<int> our_pids;       // the last round's
  uint64_t generation = 0;         // bumped every round: a look of an older one is dropped
  std::atomic<bool> stopped = false;
  asio::steady_timer timer;  // the next look; cancelled to stop
};

// What the primary's probe read. Written by the probe, read by the round only when `done`.
struct Prober::PrimaryReadings {
  bool done = false;
  std::string crash;  // an exception ended the probe
  absl::StatusOr<uint64_t> wal_lsn = NotMeasured();         // write position (replica lag)
  absl::StatusOr<uint64_t> wal_insert_lsn = NotMeasured();  // insert position (WAL rate)
  absl::StatusOr<std::string> wal_timeline = NotMeasured();
  std::chrono::steady_clock::time_point wal_read_at;
  absl::StatusOr<std::vector<WalSenderRow>> walsenders = NotMeasured();
  absl::StatusOr<int> lock_waiters = NotMeasured();
  absl::StatusOr<bool> autovacuum = NotMeasured();
  absl::StatusOr<std::string> custom = NotMeasured();
  absl::StatusOr<absl::Duration> canary = NotMeasured();
  absl::StatusOr<SessionLook> look = NotMeasured();
  absl::StatusOr<std::vector<SlotWal>> slots = NotMeasured();
  absl::StatusOr<ArchiverState> archiver = NotMeasured();
  absl::StatusOr<CpuStallCount> cpu_stalls = NotMeasured();
  absl::StatusOr<std::vector<StatementRow>> statements = NotMeasured();
  absl::StatusOr<absl::Duration> commit = NotMeasured();
};

namespace {

using Target = Prober::Target;
using SteadyClock = std::chrono::steady_clock;

// A round waits on `timer` until `pending` probes are done (each cancels the wait) or its deadline
// passes.
struct RoundLatch {
  explicit RoundLatch(const asio::any_io_executor& executor) : timer(executor) {}
  void Done() {
    if (--pending == 0) timer.cancel();
  }
  int pending = 0;
  asio::steady_timer timer;
};

using PrimaryReadings = Prober::PrimaryReadings;

struct CommandReadings {
  bool done = false;
  std::string crash;
  absl::StatusOr<CommandResult> result = NotMeasured();
};

struct StandbyReadings {
  bool done = false;
  std::string crash;
  absl::Status status = NotMeasured();
  StandbyRow row;
};

// The primary's probe statements and where each reading's result is. Built outside the coroutine:
// GCC 12 miscompiles initializer lists in coroutine frames.
struct PrimaryPipeline {
  std::vector<pg::Statement> statements;
  size_t walsenders = 0;
  size_t lock_waiters = 0;
  std::optional<size_t> autovacuum;
  std::optional<size_t> custom;
  std::optional<size_t> look;
  std::optional<size_t> slots;
  std::optional<size_t> archiver;
  std::optional<size_t> cpu_stalls;
  std::optional<size_t> extension;  // where pg_stat_statements is, for the statement reading
  // After the canary, each on its own round trip.
  std::string timeout;
  bool statement_latency = false;
  std::optional<std::string> heartbeat_job;
};

// SessionLoadSql's window: "recent" is within one interval.
std::string SecondsParam(absl::Duration interval) {
  return absl::StrCat(absl::ToDoubleSeconds(interval));
}

// Appends `sql` to the pipeline and returns its index.
size_t Add(PrimaryPipeline& p, std::string sql, std::vector<pg::Param> params = {}) {
  p.statements.push_back(Tag(std::move(sql), std::move(params)));
  return p.statements.size() - 1;
}

PrimaryPipeline BuildPrimaryPipeline(const std::string& timeout, const std::vector<int>& our_pids,
                                     const ProbeConfig& config) {
  PrimaryPipeline p;
  p.timeout = timeout;
  Add(p, "BEGIN READ ONLY");
  Add(p, ProbeSettingsSql(), {timeout});
  p.walsenders = Add(p, WalSendersSql());
  p.lock_waiters = Add(p, LockWaitersSql(), {IntArrayParam(our_pids)});
  if (config.check_autovacuum) {
    p.autovacuum = Add(p, AutovacuumSql(), {config.table.schema, config.table.name});
  }
  // None of these can fail for want of a privilege or an extension (the archiver's statement
  // checks its one privileged call first), so they cannot take the readings above with them.
  if (config.session_load) {
    p.look = Add(p, SessionLoadSql(), {IntArrayParam(our_pids), SecondsParam(config.interval)});
  }
  if (config.slots) p.slots = Add(p, SlotsSql());
  if (config.archiver) p.archiver = Add(p, ArchiverSql());
  if (config.cpu_pressure) p.cpu_stalls = Add(p, CpuPressureSql());
  if (config.statement_latency) p.extension = Add(p, StatementsExtensionSql());
  Add(p, "COMMIT");
  // After COMMIT: under the session's own search_path, and its failure (operator SQL) cannot
  // take the catalog readings with it, which are complete by then.
  if (!config.custom_sql.empty()) {
    Add(p, ProbeTimeoutSql(), {timeout});
    p.custom = Add(p, config.custom_sql);
  }
  p.statement_latency = config.statement_latency;
  if (config.commit_latency) p.heartbeat_job = config.job;
  return p;
}

// Built outside the coroutine (GCC 12 and initializer lists, above).
std::vector<pg::Statement> LookPipeline(const std::string& timeout, const std::vector<int>& pids,
                                        absl::Duration interval) {
  return ReadOnlyPipeline(timeout, SessionLoadSql(), {IntArrayParam(pids), SecondsParam(interval)});
}

std::vector<pg::Statement> StandbyPipeline(const std::string& timeout) {
  return ReadOnlyPipeline(timeout, StandbySql());
}

std::vector<pg::Statement> WalPositionPipeline(const std::string& timeout) {
  return ReadOnlyPipeline(timeout, "SELECT pg_catalog.pg_current_wal_insert_lsn()::text");
}

// Statement `i`'s result, or why there is none: the pipeline stopped at or before it.
absl::StatusOr<const pg::Result*> ResultAt(const pg::PipelineResult& pipeline, size_t i) {
  if (pipeline.ok() ||
      (pipeline.failed_index >= 0 && i < static_cast<size_t>(pipeline.failed_index))) {
    return &pipeline.results[i];
  }
  return pipeline.status;
}

absl::StatusOr<uint64_t> WalLsnOf(const pg::Result& result, int column) {
  if (result.Rows() == 0) return absl::InternalError("no WAL position returned");
  return pg::ParseLsn(result.Get(0, column));
}

absl::StatusOr<std::string> WalTimelineOf(const pg::Result& result) {
  if (result.Rows() == 0 || result.IsNull(0, kWalTimeline)) {
    return absl::InternalError("no WAL timeline returned");
  }
  return std::string(result.Get(0, kWalTimeline));
}

std::vector<WalSenderRow> WalSendersOf(const pg::Result& result) {
  std::vector<WalSenderRow> rows;
  for (int r = 0; r < result.Rows(); ++r) {
    if (result.IsNull(r, kWalSenderPid)) continue;  // the row that only carries the WAL position
    WalSenderRow row;
    row.application_name = result.GetOptional(r, kWalSenderName);
    row.client_addr = result.GetOptional(r, kWalSenderClientAddr);
    row.state = result.GetOptional(r, kWalSenderState);
    row.write_lsn = result.GetOptional(r, kWalSenderWriteLsn);
    row.replay_lsn = result.GetOptional(r, kWalSenderReplayLsn);
    row.replay_lag_micros = result.GetOptional(r, kWalSenderReplayLagMicros);
    row.logical = result.Get(r, kWalSenderLogical) == "t";
    rows.push_back(std::move(row));
  }
  return rows;
}

absl::StatusOr<int> CountOf(const pg::Result& result) {
  int count = 0;
  if (result.Rows() != 1 || !absl::SimpleAtoi(ToAbsl(result.Get(0, 0)), &count)) {
    return absl::InternalError("unexpected result of the lock waiter count");
  }
  return count;
}

// Opens the target's session, or reopens it after a failure. The AsyncConnection object is kept
// across reconnects, so Cancel() never races with its replacement.
asio::awaitable<absl::Status> EnsureConnected(std::shared_ptr<Target> target,
                                              absl::Duration timeout) {
  if (target->conn != nullptr) {
    if (target->conn->IsOpen()) co_return absl::OkStatus();
    co_return co_await target->conn->Reconnect();
  }
  absl::StatusOr<std::unique_ptr<pg::AsyncConnection>> conn =
      co_await pg::AsyncConnection::Connect(target->dsn, timeout);
  if (!conn.ok()) co_return conn.status();
  std::lock_guard lock(target->mu);
  target->conn = std::move(conn).value();
  co_return absl::OkStatus();
}

// Every reading of the primary's probe, when its session could not even be opened.
void SetAll(PrimaryReadings& out, const absl::Status& status) {
  out.wal_lsn = status;
  out.wal_insert_lsn = status;
  out.wal_timeline = status;
  out.walsenders = status;
  out.lock_waiters = status;
  out.autovacuum = status;
  out.custom = status;
  out.canary = status;
  out.look = status;
  out.slots = status;
  out.archiver = status;
  out.cpu_stalls = status;
  out.statements = StatementLatencyError(status);
  out.commit = status;
}

// The readings of the application's load from the primary's main pipeline.
void ReadAppCatalog(const pg::PipelineResult& result, const PrimaryPipeline& pipeline,
                    PrimaryReadings& out) {
  if (pipeline.look.has_value()) {
    auto look = ResultAt(result, *pipeline.look);
    out.look = look.ok() ? LookOf(**look) : look.status();
  }
  if (pipeline.slots.has_value()) {
    auto slots = ResultAt(result, *pipeline.slots);
    out.slots = slots.ok() ? SlotsOf(**slots) : slots.status();
  }
  if (pipeline.archiver.has_value()) {
    auto archiver = ResultAt(result, *pipeline.archiver);
    out.archiver = archiver.ok() ? ArchiverOf(**archiver) : archiver.status();
  }
  if (pipeline.cpu_stalls.has_value()) {
    auto stalls = ResultAt(result, *pipeline.cpu_stalls);
    out.cpu_stalls = stalls.ok() ? CpuStallOf(**stalls) : stalls.status();
  }
}

// A session load look between rounds may still be on the session; it is one short statement
// under statement_timeout, and the round's deadline bounds the wait anyway.
asio::awaitable<void> WaitForLook(const std::shared_ptr<Target>& target) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (target->looking) {
    timer.expires_after(std::chrono::milliseconds(2));
    boost::system::error_code ignored;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
}

asio::awaitable<void> ProbePrimary(std::shared_ptr<Target> target, PrimaryPipeline pipeline,
                                   std::string canary_sql, absl::Duration connect_timeout,
                                   std::shared_ptr<PrimaryReadings> out) {
  co_await WaitForLook(target);
  if (absl::Status connected = co_await EnsureConnected(target, connect_timeout); !connected.ok()) {
    SetAll(*out, connected);
    out->done = true;
    co_return;
  }
  pg::AsyncConnection& conn = *target->conn;
  const pg::PipelineResult result = co_await conn.Pipeline(std::move(pipeline.statements));
  ReadAppCatalog(result, pipeline, *out);
  out->wal_read_at = SteadyClock::now();

  if (auto walsenders = ResultAt(result, pipeline.walsenders); !walsenders.ok()) {
    out->wal_lsn = walsenders.status();
    out->wal_insert_lsn = walsenders.status();
    out->wal_timeline = walsenders.status();
    out->walsenders = walsenders.status();
  } else {
    out->wal_lsn = WalLsnOf(**walsenders, kWalLsn);
    out->wal_insert_lsn = WalLsnOf(**walsenders, kWalInsertLsn);
    out->wal_timeline = WalTimelineOf(**walsenders);
    out->walsenders = WalSendersOf(**walsenders);
  }
  if (auto waiters = ResultAt(result, pipeline.lock_waiters); !waiters.ok()) {
    out->lock_waiters = waiters.status();
  } else {
    out->lock_waiters = CountOf(**waiters);
  }
  if (pipeline.autovacuum.has_value()) {
    if (auto autovacuum = ResultAt(result, *pipeline.autovacuum); !autovacuum.ok()) {
      out->autovacuum = autovacuum.status();
    } else if ((*autovacuum)->Rows() == 0) {
      out->autovacuum = absl::NotFoundError("the target table does not exist");
    } else {
      out->autovacuum = (*autovacuum)->Get(0, 0) == "t";
    }
  }
  if (pipeline.custom.has_value()) {
    if (auto custom = ResultAt(result, *pipeline.custom); !custom.ok()) {
      out->custom = custom.status();
    } else {
      const pg::Result& rows = **custom;
      out->custom =
          CustomReading(rows.Rows(), rows.Rows() > 0 && rows.Columns() > 0 ? rows.GetOptional(0, 0)
                                                                           : std::nullopt);
    }
  }

  // Timed on its own round trip, after the pipeline, so that its latency is the canary's alone.
  if (!conn.IsOpen()) {
    out->canary = result.status;
  } else {
    // Its timeout in the same implicit transaction (one round trip): nothing on the session.
    std::vector<pg::Statement> canary_statements;
    canary_statements.push_back(Tag(ProbeTimeoutSql(), {pipeline.timeout}));
    canary_statements.push_back(pg::Statement{std::move(canary_sql), {}});
    const SteadyClock::time_point start = SteadyClock::now();
    const pg::PipelineResult canary = co_await conn.Pipeline(std::move(canary_statements));
    const SteadyClock::duration elapsed = SteadyClock::now() - start;
    if (canary.ok()) {
      out->canary = absl::FromChrono(elapsed);
    } else {
      out->canary = canary.status;
    }
  }
  if (pipeline.statement_latency) {
    out->statements =
        co_await ReadStatements(conn, ResultAt(result, *pipeline.extension), pipeline.timeout);
  }
  if (pipeline.heartbeat_job.has_value()) {
    if (!conn.IsOpen()) {
      out->commit = result.status.ok() ? absl::UnavailableError("the session was lost")
                                       : result.status;
    } else {
      out->commit = co_await TimeHeartbeat(conn, *pipeline.heartbeat_job);
    }
  }
  out->done = true;
}

asio::awaitable<void> RunCommand(std::string command, absl::Duration limit,
                                 std::shared_ptr<CommandReadings> out) {
  // By reference to the frame's parameters: GCC 12 destroys a lambda temporary's captured
  // std::string twice when the lambda is made inside a co_await expression.
  out->result = co_await OnOwnThread([&] { return RunProbeCommand(command, limit); });
  out->done = true;
}

// The session load looks after a round: `count - 1` more, spread over `interval`, on the
// primary's session while no round uses it. A look that finds the session busy or closed is
// skipped (the round reports how many answered); the next round (a new generation) or stop ends
// the series.
asio::awaitable<void> LookBetweenRounds(std::shared_ptr<Target> target,
                                        std::shared_ptr<Prober::SessionLooks> looks,
                                        uint64_t generation, absl::Duration interval, int count,
                                        std::string timeout) {
  const SteadyClock::time_point start = SteadyClock::now();
  for (int i = 1; i < count; ++i) {
    looks->timer.expires_at(start + absl::ToChronoNanoseconds(interval * i / count));
    boost::system::error_code ignored;  // operation_aborted: stopped, or a newer series
    co_await looks->timer.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    if (looks->stopped || looks->generation != generation) co_return;
    if (target->busy || target->looking || target->conn == nullptr || !target->conn->IsOpen()) {
      continue;
    }
    target->looking = true;
    std::vector<pg::Statement> statements = LookPipeline(timeout, looks->our_pids, interval);
    const pg::PipelineResult result = co_await target->conn->Pipeline(std::move(statements));
    target->looking = false;
    if (!result.ok() || looks->generation != generation) continue;
    if (absl::StatusOr<SessionLook> look = LookOf(result.results[2]);
        look.ok()) {
      looks->taken.push_back(*look);
    }
  }
}

asio::awaitable<void> ProbeStandby(std::shared_ptr<Target> target,
                                   std::vector<pg::Statement> statements,
                                   absl::Duration connect_timeout,
                                   std::shared_ptr<StandbyReadings> out) {
  if (absl::Status connected = co_await EnsureConnected(target, connect_timeout); !connected.ok()) {
    out->status = connected;
    out->done = true;
    co_return;
  }
  const pg::PipelineResult result = co_await target->conn->Pipeline(std::move(statements));
  if (!result.ok()) {
    out->status = result.status;
  } else if (const pg::Result& row = result.results[2]; row.Rows() != 1) {
    out->status = absl::InternalError("the standby probe returned no row");
  } else {
    out->status = absl::OkStatus();
    out->row.in_recovery = row.GetOptional(0, kStandbyInRecovery);
    out->row.replay_lsn = row.GetOptional(0, kStandbyReplayLsn);
    out->row.receive_lsn = row.GetOptional(0, kStandbyReceiveLsn);
    out->row.replay_delay_micros = row.GetOptional(0, kStandbyReplayDelayMicros);
  }
  out->done = true;
}

// Runs `probe` in the background on `executor`; when it ends (or throws), the target is free
// again and the round's latch counts it.
template <typename Readings>
void Launch(const asio::any_io_executor& executor, std::shared_ptr<Target> target,
            asio::awaitable<void> probe, std::shared_ptr<Readings> out,
            std::shared_ptr<RoundLatch> latch) {
  target->busy = true;
  ++latch->pending;
  asio::co_spawn(executor, std::move(probe), [target, out, latch](std::exception_ptr error) {
    if (error) {
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        out->crash = e.what();
      } catch (...) {
        out->crash = "unknown exception";
      }
    }
    target->busy = false;
    latch->Done();
  });
}

asio::awaitable<void> WaitForProbes(std::shared_ptr<RoundLatch> latch,
                                    SteadyClock::time_point deadline) {
  while (latch->pending > 0 && SteadyClock::now() < deadline) {
    latch->timer.expires_at(deadline);
    boost::system::error_code ec;  // operation_aborted: a probe finished
    co_await latch->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

std::string SecondsText(absl::Duration d) {
  return absl::StrFormat("%.1fs", absl::ToDoubleSeconds(d));
}

// Why a probe has no readings this round, or OK.
template <typename Readings>
absl::Status Unanswered(bool started, const Readings& readings, std::string_view server,
                        absl::Duration budget) {
  if (!started) {
    return absl::UnavailableError(absl::StrCat("the probe of ", ToAbsl(server),
                                               " from an earlier round is still waiting for an "
                                               "answer"));
  }
  if (!readings.crash.empty()) {
    return absl::InternalError(
        absl::StrCat("the probe of ", ToAbsl(server), " failed: ", readings.crash));
  }
  if (!readings.done) {
    return absl::UnavailableError(
        absl::StrCat("no answer from ", ToAbsl(server), " within ", SecondsText(budget)));
  }
  return absl::OkStatus();
}

}  // namespace

ProbeConfig ProbeConfigFromPlan(const plan::Plan& plan, const plan::QualifiedName& table,
                                std::vector<std::string> key_columns) {
  ProbeConfig config;
  config.dsn =
      plan.mode == plan::Mode::kCopy && !plan.target_dsn.empty() ? plan.target_dsn : plan.dsn;
  config.replica_dsns = plan.throttle.replicas;
  config.table = table;
  config.key_columns = std::move(key_columns);
  config.canary_sql = plan.throttle.canary;
  config.custom_sql = plan.throttle.query;
  config.check_autovacuum = plan.throttle.hold_on_autovacuum;
  config.interval = plan.throttle.interval;
  const plan::Throttle& throttle = plan.throttle;
  config.statement_latency = throttle.ReadsStatements();
  config.session_load = throttle.max_active_sessions.enabled();
  config.commit_latency = throttle.max_commit_latency.enabled();
  config.job = plan.name;
  config.slots = throttle.max_slot_wal > 0;
  config.archiver = throttle.max_archive_pending > 0;
  config.cpu_pressure = throttle.max_cpu_pressure.enabled();
  config.command = throttle.command;
  return config;
}

Prober::Prober(ProbeConfig config, asio::any_io_executor executor)
    : config_(std::move(config)),
      executor_(std::move(executor)),
      canary_sql_(sql::Tagged(config_.canary_sql.empty()
                             ? DefaultCanarySql(config_.table, config_.key_columns)
                             : config_.canary_sql)),
      statement_timeout_(ProbeStatementTimeout(config_.interval)),
      // A little over the statement timeout, so that a timed-out statement reports its own
      // error rather than "no answer".
      round_budget_(statement_timeout_ + absl::Milliseconds(500)),
      primary_(std::make_shared<Target>()),
      command_(std::make_shared<Target>()),
      looks_(std::make_shared<SessionLooks>(executor_)),
      canary_window_(config_.canary_window) {
  primary_->name = "the primary";
  primary_->dsn = config_.dsn;
  command_->name = "throttle.command";
}

Prober::~Prober() {
  // Ends the looks between rounds now rather than at their next timer.
  looks_->stopped = true;
  looks_->timer.cancel();
}

asio::awaitable<absl::StatusOr<std::unique_ptr<Prober>>> Prober::Create(ProbeConfig config) {
  // Replica names first: a DSN that does not parse is a plan error, reported before connecting.
  std::vector<std::string> names;
  for (size_t i = 0; i < config.replica_dsns.size(); ++i) {
    absl::StatusOr<std::string> name = pg::DescribeDsn(config.replica_dsns[i]);
    if (!name.ok()) {
      co_return absl::InvalidArgumentError(
          absl::StrCat("throttle.replicas[", i, "]: ", name.status().message()));
    }
    names.push_back(*std::move(name));
  }
  DisambiguateNames(names);

  auto executor = co_await asio::this_coro::executor;
  std::unique_ptr<Prober> prober(new Prober(std::move(config), executor));
  for (size_t i = 0; i < names.size(); ++i) {
    auto target = std::make_shared<Target>();
    target->name = names[i];
    target->dsn = prober->config_.replica_dsns[i];
    prober->replicas_.push_back(std::move(target));
  }

  if (absl::Status connected =
          co_await EnsureConnected(prober->primary_, prober->statement_timeout_);
      !connected.ok()) {
    co_return pg::MakeError(pg::SqlStateOf(connected),
                            absl::StrCat("throttle probe: ", connected.message()));
  }
  std::vector<pg::Statement> statements =
      WalPositionPipeline(sql::TimeoutSetting(prober->statement_timeout_));
  const pg::PipelineResult result =
      co_await prober->primary_->conn->Pipeline(std::move(statements));
  if (!result.ok()) {
    co_return pg::MakeError(
        pg::SqlStateOf(result.status),
        absl::StrCat("throttle probe: reading the WAL position failed (the plan's dsn must "
                     "point at the primary): ",
                     result.status.message()));
  }
  absl::StatusOr<uint64_t> lsn = pg::ParseLsn(result.results[2].Get(0, 0));
  if (!lsn.ok()) co_return lsn.status();
  prober->wal_lsn_ = *lsn;
  prober->wal_read_at_ = SteadyClock::now();
  co_return prober;
}

std::vector<std::string> Prober::DirectReplicaNames() const {
  std::vector<std::string> names;
  for (const auto& replica : replicas_) names.push_back(replica->name);
  return names;
}

void Prober::Cancel() {
  auto cancel = [](Target& target) {
    std::lock_guard lock(target.mu);
    // Best effort: a failed cancel request leaves the statement to its statement_timeout.
    if (target.conn != nullptr) target.conn->Cancel().IgnoreError();
  };
  cancel(*primary_);
  for (const auto& replica : replicas_) cancel(*replica);
  looks_->stopped = true;  // the looker ends at its next timer (its timer is the io thread's)
}

void Prober::StartLooks(const std::string& timeout) {
  if (!config_.session_load || config_.session_looks < 2 || looks_->stopped) return;
  asio::co_spawn(executor_,
                 LookBetweenRounds(primary_, looks_, looks_->generation, config_.interval,
                                   config_.session_looks, timeout),
                 asio::detached);
}

void Prober::TakeAppReadings(const PrimaryReadings& primary, std::vector<SessionLook> looks,
                             Samples& samples) {
  if (config_.session_load) {
    if (primary.look.ok()) looks.push_back(*primary.look);
    samples.session_load = AverageLooks(looks, primary.look.status());
  }
  if (config_.slots) samples.slots = primary.slots;
  if (config_.archiver) samples.archiver = primary.archiver;
  if (config_.cpu_pressure) {
    if (primary.cpu_stalls.ok()) {
      samples.cpu_pressure = CpuPressureBetween(cpu_stalls_, *primary.cpu_stalls);
      cpu_stalls_ = *primary.cpu_stalls;
    } else {
      // The count stays: the next good one's share covers the gap.
      samples.cpu_pressure = primary.cpu_stalls.status();
    }
  }
  if (config_.commit_latency) samples.commit_latency = primary.commit;
  if (config_.statement_latency) {
    if (primary.statements.ok()) {
      StatementBaseline next;
      samples.statement_latency = StatementLatencyDelta(statements_, *primary.statements, next);
      statements_ = std::move(next);
    } else {
      samples.statement_latency = primary.statements.status();
    }
  }
}

asio::awaitable<Samples> Prober::Sample(absl::Time taken, std::vector<int> our_pids) {
  Samples samples;
  samples.taken = taken;
  const std::string timeout = sql::TimeoutSetting(statement_timeout_);
  const SteadyClock::time_point deadline =
      SteadyClock::now() + absl::ToChronoNanoseconds(round_budget_);
  auto latch = std::make_shared<RoundLatch>(executor_);
  // The looks since the last round are this round's, with the one in its pipeline.
  std::vector<SessionLook> looks = std::move(looks_->taken);
  looks_->taken.clear();
  ++looks_->generation;
  looks_->our_pids = our_pids;

  auto primary = std::make_shared<PrimaryReadings>();
  const bool primary_started = !primary_->busy;
  if (primary_started) {
    Launch(executor_, primary_,
           ProbePrimary(primary_, BuildPrimaryPipeline(timeout, our_pids, config_), canary_sql_,
                        statement_timeout_, primary),
           primary, latch);
  }
  std::vector<std::shared_ptr<StandbyReadings>> standbys;
  std::vector<bool> standby_started;
  for (const auto& replica : replicas_) {
    standbys.push_back(std::make_shared<StandbyReadings>());
    standby_started.push_back(!replica->busy);
    if (standby_started.back()) {
      Launch(executor_, replica,
             ProbeStandby(replica, StandbyPipeline(timeout), statement_timeout_, standbys.back()),
             standbys.back(), latch);
    }
  }
  auto command = std::make_shared<CommandReadings>();
  const bool command_started = !config_.command.empty() && !command_->busy;
  if (command_started) {
    // The command's own limit is the statement timeout, like the servers' statements, so that its
    // time-out is reported as such within the round's budget.
    Launch(executor_, command_, RunCommand(config_.command, statement_timeout_, command), command,
           latch);
  }
  co_await WaitForProbes(latch, deadline);
  StartLooks(timeout);
  if (!config_.command.empty()) {
    absl::Status unanswered =
        Unanswered(command_started, *command, "throttle.command", round_budget_);
    samples.command = unanswered.ok() ? command->result : unanswered;
  }

  // The primary's readings.
  absl::StatusOr<uint64_t> primary_lsn = NotMeasured();
  absl::StatusOr<std::vector<ReplicaSample>> walsender_replicas = NotMeasured();
  if (absl::Status unanswered = Unanswered(primary_started, *primary, "the primary", round_budget_);
      !unanswered.ok()) {
    primary_lsn = unanswered;
    samples.primary_timeline = unanswered;
    walsender_replicas = unanswered;
    samples.lock_waiters = unanswered;
    samples.wal_bytes_per_second = unanswered;
    samples.canary_latency = unanswered;
    if (!config_.custom_sql.empty()) samples.custom = unanswered;
    if (config_.check_autovacuum) samples.autovacuum = unanswered;
    if (config_.session_load) samples.session_load = AverageLooks(looks, unanswered);
    if (config_.slots) samples.slots = unanswered;
    if (config_.archiver) samples.archiver = unanswered;
    if (config_.cpu_pressure) samples.cpu_pressure = unanswered;
    if (config_.statement_latency) samples.statement_latency = StatementLatencyError(unanswered);
    if (config_.commit_latency) samples.commit_latency = unanswered;
  } else {
    TakeAppReadings(*primary, std::move(looks), samples);
    primary_lsn = primary->wal_lsn;
    samples.primary_timeline = primary->wal_timeline;
    if (primary->wal_insert_lsn.ok()) {
      samples.wal_bytes_per_second =
          WalBytesPerSecond(wal_lsn_, *primary->wal_insert_lsn,
                            absl::FromChrono(primary->wal_read_at - wal_read_at_));
      wal_lsn_ = *primary->wal_insert_lsn;
      wal_read_at_ = primary->wal_read_at;
    } else {
      // The base stays: the next good reading's rate covers the gap.
      samples.wal_bytes_per_second = primary->wal_insert_lsn.status();
    }
    if (primary->walsenders.ok() && primary->wal_lsn.ok()) {
      walsender_replicas = ReplicasFromWalSenders(*primary->walsenders, *primary->wal_lsn);
    } else {
      walsender_replicas =
          !primary->walsenders.ok() ? primary->walsenders.status() : primary->wal_lsn.status();
    }
    samples.lock_waiters = primary->lock_waiters;
    if (!config_.custom_sql.empty()) samples.custom = primary->custom;
    if (config_.check_autovacuum) samples.autovacuum = primary->autovacuum;
    if (primary->canary.ok()) {
      canary_window_.Add(*primary->canary);
      samples.canary_latency = *canary_window_.P99();
    } else {
      samples.canary_latency = primary->canary.status();
    }
  }

  // The standbys: the primary's walsenders, then the direct probes. A direct probe that failed
  // stays in the list under its name, so the governor sees it failing rather than gone.
  if (!walsender_replicas.ok()) {
    samples.replicas = walsender_replicas.status();
    co_return samples;
  }
  std::vector<ReplicaSample> replicas = *std::move(walsender_replicas);
  std::vector<std::string> names;
  for (const ReplicaSample& replica : replicas) names.push_back(replica.name);
  DisambiguateNames(names, DirectReplicaNames());
  for (size_t i = 0; i < replicas.size(); ++i) replicas[i].name = std::move(names[i]);
  for (size_t i = 0; i < replicas_.size(); ++i) {
    const std::string& name = replicas_[i]->name;
    if (absl::Status unanswered = Unanswered(standby_started[i], *standbys[i], name, round_budget_);
        !unanswered.ok()) {
      ReplicaSample replica;
      replica.name = name;
      replica.status = unanswered;
      replicas.push_back(std::move(replica));
    } else if (!standbys[i]->status.ok()) {
      ReplicaSample replica;
      replica.name = name;
      replica.status = standbys[i]->status;
      replicas.push_back(std::move(replica));
    } else {
      replicas.push_back(ReplicaFromStandby(name, standbys[i]->row, primary_lsn));
    }
  }
  samples.replicas = std::move(replicas);
  co_return samples;
}

}  // namespace pgbackfill::throttle
