// The SQL text of the throttle probes, as pure functions so that tests check it without a server.
//
// Safety: every catalog object is spelled pg_catalog.*, every value travels as a bind parameter,
// and the catalog statements run in a READ ONLY transaction whose search_path is pinned to
// `pg_catalog, pg_temp` (ProbeSettingsSql), so that a hostile search_path cannot shadow an
// operator or a type either. The canary and the custom query are operator SQL and run outside that
// transaction, under the session's own search_path, as the operator wrote them.
#pragma once

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "pgbackfill/plan/plan.h"
#include "pgbackfill/sql/names.h"

namespace pgbackfill::throttle {

// statement_timeout of every probe statement: max(2 * interval, 1s). A stuck probe becomes an
// error (which holds), not a round that never ends.
absl::Duration ProbeStatementTimeout(absl::Duration interval);

// After BEGIN: pins the transaction's search_path and statement_timeout ($1,
// sql::TimeoutSetting), both for that transaction only: through a transaction-pooling pooler a
// session-wide timeout would reach whichever application client gets the server connection next.
std::string ProbeSettingsSql();
// The probes' statement timeout ($1) alone, for the transaction it runs in: the custom query and
// the canary run after the catalog transaction, each in an implicit transaction of its own with
// this in front (nothing on the session: a transaction-pooling pooler would hand it on).
std::string ProbeTimeoutSql();

// The primary's current WAL position and its walsenders: one row per walsender, or a single row
// with a NULL pid when there are none (LEFT JOIN), so the WAL position always comes back and every
// standby's lag is measured against the same position. Columns: WalSenderColumn.
std::string WalSendersSql();
enum WalSenderColumn : int {
  kWalLsn = 0,           // pg_current_wal_lsn(), text
  kWalSenderPid,         // NULL: no walsender (the row only carries the WAL position)
  kWalSenderName,        // application_name
  kWalSenderClientAddr,  // host(client_addr); NULL over a unix socket or when hidden
  kWalSenderState,       // NULL when the role may not see walsender details
  kWalSenderWriteLsn,
  kWalSenderReplayLsn,
  kWalSenderReplayLagMicros,  // replay_lag in microseconds
  kWalSenderLogical,          // "t" when a logical replication slot is active on it
  // pg_current_wal_insert_lsn(), text: where WAL is generated, for the WAL rate. The write
  // position above trails it by up to wal_writer_delay under synchronous_commit = off, so a rate
  // from it would miss a burst that is still in WAL buffers.
  kWalInsertLsn,
  // The timeline of that WAL position (the first 8 hex digits of its segment's file name): a new
  // one means a standby was promoted, a failover.
  kWalTimeline,
};

// How many sessions, other than the ones in $1 (int4[] text, IntArrayParam) and the probing
// session itself, wait on a lock held by one of the sessions in $1. pg_blocking_pids is only
// called for sessions waiting on a heavyweight lock: it takes the lock manager's partition locks.
std::string LockWaitersSql();

// $1 schema, $2 table (catalog spelling): one row when the table exists, with "t" in its only
// column while an autovacuum worker (not a manual VACUUM) processes it, one of its partitions,
// or their TOAST tables, in this database. No row: the table does not exist.
std::string AutovacuumSql();

// On a directly probed standby, one row: pg_is_in_recovery(), pg_last_wal_replay_lsn(),
// pg_last_wal_receive_lsn() (NULL without a walreceiver, e.g. replaying from an archive), and
// now() - pg_last_xact_replay_timestamp() in microseconds (NULL before the first replayed
// transaction). Columns: StandbyColumn.
std::string StandbySql();
enum StandbyColumn : int {
  kStandbyInRecovery = 0,
  kStandbyReplayLsn,
  kStandbyReceiveLsn,
  kStandbyReplayDelayMicros,
};

// The default canary: the first row of `table` by its key, `SELECT 1 FROM "s"."t" ORDER BY "k1",
// "k2" LIMIT 1`, an index walk that stalls exactly when the application's own key lookups would
// (locks, I/O, CPU). Without key columns, `SELECT 1 FROM "s"."t" LIMIT 1`.
std::string DefaultCanarySql(const plan::QualifiedName& table,
                             const std::vector<std::string>& key_columns);


// One row: current_database(), and the schema pg_stat_statements is installed in (NULL when it is
// not installed in this database; the extension is per database even when preloaded).
// Columns: ExtensionColumn.
std::string StatementsExtensionSql();
enum ExtensionColumn : int {
  kExtensionDatabase = 0,
  kExtensionSchema,
};

// The application's statements in pg_stat_statements, installed in `schema`: one row per
// statement (queryid, userid) of this database, top level only, whose text does not mention
// pgbackfill (our batches name the job store schema, our probes carry sql::kTag). Counters are
// cumulative; the caller takes deltas between rounds. Columns: StatementColumn.
std::string StatementLatencySql(const std::string& schema);
enum StatementColumn : int {
  kStatementQueryId = 0,
  kStatementUserId,
  kStatementCalls,
  kStatementTotalMillis,   // total_exec_time, milliseconds (double precision as text)
  kStatementQuery,         // the normalised text, its first 200 characters
  kStatementStddevMillis,  // stddev_exec_time over every call so far (population), milliseconds
};

// One look at the application backends of every database (CPU, LWLocks and I/O are shared by all
// of them): client backends other than the sessions in $1 (int4[] text, IntArrayParam), this
// session and sessions whose application_name starts with "pgbackfill" (the default of every
// pgbackfill connection); those in state active in total and by wait_event_type, and those that
// did anything in the last $2 seconds (not idle, or idle since then).
// Columns: SessionLoadColumn, each a count.
std::string SessionLoadSql();
enum SessionLoadColumn : int {
  kLoadActive = 0,
  kLoadCpu,     // wait_event_type IS NULL
  kLoadLock,    // Lock
  kLoadLwLock,  // LWLock
  kLoadIo,      // IO
  kLoadRecent,  // not idle, or became idle within $2 seconds
};

// The heartbeat transaction timed as the commit latency: BEGIN, synchronous_commit on for this
// transaction (the session or the server may have it off), an upsert of the job's row ($1, the
// job name) in the job store's heartbeat table, COMMIT.
std::vector<std::string> HeartbeatStatements();

// Every replication slot: slot_name, wal_status (NULL when never reserved), safe_wal_size (NULL:
// no max_slot_wal_keep_size), and pg_current_wal_lsn() - restart_lsn in bytes (NULL when the
// slot has no restart_lsn). Primary only. Columns: SlotColumn.
std::string SlotsSql();
enum SlotColumn : int {
  kSlotName = 0,
  kSlotWalStatus,
  kSlotSafeWalSize,
  kSlotRetainedBytes,
};

// One row about the WAL archiver: archive_mode, whether the last attempt failed
// (last_failed_time > last_archived_time), last_failed_wal, how many `.ready` files wait in
// archive_status (NULL when this role may not call pg_ls_archive_statusdir(): superuser or
// pg_monitor only), wal_segment_size in bytes, and current_user for the error message.
// Columns: ArchiverColumn.
std::string ArchiverSql();
enum ArchiverColumn : int {
  kArchiveMode = 0,
  kArchiveFailing,
  kArchiveLastFailedWal,
  kArchiveReadyFiles,
  kArchiveSegmentBytes,
  kArchiveRole,
};

// The database server's CPU pressure (Linux PSI), one row: the text of /proc/pressure/cpu (NULL
// when the server has no such file: not Linux, or PSI off), whether this role may read it
// (superuser, or pg_read_server_files and EXECUTE on pg_read_file; the CASE keeps the read from
// failing the probe transaction otherwise), the server's clock in seconds since the epoch, and
// current_user for the error message. Read through the server, so it is the database host's
// pressure wherever pgbackfill runs. Columns: CpuPressureColumn.
std::string CpuPressureSql();
enum CpuPressureColumn : int {
  kCpuPressureText = 0,
  kCpuPressureAllowed,
  kCpuPressureAt,
  kCpuPressureRole,
};

// An int4[] literal for a bind parameter: "{12,34}", "{}".
std::string IntArrayParam(const std::vector<int>& values);

}  // namespace pgbackfill::throttle
