#include "pgbackfill/follow/pgoutput.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "pgbackfill/util/status.h"

namespace pgbackfill::follow {

namespace {

// Seconds from 1970-01-01 to 2000-01-01.
constexpr int64_t kPgEpochUnixSeconds = 946'684'800;

// Reads big-endian fields from a message, never past its end. The first failure sticks: later
// reads return zero values, and status() names the field that did not fit.
class Reader {
 public:
  Reader(std::string_view bytes, std::string_view message) : bytes_(bytes), message_(message) {}

  uint8_t U8(std::string_view field) {
    if (!Need(1, field)) return 0;
    return static_cast<uint8_t>(bytes_[pos_++]);
  }
  uint16_t U16(std::string_view field) { return static_cast<uint16_t>(Unsigned(2, field)); }
  uint32_t U32(std::string_view field) { return static_cast<uint32_t>(Unsigned(4, field)); }
  uint64_t U64(std::string_view field) { return Unsigned(8, field); }
  int32_t I32(std::string_view field) { return static_cast<int32_t>(U32(field)); }
  int64_t I64(std::string_view field) { return static_cast<int64_t>(U64(field)); }

  // A NUL-terminated string.
  std::string String(std::string_view field) {
    if (!ok()) return {};
    const size_t end = bytes_.find('\0', pos_);
    if (end == std::string_view::npos) {
      Fail(field, "has no terminating NUL");
      return {};
    }
    std::string out(bytes_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return out;
  }

  std::string Bytes(size_t count, std::string_view field) {
    if (!Need(count, field)) return {};
    std::string out(bytes_.substr(pos_, count));
    pos_ += count;
    return out;
  }

  std::string_view Rest() {
    std::string_view out = ok() ? bytes_.substr(pos_) : std::string_view();
    pos_ = bytes_.size();
    return out;
  }

  // A count from the wire of items that take at least `min_bytes` each: more than the bytes left
  // can hold is an error before anything is sized by it.
  bool Fits(uint64_t count, size_t min_bytes, std::string_view field) {
    if (!ok()) return false;
    if (count > (bytes_.size() - pos_) / min_bytes) {
      Fail(field,
           absl::StrCat("says ", count, " but only ", bytes_.size() - pos_, " bytes are left"));
      return false;
    }
    return true;
  }

  void Fail(std::string_view field, std::string_view what) {
    if (!status_.ok()) return;
    status_ = absl::InvalidArgumentError(absl::StrCat("pgoutput ", std::string(message_),
                                                      " message: ", std::string(field), " ",
                                                      std::string(what)));
  }

  // Trailing bytes after a complete message mean it was misread.
  absl::Status Finish() {
    if (ok() && pos_ != bytes_.size()) {
      Fail("end", absl::StrCat("has ", bytes_.size() - pos_, " unexpected trailing byte(s)"));
    }
    return status_;
  }

  bool ok() const { return status_.ok(); }
  const absl::Status& status() const { return status_; }

 private:
  bool Need(size_t count, std::string_view field) {
    if (!ok()) return false;
    if (bytes_.size() - pos_ < count) {
      Fail(field, absl::StrCat("is cut short: ", count, " byte(s) needed, ", bytes_.size() - pos_,
                               " left"));
      return false;
    }
    return true;
  }

  uint64_t Unsigned(size_t width, std::string_view field) {
    if (!Need(width, field)) return 0;
    uint64_t value = 0;
    for (size_t i = 0; i < width; ++i) {
      value = (value << 8) | static_cast<uint8_t>(bytes_[pos_ + i]);
    }
    pos_ += width;
    return value;
  }

  std::string_view bytes_;
  std::string_view message_;
  size_t pos_ = 0;
  absl::Status status_;
};

Tuple ReadTuple(Reader& in) {
  const uint16_t count = in.U16("column count");
  // Each column takes at least its kind byte.
  if (!in.Fits(count, 1, "column count")) return {};
  Tuple row;
  row.reserve(count);
  for (uint16_t i = 0; i < count && in.ok(); ++i) {
    Value value;
    const char kind = static_cast<char>(in.U8("column kind"));
    switch (kind) {
      case 'n':
        value.kind = Value::Kind::kNull;
        break;
      case 'u':
        value.kind = Value::Kind::kUnchanged;
        break;
      case 't':
      case 'b': {
        value.kind = kind == 't' ? Value::Kind::kText : Value::Kind::kBinary;
        const uint32_t length = in.U32("value length");
        if (in.Fits(length, 1, "value length")) value.bytes = in.Bytes(length, "value");
        break;
      }
      default:
        if (in.ok()) in.Fail("column kind", absl::StrFormat("is unknown: 0x%02x", kind));
    }
    row.push_back(std::move(value));
  }
  return row;
}

// 'N' (a new row), 'K' (old key) or 'O' (old row): the byte that tags a tuple.
char TupleTag(Reader& in, std::string_view allowed) {
  const char tag = static_cast<char>(in.U8("tuple tag"));
  if (in.ok() && allowed.find(tag) == std::string_view::npos) {
    in.Fail("tuple tag", absl::StrFormat("is 0x%02x, expected one of %s", tag, allowed));
  }
  return tag;
}

Relation ReadRelation(Reader& in) {
  Relation relation;
  relation.id = in.U32("relation id");
  relation.schema = in.String("namespace");
  relation.name = in.String("relation name");
  relation.replica_identity = static_cast<char>(in.U8("replica identity"));
  const uint16_t count = in.U16("column count");
  // flags, an empty name's NUL, type OID and modifier: at least 10 bytes a column.
  if (!in.Fits(count, 10, "column count")) return relation;
  relation.columns.reserve(count);
  for (uint16_t i = 0; i < count && in.ok(); ++i) {
    RelationColumn column;
    column.key = (in.U8("column flags") & 1) != 0;
    column.name = in.String("column name");
    column.type_oid = in.U32("column type");
    column.type_modifier = in.I32("column type modifier");
    relation.columns.push_back(std::move(column));
  }
  return relation;
}

Update ReadUpdate(Reader& in) {
  Update update;
  update.relation = in.U32("relation id");
  const char tag = TupleTag(in, "KON");
  if (tag == 'K' || tag == 'O') {
    update.old_kind = tag;
    update.old_row = ReadTuple(in);
    TupleTag(in, "N");
  }
  update.row = ReadTuple(in);
  return update;
}

Truncate ReadTruncate(Reader& in) {
  Truncate truncate;
  const uint32_t count = in.U32("relation count");
  truncate.options = in.U8("options");
  if (!in.Fits(count, 4, "relation count")) return truncate;
  truncate.relations.reserve(count);
  for (uint32_t i = 0; i < count && in.ok(); ++i)
    truncate.relations.push_back(in.U32("relation id"));
  return truncate;
}

absl::StatusOr<Message> Decode(char type, Reader& in) {
  switch (type) {
    case 'B': {
      Begin begin;
      begin.final_lsn = in.U64("final LSN");
      begin.commit_time = in.I64("commit timestamp");
      begin.xid = in.U32("xid");
      return begin;
    }
    case 'C': {
      Commit commit;
      commit.flags = in.U8("flags");
      commit.commit_lsn = in.U64("commit LSN");
      commit.end_lsn = in.U64("end LSN");
      commit.commit_time = in.I64("commit timestamp");
      return commit;
    }
    case 'O': {
      Origin origin;
      origin.lsn = in.U64("origin LSN");
      origin.name = in.String("origin name");
      return origin;
    }
    case 'R':
      return ReadRelation(in);
    case 'Y': {
      Type type_info;
      type_info.oid = in.U32("type id");
      type_info.schema = in.String("namespace");
      type_info.name = in.String("type name");
      return type_info;
    }
    case 'I': {
      Insert insert;
      insert.relation = in.U32("relation id");
      TupleTag(in, "N");
      insert.row = ReadTuple(in);
      return insert;
    }
    case 'U':
      return ReadUpdate(in);
    case 'D': {
      Delete del;
      del.relation = in.U32("relation id");
      del.old_kind = TupleTag(in, "KO");
      del.old_row = ReadTuple(in);
      return del;
    }
    case 'T':
      return ReadTruncate(in);
    case 'M': {
      LogicalMessage message;
      message.transactional = (in.U8("flags") & 1) != 0;
      message.lsn = in.U64("message LSN");
      message.prefix = in.String("prefix");
      const uint32_t length = in.U32("content length");
      if (in.Fits(length, 1, "content length")) message.content = in.Bytes(length, "content");
      return message;
    }
    default:
      return absl::InvalidArgumentError(absl::StrFormat(
          "pgoutput message of unknown type 0x%02x ('%c'): streamed in-progress transactions and "
          "protocol versions above 1 are not asked for",
          type, (type >= 32 && type < 127) ? type : '?'));
  }
}

std::string_view TypeName(char type) {
  switch (type) {
    case 'B':
      return "Begin";
    case 'C':
      return "Commit";
    case 'O':
      return "Origin";
    case 'R':
      return "Relation";
    case 'Y':
      return "Type";
    case 'I':
      return "Insert";
    case 'U':
      return "Update";
    case 'D':
      return "Delete";
    case 'T':
      return "Truncate";
    case 'M':
      return "Message";
    default:
      return "unknown";
  }
}

void PutBigEndian(std::string& out, uint64_t value, int width) {
  for (int shift = (width - 1) * 8; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((value >> shift) & 0xff));
  }
}

}  // namespace

absl::StatusOr<Message> DecodeMessage(std::string_view bytes) {
  if (bytes.empty()) return absl::InvalidArgumentError("pgoutput message is empty");
  const char type = bytes.front();
  Reader in(bytes.substr(1), TypeName(type));
  absl::StatusOr<Message> message = Decode(type, in);
  if (!message.ok()) return message.status();
  if (absl::Status status = in.Finish(); !status.ok()) return status;
  return message;
}

std::string_view MessageName(const Message& message) {
  static constexpr std::string_view kNames[] = {"Begin",    "Commit", "Origin", "Relation",
                                                "Type",     "Insert", "Update", "Delete",
                                                "Truncate", "Message"};
  return kNames[message.index()];
}

void RelationMap::Remember(Relation relation) {
  const uint32_t id = relation.id;
  relations_.insert_or_assign(id, std::move(relation));
}

absl::StatusOr<const Relation*> RelationMap::Find(uint32_t id) const {
  auto found = relations_.find(id);
  if (found == relations_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("a change names relation ", id, " before any Relation message described it"));
  }
  return &found->second;
}

