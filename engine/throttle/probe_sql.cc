#include "pgbackfill/throttle/probe_sql.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "pgbackfill/pg/quote.h"

namespace pgbackfill::throttle {

absl::Duration ProbeStatementTimeout(absl::Duration interval) {
  return std::max(2 * interval, absl::Seconds(1));
}

std::string ProbeSettingsSql() {
  return "SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true), "
         "pg_catalog.set_config('statement_timeout', $1, true)";
}

std::string ProbeTimeoutSql() {
  return "SELECT pg_catalog.set_config('statement_timeout', $1, true)";
}

std::string WalSendersSql() {
  // replay_lsn compared on the client (pg::ParseLsn) against the same WAL position the row
  // carries; the logical flag lets the caller leave out walsenders that feed logical decoding
  // (CDC, subscriptions, a move's follow), whose lag says nothing about how stale a standby's
  // reads are. A walsender connected to a database is one (replication=database), also between
  // two commands, when it holds no slot: one that had just made a slot counted as a standby
  // with no replay report, then as a standby that disappeared, and held a backfill for good.
  return "SELECT w.lsn::text, r.pid, r.application_name, pg_catalog.host(r.client_addr), "
         "r.state, r.write_lsn::text, r.replay_lsn::text, "
         "(EXTRACT(EPOCH FROM r.replay_lag) * 1000000)::bigint, "
         "EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots s "
         "WHERE s.active_pid = r.pid AND s.slot_type = 'logical') OR "
         "EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a "
         "WHERE a.pid = r.pid AND a.datid IS NOT NULL), "
         "w.insert_lsn::text, pg_catalog.substr(pg_catalog.pg_walfile_name(w.lsn), 1, 8) "
         "FROM (SELECT pg_catalog.pg_current_wal_lsn() AS lsn, "
         "pg_catalog.pg_current_wal_insert_lsn() AS insert_lsn) w "
         "LEFT JOIN pg_catalog.pg_stat_replication r ON true "
         "ORDER BY r.application_name COLLATE \"C\", pg_catalog.host(r.client_addr), r.pid";
}

std::string LockWaitersSql() {
  return "SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity a "
         "WHERE a.wait_event_type = 'Lock' "
         "AND a.pid <> pg_catalog.pg_backend_pid() "
         "AND a.pid <> ALL ($1::pg_catalog.int4[]) "
         "AND pg_catalog.pg_blocking_pids(a.pid) && $1::pg_catalog.int4[]";
}

std::string AutovacuumSql() {
  // pg_partition_tree lists nothing for a plain table, hence the table itself besides it.
  // pg_stat_progress_vacuum lists every database's vacuums and relids are per database, hence
  // the datid condition.
  return "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class p "
         "JOIN pg_catalog.pg_stat_progress_vacuum v ON v.relid IN (p.oid, p.reltoastrelid) "
         "JOIN pg_catalog.pg_stat_activity a ON a.pid = v.pid "
         "WHERE (p.oid = c.oid OR p.oid IN "
         "(SELECT t.relid FROM pg_catalog.pg_partition_tree(c.oid) t)) "
         "AND v.datid = d.oid AND a.backend_type = 'autovacuum worker') "
         "FROM pg_catalog.pg_class c "
         "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
         "JOIN pg_catalog.pg_database d ON d.datname = pg_catalog.current_database() "
         "WHERE n.nspname = $1 AND c.relname = $2";
}

std::string StandbySql() {
  return "SELECT pg_catalog.pg_is_in_recovery(), pg_catalog.pg_last_wal_replay_lsn()::text, "
         "pg_catalog.pg_last_wal_receive_lsn()::text, "
         "(EXTRACT(EPOCH FROM pg_catalog.now() - pg_catalog.pg_last_xact_replay_timestamp()) "
         "* 1000000)::bigint";
}

std::string DefaultCanarySql(const plan::QualifiedName& table,
                             const std::vector<std::string>& key_columns) {
  std::string sql = absl::StrCat("SELECT 1 FROM ", plan::QuoteQualified(table));
  if (!key_columns.empty()) {
    absl::StrAppend(&sql, " ORDER BY ",
                    absl::StrJoin(key_columns, ", ", [](std::string* out, const std::string& c) {
                      out->append(pg::QuoteIdent(c));
                    }));
  }
  absl::StrAppend(&sql, " LIMIT 1");
  return sql;
}


std::string StatementsExtensionSql() {
  return "SELECT pg_catalog.current_database(), "
         "(SELECT n.nspname FROM pg_catalog.pg_extension e "
         "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace "
         "WHERE e.extname = 'pg_stat_statements')";
}

std::string StatementLatencySql(const std::string& schema) {
  // strpos rather than LIKE: no pattern characters to escape, and the same rule for both kinds
  // of our statements (the batches name the job store schema, the probes carry sql::kTag).
  return absl::StrCat(
      "SELECT s.queryid, s.userid::pg_catalog.int8, s.calls, s.total_exec_time, "
      "pg_catalog.left(s.query, 200), s.stddev_exec_time FROM ",
      pg::QuoteIdent(schema),
      ".pg_stat_statements s "
      "WHERE s.dbid = (SELECT d.oid FROM pg_catalog.pg_database d "
      "WHERE d.datname = pg_catalog.current_database()) "
      "AND s.toplevel AND s.queryid IS NOT NULL "
      "AND pg_catalog.strpos(s.query, '",
      sql::kJobStoreSchema, "') = 0");
}

std::string SessionLoadSql() {
  // A session whose state the role may not see (NULL) counts as recent: fail closed.
  return "SELECT pg_catalog.count(*) FILTER (WHERE a.state = 'active'), "
         "pg_catalog.count(*) FILTER (WHERE a.state = 'active' AND a.wait_event_type IS NULL), "
         "pg_catalog.count(*) FILTER (WHERE a.state = 'active' AND a.wait_event_type = 'Lock'), "
         "pg_catalog.count(*) FILTER (WHERE a.state = 'active' AND a.wait_event_type = 'LWLock'), "
         "pg_catalog.count(*) FILTER (WHERE a.state = 'active' AND a.wait_event_type = 'IO'), "
         "pg_catalog.count(*) FILTER (WHERE a.state IS DISTINCT FROM 'idle' OR a.state_change > "
         "pg_catalog.clock_timestamp() - pg_catalog.make_interval(secs => $2::pg_catalog.float8)) "
         "FROM pg_catalog.pg_stat_activity a "
         "WHERE a.backend_type = 'client backend' "
         "AND a.pid <> pg_catalog.pg_backend_pid() "
         "AND a.pid <> ALL ($1::pg_catalog.int4[]) "
         "AND a.application_name NOT LIKE 'pgbackfill%'";
}

std::vector<std::string> HeartbeatStatements() {
  return {
      "BEGIN READ WRITE",
      "SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true), "
      "pg_catalog.set_config('synchronous_commit', 'on', true)",
      absl::StrCat("INSERT INTO ", pg::QuoteIdent(sql::kJobStoreSchema),
                   ".\"heartbeat\" (job_name, beat_at) "
                   "VALUES ($1, pg_catalog.clock_timestamp()) "
                   "ON CONFLICT (job_name) DO UPDATE SET beat_at = EXCLUDED.beat_at"),
      "COMMIT",
  };
}

std::string SlotsSql() {
  return "SELECT s.slot_name, s.wal_status, s.safe_wal_size, "
         "(pg_catalog.pg_current_wal_lsn() OPERATOR(pg_catalog.-) s.restart_lsn)"
         "::pg_catalog.int8 "
         "FROM pg_catalog.pg_replication_slots s ORDER BY s.slot_name COLLATE \"C\"";
}

std::string ArchiverSql() {
  // The CASE keeps pg_ls_archive_statusdir() from running (and failing the whole probe
  // transaction) when the role may not call it; the reading then names the role to grant.
  return "SELECT pg_catalog.current_setting('archive_mode'), "
         "COALESCE(a.last_failed_time > COALESCE(a.last_archived_time, '-infinity'), false), "
         "a.last_failed_wal, "
         "CASE WHEN pg_catalog.has_function_privilege("
         "'pg_catalog.pg_ls_archive_statusdir()', 'EXECUTE') THEN "
         "(SELECT pg_catalog.count(*) FROM pg_catalog.pg_ls_archive_statusdir() f "
         "WHERE f.name LIKE '%.ready') END, "
         "(SELECT g.setting FROM pg_catalog.pg_settings g WHERE g.name = 'wal_segment_size'), "
         "CURRENT_USER "
         "FROM pg_catalog.pg_stat_archiver a";
}

std::string CpuPressureSql() {
  return "SELECT CASE WHEN p.allowed THEN "
         "pg_catalog.pg_read_file('/proc/pressure/cpu', 0, 4096, true) END, "
         "p.allowed, pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()), CURRENT_USER "
         "FROM (SELECT pg_catalog.has_function_privilege("
         "'pg_catalog.pg_read_file(text, bigint, bigint, boolean)', 'EXECUTE') "
         "AND (r.rolsuper OR pg_catalog.pg_has_role(r.oid, 'pg_read_server_files', 'USAGE')) "
         "AS allowed FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) "
         "CURRENT_USER) p";
}

std::string IntArrayParam(const std::vector<int>& values) {
  return absl::StrCat("{", absl::StrJoin(values, ","), "}");
}

}  // namespace pgbackfill::throttle
