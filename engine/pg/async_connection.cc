#include "pgbackfill/pg/async_connection.h"

#include <libpq-fe.h>

#include <array>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "libpq_util.h"
#include "params.h"
#include "pgbackfill/pg/error.h"
#include "pgbackfill/pg/statement_tag.h"
#include "pgbackfill/util/status.h"

namespace pgbackfill::pg {

using boost::system::error_code;
using Wait = asio::posix::descriptor_base::wait_type;

void CancelDeleter::operator()(PGcancel* cancel) const noexcept { PQfreeCancel(cancel); }

AsyncConnection::AsyncConnection(asio::any_io_executor executor, std::string dsn)
    : executor_(std::move(executor)), dsn_(std::move(dsn)) {}

AsyncConnection::~AsyncConnection() { CloseSocket(); }

asio::awaitable<absl::StatusOr<std::unique_ptr<AsyncConnection>>> AsyncConnection::Connect(
    std::string dsn) {
  co_return co_await Connect(std::move(dsn), absl::InfiniteDuration());
}

asio::awaitable<absl::StatusOr<std::unique_ptr<AsyncConnection>>> AsyncConnection::Connect(
    std::string dsn, absl::Duration timeout) {
  auto executor = co_await asio::this_coro::executor;
  std::unique_ptr<AsyncConnection> conn(new AsyncConnection(executor, std::move(dsn)));
  conn->connect_timeout_ = timeout;
  absl::Status status = co_await conn->Open();
  if (!status.ok()) co_return status;
  co_return conn;
}

void AsyncConnection::CloseSocket() {
  // libpq owns the descriptor: release it from Asio (deregistering it from epoll) without closing.
  if (socket_.has_value()) {
    socket_->release();
    socket_.reset();
  }
}

absl::Status AsyncConnection::ConnectionError(std::string_view what) const {
  return internal::ConnError(conn_.get(), what);
}

asio::awaitable<absl::Status> AsyncConnection::Open() {
  {
    std::lock_guard lock(cancel_mu_);
    cancel_.reset();
  }
  CloseSocket();
  conn_.reset();
  backend_pid_ = 0;

  const internal::ConnectParams params = internal::MakeConnectParams(dsn_);
  conn_.reset(
      PQconnectStartParams(params.keywords.data(), params.values.data(), /*expand_dbname=*/1));
  if (conn_ == nullptr) co_return absl::ResourceExhaustedError("libpq could not allocate");
  internal::SilenceNotices(conn_.get());
  if (PQstatus(conn_.get()) == CONNECTION_BAD) {
    co_return internal::ConnectError(conn_.get(), dsn_);
  }
  // The connect timeout: the timer cancels the socket wait in progress. `state` outlives this
  // frame in the timer's handler, which also runs (with operation_aborted) after the timer is
  // destroyed; `waiting` stops it from touching a socket that is no longer ours to cancel.
  struct DeadlineState {
    bool waiting = true;
    bool expired = false;
  };
  auto state = std::make_shared<DeadlineState>();
  std::optional<asio::steady_timer> deadline;
  if (connect_timeout_ != absl::InfiniteDuration()) {
    deadline.emplace(executor_, absl::ToChronoNanoseconds(connect_timeout_));
    deadline->async_wait([this, state](error_code timer_ec) {
      if (timer_ec || !state->waiting) return;
      state->expired = true;
      if (socket_.has_value()) socket_->cancel();
    });
  }
  struct StopDeadline {
    DeadlineState& state;
    std::optional<asio::steady_timer>& timer;
    ~StopDeadline() {
      state.waiting = false;
      if (timer.has_value()) timer->cancel();
    }
  } stop_deadline{*state, deadline};
  auto timed_out = [&] {
    CloseSocket();
    conn_.reset();
    return MakeError("", absl::StrCat("could not connect to PostgreSQL within ",
                                      absl::FormatDuration(connect_timeout_)));
  };

  // libpq: "If you have yet to call PQconnectPoll, behave as if it last returned
  // PGRES_POLLING_WRITING." The socket may change between polls (several hosts in the DSN, SSL
  // fallback), so the descriptor is re-wrapped every round.
  PostgresPollingStatusType poll = PGRES_POLLING_WRITING;
  while (poll != PGRES_POLLING_OK) {
    if (poll == PGRES_POLLING_FAILED) {
      CloseSocket();
      co_return internal::ConnectError(conn_.get(), dsn_);
    }
    // The timer may have fired in the same reactor round as the last readiness, after the wait
    // it meant to cancel had already completed.
    if (state->expired) co_return timed_out();
    CloseSocket();
    socket_.emplace(executor_, PQsocket(conn_.get()));
    error_code ec;
    co_await socket_->async_wait(poll == PGRES_POLLING_READING ? Wait::wait_read : Wait::wait_write,
                                 asio::redirect_error(asio::use_awaitable, ec));
    if (state->expired) co_return timed_out();
    if (ec) co_return absl::UnavailableError(absl::StrCat("waiting to connect: ", ec.message()));
    poll = PQconnectPoll(conn_.get());
  }
  CloseSocket();
  socket_.emplace(executor_, PQsocket(conn_.get()));
  if (PQsetnonblocking(conn_.get(), 1) != 0) {
    co_return ConnectionError("could not make the connection non-blocking");
  }
  backend_pid_ = PQbackendPID(conn_.get());
  std::lock_guard lock(cancel_mu_);
  cancel_.reset(PQgetCancel(conn_.get()));
  co_return absl::OkStatus();
}

asio::awaitable<absl::Status> AsyncConnection::Reconnect() { co_return co_await Open(); }

PGconn* AsyncConnection::Lend() {
  CloseSocket();
  return IsOpen() ? conn_.get() : nullptr;
}

void AsyncConnection::Return() {
  CloseSocket();
  if (IsOpen() && PQsocket(conn_.get()) >= 0) socket_.emplace(executor_, PQsocket(conn_.get()));
}

bool AsyncConnection::IsOpen() const {
  return conn_ != nullptr && PQstatus(conn_.get()) == CONNECTION_OK;
}

absl::Status AsyncConnection::Cancel() {
  std::lock_guard lock(cancel_mu_);
  if (cancel_ == nullptr) return absl::FailedPreconditionError("connection is not open");
  std::array<char, 256> errbuf{};
  if (PQcancel(cancel_.get(), errbuf.data(), static_cast<int>(errbuf.size())) == 0) {
    return absl::UnavailableError(absl::StrCat("cancel request failed: ", errbuf.data()));
  }
  return absl::OkStatus();
}

asio::awaitable<absl::Status> AsyncConnection::WaitReadable() {
  error_code ec;
  co_await socket_->async_wait(Wait::wait_read, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) co_return absl::UnavailableError(absl::StrCat("waiting for the server: ", ec.message()));
  co_return absl::OkStatus();
}

asio::awaitable<absl::Status> AsyncConnection::WaitWritable() {
  // libpq: when PQflush returns 1, wait for the socket to be read-ready or write-ready; if it
  // becomes read-ready, call PQconsumeInput, since the server may be blocked sending us results we
  // have not read. Boost 1.74 has no awaitable "either" operator, so a short timer cancels the write
  // wait and the caller consumes input and flushes again.
  // `waiting` guards against the timer firing in the same reactor round as the write readiness:
  // its handler then runs after this wait ended and must not cancel the next one.
  auto waiting = std::make_shared<bool>(true);
  asio::steady_timer timer(executor_, std::chrono::milliseconds(20));
  timer.async_wait([this, waiting](error_code timer_ec) {
    if (!timer_ec && *waiting && socket_.has_value()) socket_->cancel();
  });
  error_code ec;
  co_await socket_->async_wait(Wait::wait_write, asio::redirect_error(asio::use_awaitable, ec));
  *waiting = false;
  timer.cancel();
  if (ec && ec != asio::error::operation_aborted) {
    co_return absl::UnavailableError(absl::StrCat("waiting to send: ", ec.message()));
  }
  co_return absl::OkStatus();
}

asio::awaitable<absl::Status> AsyncConnection::Flush() {
  while (true) {
    const int rc = PQflush(conn_.get());
    if (rc == 0) co_return absl::OkStatus();
    if (rc < 0) co_return ConnectionError("sending to the server failed");
    if (PQconsumeInput(conn_.get()) == 0) co_return ConnectionError("reading from the server failed");
    absl::Status waited = co_await WaitWritable();
    if (!waited.ok()) co_return waited;
  }
}

asio::awaitable<absl::Status> AsyncConnection::ReadUntilNotBusy() {
  // Consume before the first wait: PQpipelineSync's flush may already have read the reply, and
  // the edge-triggered reactor would not report data that sits in libpq's buffer.
  while (true) {
    if (PQconsumeInput(conn_.get()) == 0) co_return ConnectionError("reading from the server failed");
    if (PQisBusy(conn_.get()) == 0) co_return absl::OkStatus();
    absl::Status waited = co_await WaitReadable();
    if (!waited.ok()) co_return waited;
  }
}

asio::awaitable<PipelineResult> AsyncConnection::Pipeline(std::vector<Statement> statements) {
  PipelineResult out;
  out.results.resize(statements.size());
  if (!IsOpen()) {
    out.status = MakeError("", "the connection to the server is not open");
    co_return out;
  }
  PGconn* conn = conn_.get();
  // Marks the connection unusable: after a protocol-level failure the only way on is Reconnect().
  auto lost = [&](absl::Status status) {
    out.status = std::move(status);
    if (Classify(out.status) != ErrorClass::kReconnect) {
      out.status = MakeError("", std::string(out.status.message()));
    }
    CloseSocket();
    conn_.reset();
    std::lock_guard lock(cancel_mu_);
    cancel_.reset();
  };

  if (PQenterPipelineMode(conn) != 1) {
    lost(ConnectionError("could not enter pipeline mode"));
    co_return out;
  }
  for (const Statement& statement : statements) {
    internal::ParamArrays params(statement.params);
    const std::string text = statement.sql.starts_with(kStatementTag)
                                 ? statement.sql
                                 : absl::StrCat(kStatementTag, statement.sql);
    // In pipeline mode, libpq only queues: nothing is sent until the buffer passes its flush
    // threshold or we call PQpipelineSync/PQflush, which is what makes this one round trip.
    if (PQsendQueryParams(conn, text.c_str(), params.count(), nullptr, params.values(), nullptr,
                          nullptr, /*resultFormat=*/0) != 1) {
      lost(ConnectionError("could not queue a statement"));
      co_return out;
    }
  }
  if (PQpipelineSync(conn) != 1) {
    lost(ConnectionError("could not send the pipeline"));
    co_return out;
  }
  if (absl::Status flushed = co_await Flush(); !flushed.ok()) {
    lost(flushed);
    co_return out;
  }

  // Results arrive in order: for each statement its result(s) then a NULL; after a failure the
  // rest report PGRES_PIPELINE_ABORTED; the sync closes the pipeline with PGRES_PIPELINE_SYNC.
  for (size_t i = 0; i < statements.size(); ++i) {
    while (true) {
      if (absl::Status read = co_await ReadUntilNotBusy(); !read.ok()) {
        lost(read);
        co_return out;
      }
      ResultHandle result(PQgetResult(conn));
      if (result == nullptr) break;
      const ExecStatusType status = PQresultStatus(result.get());
      if (internal::IsSuccess(status)) {
        out.results[i] = Result(std::move(result));
      } else if (status != PGRES_PIPELINE_ABORTED && out.status.ok()) {
        out.status = internal::ResultError(result.get(), conn, statements[i].sql);
        out.failed_index = static_cast<int>(i);
      }
      if (PQstatus(conn) == CONNECTION_BAD) {
        lost(out.status.ok() ? ConnectionError("connection lost") : out.status);
        co_return out;
      }
    }
  }
  while (true) {
    if (absl::Status read = co_await ReadUntilNotBusy(); !read.ok()) {
      lost(read);
      co_return out;
    }
    ResultHandle result(PQgetResult(conn));
    if (result != nullptr && PQresultStatus(result.get()) == PGRES_PIPELINE_SYNC) break;
    if (PQstatus(conn) == CONNECTION_BAD) {
      lost(out.status.ok() ? ConnectionError("connection lost") : out.status);
      co_return out;
    }
  }
  if (PQexitPipelineMode(conn) != 1) {
    lost(ConnectionError("could not leave pipeline mode"));
    co_return out;
  }
  // A failure inside BEGIN ... COMMIT leaves the session in an aborted transaction (libpq docs,
  // "Processing Results" under pipeline mode); roll it back so the connection is reusable.
  if (PQtransactionStatus(conn) == PQTRANS_INERROR) {
    // Built outside the co_await: GCC 12 miscompiles initializer lists in coroutine frames.
    std::vector<Statement> rollback_statements(1);
    rollback_statements[0].sql = "ROLLBACK";
    PipelineResult rollback = co_await Pipeline(std::move(rollback_statements));
    if (!rollback.ok() && out.status.ok()) out.status = rollback.status;
  }
  co_return out;
}

asio::awaitable<absl::StatusOr<Result>> AsyncConnection::Exec(std::string sql,
                                                              std::vector<Param> params) {
  std::vector<Statement> statements;
  statements.push_back(Statement{std::move(sql), std::move(params)});
  PipelineResult result = co_await Pipeline(std::move(statements));
  if (!result.ok()) co_return result.status;
  co_return std::move(result.results[0]);
}

}  // namespace pgbackfill::pg
