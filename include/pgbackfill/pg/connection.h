// A blocking connection for short, sequential work: preflight, the job store, the CLI, tests.
// Batch traffic uses AsyncConnection (pg/async_connection.h) instead.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "pgbackfill/pg/result.h"

extern "C" {
typedef struct pg_conn PGconn;  // NOLINT: matches libpq's own typedef
}

namespace pgbackfill::pg {

struct ConnDeleter {
  void operator()(PGconn* conn) const noexcept;
};
using ConnHandle = std::unique_ptr<PGconn, ConnDeleter>;

// A bind parameter in text format; nullopt is SQL NULL.
using Param = std::optional<std::string>;

// Opens a connection with libpq conventions: `dsn` may be a URI, a key=value string or empty, and
// PG* variables and ~/.pgpass fill what it leaves out. application_name defaults to "pgbackfill".
// Blocking; kUnavailable (with the server's message) when the server cannot be reached.
absl::StatusOr<ConnHandle> OpenBlocking(const std::string& dsn);

// Thread-compatible: one thread at a time. Owns its PGconn.
class Connection {
 public:
  static absl::StatusOr<Connection> Connect(const std::string& dsn);
  explicit Connection(ConnHandle conn) : conn_(std::move(conn)) {}

  // Runs one statement (no multi-statement strings) with text parameters.
  absl::StatusOr<Result> Exec(const std::string& sql, const std::vector<Param>& params = {});
  // From now on Exec puts pg/statement_tag.h's tag in front of every statement (the engine's own
  // sessions): pg_stat_statements counts statements of one shape under one entry whose text is
  // the first one's, and an untagged preflight statement of a probe's shape would make the
  // application signals count the probes as the application.
  void TagStatements() { tag_ = true; }
  // Exec through a prepared statement of this session, made the first time `sql` runs here:
  // a statement run thousands of times (the follow phase's changes) is parsed and planned once.
  absl::StatusOr<Result> ExecPrepared(const std::string& sql, const std::vector<Param>& params);
  // Runs a string of one or more statements through the simple protocol (DDL scripts, SET).
  // Pinned settings do not apply, except that a BEGIN applies them to its transaction. With
  // TagStatements, the first statement carries the tag.
  absl::Status ExecScript(const std::string& sql);

  // A setting every later Exec runs under, for its own transaction only: outside a transaction
  // the statement follows `set_config(name, value, true)` in one pipeline sync (one implicit
  // transaction, one round trip), and a BEGIN sets it for the transaction it opens. Nothing stays
  // on the server's session, so a transaction-pooling pooler (pgbouncer) neither loses it
  // between transactions nor hands it to another client, as a session-level SET would.
  void Pin(const std::string& name, std::string value) { pins_[name] = std::move(value); }
  void Unpin(const std::string& name) { pins_.erase(name); }
  // The pinned value of `name`, "" when none.
  std::string Pinned(const std::string& name) const;

  // The backend's pid, server_version_num, and the current database name.
  int BackendPid() const;
  int ServerVersion() const;
  std::string Database() const;

  PGconn* raw() const { return conn_.get(); }

 private:
  // Exec of `sql` after (or, for a BEGIN, before) the pins, in one pipeline sync.
  absl::StatusOr<Result> ExecPinned(const std::string& sql, const std::vector<Param>& params,
                                    bool begins);
  // The statement that applies the pins, with its parameters.
  std::pair<std::string, std::vector<Param>> PinStatement() const;
  // `sql` with the statement tag in front when TagStatements is on (and it has none yet).
  std::string Tagged(const std::string& sql) const;

  ConnHandle conn_;
  bool tag_ = false;
  absl::flat_hash_map<std::string, std::string> prepared_;  // statement text -> its name
  std::map<std::string, std::string> pins_;
};

}  // namespace pgbackfill::pg
