// Whether a session reaches PostgreSQL through a transaction-pooling pooler (pgbouncer's
// pool_mode = transaction or statement), where consecutive transactions of one client session may
// run on different server connections, so session state (an exported snapshot, SET, a session
// advisory lock) does not last from one transaction to the next.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "pgbackfill/pg/connection.h"

namespace pgbackfill::pg {

// How it tells, without any pooler-specific command (pgbouncer's SHOW exists only on its admin
// console):
// 1. PostgreSQL gives each client its backend's own pid in BackendKeyData (PQbackendPID); a
//    pooler cannot (one client, many backends) and makes up a cancel key instead. When the two
//    pids agree there is no pooler: false.
// 2. Behind a pooler, a second session of `dsn` opens a transaction and so holds a server
//    connection; then `conn` asks for its backend pid again. Session pooling keeps `conn` on its
//    server connection (same pid, and the second session never gets it); transaction pooling
//    released it after each transaction, so either the second session got it (pgbouncer reuses
//    the server connection released last) or `conn` now runs on another one.
// Leaves `conn` outside any transaction.
absl::StatusOr<bool> BehindTransactionPooler(Connection& conn, const std::string& dsn);

}  // namespace pgbackfill::pg
