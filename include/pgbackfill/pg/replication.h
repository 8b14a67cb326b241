// A walsender session on one database (libpq's replication=database): the logical slot's
// commands and the copy-both stream START_REPLICATION opens, whose frames follow/pgoutput.h
// decodes. Blocking, one thread at a time (the stream's reader will run on a thread of its own).
//
// The slot is made with an exported snapshot: a transaction elsewhere that imports it (SET
// TRANSACTION SNAPSHOT) sees exactly the rows committed before the slot's consistent point, and
// the stream from that point carries exactly the changes committed after it. The snapshot lives
// until the next command on this session, so that session idles while the copy uses it, and
// another session streams from the slot meanwhile (tested).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pgbackfill/pg/connection.h"

namespace pgbackfill::pg {

class ReplicationConnection {
 public:
  // `dsn` as for Connection::Connect; replication=database is added (whatever it said).
  static absl::StatusOr<ReplicationConnection> Connect(const std::string& dsn);

  struct Slot {
    std::string name;
    uint64_t consistent_point = 0;  // the LSN the stream starts from
    std::string snapshot;           // for SET TRANSACTION SNAPSHOT, while this session idles
  };
  // CREATE_REPLICATION_SLOT `name` LOGICAL `plugin` (SNAPSHOT 'export'). Slot and plugin names are
  // PostgreSQL's slot-name alphabet (lower-case letters, digits, underscore), checked here. The
  // server makes the slot once every transaction holding an xid has ended: past `deadline` the
  // command is cancelled (DeadlineExceeded, saying so).
  absl::StatusOr<Slot> CreateLogicalSlot(const std::string& name, const std::string& plugin,
                                         absl::Duration deadline = absl::Minutes(5));

  // START_REPLICATION SLOT `slot` LOGICAL `from` (`options`): the session streams from then on.
  absl::Status StartLogical(const std::string& slot, uint64_t from,
                            const std::vector<std::pair<std::string, std::string>>& options);

  // The next CopyData frame, waiting at most `timeout`: nullopt when none came in time. An error
  // when the stream ended (the server's message) or the connection broke (kReconnect).
  absl::StatusOr<std::optional<std::string>> Receive(absl::Duration timeout);

  // One CopyData frame to the server (a standby status update), sent before returning.
  absl::Status Send(std::string_view frame);

  int BackendPid() const;

 private:
  explicit ReplicationConnection(ConnHandle conn) : conn_(std::move(conn)) {}
  absl::Status EndOfStream();

  ConnHandle conn_;
};

// Whether `name` is a valid replication slot name (1 to 63 of a-z, 0-9, _).
bool IsSlotName(std::string_view name);

}  // namespace pgbackfill::pg
