// The plan's tuning: workers, batch, throttle and vacuum_every, how hard the job may push. They
// are apart from the other sections because `pgbackfill set` runs its values through the same
// Apply* functions, one key at a time, over the plan a running job already has.
#include <algorithm>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/util/strings.h"
#include "sections.h"

namespace pgbackfill::plan::internal {
namespace {

constexpr int kMaxWorkers = 256;

absl::Status ParseReplicas(const Reader& reader, const Entry& entry, Throttle& throttle) {
  if (entry.value.IsSequence() && entry.value.size() == 0) return absl::OkStatus();
  ASSIGN_OR_RETURN(auto items, reader.StringList(entry));
  for (auto& [text, line] : items) {
    absl::StatusOr<std::string> dsn = ExpandEnv(text, reader.env());
    if (!dsn.ok()) return reader.Error(line, entry.path, ToStd(dsn.status().message()));
    throttle.replicas.push_back(*std::move(dsn));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ApplyWorkers(const Reader& reader, const Entry& entry, Plan& plan) {
  ASSIGN_OR_RETURN(const int64_t count, reader.Integer(entry, 1, kMaxWorkers));
  plan.workers = static_cast<int>(count);
  return absl::OkStatus();
}

absl::Status ApplyVacuumEvery(const Reader& reader, const Entry& entry, Plan& plan) {
  constexpr std::string_view kExample =
      "a share of the table such as 5% or a row count such as 500000, or off";
  if (!entry.value.IsScalar()) {
    return reader.Error(entry,
                        absl::StrFormat("must be %s, got %s", kExample, Describe(entry.value)));
  }
  const std::string text = Trim(entry.value.Scalar());
  VacuumEvery every;
  if (text == "off" || text == "0") {
    plan.vacuum_every = every;
    return absl::OkStatus();
  }
  if (text.ends_with("%")) {
    double percent = 0;
    if (!absl::SimpleAtod(ToAbsl(std::string_view(text).substr(0, text.size() - 1)), &percent) ||
        !(percent > 0 && percent <= 100)) {
      return reader.Error(
          entry,
          absl::StrFormat("'%s' is not a share between 0%% and 100%%; use %s", text, kExample));
    }
    every.fraction = percent / 100;
  } else {
    int64_t rows = 0;
    if (!absl::SimpleAtoi(ToAbsl(text), &rows) || rows < 1) {
      return reader.Error(
          entry, absl::StrFormat("'%s' is not a share or a row count; use %s", text, kExample));
    }
    every.rows = rows;
  }
  plan.vacuum_every = every;
  return absl::OkStatus();
}

absl::Status ParseBatch(Reader& reader, const Entry& section, Batch& batch) {
  ASSIGN_OR_RETURN(std::vector<Entry> entries,
                   reader.SectionEntries(section, kBatchSection, "{ rows: 5000, target: 200ms }"));
  return ApplyBatch(reader, entries, batch);
}

// Explicit values must agree with each other; defaults (and, for `pgbackfill set`, the values
// the plan already has) give way to explicit values, so `batch: {max_rows: 1000}` alone is
// valid and starts at 1000 rows.
absl::Status ApplyBatch(const Reader& reader, const std::vector<Entry>& entries, Batch& batch) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  const Entry* rows = Find(entries, "rows");
  const Entry* min_rows = Find(entries, "min_rows");
  const Entry* max_rows = Find(entries, "max_rows");
  if (rows != nullptr) {
    ASSIGN_OR_RETURN(batch.rows, reader.Integer(*rows, 1, kMax));
  }
  if (min_rows != nullptr) {
    ASSIGN_OR_RETURN(batch.min_rows, reader.Integer(*min_rows, 1, kMax));
  }
  if (max_rows != nullptr) {
    ASSIGN_OR_RETURN(batch.max_rows, reader.Integer(*max_rows, 1, kMax));
  }
  if (const Entry* target = Find(entries, "target")) {
    ASSIGN_OR_RETURN(batch.target, reader.Duration(*target, absl::Milliseconds(1)));
  }

  if (min_rows == nullptr) {
    if (rows != nullptr) batch.min_rows = std::min(batch.min_rows, batch.rows);
    if (max_rows != nullptr) batch.min_rows = std::min(batch.min_rows, batch.max_rows);
  }
  if (max_rows == nullptr) {
    if (rows != nullptr) batch.max_rows = std::max(batch.max_rows, batch.rows);
    if (min_rows != nullptr) batch.max_rows = std::max(batch.max_rows, batch.min_rows);
  }
  if (batch.min_rows > batch.max_rows) {  // both explicit
    return reader.Error(*min_rows, absl::StrFormat("must not exceed batch.max_rows (%d), got %d",
                                                   batch.max_rows, batch.min_rows));
  }
  if (rows == nullptr) {
    batch.rows = std::clamp(batch.rows, batch.min_rows, batch.max_rows);
  } else if (batch.rows < batch.min_rows) {
    return reader.Error(*rows, absl::StrFormat("must be at least batch.min_rows (%d), got %d",
                                               batch.min_rows, batch.rows));
  } else if (batch.rows > batch.max_rows) {
    return reader.Error(*rows, absl::StrFormat("must not exceed batch.max_rows (%d), got %d",
                                               batch.max_rows, batch.rows));
  }
  return absl::OkStatus();
}

absl::Status ParseThrottle(Reader& reader, const Entry& section, Throttle& throttle) {
  ASSIGN_OR_RETURN(std::vector<Entry> entries,
                   reader.SectionEntries(section, kThrottleSection,
                                         "{ max_replica_lag: 5s, lock_timeout: 200ms }"));
  return ApplyThrottle(reader, entries, throttle);
}

absl::Status ApplyThrottle(const Reader& reader, const std::vector<Entry>& entries,
                           Throttle& throttle) {
  // PostgreSQL reads 0 as "no timeout" and counts in whole milliseconds, so anything below
  // 1ms would silently switch the protection off.
  constexpr std::string_view kTimeoutWhy = " (0 would turn PostgreSQL's timeout off)";
  // First, so that the application limits written beside it win over the defaults it drops.
  for (const Entry& entry : entries) {
    if (entry.name != "application") continue;
    ASSIGN_OR_RETURN(throttle.application, reader.Bool(entry));
    if (!throttle.application) {
      throttle.max_statement_latency = {};
      throttle.max_statement_tail = {};
      throttle.max_commit_latency = {};
      throttle.max_active_sessions = {};
      throttle.max_cpu_pressure = {};
    }
  }
  for (const Entry& entry : entries) {
    const std::string_view key = entry.name;
    if (key == "interval") {
      ASSIGN_OR_RETURN(throttle.interval, reader.Duration(entry, absl::Milliseconds(1)));
    } else if (key == "max_replica_lag") {
      ASSIGN_OR_RETURN(throttle.max_replica_lag, reader.Duration(entry));
    } else if (key == "max_replica_lag_bytes") {
      ASSIGN_OR_RETURN(throttle.max_replica_lag_bytes, reader.ByteSize(entry));
    } else if (key == "replicas") {
      RETURN_IF_ERROR(ParseReplicas(reader, entry, throttle));
    } else if (key == "max_lock_waiters") {
      ASSIGN_OR_RETURN(const int64_t waiters,
                       reader.Integer(entry, 0, std::numeric_limits<int>::max()));
      throttle.max_lock_waiters = static_cast<int>(waiters);
    } else if (key == "lock_timeout") {
      ASSIGN_OR_RETURN(throttle.lock_timeout,
                       reader.Duration(entry, absl::Milliseconds(1), kTimeoutWhy));
    } else if (key == "statement_timeout") {
      ASSIGN_OR_RETURN(throttle.statement_timeout,
                       reader.Duration(entry, absl::Milliseconds(1), kTimeoutWhy));
    } else if (key == "max_rows_per_second") {
      ASSIGN_OR_RETURN(throttle.max_rows_per_second, reader.Rate(entry));
    } else if (key == "max_wal_bytes_per_second") {
      ASSIGN_OR_RETURN(throttle.max_wal_bytes_per_second, reader.ByteSize(entry));
    } else if (key == "max_canary_latency") {
      ASSIGN_OR_RETURN(throttle.max_canary_latency, reader.Duration(entry));
    } else if (key == "canary") {
      ASSIGN_OR_RETURN(throttle.canary, reader.Sql(entry));
    } else if (key == "query") {
      ASSIGN_OR_RETURN(throttle.query, reader.Sql(entry));
    } else if (key == "hold_on_autovacuum") {
      ASSIGN_OR_RETURN(throttle.hold_on_autovacuum, reader.Bool(entry));
    } else if (key == "max_statement_latency") {
      ASSIGN_OR_RETURN(throttle.max_statement_latency,
                       reader.LimitValue(entry, LimitUnit::kSeconds));
    } else if (key == "max_statement_tail") {
      ASSIGN_OR_RETURN(throttle.max_statement_tail, reader.LimitValue(entry, LimitUnit::kSeconds));
    } else if (key == "max_commit_latency") {
      ASSIGN_OR_RETURN(throttle.max_commit_latency, reader.LimitValue(entry, LimitUnit::kSeconds));
    } else if (key == "max_active_sessions") {
      ASSIGN_OR_RETURN(throttle.max_active_sessions,
                       reader.LimitValue(entry, LimitUnit::kSessions));
    } else if (key == "max_cpu_pressure") {
      ASSIGN_OR_RETURN(throttle.max_cpu_pressure, reader.LimitValue(entry, LimitUnit::kShare));
    } else if (key == "baseline") {
      ASSIGN_OR_RETURN(throttle.baseline, reader.Duration(entry));
    } else if (key == "max_slot_wal") {
      ASSIGN_OR_RETURN(throttle.max_slot_wal, reader.ByteSize(entry));
    } else if (key == "max_archive_pending") {
      ASSIGN_OR_RETURN(throttle.max_archive_pending, reader.ByteSize(entry));
    } else if (key == "command") {
      ASSIGN_OR_RETURN(throttle.command, reader.Sql(entry));
    }
  }
  return absl::OkStatus();
}

}  // namespace pgbackfill::plan::internal
