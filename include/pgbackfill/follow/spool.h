// Where the change stream waits for the apply, in arrival order (the source's commit order): in
// memory up to a limit, then in segment files of a directory, each removed once read. The copy of
// a large table takes hours while the source keeps writing, and neither the slot (whose WAL the
// source must keep) nor our memory should hold that backlog.
//
// Not durable, on purpose: the slot's confirmed position moves only after the target committed
// what it applied, so after a crash the stream is read again from there and the spool starts
// empty (Open removes what a previous process left). Thread-compatible: one owner, or a lock
// around it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace pgbackfill::follow {

struct SpoolLimits {
  int64_t memory_bytes = 8 << 20;    // payload bytes held in memory before spilling to files
  int64_t segment_bytes = 64 << 20;  // a segment file is closed past this size
};

struct SpoolRecord {
  uint64_t lsn = 0;  // where the payload came from (XLogData's WAL start)
  std::string payload;
};

class Spool {
 public:
  // `dir` is created when missing and is the spool's own: the segment files a previous process
  // left there are removed (one spool a directory). After a failed write or a lost record every
  // call returns that error: the stream must be read again from the slot.
  static absl::StatusOr<Spool> Open(std::string dir, SpoolLimits limits = {});

  Spool(Spool&&) noexcept;
  Spool& operator=(Spool&&) noexcept;
  ~Spool();  // removes the segment files left (also when assigned over)

  absl::Status Append(uint64_t lsn, std::string_view payload);
  // The oldest record not yet taken, nullopt when there is none. A segment that gives back fewer
  // records than went into it is DataLoss, never a skipped change.
  absl::StatusOr<std::optional<SpoolRecord>> Take();

  int64_t records() const;
  int64_t memory_bytes() const;
  int64_t disk_bytes() const;  // in segment files, records not yet taken

 private:
  struct State;
  explicit Spool(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace pgbackfill::follow
