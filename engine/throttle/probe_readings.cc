#include "pgbackfill/throttle/probe_readings.h"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <type_traits>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "pgbackfill/pg/lsn.h"
#include "pgbackfill/throttle/probe_sql.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::throttle {
namespace {

absl::StatusOr<absl::Duration> Micros(const std::string& text, std::string_view what) {
  int64_t micros = 0;
  if (!absl::SimpleAtoi(text, &micros)) {
    return absl::InternalError(absl::StrCat("unexpected ", ToAbsl(what), " '", text, "'"));
  }
  // A standby's clock a little behind the primary's makes a small negative delay: no lag.
  return absl::Microseconds(std::max<int64_t>(micros, 0));
}

int64_t LagBytes(uint64_t primary_lsn, uint64_t replayed) {
  return primary_lsn > replayed ? static_cast<int64_t>(primary_lsn - replayed) : 0;
}

// Column `i` of a probe row as a number; NULL and garbage are errors naming `what`.
template <typename Number>
absl::StatusOr<Number> NumberAt(const std::vector<std::optional<std::string>>& row, size_t i,
                                std::string_view what) {
  Number value{};
  if (i >= row.size() || !row[i].has_value()) {
    return absl::InternalError(absl::StrCat("missing ", ToAbsl(what), " in a probe row"));
  }
  bool parsed = false;
  if constexpr (std::is_floating_point_v<Number>) {
    parsed = absl::SimpleAtod(*row[i], &value);
  } else {
    parsed = absl::SimpleAtoi(*row[i], &value);
  }
  if (!parsed) {
    return absl::InternalError(
        absl::StrCat("unexpected ", ToAbsl(what), " '", *row[i], "' in a probe row"));
  }
  return value;
}

std::optional<std::string> TextAt(const std::vector<std::optional<std::string>>& row, size_t i) {
  return i < row.size() ? row[i] : std::nullopt;
}

absl::Duration Millis(double millis) { return absl::Microseconds(millis * 1000.0); }

// pg_stat_statements keeps a running (Welford) variance and shows the population stddev; the sum
// of squares it implies, n (stddev^2 + mean^2), subtracts between rounds like the other counters.
double SumOfSquares(const StatementRow& row) {
  if (row.calls <= 0) return 0;
  const double calls = static_cast<double>(row.calls);
  const double mean = row.total_millis / calls;
  return calls * (row.stddev_millis * row.stddev_millis + mean * mean);
}

}  // namespace

std::string StandbyName(const std::optional<std::string>& application_name,
                        const std::optional<std::string>& client_addr) {
  std::string name =
      application_name.has_value() && !application_name->empty() ? *application_name : "walsender";
  if (client_addr.has_value() && !client_addr->empty())
    absl::StrAppend(&name, " (", *client_addr, ")");
  return name;
}

std::vector<ReplicaSample> ReplicasFromWalSenders(const std::vector<WalSenderRow>& rows,
                                                  uint64_t primary_lsn) {
  std::vector<ReplicaSample> replicas;
  for (const WalSenderRow& row : rows) {
    if (row.logical || row.state == "backup") continue;
    if (!row.replay_lsn.has_value() && row.write_lsn.has_value()) continue;
    ReplicaSample replica;
    replica.name = StandbyName(row.application_name, row.client_addr);
    if (!row.state.has_value()) {
      replica.status = absl::PermissionDeniedError(
          "pg_stat_replication hides this standby's details from the probing role; grant it "
          "pg_monitor (or pg_read_all_stats)");
      replicas.push_back(std::move(replica));
      continue;
    }
    if (!row.replay_lsn.has_value()) {
      replica.lag_bytes = absl::UnavailableError(absl::StrCat(
          "the standby has not reported a replay position yet (state ", *row.state, ")"));
    } else if (absl::StatusOr<uint64_t> replayed = pg::ParseLsn(*row.replay_lsn); !replayed.ok()) {
      replica.lag_bytes = replayed.status();
    } else {
      replica.lag_bytes = LagBytes(primary_lsn, *replayed);
      replica.idle = *replayed >= primary_lsn;
    }
    if (row.replay_lag_micros.has_value()) {
      replica.replay_lag = Micros(*row.replay_lag_micros, "replay_lag");
    } else {
      replica.replay_lag = absl::UnavailableError(
          "pg_stat_replication.replay_lag is NULL (no recent replay report from the standby)");
    }
    replicas.push_back(std::move(replica));
  }
  return replicas;
}

