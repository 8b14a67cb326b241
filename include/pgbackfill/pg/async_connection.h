// A non-blocking connection driven by Boost.Asio coroutines, with libpq pipeline mode: a whole
// transaction (BEGIN; SET LOCAL ...; UPDATE ...; checkpoint; COMMIT) goes out in one flush and
// all its results come back in one round trip.
//
// Threading: an AsyncConnection belongs to one io_context, and that io_context must be run by one
// thread. Asio's epoll reactor is edge-triggered; we drain libpq's input before every wait, which
// is only race-free when nobody else can run the reactor between the drain and the wait.
// Cancel() is the exception: it may be called from any thread at any time.
//
// Lifetime: the socket belongs to libpq. The stream_descriptor wrapping PQsocket() is released
// (never closed) before PQfinish, and is rebuilt on Reconnect() because the fd changes.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pgbackfill/pg/connection.h"
#include "pgbackfill/pg/result.h"
#include "pgbackfill/util/asio.h"

extern "C" {
typedef struct pg_cancel PGcancel;  // NOLINT: matches libpq's own typedef
}

namespace pgbackfill::pg {

struct CancelDeleter {
  void operator()(PGcancel* cancel) const noexcept;
};

// One statement of a pipeline: SQL with $n placeholders and text-format parameters.
struct Statement {
  std::string sql;
  std::vector<Param> params;
};

// What one pipeline gave back. `results[i]` belongs to `statements[i]` and is only meaningful for
// i < failed_index. When a statement fails, the server skips the rest of the pipeline (libpq
// reports PGRES_PIPELINE_ABORTED for them), so nothing after it ran; if the pipeline opened an
// explicit transaction it was rolled back before Pipeline() returned.
struct PipelineResult {
  std::vector<Result> results;
  absl::Status status;  // OK, or the first failure (with its SQLSTATE payload)
  int failed_index = -1;  // index of the failing statement, -1 when all succeeded

  bool ok() const { return status.ok(); }
};

class AsyncConnection {
 public:
  // Connects without blocking the io_context (PQconnectStart/PQconnectPoll).
  static asio::awaitable<absl::StatusOr<std::unique_ptr<AsyncConnection>>> Connect(
      std::string dsn);
  // The same, giving up after `timeout` with a kReconnect error, here and in every later
  // Reconnect(). libpq ignores connect_timeout under PQconnectPoll ("it is the application's
  // responsibility to decide whether an excessive amount of time has elapsed"), so without a
  // limit an unreachable host costs the TCP stack's retries (about a minute with our
  // tcp_user_timeout). Host name resolution (getaddrinfo) still blocks inside libpq.
  static asio::awaitable<absl::StatusOr<std::unique_ptr<AsyncConnection>>> Connect(
      std::string dsn, absl::Duration timeout);

  AsyncConnection(const AsyncConnection&) = delete;
  AsyncConnection& operator=(const AsyncConnection&) = delete;
  ~AsyncConnection();

  // Sends all statements in pipeline mode followed by one PQpipelineSync and reads every result:
  // one flush, one round trip. When a statement fails inside an explicit transaction the session
  // would be left in an aborted transaction; Pipeline() then sends ROLLBACK (the only second round
  // trip, on the error path) so the connection is idle and usable for the next call. A transaction
  // the statements open and leave open on success stays open, on purpose. When the connection
  // itself was lost, Classify(status) == kReconnect and the caller should Reconnect().
  asio::awaitable<PipelineResult> Pipeline(std::vector<Statement> statements);

  // One statement, same rules as Pipeline() with one element.
  asio::awaitable<absl::StatusOr<Result>> Exec(std::string sql, std::vector<Param> params = {});

  // Drops the session and opens a new one with the same DSN.
  asio::awaitable<absl::Status> Reconnect();

  // Asks the server to cancel whatever this connection is running (PQcancel on a PGcancel made at
  // connect time). Thread-safe and signal-context safe in the libpq sense; returns immediately
  // after the cancel request was delivered. A cancelled statement fails with SQLSTATE 57014.
  absl::Status Cancel();

  bool IsOpen() const;
  int BackendPid() const { return backend_pid_; }
  const std::string& dsn() const { return dsn_; }
  // Lends the session to another thread (pg::StreamCopy, pg/copy_stream.h) while the coroutine
  // that owns this connection waits for it; nothing else may use the connection until Return().
  // The socket leaves the io_context's reactor first: should libpq close it on the other thread
  // (the connection was lost), the kernel may hand its number to the next connection opened, and a
  // registration left behind would be removed later under that number, deafening the new one.
  // nullptr when the connection is not open.
  PGconn* Lend();
  // Takes the session back: its socket joins the reactor again if libpq still has one.
  void Return();

 private:
  AsyncConnection(asio::any_io_executor executor, std::string dsn);
  asio::awaitable<absl::Status> Open();
  asio::awaitable<absl::Status> WaitReadable();
  asio::awaitable<absl::Status> WaitWritable();
  asio::awaitable<absl::Status> Flush();
  asio::awaitable<absl::Status> ReadUntilNotBusy();
  void CloseSocket();
  absl::Status ConnectionError(std::string_view what) const;

  asio::any_io_executor executor_;
  std::string dsn_;
  absl::Duration connect_timeout_ = absl::InfiniteDuration();
  ConnHandle conn_;
  std::optional<asio::posix::stream_descriptor> socket_;
  int backend_pid_ = 0;

  std::mutex cancel_mu_;  // guards cancel_ against Cancel() from other threads
  std::unique_ptr<PGcancel, CancelDeleter> cancel_;
};

}  // namespace pgbackfill::pg
