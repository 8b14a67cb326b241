#include "pgbackfill/expand/ddl.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "pgbackfill/util/backoff.h"
#include "pgbackfill/pg/error.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/sql/lexer.h"
#include "pgbackfill/sql/names.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::expand {
namespace {

using sql::IsSpace;
using sql::IsWord;
using sql::Split;
using sql::Statement;
using sql::Token;
using sql::TokenKind;

// --- What a statement is --------------------------------------------------------------------

class Reader {
 public:
  explicit Reader(const Statement& statement) : tokens_(statement.tokens) {}

  bool AtEnd() const { return pos_ >= tokens_.size(); }
  const Token* Peek(size_t ahead = 0) const {
    return pos_ + ahead < tokens_.size() ? &tokens_[pos_ + ahead] : nullptr;
  }
  bool PeekWord(std::string_view word, size_t ahead = 0) const {
    const Token* token = Peek(ahead);
    return token != nullptr && IsWord(*token, word);
  }
  // Consumes `word` if it is next.
  bool Accept(std::string_view word) {
    if (!PeekWord(word)) return false;
    ++pos_;
    return true;
  }
  void Skip() { ++pos_; }
  size_t pos() const { return pos_; }
  const std::vector<Token>& tokens() const { return tokens_; }

 private:
  const std::vector<Token>& tokens_;
  size_t pos_ = 0;
};

bool IsName(const Token& token) {
  return token.kind == TokenKind::kWord || token.kind == TokenKind::kQuotedIdent;
}

// `name` or `a.b.c` starting at the reader; its text as written, or nullopt.
std::optional<std::string_view> ReadQualifiedName(Reader& reader, bool* qualified) {
  const Token* first = reader.Peek();
  if (first == nullptr || !IsName(*first)) return std::nullopt;
  reader.Skip();
  const Token* last = first;
  *qualified = false;
  while (reader.Peek() != nullptr && reader.Peek()->text == "." && reader.Peek(1) != nullptr &&
         IsName(*reader.Peek(1))) {
    reader.Skip();
    last = reader.Peek();
    reader.Skip();
    *qualified = true;
  }
  const char* end = last->text.data() + last->text.size();
  return std::string_view(first->text.data(), static_cast<size_t>(end - first->text.data()));
}

struct ConcurrentIndex {
  std::optional<std::string> name;  // as written; nullopt when the statement names none
  bool qualified = false;
  std::string table;  // as written, for to_regclass
};

// CREATE [UNIQUE] INDEX CONCURRENTLY [IF NOT EXISTS] [name] ON [ONLY] table ...
std::optional<ConcurrentIndex> ParseConcurrentIndex(const Statement& statement) {
  Reader reader(statement);
  if (!reader.Accept("create")) return std::nullopt;
  reader.Accept("unique");
  if (!reader.Accept("index") || !reader.Accept("concurrently")) return std::nullopt;
  // `IF` is not reserved: "CREATE INDEX CONCURRENTLY if ON t" names the index "if".
  if (reader.PeekWord("if") && reader.PeekWord("not", 1) && reader.PeekWord("exists", 2)) {
    reader.Skip();
    reader.Skip();
    reader.Skip();
  }
  ConcurrentIndex index;
  if (!reader.PeekWord("on")) {  // ON is reserved: it cannot be the index name
    std::optional<std::string_view> name = ReadQualifiedName(reader, &index.qualified);
    if (!name.has_value()) return std::nullopt;
    index.name = std::string(*name);
  }
  if (!reader.Accept("on")) return std::nullopt;
  reader.Accept("only");
  bool table_qualified = false;
  std::optional<std::string_view> table = ReadQualifiedName(reader, &table_qualified);
  if (!table.has_value()) return std::nullopt;
  index.table = std::string(*table);
  return index;
}

// Whether the rest of a REINDEX option list "( ... )" asks for CONCURRENTLY; leaves the reader
// after the closing parenthesis.
bool ReindexOptionsConcurrently(Reader& reader) {
  bool concurrently = false;
  reader.Skip();  // (
  while (const Token* token = reader.Peek()) {
    if (token->depth == 0 && token->text == ")") {
      reader.Skip();
      break;
    }
    if (token->depth == 1 && IsWord(*token, "concurrently")) {
      // "CONCURRENTLY [ boolean ]"
      const Token* value = reader.Peek(1);
      const bool off = value != nullptr && value->depth == 1 &&
                       (IsWord(*value, "false") || IsWord(*value, "off") || value->text == "0" ||
                        value->text == "'false'" || value->text == "'off'");
      concurrently = !off;
    }
    reader.Skip();
  }
  return concurrently;
}

bool StatementNeedsNoTransaction(const Statement& statement) {
  Reader reader(statement);
  if (reader.Accept("vacuum")) return true;
  if (reader.Accept("create") || reader.Accept("drop")) {
    reader.Accept("unique");
    if (reader.Accept("index")) return reader.PeekWord("concurrently");
    return reader.PeekWord("database") || reader.PeekWord("tablespace") ||
           reader.PeekWord("subscription");
  }
  if (reader.Accept("reindex")) {
    if (reader.Peek() != nullptr && reader.Peek()->text == "(" &&
        ReindexOptionsConcurrently(reader)) {
      return true;
    }
    if (reader.PeekWord("schema") || reader.PeekWord("database") || reader.PeekWord("system")) {
      return true;
    }
    reader.Skip();  // INDEX | TABLE
    return reader.PeekWord("concurrently");
  }
  if (reader.Accept("alter")) {
    if (reader.PeekWord("system") || reader.PeekWord("subscription")) return true;
    if (reader.Accept("database")) {
      // ALTER DATABASE name SET TABLESPACE new_tablespace moves files: no transaction block.
      return reader.PeekWord("set", 1) && reader.PeekWord("tablespace", 2);
    }
    if (!reader.Accept("table")) return false;
    // ALTER TABLE ... DETACH PARTITION name CONCURRENTLY.
    bool detaching = false;
    for (const Token& token : reader.tokens()) {
      if (token.depth != 0) continue;
      if (IsWord(token, "detach")) detaching = true;
      if (detaching && IsWord(token, "concurrently")) return true;
    }
    return false;
  }
  if (reader.Accept("cluster")) {
    // CLUSTER without a table reclusters every table, one transaction each.
    if (reader.Peek() != nullptr && reader.Peek()->text == "(") {
      reader.Skip();
      while (reader.Peek() != nullptr && reader.Peek()->depth > 0) reader.Skip();
      if (reader.Peek() != nullptr && reader.Peek()->text == ")") reader.Skip();
    }
    reader.Accept("verbose");
    return reader.AtEnd();
  }
  if (reader.Accept("discard")) return reader.PeekWord("all");
  return false;
}

// What ends or opens a transaction, which a step must leave to pgbackfill.
bool IsTransactionControl(const Statement& statement) {
  Reader reader(statement);
  for (std::string_view word : {"begin", "start", "commit", "end", "abort"}) {
    if (reader.PeekWord(word)) return true;
  }
  if (reader.Accept("rollback")) return !reader.PeekWord("to");  // ROLLBACK TO SAVEPOINT is fine
  if (reader.Accept("prepare")) return reader.PeekWord("transaction");
  return false;
}

// A statement for messages: one line, cut.
std::string Excerpt(std::string_view text) {
  std::string line;
  bool space = false;
  for (char c : text) {
    if (IsSpace(c)) {
      space = !line.empty();
      continue;
    }
    if (space) line.push_back(' ');
    space = false;
    line.push_back(c);
  }
  constexpr size_t kMax = 80;
  if (line.size() > kMax) {
    line = absl::StrCat(ToAbsl(Utf8Prefix(line, kMax - 3)), "...");
  }
  return line;
}

// --- Constraint names -----------------------------------------------------------------------

using pg::kMaxIdentifierBytes;

// --- Running --------------------------------------------------------------------------------

using Clock = std::chrono::steady_clock;

bool IsLockRetry(const absl::Status& status) {
  const std::string sqlstate = pg::SqlStateOf(status);
  return sqlstate == "55P03" || sqlstate == "40P01";
}

// Runs attempts until one succeeds, fails with something other than a lock timeout or deadlock
// (or sets *give_up), or the next wait would end after `retry_for` from the first attempt.
class Retrier {
 public:
  Retrier(const DdlOptions& options, const std::function<void(const DdlAttempt&)>& on_retry)
      : options_(options),
        on_retry_(on_retry),
        backoff_(options.backoff_base, options.backoff_max,
                 options.seed.has_value() ? *options.seed : Backoff::RandomSeed()) {}

