// The change stream of a logical replication slot, decoded (pure): the messages of PostgreSQL's
// built-in `pgoutput` plugin (protocol version 1: Begin, Commit, Origin, Relation, Type, Insert,
// Update, Delete, Truncate and logical decoding Messages; in-progress transactions are never
// streamed to us), and the replication protocol's CopyData frames around them (XLogData,
// primary keepalive) and the standby status update we answer with. Byte order is the network's.
//
// Every decoder reads within the given bytes only and answers a malformed or truncated message
// with InvalidArgument naming what was being read; none trusts a count from the wire to size an
// allocation (a count larger than the bytes left can hold is an error before anything is kept).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pgbackfill::follow {

// Microseconds since 2000-01-01 00:00:00 UTC, PostgreSQL's epoch for TimestampTz on the wire.
using PgTimestamp = int64_t;

struct Begin {
  uint64_t final_lsn = 0;  // the commit record's LSN
  PgTimestamp commit_time = 0;
  uint32_t xid = 0;
};

struct Commit {
  uint8_t flags = 0;
  uint64_t commit_lsn = 0;
  uint64_t end_lsn = 0;  // where the transaction's WAL ends: the position to confirm after it
  PgTimestamp commit_time = 0;
};

struct Origin {
  uint64_t lsn = 0;
  std::string name;
};

struct RelationColumn {
  bool key = false;  // part of the replica identity
  std::string name;
  uint32_t type_oid = 0;
  int32_t type_modifier = -1;
};

// Sent before the first change of a relation in a session, and again after its definition
// changed: what the tuples that follow mean, column by column (generated columns left out).
struct Relation {
  uint32_t id = 0;     // the relation's OID on the source
  std::string schema;  // empty for pg_catalog
  std::string name;
  char replica_identity = 'd';  // relreplident: d(efault), n(othing), f(ull), i(ndex)
  std::vector<RelationColumn> columns;
};

struct Type {
  uint32_t oid = 0;
  std::string schema;
  std::string name;
};

// One column of a row as pgoutput sends it.
struct Value {
  enum class Kind : char { kNull = 'n', kUnchanged = 'u', kText = 't', kBinary = 'b' };
  Kind kind = Kind::kNull;
  std::string bytes;  // kText: the output function's text; kBinary: the send function's bytes

  // kUnchanged: a TOASTed value the UPDATE did not change, which pgoutput does not send; the
  // target must keep what it has.
  bool unchanged() const { return kind == Kind::kUnchanged; }
  bool null() const { return kind == Kind::kNull; }
};
using Tuple = std::vector<Value>;

struct Insert {
  uint32_t relation = 0;
  Tuple row;
};

struct Update {
  uint32_t relation = 0;
  // 'K': the old replica identity key (the UPDATE changed it); 'O': the whole old row (REPLICA
  // IDENTITY FULL); none: the key did not change and `row` carries it.
  std::optional<char> old_kind;
  Tuple old_row;  // empty without old_kind
  Tuple row;
};

struct Delete {
  uint32_t relation = 0;
  char old_kind = 'K';  // 'K' key columns only (the rest null) or 'O' the whole row
  Tuple old_row;
};

struct Truncate {
  uint8_t options = 0;  // 1: CASCADE, 2: RESTART IDENTITY
  std::vector<uint32_t> relations;

  bool cascade() const { return (options & 1) != 0; }
  bool restart_identity() const { return (options & 2) != 0; }
};

// pg_logical_emit_message() output (only with the plugin option messages 'true').
struct LogicalMessage {
  bool transactional = false;
  uint64_t lsn = 0;
  std::string prefix;
  std::string content;
};

using Message = std::variant<Begin, Commit, Origin, Relation, Type, Insert, Update, Delete,
                             Truncate, LogicalMessage>;

// One pgoutput message (what pg_logical_slot_get_binary_changes() returns as `data`, or an
// XLogData frame's payload). Messages of streamed in-progress transactions ('S', 'E', 'c', 'A')
// and anything else unknown are InvalidArgument: they are only sent when asked for.
absl::StatusOr<Message> DecodeMessage(std::string_view bytes);

// The message's name as the documentation spells it ("Begin", "Insert", ...), for errors and logs.
std::string_view MessageName(const Message& message);

// The relations the stream has described so far, by OID. A change names its relation by OID
// only, so a Relation message must have come first in this session (pgoutput sends one before
// the first change of every relation); a change without one is an error, never a guess.
class RelationMap {
 public:
  void Remember(Relation relation);
  absl::StatusOr<const Relation*> Find(uint32_t id) const;

 private:
  absl::flat_hash_map<uint32_t, Relation> relations_;
};

// Checks that a row of a change fits its relation: as many values as the relation has columns.
absl::Status CheckTupleFits(const Relation& relation, const Tuple& row);

// ---- the replication protocol's frames (CopyData payloads of START_REPLICATION) ----

// 'w': WAL data. The payload views the frame's bytes.
struct XLogData {
  uint64_t wal_start = 0;
  uint64_t wal_end = 0;  // the server's current end of WAL
  PgTimestamp send_time = 0;
  std::string_view payload;
};

// 'k': the server's keepalive; with reply_requested set, a status update is due at once (or the
// server ends the connection after wal_sender_timeout).
struct Keepalive {
  uint64_t wal_end = 0;
  PgTimestamp send_time = 0;
  bool reply_requested = false;
};

using ServerFrame = std::variant<XLogData, Keepalive>;

absl::StatusOr<ServerFrame> DecodeServerFrame(std::string_view bytes);

// 'r': the standby status update. `flushed` is what the slot may confirm: WAL before it is no
// longer needed by us and the server may remove it.
struct StandbyStatus {
  uint64_t written = 0;
  uint64_t flushed = 0;
  uint64_t applied = 0;
  PgTimestamp client_time = 0;
  bool reply_requested = false;
};

std::string EncodeStandbyStatus(const StandbyStatus& status);

// Unix time in microseconds as PostgreSQL's wire timestamp, and back.
PgTimestamp ToPgTimestamp(int64_t unix_micros);
int64_t ToUnixMicros(PgTimestamp timestamp);

}  // namespace pgbackfill::follow
