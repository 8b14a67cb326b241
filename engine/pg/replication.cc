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

// Waits until the socket is readable or `timeout` passed; false on timeout.
absl::StatusOr<bool> WaitReadable(PGconn* conn, absl::Duration timeout);

void DrainResults(PGconn* conn) {
  while (ResultHandle(PQgetResult(conn)) != nullptr) {
  }
}

// A replication command's result (they take no parameters: names are checked, values quoted).
// CREATE_REPLICATION_SLOT waits for every transaction of the cluster that holds an xid, an idle
// one too, so a command that has not answered by `deadline` is cancelled and says why.
absl::StatusOr<Result> Command(PGconn* conn, const std::string& command, ExecStatusType expect,
                               absl::Duration deadline) {
  if (PQsendQuery(conn, command.c_str()) != 1) {
    return internal::ConnError(conn, "replication command failed");
  }
  const absl::Time until = absl::Now() + deadline;
  while (PQisBusy(conn) != 0) {
    ASSIGN_OR_RETURN(bool readable, WaitReadable(conn, until - absl::Now()));
    if (!readable && absl::Now() >= until) {
      if (PGcancel* cancel = PQgetCancel(conn); cancel != nullptr) {
        char error[256];
        (void)PQcancel(cancel, error, sizeof(error));
        PQfreeCancel(cancel);
      }
      DrainResults(conn);
      return absl::DeadlineExceededError(absl::StrCat(
          "no answer to ", command, " in ", absl::FormatDuration(deadline),
          ": a long transaction on the server (one holding a transaction id, idle ones too) "
          "keeps a logical slot from being made until it ends"));
    }
    if (PQconsumeInput(conn) == 0) return internal::ConnError(conn, "replication command failed");
  }
  ResultHandle result(PQgetResult(conn));
  if (result == nullptr) return internal::ConnError(conn, "replication command failed");
  if (PQresultStatus(result.get()) != expect) {
    absl::Status error = internal::ResultError(result.get(), conn, command);
    DrainResults(conn);
    return error;
  }
  if (expect != PGRES_COPY_BOTH) DrainResults(conn);
  return Result(std::move(result));
}

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
    const std::string& name, const std::string& plugin, absl::Duration deadline) {
  if (!IsSlotName(name) || !IsSlotName(plugin)) {
    return absl::InvalidArgumentError(
        absl::StrCat("replication slot ", QuoteLiteral(name), " or plugin ", QuoteLiteral(plugin),
                     " is not made of lower-case letters, digits and underscores (at most 63)"));
  }
  ASSIGN_OR_RETURN(Result result,
                   Command(conn_.get(),
                           absl::StrCat("CREATE_REPLICATION_SLOT ", QuoteIdent(name), " LOGICAL ",
                                        QuoteIdent(plugin), " (SNAPSHOT 'export')"),
                           PGRES_TUPLES_OK, deadline));
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
  std::string command =
      absl::StrCat("START_REPLICATION SLOT ", QuoteIdent(slot), " LOGICAL ", FormatLsn(from));
  if (!listed.empty()) absl::StrAppend(&command, " (", absl::StrJoin(listed, ", "), ")");
  return Command(conn_.get(), command, PGRES_COPY_BOTH, absl::Minutes(1)).status();
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
    if (length == -1) return EndOfStream();
    if (length == -2) return internal::ConnError(conn_.get(), "replication stream failed");
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return std::optional<std::string>();
    ASSIGN_OR_RETURN(bool readable, WaitReadable(conn_.get(), left));
    if (readable && PQconsumeInput(conn_.get()) == 0) {
      return internal::ConnError(conn_.get(), "replication stream failed");
    }
  }
}

// The server ended its side of the stream. A CopyDone leaves the session in COPY IN: ours is
// ended too, and every result read, as pg_recvlogical does, so that the reason is not lost.
absl::Status ReplicationConnection::EndOfStream() {
  absl::Status reason = absl::UnavailableError("the server ended the replication stream");
  while (true) {
    ResultHandle result(PQgetResult(conn_.get()));
    if (result == nullptr) break;
    const ExecStatusType status = PQresultStatus(result.get());
    if (status == PGRES_COPY_IN) {
      if (PQputCopyEnd(conn_.get(), nullptr) != 1 || PQflush(conn_.get()) != 0) {
        return internal::ConnError(conn_.get(), "ending the replication stream failed");
      }
    } else if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      reason = internal::ResultError(result.get(), conn_.get(), "");
    }
  }
  return reason;
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