  absl::Status Run(const std::string& sql, const std::function<absl::Status(bool*)>& attempt) {
    backoff_.Reset();
    const Clock::time_point start = Clock::now();
    // Capped so that the time_point arithmetic cannot overflow on an absurd retry_for.
    const absl::Duration budget =
        std::clamp(options_.retry_for, absl::ZeroDuration(), absl::Hours(24 * 365));
    const Clock::time_point deadline = start + absl::ToChronoNanoseconds(budget);
    for (int attempts = 1;; ++attempts) {
      bool give_up = false;
      absl::Status status = attempt(&give_up);
      if (status.ok() || give_up || !IsLockRetry(status)) return status;
      const absl::Duration wait = backoff_.Next();
      if (Clock::now() + absl::ToChronoNanoseconds(wait) > deadline) {
        const absl::Duration spent = absl::FromChrono(Clock::now() - start);
        return WithMessage(
            status,
            absl::StrFormat("gave up after %d attempt%s in %s (lock_timeout %s, retry_for %s): "
                            "%s; find the sessions holding the lock (pg_locks, "
                            "pg_blocking_pids), or raise ddl.retry_for, and run the phase again",
                            attempts, attempts == 1 ? "" : "s",
                            absl::FormatDuration(absl::Trunc(spent, absl::Milliseconds(1))),
                            sql::TimeoutSetting(options_.lock_timeout),
                            absl::FormatDuration(options_.retry_for), status.message()));
      }
      if (on_retry_) {
        on_retry_(DdlAttempt{.attempt = attempts,
                             .sql = sql,
                             .sqlstate = pg::SqlStateOf(status),
                             .error = std::string(status.message()),
                             .wait = wait});
      }
      std::this_thread::sleep_for(absl::ToChronoNanoseconds(wait));
    }
  }

