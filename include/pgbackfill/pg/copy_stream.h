// One COPY stream between two sessions: `COPY ... TO STDOUT` on a source is written, byte for byte,
// into `COPY ... FROM STDIN` on a target. No row is parsed: with FORMAT binary on both sides the
// server that reads is the only one that decodes values (the data mover, exec/runner.h).
//
// Threads: the reader (source) runs on a thread of its own and the writer (target) on the calling
// thread. The reader gathers the source's rows into buffers of about `chunk_bytes` and hands them
// over a moodycamel queue bounded by a semaphore of `queue_chunks` slots: when the target is
// slower, the reader waits for a free slot and the source's socket fills, so the server that sends
// slows down instead of this process buffering. Memory is `queue_chunks * chunk_bytes` per stream
// whatever the size of the table.
//
// Both connections must be idle (no statement running, not in pipeline mode) and must not be used
// by anyone else until StreamCopy returns; it puts each back in the blocking mode it found. The
// target's COPY runs inside whatever transaction the caller opened there. Cancelling either
// session (PQcancel, e.g. AsyncConnection::Cancel from another thread) ends the stream with that
// session's error. A target that rejects the data (a duplicate key, a value it cannot parse)
// reports it only at the end of its COPY (libpq accepts the rest of the data and the server skips
// it), so the source is read to the end of its COPY first; a target connection that breaks is
// noticed at once and cancels the source's COPY.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "pgbackfill/pg/connection.h"

namespace pgbackfill::pg {

struct CopyStreamOptions {
  size_t chunk_bytes = size_t{128} * 1024;
  int queue_chunks = 8;
};

struct CopyStreamResult {
  enum class Side { kNone, kSource, kTarget };

  absl::Status status;        // OK, or the first failure (its SQLSTATE as payload, pg/error.h)
  Side failed = Side::kNone;  // whose failure `status` is
  int64_t rows_read = 0;      // the source's `COPY n`
  int64_t rows_written = 0;   // the target's `COPY n`
  int64_t bytes = 0;          // passed through
  // The bound at work: the most chunks that were in this process at once (queued, or being
  // written; at most queue_chunks + 1), and how often the reader found the queue full and so
  // held the source back.
  int peak_chunks_held = 0;
  int64_t reader_waits = 0;
  bool ok() const { return status.ok(); }
};

// Runs `copy_out` (a COPY ... TO STDOUT) on `source` and `copy_in` (a COPY ... FROM STDIN) on
// `target` and streams the one into the other. When the source fails, the target's COPY is ended
// with an error. Either way both sessions are idle again when this returns (a transaction either
// was in is then aborted).
CopyStreamResult StreamCopy(PGconn* source, const std::string& copy_out, PGconn* target,
                            const std::string& copy_in, const CopyStreamOptions& options = {});

}  // namespace pgbackfill::pg
