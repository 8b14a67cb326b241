// DDL steps of the expand and contract phases (`expand:`, `contract:`, `rollback:`, `not_null:`),
// run so that they never queue for long in front of application queries.
//
// A DDL statement that waits for a lock sits in the lock queue, and every application query that
// conflicts with the lock it asks for queues behind it, even one that does not conflict with the
// holder: an `ALTER TABLE ... ADD COLUMN` waiting behind a long report stops every read of the
// table. So each step runs under a short `lock_timeout` and, when that fires, gives the queue
// back, waits (exponential backoff with jitter) and tries again, until `retry_for` is spent.
//
// The SQL analysis here (NeedsNoTransaction, ConcurrentIndexName, ValidateStep) is pure and reads
// statements with a small tokenizer, not a parser: it understands comments, string literals,
// quoted identifiers and dollar quotes, and psql's rule for BEGIN ATOMIC ... END bodies.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "pgbackfill/pg/connection.h"
#include "pgbackfill/plan/plan.h"

namespace pgbackfill::expand {

// Whether `sql` has a statement that PostgreSQL refuses inside a transaction block: CREATE/DROP
// INDEX CONCURRENTLY, REINDEX ... CONCURRENTLY (also in the option list) and REINDEX
// SCHEMA/DATABASE/SYSTEM, ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY, VACUUM, CLUSTER
// without a table, CREATE/DROP DATABASE, ALTER DATABASE ... SET TABLESPACE, CREATE/DROP
// TABLESPACE, ALTER SYSTEM, CREATE/ALTER/DROP SUBSCRIPTION, DISCARD ALL. Errs towards true where
// the rule depends on options (subscriptions): any statement may run outside a transaction.
bool NeedsNoTransaction(std::string_view sql);

// For a single `CREATE [UNIQUE] INDEX CONCURRENTLY [IF NOT EXISTS] name ON ...`: the index name as
// written (quotes kept, qualified if written so, although PostgreSQL refuses a schema there), so
// that the INVALID index a failed build leaves behind can be dropped. nullopt for anything else,
// and when no name is given.
std::optional<std::string> ConcurrentIndexName(std::string_view sql);

// Refuses a step RunDdlStep would not run safely, with the reason and the fix:
//   - no statement at all (empty, or only comments);
//   - transaction control (BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK other than ROLLBACK TO,
//     ABORT, PREPARE TRANSACTION): a step's transaction is pgbackfill's, so that the step and its
//     "done" record commit together;
//   - a statement that needs no transaction block (NeedsNoTransaction) together with other
//     statements: PostgreSQL runs a multi-statement string as one transaction and refuses it there;
//   - CREATE INDEX CONCURRENTLY without an index name: a failed build could not be cleaned up, and
//     a rerun would build a second index instead of finding the first (IF NOT EXISTS).
// Pure, for `pgbackfill check` as well as RunDdlStep.
absl::Status ValidateStep(std::string_view sql);

// The CHECK constraint NotNullSteps adds for `column`: "pgbf_<job>_<column>_not_null", shortened
// to PostgreSQL's 63-byte limit with a hash of job and column when longer (cut on a UTF-8
// character boundary), so that two columns never share a name. Unquoted catalog spelling.
std::string NotNullConstraintName(std::string_view job, std::string_view column);

// The NOT NULL contract without holding ACCESS EXCLUSIVE for a full scan, one entry per step:
//   1. ALTER TABLE t DROP CONSTRAINT IF EXISTS c, ADD CONSTRAINT c CHECK (col IS NOT NULL)
//      NOT VALID          -- ACCESS EXCLUSIVE, no scan; the DROP makes a rerun possible
//   2. ALTER TABLE t VALIDATE CONSTRAINT c     -- scans under SHARE UPDATE EXCLUSIVE: reads and
//                                                 writes go on
//   3. ALTER TABLE t ALTER COLUMN col SET NOT NULL  -- ACCESS EXCLUSIVE; PostgreSQL 12+ proves it
//                                                      from the valid check instead of scanning
//   4. ALTER TABLE t DROP CONSTRAINT IF EXISTS c    -- = NotNullCleanupStep
// Every step is idempotent. `column` is the catalog spelling (as plan::Plan::not_null holds it).
std::vector<std::string> NotNullSteps(const plan::QualifiedName& table, const std::string& column,
                                      std::string_view job);

// Drops NotNullSteps' constraint. The caller runs it when step 2 fails (a row still holds NULL,
// SQLSTATE 23514), because the NOT VALID check left by step 1 already rejects new NULLs written
// by the application; `rollback` runs it too. RunDdlStep does not: it knows nothing of the steps'
// meaning.
std::string NotNullCleanupStep(const plan::QualifiedName& table, const std::string& column,
                               std::string_view job);

struct DdlOptions {
  // Longest time the step waits for one lock, and so the longest time an application query waits
  // behind the queued step. 0 would mean "wait forever" to PostgreSQL and counts as 1ms.
  absl::Duration lock_timeout = absl::Seconds(1);
  // How long lock timeouts and deadlocks are retried before the step fails (measured from the
  // start of the first attempt). 0: one attempt.
  absl::Duration retry_for = absl::Minutes(10);
  // Backoff between attempts (Backoff: full jitter in [base, min(max, base * 2^(n+1))]).
  absl::Duration backoff_base = absl::Milliseconds(100);
  absl::Duration backoff_max = absl::Seconds(10);
  // Seed of the jitter; nullopt draws one from std::random_device.
  std::optional<uint64_t> seed;
};

// One failed attempt that will be retried, reported before the wait.
struct DdlAttempt {
  int attempt = 0;       // 1-based number of the attempt that failed
  std::string sql;       // the statement that failed: the step, or the DROP INDEX of a cleanup
  std::string sqlstate;  // 55P03 (lock_timeout) or 40P01 (deadlock)
  std::string error;     // the server's message
  absl::Duration wait;   // the pause before the next attempt
};

// Runs one step (ValidateStep first) on `conn`, retrying lock timeouts and deadlocks.
//
// A transactional step runs as BEGIN; SET LOCAL lock_timeout; <sql>; in_transaction(conn);
// COMMIT, so the caller can record "step done" in the job store in the same transaction: the DDL
// happens exactly once. Any failure rolls the whole transaction back, also one in_transaction
// returns; a retry runs the DDL and in_transaction again.
//
// A step that needs no transaction block (NeedsNoTransaction) runs alone with lock_timeout set for
// the session (the previous value is restored afterwards), then in_transaction in a transaction of
// its own, retried on its own: such a step happens at least once, so write it to be rerun
// (CREATE INDEX CONCURRENTLY IF NOT EXISTS). When a CREATE INDEX CONCURRENTLY fails, the INVALID
// index it leaves is dropped (DROP INDEX CONCURRENTLY, under the same lock_timeout and retries)
// before the error is returned or the step retried, but only if no relation of that name existed
// before the attempt and the error was not "already exists". One that IF NOT EXISTS finds INVALID
// (left by someone else's failed build) is not touched, and the step fails saying so.
//
// No statement_timeout is set: VALIDATE CONSTRAINT and CREATE INDEX CONCURRENTLY legitimately run
// for hours without blocking anyone; a step can bound itself with `SET LOCAL statement_timeout`.
//
// On failure the error carries the SQLSTATE payload of the server's error (pg/error.h); when
// retry_for ran out, the message says how many attempts were made. `in_transaction` and
// `on_retry` may be empty. Blocks for up to retry_for (plus the step's own run time); uses
// `conn` from the calling thread only and leaves it idle (no open transaction) on return, unless
// the connection itself broke (then the error classifies as kReconnect).
absl::Status RunDdlStep(pg::Connection& conn, const std::string& sql, const DdlOptions& options,
                        const std::function<absl::Status(pg::Connection&)>& in_transaction,
                        const std::function<void(const DdlAttempt&)>& on_retry);

}  // namespace pgbackfill::expand