 private:
  const DdlOptions& options_;
  const std::function<void(const DdlAttempt&)>& on_retry_;
  Backoff backoff_;
};

// After a failed statement in a transaction, or to be sure none is left open. Its own failure
// does not matter: on a broken connection there is no transaction left to end, and the error
// that brought us here is the one to report.
void Rollback(pg::Connection& conn) { conn.ExecScript("ROLLBACK").IgnoreError(); }

// BEGIN; SET LOCAL lock_timeout; [sql;] [in_transaction;] COMMIT.
absl::Status RunTransaction(pg::Connection& conn, const std::string& sql,
                            const std::string& lock_timeout,
                            const std::function<absl::Status(pg::Connection&)>& in_transaction) {
  absl::Status status = [&]() -> absl::Status {
    RETURN_IF_ERROR(conn.ExecScript(
        absl::StrCat("BEGIN; SET LOCAL lock_timeout = ", pg::QuoteLiteral(lock_timeout))));
    if (!sql.empty()) RETURN_IF_ERROR(conn.ExecScript(sql));
    if (in_transaction) RETURN_IF_ERROR(in_transaction(conn));
    // COMMIT of a transaction in which a statement failed succeeds and answers ROLLBACK: say so
    // rather than report a step that did not happen as done.
    ASSIGN_OR_RETURN(pg::Result commit, conn.Exec("COMMIT"));
    if (commit.CommandTag() != "COMMIT") {
      return absl::AbortedError(absl::StrFormat(
          "the transaction of DDL step \"%s\" was rolled back at COMMIT (%s): a statement in it "
          "failed without reporting it",
          Excerpt(sql), commit.CommandTag()));
    }
    return absl::OkStatus();
  }();
  if (!status.ok()) Rollback(conn);
  return status;
}

// What the catalog holds under a CREATE INDEX CONCURRENTLY's index name, in its table's schema.
struct IndexState {
  std::string schema;
  std::string name;
  bool is_index = false;
  bool valid = false;
};

absl::StatusOr<std::optional<IndexState>> LookUpIndex(pg::Connection& conn,
                                                      const ConcurrentIndex& index) {
  // The index lives in its table's schema (CREATE INDEX takes no schema for it). The server folds
  // and truncates both names exactly as it did for the statement: to_regclass parses them with
  // the identifier rules, under this session's search_path. Operators are spelled
  // schema-qualified because this session keeps the user's search_path, which the DDL needs.
  ASSIGN_OR_RETURN(
      pg::Result rows,
      conn.Exec(
          "SELECT n.nspname, c.relname,"
          "   c.relkind OPERATOR(pg_catalog.=) ANY ('{i,I}'::pg_catalog.\"char\"[]),"
          "   coalesce(i.indisvalid, false)"
          " FROM pg_catalog.pg_class c"
          " JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace"
          " LEFT JOIN pg_catalog.pg_index i ON i.indexrelid OPERATOR(pg_catalog.=) c.oid"
          " WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(pg_catalog.textcat("
          "   pg_catalog.textcat((SELECT pg_catalog.quote_ident(tn.nspname)"
          "     FROM pg_catalog.pg_class t"
          "     JOIN pg_catalog.pg_namespace tn ON tn.oid OPERATOR(pg_catalog.=) t.relnamespace"
          "     WHERE t.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)), '.'), $2))",
          {index.table, *index.name}));
  if (rows.Rows() == 0) return std::optional<IndexState>();
  return std::optional<IndexState>(IndexState{.schema = std::string(rows.Get(0, 0)),
                                              .name = std::string(rows.Get(0, 1)),
                                              .is_index = rows.Get(0, 2) == "t",
                                              .valid = rows.Get(0, 3) == "t"});
}

std::string QuotedIndex(const IndexState& state) {
  return absl::StrCat(pg::QuoteIdent(state.schema), ".", pg::QuoteIdent(state.name));
}

// One attempt at a statement that needs no transaction block. For CREATE INDEX CONCURRENTLY, a
// failed build leaves an INVALID index that the next attempt would trip over (42P07) or, with IF
// NOT EXISTS, silently keep; it is dropped here when this attempt made it.
absl::Status AttemptOutsideTransaction(pg::Connection& conn, const std::string& sql,
                                       const std::optional<ConcurrentIndex>& index,
                                       Retrier& cleanup, bool* give_up) {
  // A qualified index name is a syntax error the server reports before building anything.
  const bool watch = index.has_value() && index->name.has_value() && !index->qualified;
  std::optional<IndexState> before;
  if (watch) {
    ASSIGN_OR_RETURN(before, LookUpIndex(conn, *index));
  }
  absl::Status status = conn.ExecScript(sql);
  if (!watch) return status;

  if (status.ok()) {
    ASSIGN_OR_RETURN(std::optional<IndexState> after, LookUpIndex(conn, *index));
    if (after.has_value() && after->is_index && !after->valid) {
      // IF NOT EXISTS found an index of that name and kept it, INVALID as it was.
      *give_up = true;
      return absl::FailedPreconditionError(absl::StrFormat(
          "index %s exists but is INVALID (left by an earlier failed build that this step did "
          "not make), so \"%s\" did nothing; check no one is building it, drop it with DROP INDEX "
          "CONCURRENTLY %s, and run the phase again",
          QuotedIndex(*after), Excerpt(sql), QuotedIndex(*after)));
    }
    return status;
  }
  // 42P07: the name was taken, so whatever carries it is not ours.
  if (before.has_value() || pg::SqlStateOf(status) == "42P07") return status;
  absl::StatusOr<std::optional<IndexState>> after = LookUpIndex(conn, *index);
  if (!after.ok()) {
    *give_up = true;
    return WithMessage(
        status,
        absl::StrFormat("%s; then looking for the INVALID index it may have left failed: %s; "
                        "check pg_index.indisvalid for %s",
                        status.message(), after.status().message(), *index->name));
  }
  if (!after->has_value() || !(*after)->is_index || (*after)->valid) return status;
  const std::string drop = absl::StrCat("DROP INDEX CONCURRENTLY IF EXISTS ", QuotedIndex(**after));
  absl::Status dropped = cleanup.Run(drop, [&](bool*) { return conn.ExecScript(drop); });
  if (!dropped.ok()) {
    *give_up = true;
    return WithMessage(
        status, absl::StrFormat("%s; the INVALID index %s it left could not be dropped: "
                                "%s; drop it with %s before running the phase again",
                                status.message(), QuotedIndex(**after), dropped.message(), drop));
  }
  return status;
}

absl::Status RunOutsideTransaction(
    pg::Connection& conn, const std::string& sql, const DdlOptions& options,
    const std::function<absl::Status(pg::Connection&)>& in_transaction,
    const std::function<void(const DdlAttempt&)>& on_retry) {
  const std::string lock_timeout = sql::TimeoutSetting(options.lock_timeout);
  // Without a transaction there is no SET LOCAL: set it for the session and put back what the
  // caller had, so the connection can be used for other work afterwards.
  ASSIGN_OR_RETURN(pg::Result previous,
                   conn.Exec("SELECT pg_catalog.current_setting('lock_timeout')"));
  const std::string previous_value(previous.Get(0, 0));
  RETURN_IF_ERROR(
      conn.Exec("SELECT pg_catalog.set_config('lock_timeout', $1, false)", {lock_timeout})
          .status());

  // ValidateStep let through a single statement only.
  const std::optional<ConcurrentIndex> index = ParseConcurrentIndex(Split(sql).front());
  Retrier retrier(options, on_retry);
  Retrier cleanup(options, on_retry);
  absl::Status status = retrier.Run(sql, [&](bool* give_up) {
    return AttemptOutsideTransaction(conn, sql, index, cleanup, give_up);
  });
  if (status.ok() && in_transaction) {
    // The DDL is done and stays done; only the caller's record is retried now.
    status = retrier.Run(
        sql, [&](bool*) { return RunTransaction(conn, /*sql=*/"", lock_timeout, in_transaction); });
    if (!status.ok()) {
      status = WithMessage(
          status, absl::StrCat(status.message(), " (after the step itself had succeeded: \"",
                               Excerpt(sql), "\" ran outside a transaction and is not undone)"));
    }
  }
  absl::Status restored =
      conn.Exec("SELECT pg_catalog.set_config('lock_timeout', $1, false)", {previous_value})
          .status();
  return status.ok() ? restored : status;
}

}  // namespace

