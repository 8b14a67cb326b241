#include "pgbackfill/pg/copy_stream.h"

#include <libpq-fe.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "concurrentqueue/blockingconcurrentqueue.h"
#include "concurrentqueue/lightweightsemaphore.h"
#include "libpq_util.h"
#include "pgbackfill/pg/async_connection.h"
#include "pgbackfill/pg/result.h"

namespace pgbackfill::pg {
namespace {

// How often a side that waits for the other checks whether the stream was abandoned.
constexpr std::int64_t kWaitSliceMicros = 100'000;

// Blocking libpq calls for the duration of a stream (AsyncConnection keeps its session
// non-blocking); the mode it found is put back afterwards.
class BlockingScope {
 public:
  explicit BlockingScope(PGconn* conn) : conn_(conn), was_nonblocking_(PQisnonblocking(conn)) {
    PQsetnonblocking(conn_, 0);
  }
  ~BlockingScope() { PQsetnonblocking(conn_, was_nonblocking_); }
  BlockingScope(const BlockingScope&) = delete;
  BlockingScope& operator=(const BlockingScope&) = delete;

 private:
  PGconn* conn_;
  int was_nonblocking_;
};

int64_t TupleCount(const PGresult* result) {
  const char* text = PQcmdTuples(const_cast<PGresult*>(result));
  int64_t value = 0;
  if (text != nullptr) std::from_chars(text, text + std::char_traits<char>::length(text), value);
  return value;
}

// Reads the command's remaining results: the COPY count, or its first error.
absl::Status FinishCommand(PGconn* conn, const std::string& sql, int64_t* rows) {
  absl::Status error;
  while (true) {
    ResultHandle result(PQgetResult(conn));
    if (result == nullptr) break;
    const ExecStatusType status = PQresultStatus(result.get());
    if (status == PGRES_COMMAND_OK) {
      *rows = TupleCount(result.get());
    } else if (status == PGRES_COPY_IN) {
      // Only reachable after a protocol mix-up; end it so the session is usable.
      PQputCopyEnd(conn, "pgbackfill: unexpected COPY IN");
    } else if (error.ok()) {
      error = internal::ResultError(result.get(), conn, sql);
    }
    if (PQstatus(conn) == CONNECTION_BAD) break;
  }
  if (!error.ok()) return error;
  if (PQstatus(conn) == CONNECTION_BAD) return internal::ConnError(conn, "connection lost");
  return absl::OkStatus();
}

// Sends `sql` and waits until the server is in the COPY state `expected`.
absl::Status StartCopy(PGconn* conn, const std::string& sql, ExecStatusType expected) {
  if (PQsendQuery(conn, sql.c_str()) != 1) return internal::ConnError(conn, "could not send COPY");
  ResultHandle result(PQgetResult(conn));
  if (result == nullptr) return internal::ConnError(conn, "COPY returned no result");
  if (PQresultStatus(result.get()) == expected) return absl::OkStatus();
  absl::Status error = internal::ResultError(result.get(), conn, sql);
  int64_t ignored = 0;
  (void)FinishCommand(conn, sql, &ignored);
  if (error.ok()) error = absl::InternalError(absl::StrCat("not a COPY statement: ", sql));
  return error;
}

struct Chunk {
  std::string data;
  bool last = false;
};

class Stream {
 public:
  Stream(PGconn* source, const std::string& copy_out, PGconn* target, const std::string& copy_in,
         const CopyStreamOptions& options)
      : source_(source),
        copy_out_(copy_out),
        target_(target),
        copy_in_(copy_in),
        options_(options),
        slots_(options.queue_chunks) {}

