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
         "pg_catalog.set_config('statement_timeout', $1, false)";
}

std::string WalSendersSql() {
  // replay_lsn compared on the client (pg::ParseLsn) against the same WAL position the row
  // carries; the logical flag lets the caller leave out walsenders that feed logical decoding
  // (CDC, subscriptions), whose lag says nothing about how stale a standby's reads are.
  return "SELECT w.lsn::text, r.pid, r.application_name, pg_catalog.host(r.client_addr), "
         "r.state, r.write_lsn::text, r.replay_lsn::text, "
         "(EXTRACT(EPOCH FROM r.replay_lag) * 1000000)::bigint, "
         "EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots s "
         "WHERE s.active_pid = r.pid AND s.slot_type = 'logical'), "
         "w.insert_lsn::text "
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

std::string IntArrayParam(const std::vector<int>& values) {
  return absl::StrCat("{", absl::StrJoin(values, ","), "}");
}

}  // namespace pgbackfill::throttle