bool NeedsNoTransaction(std::string_view sql) {
  const std::vector<Statement> statements = Split(sql);
  return std::any_of(statements.begin(), statements.end(), StatementNeedsNoTransaction);
}

std::optional<std::string> ConcurrentIndexName(std::string_view sql) {
  const std::vector<Statement> statements = Split(sql);
  if (statements.size() != 1) return std::nullopt;
  std::optional<ConcurrentIndex> index = ParseConcurrentIndex(statements.front());
  if (!index.has_value()) return std::nullopt;
  return index->name;
}

absl::Status ValidateStep(std::string_view sql) {
  const std::vector<Statement> statements = Split(sql);
  if (statements.empty()) {
    return absl::InvalidArgumentError(
        "the DDL step holds no SQL statement (only whitespace or comments); remove the entry");
  }
  for (const Statement& statement : statements) {
    if (IsTransactionControl(statement)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "DDL step \"%s\": transaction control (\"%s\") is not allowed in a step; pgbackfill "
          "runs each step in its own transaction and commits it together with the record that "
          "the step is done; remove it, or split the step into several entries",
          Excerpt(sql), Excerpt(statement.Text())));
    }
  }
  if (statements.size() > 1) {
    for (const Statement& statement : statements) {
      if (StatementNeedsNoTransaction(statement)) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "DDL step \"%s\": \"%s\" cannot run inside a transaction block, and PostgreSQL runs "
            "the statements of one step as one transaction; give it an entry of its own",
            Excerpt(sql), Excerpt(statement.Text())));
      }
    }
  }
  if (std::optional<ConcurrentIndex> index = ParseConcurrentIndex(statements.front());
      index.has_value() && !index->name.has_value()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "DDL step \"%s\": name the index (CREATE INDEX CONCURRENTLY IF NOT EXISTS name ON ...): "
        "without a name, the INVALID index a failed build leaves cannot be cleaned up and a "
        "rerun builds a second index",
        Excerpt(sql)));
  }
  return absl::OkStatus();
}

