#include "pgbackfill/throttle/probe_readings.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "pgbackfill/pg/lsn.h"
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

}  // namespace pgbackfill::throttle
