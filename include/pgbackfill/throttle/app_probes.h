// The I/O of the probes of what the application feels (statement latency, commit latency, and the
// rows of session load, slots and archiver), for engine/throttle/probes.cc: the statements as the
// probes send them (each tagged sql::kTag) and the reads that take a round trip of their own.
// Internal to the throttle module; the readings' rules are in probe_readings.h, the SQL in
// probe_sql.h.
//
// Threading: the coroutines use the given pg::AsyncConnection, which the caller must not use
// until they return (pg::AsyncConnection's rules apply).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pgbackfill/pg/async_connection.h"
#include "pgbackfill/throttle/probe_readings.h"
#include "pgbackfill/throttle/sample.h"
#include "pgbackfill/util/asio.h"

namespace pgbackfill::throttle {

// `sql` with the probes' tag in front (probe_sql.h sql::kTag), as one pipeline statement.
pg::Statement Tag(std::string sql, std::vector<pg::Param> params = {});

// BEGIN READ ONLY, ProbeSettingsSql() with `timeout`, `sql`, COMMIT: `sql`'s result is results[2].
std::vector<pg::Statement> ReadOnlyPipeline(const std::string& timeout, std::string sql,
                                            std::vector<pg::Param> params = {});

// The readings from the results of SessionLoadSql(), SlotsSql(), ArchiverSql() and
// CpuPressureSql().
absl::StatusOr<SessionLook> LookOf(const pg::Result& result);
absl::StatusOr<std::vector<SlotWal>> SlotsOf(const pg::Result& result);
absl::StatusOr<ArchiverState> ArchiverOf(const pg::Result& result);
absl::StatusOr<CpuStallCount> CpuStallOf(const pg::Result& result);

// pg_stat_statements' rows, on a round trip of their own: the view's schema is only known from
// `where` (the result of StatementsExtensionSql(), or why there is none), and a failure here (the
// library not preloaded, no privilege) must not take other readings with it. Errors are those of
// the statement_latency reading (StatementsNotInstalled, StatementLatencyError).
asio::awaitable<absl::StatusOr<std::vector<StatementRow>>> ReadStatements(
    pg::AsyncConnection& conn, absl::StatusOr<const pg::Result*> where, std::string timeout);

// The heartbeat transaction (HeartbeatStatements) for `job`, timed from sending BEGIN to COMMIT's
// reply: one pipeline.
asio::awaitable<absl::StatusOr<absl::Duration>> TimeHeartbeat(pg::AsyncConnection& conn,
                                                              std::string job);

}  // namespace pgbackfill::throttle