ReplicaSample ReplicaFromStandby(std::string name, const StandbyRow& row,
                                 const absl::StatusOr<uint64_t>& primary_lsn) {
  ReplicaSample replica;
  replica.name = std::move(name);
  if (row.in_recovery != "t") {
    replica.status = absl::FailedPreconditionError(absl::StrCat(
        replica.name,
        " is not a standby (pg_is_in_recovery() is false); throttle.replicas must name standbys"));
    return replica;
  }
  std::optional<uint64_t> replayed;
  if (!row.replay_lsn.has_value()) {
    replica.lag_bytes = absl::UnavailableError("pg_last_wal_replay_lsn() is NULL");
  } else if (absl::StatusOr<uint64_t> parsed = pg::ParseLsn(*row.replay_lsn); !parsed.ok()) {
    replica.lag_bytes = parsed.status();
  } else {
    replayed = *parsed;
    if (primary_lsn.ok()) {
      replica.lag_bytes = LagBytes(*primary_lsn, *replayed);
    } else {
      replica.lag_bytes = absl::UnavailableError(absl::StrCat(
          "the primary's WAL position is unknown this round: ", primary_lsn.status().message()));
    }
  }
  if (replayed.has_value() && primary_lsn.ok() && *replayed >= *primary_lsn) {
    replica.idle = true;
    if (row.receive_lsn.has_value()) {
      absl::StatusOr<uint64_t> received = pg::ParseLsn(*row.receive_lsn);
      replica.idle = received.ok() && *replayed >= *received;
    }
  }
  if (row.replay_delay_micros.has_value()) {
    replica.replay_lag = Micros(*row.replay_delay_micros, "replay delay");
  } else {
    replica.replay_lag = absl::UnavailableError(
        "no transaction replayed since the standby started (pg_last_xact_replay_timestamp() "
        "is NULL)");
  }
  return replica;
}

void DisambiguateNames(std::vector<std::string>& names, const std::vector<std::string>& reserved) {
  absl::flat_hash_set<std::string> taken(reserved.begin(), reserved.end());
  for (std::string& name : names) {
    if (taken.insert(name).second) continue;
    for (int n = 2;; ++n) {
      std::string candidate = absl::StrCat(name, " #", n);
      if (taken.insert(candidate).second) {
        name = std::move(candidate);
        break;
      }
    }
  }
}

absl::StatusOr<int64_t> WalBytesPerSecond(uint64_t from_lsn, uint64_t to_lsn,
                                          absl::Duration elapsed) {
  if (elapsed <= absl::ZeroDuration()) {
    return absl::InternalError("no time elapsed between two readings of the WAL position");
  }
  if (to_lsn <= from_lsn) return 0;
  const double rate = static_cast<double>(to_lsn - from_lsn) / absl::ToDoubleSeconds(elapsed);
  return static_cast<int64_t>(rate);
}

absl::StatusOr<std::string> CustomReading(int rows, const std::optional<std::string>& first_value) {
  if (rows == 0) return absl::FailedPreconditionError("throttle.query returned no row");
  if (!first_value.has_value())
    return absl::FailedPreconditionError("throttle.query returned NULL");
  return *first_value;
}

absl::StatusOr<StatementRow> ParseStatementRow(const std::vector<std::optional<std::string>>& row) {
  StatementRow out;
  ASSIGN_OR_RETURN(out.queryid, NumberAt<int64_t>(row, kStatementQueryId, "queryid"));
  ASSIGN_OR_RETURN(out.userid, NumberAt<int64_t>(row, kStatementUserId, "userid"));
  ASSIGN_OR_RETURN(out.calls, NumberAt<int64_t>(row, kStatementCalls, "calls"));
  ASSIGN_OR_RETURN(out.total_millis, NumberAt<double>(row, kStatementTotalMillis, "total_exec_time"));
  out.query = TextAt(row, kStatementQuery).value_or("");
  ASSIGN_OR_RETURN(out.stddev_millis,
                   NumberAt<double>(row, kStatementStddevMillis, "stddev_exec_time"));
  return out;
}