  CopyStreamResult Run() {
    CopyStreamResult out;
    BlockingScope source_mode(source_);
    BlockingScope target_mode(target_);
    // The target first: when it cannot take rows (no such table, no privilege) the source's
    // snapshot transaction is left untouched.
    if (absl::Status started = StartCopy(target_, copy_in_, PGRES_COPY_IN); !started.ok()) {
      out.status = std::move(started);
      out.failed = CopyStreamResult::Side::kTarget;
      return out;
    }
    std::unique_ptr<PGcancel, CancelDeleter> cancel_source(PQgetCancel(source_));
    std::thread reader([this] { Read(); });

    absl::Status target_error;
    while (true) {
      Chunk chunk;
      queue_.wait_dequeue(chunk);
      slots_.signal();
      if (chunk.last) break;
      // A server that rejected the data (a duplicate key, a value it cannot parse) says so only
      // when asked for the result: it skips the rest of the COPY data, and libpq keeps accepting
      // it, so that error shows at the end, below. Only a broken connection fails here.
      if (PQputCopyData(target_, chunk.data.data(), static_cast<int>(chunk.data.size())) != 1) {
        target_error = internal::ConnError(target_, "sending COPY data failed");
        // The reader stops at its next hand-over; the cancel ends the source's COPY so that it
        // does not read the rest of the range for nothing (not once that COPY is over: the
        // cancel would hit the session's next statement).
        abandoned_.store(true);
        if (cancel_source != nullptr && reading_.load()) {
          std::array<char, 256> ignored{};
          PQcancel(cancel_source.get(), ignored.data(), static_cast<int>(ignored.size()));
        }
        break;
      }
      out.bytes += static_cast<int64_t>(chunk.data.size());
      held_.fetch_sub(1);
    }
    reader.join();

    out.rows_read = rows_read_;
    out.peak_chunks_held = peak_held_;
    out.reader_waits = reader_waits_;
    if (!target_error.ok()) {
      // The server's own error (it stopped taking data) explains more than libpq's.
      absl::Status server = FinishCommand(target_, copy_in_, &out.rows_written);
      out.status = server.ok() ? target_error : server;
      out.failed = CopyStreamResult::Side::kTarget;
      return out;
    }
    if (!source_status_.ok()) {
      PQputCopyEnd(target_, "pgbackfill: the source's COPY failed");
      int64_t ignored = 0;
      (void)FinishCommand(target_, copy_in_, &ignored);
      out.status = source_status_;
      out.failed = CopyStreamResult::Side::kSource;
      return out;
    }
    if (PQputCopyEnd(target_, nullptr) != 1) {
      out.status = internal::ConnError(target_, "ending COPY failed");
      out.failed = CopyStreamResult::Side::kTarget;
      int64_t ignored = 0;
      (void)FinishCommand(target_, copy_in_, &ignored);
      return out;
    }
    if (absl::Status ended = FinishCommand(target_, copy_in_, &out.rows_written); !ended.ok()) {
      out.status = std::move(ended);
      out.failed = CopyStreamResult::Side::kTarget;
    }
    return out;
  }

 private:
  // The reader thread: the source's COPY, gathered into chunks; always ends with a `last` chunk
  // unless the writer abandoned the stream.
  void Read() {
    source_status_ = StartCopy(source_, copy_out_, PGRES_COPY_OUT);
    reading_.store(source_status_.ok());
    if (source_status_.ok()) {
      std::string chunk;
      chunk.reserve(options_.chunk_bytes);
      bool handing_over = true;
      while (true) {
        char* buffer = nullptr;
        const int length = PQgetCopyData(source_, &buffer, /*async=*/0);
        if (length < 0) {  // -1: the COPY is complete; -2: an error, reported below
          reading_.store(false);
          break;
        }
        if (handing_over) chunk.append(buffer, static_cast<size_t>(length));
        PQfreemem(buffer);
        if (handing_over && chunk.size() >= options_.chunk_bytes) {
          handing_over = Push(Chunk{std::move(chunk), false});
          chunk = std::string();
          chunk.reserve(options_.chunk_bytes);
        }
      }
      source_status_ = FinishCommand(source_, copy_out_, &rows_read_);
      if (source_status_.ok() && handing_over && !chunk.empty()) {
        (void)Push(Chunk{std::move(chunk), false});
      }
    }
    (void)Push(Chunk{std::string(), true});
  }

  // Waits for a free slot, then queues; false when the writer abandoned the stream.
  bool Push(Chunk chunk) {
    if (abandoned_.load()) return false;
    if (!slots_.tryWait()) {
      ++reader_waits_;
      while (!slots_.wait(kWaitSliceMicros)) {
        if (abandoned_.load()) return false;
      }
    }
    if (!chunk.last) peak_held_ = std::max(peak_held_, held_.fetch_add(1) + 1);
    queue_.enqueue(std::move(chunk));
    return true;
  }

  PGconn* source_;
  const std::string& copy_out_;
  PGconn* target_;
  const std::string& copy_in_;
  const CopyStreamOptions& options_;

  moodycamel::BlockingConcurrentQueue<Chunk> queue_;
  moodycamel::LightweightSemaphore slots_;  // free places in queue_: the bound
  std::atomic<bool> abandoned_{false};
  std::atomic<bool> reading_{false};  // the source's COPY is running: a cancel would hit it
  std::atomic<int> held_{0};          // data chunks queued or being written
  // Written by the reader thread, read by the writer after join().
  int peak_held_ = 0;
  int64_t reader_waits_ = 0;
  absl::Status source_status_;
  int64_t rows_read_ = 0;
};

}  // namespace

CopyStreamResult StreamCopy(PGconn* source, const std::string& copy_out, PGconn* target,
                            const std::string& copy_in, const CopyStreamOptions& options) {
  return Stream(source, copy_out, target, copy_in, options).Run();
}

}  // namespace pgbackfill::pg