absl::Status CheckTupleFits(const Relation& relation, const Tuple& row) {
  if (row.size() != relation.columns.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a row of ", relation.schema.empty() ? "" : relation.schema + ".", relation.name, " has ",
        row.size(), " value(s) where its Relation message described ", relation.columns.size(),
        " column(s)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ServerFrame> DecodeServerFrame(std::string_view bytes) {
  if (bytes.empty()) return absl::InvalidArgumentError("replication frame is empty");
  const char type = bytes.front();
  if (type == 'w') {
    Reader in(bytes.substr(1), "XLogData");
    XLogData data;
    data.wal_start = in.U64("WAL start");
    data.wal_end = in.U64("WAL end");
    data.send_time = in.I64("send time");
    data.payload = in.Rest();
    RETURN_IF_ERROR(in.Finish());
    return data;
  }
  if (type == 'k') {
    Reader in(bytes.substr(1), "keepalive");
    Keepalive keepalive;
    keepalive.wal_end = in.U64("WAL end");
    keepalive.send_time = in.I64("send time");
    keepalive.reply_requested = in.U8("reply requested") != 0;
    RETURN_IF_ERROR(in.Finish());
    return keepalive;
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("replication frame of unknown type 0x%02x", type));
}

std::string EncodeStandbyStatus(const StandbyStatus& status) {
  std::string out;
  out.reserve(34);
  out.push_back('r');
  PutBigEndian(out, status.written, 8);
  PutBigEndian(out, status.flushed, 8);
  PutBigEndian(out, status.applied, 8);
  PutBigEndian(out, static_cast<uint64_t>(status.client_time), 8);
  out.push_back(status.reply_requested ? 1 : 0);
  return out;
}

PgTimestamp ToPgTimestamp(int64_t unix_micros) {
  return unix_micros - kPgEpochUnixSeconds * 1'000'000;
}

int64_t ToUnixMicros(PgTimestamp timestamp) { return timestamp + kPgEpochUnixSeconds * 1'000'000; }

}  // namespace pgbackfill::follow
