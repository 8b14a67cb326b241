#include "pgbackfill/pg/replication.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "libpq_util.h"
#include "pgbackfill/pg/lsn.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/util/status.h"

namespace pgbackfill::pg {

namespace {

// A replication command's result (they take no parameters: names are checked, values quoted).
absl::StatusOr<Result> Command(PGconn* conn, const std::string& command, ExecStatusType expect) {
  ResultHandle result(PQexec(conn, command.c_str()));
  if (result == nullptr) return internal::ConnError(conn, "replication command failed");
  if (PQresultStatus(result.get()) != expect) {
    return internal::ResultError(result.get(), conn, command);
  }
  return Result(std::move(result));
}

// Waits until the socket is readable or `timeout` passed; false on timeout.
absl::StatusOr<bool> WaitReadable(PGconn* conn, absl::Duration timeout) {
  pollfd fd{.fd = PQsocket(conn), .events = POLLIN, .revents = 0};
  if (fd.fd < 0) return internal::ConnError(conn, "replication stream has no socket");
  const int ms = static_cast<int>(
      std::clamp<int64_t>(absl::ToInt64Milliseconds(timeout), 0, 24 * 3600 * 1000));
  const int ready = ::poll(&fd, 1, ms);
  if (ready < 0) {
    if (errno == EINTR) return false;
    return absl::UnavailableError(
        absl::StrCat("waiting for the replication stream: errno ", errno));
  }
  return ready > 0;
}

}  // namespace

bool IsSlotName(std::string_view name) {
  return !name.empty() && name.size() <= 63 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

absl::StatusOr<ReplicationConnection> ReplicationConnection::Connect(const std::string& dsn) {
  ASSIGN_OR_RETURN(ConnHandle conn, internal::OpenBlocking(dsn, /*replication=*/true));
  return ReplicationConnection(std::move(conn));
}

absl::StatusOr<ReplicationConnection::Slot> ReplicationConnection::CreateLogicalSlot(
    const std::string& name, const std::string& plugin) {
  if (!IsSlotName(name) || !IsSlotName(plugin)) {
    return absl::InvalidArgumentError(
        absl::StrCat("replication slot ", QuoteLiteral(name), " or plugin ", QuoteLiteral(plugin),
                     " is not made of lower-case letters, digits and underscores (at most 63)"));
  }
  ASSIGN_OR_RETURN(Result result, Command(conn_.get(),
                                          absl::StrCat("CREATE_REPLICATION_SLOT ", name,
                                                       " LOGICAL ", plugin, " (SNAPSHOT 'export')"),
                                          PGRES_TUPLES_OK));
  // slot_name, consistent_point, snapshot_name, output_plugin
  if (result.Rows() != 1 || result.Columns() < 3) {
    return absl::InternalError("CREATE_REPLICATION_SLOT answered with an unexpected shape");
  }
  Slot slot;
  slot.name = std::string(result.Get(0, 0));
  ASSIGN_OR_RETURN(slot.consistent_point, ParseLsn(result.Get(0, 1)));
  slot.snapshot = std::string(result.Get(0, 2));
  return slot;
}

absl::Status ReplicationConnection::StartLogical(
    const std::string& slot, uint64_t from,
    const std::vector<std::pair<std::string, std::string>>& options) {
  if (!IsSlotName(slot)) {
    return absl::InvalidArgumentError(
        absl::StrCat("replication slot ", QuoteLiteral(slot), " is not a slot name"));
  }
  std::vector<std::string> listed;
  for (const auto& [option, value] : options) {
    listed.push_back(absl::StrCat(QuoteIdent(option), " ", QuoteLiteral(value)));
  }
  std::string command = absl::StrCat("START_REPLICATION SLOT ", slot, " LOGICAL ", FormatLsn(from));
  if (!listed.empty()) absl::StrAppend(&command, " (", absl::StrJoin(listed, ", "), ")");
  return Command(conn_.get(), command, PGRES_COPY_BOTH).status();
}

absl::StatusOr<std::optional<std::string>> ReplicationConnection::Receive(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    char* buffer = nullptr;
    const int length = PQgetCopyData(conn_.get(), &buffer, /*async=*/1);
    if (length > 0) {
      std::string frame(buffer, static_cast<size_t>(length));
      PQfreemem(buffer);
      return std::optional<std::string>(std::move(frame));
    }
    if (length == -1) {
      // The stream ended: the server's reason is in the result that follows.
      ResultHandle result(PQgetResult(conn_.get()));
      if (result != nullptr && PQresultStatus(result.get()) != PGRES_COMMAND_OK) {
        return internal::ResultError(result.get(), conn_.get(), "");
      }
      return absl::UnavailableError("the server ended the replication stream");
    }
    if (length == -2) return internal::ConnError(conn_.get(), "replication stream failed");
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return std::optional<std::string>();
    ASSIGN_OR_RETURN(bool readable, WaitReadable(conn_.get(), left));
    if (readable && PQconsumeInput(conn_.get()) == 0) {
      return internal::ConnError(conn_.get(), "replication stream failed");
    }
  }
}

absl::Status ReplicationConnection::Send(std::string_view frame) {
  if (PQputCopyData(conn_.get(), frame.data(), static_cast<int>(frame.size())) != 1 ||
      PQflush(conn_.get()) != 0) {
    return internal::ConnError(conn_.get(), "sending to the replication stream failed");
  }
  return absl::OkStatus();
}

int ReplicationConnection::BackendPid() const { return PQbackendPID(conn_.get()); }

}  // namespace pgbackfill::pg
