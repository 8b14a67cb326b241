// Turning probe query rows into readings (sample.h): which walsenders are standbys, what their
// lag is, how standbys are named, the WAL rate, the custom query's value, and what the application
// feels (statement latency deltas, session load averages, slots, the archiver). Pure, so that each rule
// has a unit test; engine/throttle/probes.cc runs the queries (probe_sql.h) and calls these.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pgbackfill/throttle/sample.h"

namespace pgbackfill::throttle {

// One walsender row of WalSendersSql(), as text; nullopt is NULL.
struct WalSenderRow {
  std::optional<std::string> application_name;
  std::optional<std::string> client_addr;
  std::optional<std::string> state;
  std::optional<std::string> write_lsn;
  std::optional<std::string> replay_lsn;
  std::optional<std::string> replay_lag_micros;
  bool logical = false;
};

// The standbys among the primary's walsenders, in row order, named by StandbyName() (duplicates
// not yet disambiguated). Left out, because none of them is a standby whose reads can be stale:
//  - logical walsenders (a logical slot is active on them): CDC and subscriptions;
//  - state 'backup': a base backup streaming the data directory;
//  - WAL receivers that report positions but never a replay position (pg_receivewal, the WAL
//    stream of pg_basebackup -X stream); a physical standby always reports one.
// Kept with an error status: a walsender whose details the probing role may not see (state is
// NULL; pg_stat_replication shows them only to roles with pg_read_all_stats). Kept with a lag_bytes
// error: a standby that has not reported a replay position yet. lag_bytes is `primary_lsn` minus
// replay_lsn (never negative); idle means nothing is left to replay; a NULL replay_lag (PostgreSQL
// clears it once a standby has caught up and stayed idle) is an error status for that reading.
std::vector<ReplicaSample> ReplicasFromWalSenders(const std::vector<WalSenderRow>& rows,
                                                  uint64_t primary_lsn);

// application_name, plus " (client_addr)" when the standby connects over TCP: stable across
// reconnects, unlike the walsender's pid or client port. An empty application_name reads
// "walsender".
std::string StandbyName(const std::optional<std::string>& application_name,
                        const std::optional<std::string>& client_addr);

// The row of StandbySql() from a directly probed standby, as text; nullopt is NULL.
struct StandbyRow {
  std::optional<std::string> in_recovery;
  std::optional<std::string> replay_lsn;
  std::optional<std::string> receive_lsn;
  std::optional<std::string> replay_delay_micros;
};

// A directly probed standby's reading. lag_bytes is `primary_lsn` (the primary's position in the
// same round) minus the standby's replay position; replay_lag is the standby's now() minus its last
// replayed commit timestamp; idle when replay has reached both what the standby received and the
// primary's position. A server that is not in recovery is an error: a plan naming a primary as a
// replica would otherwise read as a perfectly healthy standby.
ReplicaSample ReplicaFromStandby(std::string name, const StandbyRow& row,
                                 const absl::StatusOr<uint64_t>& primary_lsn);

// Makes `names` unique in place, keeping the first of each and suffixing the others " #2",
// " #3", ... in order; names in `reserved` count as taken already. Deterministic for a given
// input order.
void DisambiguateNames(std::vector<std::string>& names,
                       const std::vector<std::string>& reserved = {});

// WAL bytes per second between two readings of the WAL position taken `elapsed` apart (client
// time). A position that went backwards (a different server after a failover) reads 0; no
// elapsed time is an error.
absl::StatusOr<int64_t> WalBytesPerSecond(uint64_t from_lsn, uint64_t to_lsn,
                                          absl::Duration elapsed);

// The custom throttle query's reading from its result: the first column of the first row as text;
// an error for no row or NULL (the governor holds on it).
absl::StatusOr<std::string> CustomReading(int rows, const std::optional<std::string>& first_value);

// One row of StatementLatencySql(): a statement's cumulative counters.
struct StatementRow {
  int64_t queryid = 0;
  int64_t userid = 0;
  int64_t calls = 0;
  double total_millis = 0;
  std::string query;
  double stddev_millis = 0;  // over all its calls so far
};

// Parses a row of StatementLatencySql() (text values, nullopt is NULL); an error for a value that
// is not a number.
absl::StatusOr<StatementRow> ParseStatementRow(const std::vector<std::optional<std::string>>& row);

// The counters of every statement at the previous reading, by (queryid, userid).
struct StatementCounters {
  int64_t calls = 0;
  double total_millis = 0;
  double squares = 0;  // the sum of every call's time squared, ms^2, from the mean and stddev
};
using StatementBaseline = absl::flat_hash_map<std::pair<int64_t, int64_t>, StatementCounters>;

// StatementLatency::tail is the interval's mean plus this many standard deviations.
inline constexpr double kTailDeviations = 3;

// How many statements the busiest are taken among for StatementLatency::worst_busy.
inline constexpr size_t kBusiestStatements = 5;

// The interval's reading from this round's rows and the previous round's counters (`previous`;
// nullopt on the first round, which only primes: calls 0, means 0). A statement absent from
// `previous` started in the interval and counts from zero; one whose counters went backwards
// (pg_stat_statements_reset, eviction and re-entry) is skipped this round. mean is the sum of
// execution time deltas over the sum of call deltas; tail that mean plus kTailDeviations standard
// deviations of the interval's calls taken together (from the deltas of the sums of squares that
// pg_stat_statements' mean and stddev imply); worst_busy the highest mean among the
// kBusiestStatements statements with most calls (ties: the lower queryid), worst_query its text
// cut to 80 bytes on a UTF-8 boundary. `next` receives the counters for the next round.
StatementLatency StatementLatencyDelta(const std::optional<StatementBaseline>& previous,
                                       const std::vector<StatementRow>& rows,
                                       StatementBaseline& next);

// The statement_latency reading when the extension is not installed in `database`: the
// FailedPrecondition error the governor recognises.
absl::Status StatementsNotInstalled(const std::string& database);

// Any other failure of the statement latency probe, never FailedPrecondition (which the governor
// reads as "not installed"): server errors that pg::MakeError classifies as fatal arrive with that
// code, and are re-coded Internal, the message and SQLSTATE payload kept.
absl::Status StatementLatencyError(const absl::Status& status);

// One look of SessionLoadSql(): the counts in its columns.
struct SessionLook {
  int64_t active = 0;
  int64_t cpu = 0;
  int64_t lock = 0;
  int64_t lwlock = 0;
  int64_t io = 0;
  int64_t recent = 0;
};
absl::StatusOr<SessionLook> ParseSessionLook(const std::vector<std::optional<std::string>>& row);

// The averages over `looks` (the looks that answered), and the most recent sessions any look saw.
// No look at all is an error: `why` says why the round's own look failed.
absl::StatusOr<SessionLoad> AverageLooks(const std::vector<SessionLook>& looks,
                                         const absl::Status& why);

// A row of SlotsSql() as a reading: a NULL retained size (no restart_lsn) is 0 bytes, a NULL
// wal_status is "", a NULL safe_wal_size is no cap.
absl::StatusOr<SlotWal> ParseSlotRow(const std::vector<std::optional<std::string>>& row);

// The row of ArchiverSql() as a reading: archiving for archive_mode on or always, pending bytes =
// `.ready` files × wal_segment_size. A NULL file count (the role may not list archive_status) is
// a PermissionDenied error naming the role and what to grant.
absl::StatusOr<ArchiverState> ParseArchiverRow(const std::vector<std::optional<std::string>>& row);

// One read of the server's /proc/pressure/cpu: the "some" line's total (microseconds in which
// at least one runnable task waited for a CPU, since boot) and when it was read, by the server's
// clock.
struct CpuStallCount {
  int64_t total_micros = 0;
  double at_seconds = 0;
};

// The row of CpuPressureSql() as a count. FailedPrecondition, which the governor reads as "not
// available here" and leaves out: the role may not read the file (naming the role and what to
// grant), or the server has none. Text without a "some ... total=" line is Internal.
absl::StatusOr<CpuStallCount> ParseCpuPressureRow(
    const std::vector<std::optional<std::string>>& row);

// The share of the time between two counts in which a task waited for a CPU, in [0, 1]; nullopt
// without an earlier count, or when the clock did not move forward or the total went back (the
// server restarted, or the probe reached another one after a failover).
std::optional<double> CpuPressureBetween(const std::optional<CpuStallCount>& previous,
                                         const CpuStallCount& now);

}  // namespace pgbackfill::throttle