StatementLatency StatementLatencyDelta(const std::optional<StatementBaseline>& previous,
                                       const std::vector<StatementRow>& rows,
                                       StatementBaseline& next) {
  struct Delta {
    const StatementRow* row;
    int64_t calls;
    double millis;
    double squares;
  };
  next.clear();
  std::vector<Delta> deltas;
  for (const StatementRow& row : rows) {
    const StatementCounters now{row.calls, row.total_millis, SumOfSquares(row)};
    next[{row.queryid, row.userid}] = now;
    if (!previous.has_value()) continue;
    StatementCounters before;
    if (auto it = previous->find({row.queryid, row.userid}); it != previous->end()) {
      before = it->second;
    }
    const int64_t calls = now.calls - before.calls;
    const double millis = now.total_millis - before.total_millis;
    if (calls < 0 || millis < 0) continue;  // reset or evicted and entered again: no delta
    if (calls == 0) continue;
    deltas.push_back(Delta{&row, calls, millis, now.squares - before.squares});
  }

  StatementLatency reading;
  double total_millis = 0;
  double squares = 0;
  for (const Delta& delta : deltas) {
    reading.calls += delta.calls;
    total_millis += delta.millis;
    squares += delta.squares;
  }
  if (reading.calls == 0) return reading;
  const double calls = static_cast<double>(reading.calls);
  const double mean_millis = total_millis / calls;
  reading.mean = Millis(mean_millis);
  // Rounding in the server's running variance can make a tiny difference negative.
  const double variance = std::max(squares / calls - mean_millis * mean_millis, 0.0);
  reading.tail = Millis(mean_millis + kTailDeviations * std::sqrt(variance));

  const size_t busiest = std::min(deltas.size(), kBusiestStatements);
  std::partial_sort(deltas.begin(), deltas.begin() + static_cast<std::ptrdiff_t>(busiest),
                    deltas.end(), [](const Delta& a, const Delta& b) {
                      return std::tie(b.calls, a.row->queryid, a.row->userid) <
                             std::tie(a.calls, b.row->queryid, b.row->userid);
                    });
  for (size_t i = 0; i < busiest; ++i) {
    const absl::Duration mean = Millis(deltas[i].millis / static_cast<double>(deltas[i].calls));
    if (i == 0 || mean > reading.worst_busy) {
      reading.worst_busy = mean;
      reading.worst_query = std::string(Utf8Prefix(deltas[i].row->query, 80));
    }
  }
  return reading;
}

absl::Status StatementsNotInstalled(const std::string& database) {
  return absl::FailedPreconditionError(
      absl::StrCat("pg_stat_statements is not installed in database ", database));
}

absl::Status StatementLatencyError(const absl::Status& status) {
  if (status.code() != absl::StatusCode::kFailedPrecondition) return status;
  absl::Status recoded(absl::StatusCode::kInternal, status.message());
  status.ForEachPayload([&recoded](absl::string_view url, const absl::Cord& payload) {
    recoded.SetPayload(url, payload);
  });
  return recoded;
}

absl::StatusOr<SessionLook> ParseSessionLook(const std::vector<std::optional<std::string>>& row) {
  SessionLook look;
  ASSIGN_OR_RETURN(look.active, NumberAt<int64_t>(row, kLoadActive, "active sessions"));
  ASSIGN_OR_RETURN(look.cpu, NumberAt<int64_t>(row, kLoadCpu, "sessions on CPU"));
  ASSIGN_OR_RETURN(look.lock, NumberAt<int64_t>(row, kLoadLock, "sessions waiting on locks"));
  ASSIGN_OR_RETURN(look.lwlock, NumberAt<int64_t>(row, kLoadLwLock, "sessions on LWLocks"));
  ASSIGN_OR_RETURN(look.io, NumberAt<int64_t>(row, kLoadIo, "sessions waiting on I/O"));
  ASSIGN_OR_RETURN(look.recent, NumberAt<int64_t>(row, kLoadRecent, "recently busy sessions"));
  return look;
}

absl::StatusOr<SessionLoad> AverageLooks(const std::vector<SessionLook>& looks,
                                         const absl::Status& why) {
  if (looks.empty()) {
    return why.ok() ? absl::UnavailableError("no look at pg_stat_activity answered") : why;
  }
  SessionLoad load;
  for (const SessionLook& look : looks) {
    load.active += static_cast<double>(look.active);
    load.cpu += static_cast<double>(look.cpu);
    load.lock += static_cast<double>(look.lock);
    load.lwlock += static_cast<double>(look.lwlock);
    load.io += static_cast<double>(look.io);
    load.recent = std::max(load.recent, static_cast<int>(look.recent));
  }
  const double n = static_cast<double>(looks.size());
  load.active /= n;
  load.cpu /= n;
  load.lock /= n;
  load.lwlock /= n;
  load.io /= n;
  load.looks = static_cast<int>(looks.size());
  return load;
}