std::string NotNullConstraintName(std::string_view job, std::string_view column) {
  constexpr std::string_view kPrefix = "pgbf_";
  constexpr std::string_view kSuffix = "_not_null";
  std::string name = absl::StrCat(ToAbsl(kPrefix), ToAbsl(job), "_", ToAbsl(column));
  if (name.size() + kSuffix.size() <= kMaxIdentifierBytes) {
    return absl::StrCat(name, ToAbsl(kSuffix));
  }
  // The hash covers job and column apart (a NUL cannot occur in either), so "a_b"+"c" and
  // "a"+"b_c" differ.
  const std::string tail = absl::StrFormat(
      "_%08x%s", Fnv1a32(absl::StrCat(ToAbsl(job), std::string(1, '\0'), ToAbsl(column))), kSuffix);
  return absl::StrCat(ToAbsl(Utf8Prefix(name, kMaxIdentifierBytes - tail.size())), tail);
}

std::vector<std::string> NotNullSteps(const plan::QualifiedName& table, const std::string& column,
                                      std::string_view job) {
  const std::string alter = absl::StrCat("ALTER TABLE ", plan::QuoteQualified(table), " ");
  const std::string constraint = pg::QuoteIdent(NotNullConstraintName(job, column));
  const std::string quoted_column = pg::QuoteIdent(column);
  return {
      absl::StrCat(alter, "DROP CONSTRAINT IF EXISTS ", constraint, ", ADD CONSTRAINT ", constraint,
                   " CHECK (", quoted_column, " IS NOT NULL) NOT VALID"),
      absl::StrCat(alter, "VALIDATE CONSTRAINT ", constraint),
      absl::StrCat(alter, "ALTER COLUMN ", quoted_column, " SET NOT NULL"),
      NotNullCleanupStep(table, column, job),
  };
}

std::string NotNullCleanupStep(const plan::QualifiedName& table, const std::string& column,
                               std::string_view job) {
  return absl::StrCat("ALTER TABLE ", plan::QuoteQualified(table), " DROP CONSTRAINT IF EXISTS ",
                      pg::QuoteIdent(NotNullConstraintName(job, column)));
}

absl::Status RunDdlStep(pg::Connection& conn, const std::string& sql, const DdlOptions& options,
                        const std::function<absl::Status(pg::Connection&)>& in_transaction,
                        const std::function<void(const DdlAttempt&)>& on_retry) {
  RETURN_IF_ERROR(ValidateStep(sql));
  if (NeedsNoTransaction(sql)) {
    return RunOutsideTransaction(conn, sql, options, in_transaction, on_retry);
  }
  const std::string lock_timeout = sql::TimeoutSetting(options.lock_timeout);
  Retrier retrier(options, on_retry);
  return retrier.Run(
      sql, [&](bool*) { return RunTransaction(conn, sql, lock_timeout, in_transaction); });
}

}  // namespace pgbackfill::expand