absl::StatusOr<SlotWal> ParseSlotRow(const std::vector<std::optional<std::string>>& row) {
  SlotWal slot;
  slot.slot = TextAt(row, kSlotName).value_or("");
  slot.wal_status = TextAt(row, kSlotWalStatus).value_or("");
  if (TextAt(row, kSlotSafeWalSize).has_value()) {
    ASSIGN_OR_RETURN(slot.safe_wal_size, NumberAt<int64_t>(row, kSlotSafeWalSize, "safe_wal_size"));
  }
  if (TextAt(row, kSlotRetainedBytes).has_value()) {
    ASSIGN_OR_RETURN(slot.retained_bytes,
                     NumberAt<int64_t>(row, kSlotRetainedBytes, "retained WAL bytes"));
  }
  return slot;
}

absl::StatusOr<CpuStallCount> ParseCpuPressureRow(
    const std::vector<std::optional<std::string>>& row) {
  if (row.size() <= kCpuPressureRole) {
    return absl::InternalError("unexpected result of the CPU pressure probe");
  }
  if (row[kCpuPressureAllowed] != "t") {
    const std::string role = row[kCpuPressureRole].value_or("the role");
    return absl::FailedPreconditionError(absl::StrCat(
        "role ", role,
        " may not read the server's /proc/pressure/cpu: GRANT pg_read_server_files TO ", role,
        "; GRANT EXECUTE ON FUNCTION pg_read_file(text, bigint, bigint, boolean) TO ", role));
  }
  if (!row[kCpuPressureText].has_value()) {
    return absl::FailedPreconditionError(
        "the database server has no /proc/pressure/cpu (Linux 4.20 or later with PSI on)");
  }
  CpuStallCount count;
  if (!row[kCpuPressureAt].has_value() ||
      !absl::SimpleAtod(*row[kCpuPressureAt], &count.at_seconds)) {
    return absl::InternalError("the CPU pressure probe returned no time");
  }
  // "some avg10=1.23 avg60=0.50 avg300=0.10 total=123456"
  for (absl::string_view line : absl::StrSplit(*row[kCpuPressureText], '\n')) {
    if (!absl::ConsumePrefix(&line, "some ")) continue;
    const size_t total = line.find("total=");
    if (total != absl::string_view::npos &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(total + 6)), &count.total_micros)) {
      return count;
    }
  }
  return absl::InternalError(
      absl::StrCat("unreadable /proc/pressure/cpu on the database server: \"",
                   row[kCpuPressureText]->substr(0, 120), "\""));
}

std::optional<double> CpuPressureBetween(const std::optional<CpuStallCount>& previous,
                                         const CpuStallCount& now) {
  if (!previous.has_value() || now.at_seconds <= previous->at_seconds ||
      now.total_micros < previous->total_micros) {
    return std::nullopt;
  }
  const double stalled = static_cast<double>(now.total_micros - previous->total_micros) / 1e6;
  return std::clamp(stalled / (now.at_seconds - previous->at_seconds), 0.0, 1.0);
}

absl::StatusOr<ArchiverState> ParseArchiverRow(const std::vector<std::optional<std::string>>& row) {
  ArchiverState state;
  const std::string mode = TextAt(row, kArchiveMode).value_or("off");
  state.archiving = mode == "on" || mode == "always";
  state.failing = TextAt(row, kArchiveFailing) == "t";
  state.last_failed_wal = TextAt(row, kArchiveLastFailedWal).value_or("");
  if (!TextAt(row, kArchiveReadyFiles).has_value()) {
    const std::string role = TextAt(row, kArchiveRole).value_or("the probing role");
    return absl::PermissionDeniedError(absl::StrCat(
        "role ", role, " may not call pg_ls_archive_statusdir() to count the WAL waiting for "
        "the archiver; grant it pg_monitor (GRANT pg_monitor TO ", role, ")"));
  }
  ASSIGN_OR_RETURN(const int64_t ready, NumberAt<int64_t>(row, kArchiveReadyFiles, ".ready files"));
  ASSIGN_OR_RETURN(const int64_t segment,
                   NumberAt<int64_t>(row, kArchiveSegmentBytes, "wal_segment_size"));
  state.pending_bytes = ready * segment;
  return state;
}

}  // namespace pgbackfill::throttle
