// The preflight's checker, shared by the files that implement it by mode: preflight.cc (the
// entry points, the table, key, privileges, expressions, estimate and the batch SQL),
// preflight_update.cc (UPDATE mode), preflight_copy.cc (copy mode) and preflight_move.cc (copy
// between databases). Private to engine/preflight.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "pgbackfill/catalog/catalog.h"
#include "pgbackfill/pg/connection.h"
#include "pgbackfill/plan/plan.h"
#include "pgbackfill/preflight/preflight.h"

namespace pgbackfill::preflight {

using catalog::Catalog;
using catalog::Column;
using catalog::Key;
using catalog::KeyChoice;
using catalog::RejectedKey;
using catalog::RowEstimate;
using catalog::Table;

// `file:line: key: ` for a plan key; the line is left out when the file did not set the key.
std::string At(const plan::Plan& plan, const std::string& key);
// The same for an entry of `section` (set, columns).
std::string At(const plan::Plan& plan, const std::string& section,
               const plan::Assignment& assignment);
// A short message for a server error, without the statement we wrapped the expression in.
std::string ServerMessage(const absl::Status& status);

// One run of the checks; collects problems and notes into its report.
class Preflighter {
 public:
  // `target` is the database `into` and the job store live in when moving between databases;
  // nullptr when that is `conn` itself.
  Preflighter(pg::Connection& conn, pg::Connection* target, const plan::Plan& plan)
      : conn_(conn),
        plan_(plan),
        catalog_(conn),
        moves_(target != nullptr),
        target_conn_(target != nullptr ? *target : conn),
        own_target_catalog_(target != nullptr ? std::optional<Catalog>(std::in_place, *target)
                                               : std::nullopt),
        // One database, one Catalog: it resolves names with the search_path Harden() read.
        target_catalog_(own_target_catalog_.has_value() ? *own_target_catalog_ : catalog_) {}

  absl::StatusOr<PreflightReport> Run();

 private:
  // Between databases: not the same database twice (the copy would read what it writes), and
  // whether the servers' encodings differ (verify then hashes rows as UTF8).
  absl::Status CompareDatabases();

  absl::StatusOr<PreflightReport> RunChecks();

  void Problem(std::string text) { report_.problems.push_back(std::move(text)); }
  void Warn(std::string text) { report_.warnings.push_back(std::move(text)); }
  void Note(std::string text) { report_.notes.push_back(std::move(text)); }

  const Table& table() const { return *report_.table; }
  std::string TableName() const { return plan::QuoteQualified(table().name); }

  absl::Status CheckKey();

  bool IsKeyColumn(const std::string& name) const;

  absl::Status CheckUpdateColumns();

  // `file:line: columns.x: ` for an entry of `columns`, or for a column copied by name (no
  // `columns:` in the plan) `file:line: into: column "x" (copied by name, ...): `.
  std::string AtColumn(const plan::Assignment& assignment) const;

  // The dual-write trigger computes `set` only for rows matching `where`. A `where` that reads a
  // column the plan writes (`first_name IS NULL`) is false for every filled row, so an
  // application UPDATE of the source columns of a filled row would leave it stale, and verify,
  // bound by the same `where`, would never look at it.
  void CheckDualWriteWhere();

  absl::Status CheckCopyTarget();

  // The source key column an expression copies unchanged: a plain (folded) column name, or
  // `t.name` with the alias the batches give the source; nullopt for anything else.
  std::optional<std::string> CopiedKeyColumn(const std::string& expression) const;

  // The copy finds "the target row of a source row" by key, in the batches (ON CONFLICT) and in
  // the sync trigger (DELETE of OLD's key): that needs a unique key of `into` whose columns are
  // filled 1:1 from the source key's columns. A narrower target key would take rows of two
  // source rows as one; a wider one, or a transformed key, could not be looked up from OLD.
  absl::Status CheckCopyKey();

  // Between databases the target row of a source row is found by the key's columns copied
  // unchanged (verify and repair compare and delete key spans on the target; exactly-once rests
  // on the checkpoint, not on a constraint). A unique key over them is needed only for ON CONFLICT.
  absl::Status CheckMoveKey();

  // The ranges are cut in the source's key order, and verify and repair select the same spans on
  // the target: a text key must sort the same way there, so its collations must be the same.
  absl::Status CompareKeyCollations();

  // ON CONFLICT DO UPDATE (the sync trigger's, and on_conflict: update) may set an identity
  // ALWAYS column only to DEFAULT, so such a column can be filled only as part of the key.
  void CheckIdentityColumns();

  // A target with rows is written through a temporary stage table (move/move_sql.h).
  absl::Status CheckTargetRows();

  absl::Status RequireTable(const Table& target, const std::string& privilege,
                            const std::string& why, bool on_target = false);

  absl::Status CheckPrivileges();

  // Runs `sql` under a savepoint. What the server said about the SQL goes to `*compile_error`
  // (OK when it compiled); the returned Status is for failures of the check itself.
  absl::Status TryCompile(const std::string& sql, absl::Status* compile_error,
                          pg::Result* result = nullptr);

  absl::Status CompileExpressions();

  absl::Status CompileEach();

  // The COPY stream's format from the expressions' types on the source and the columns' types on
  // the target (move/copy_format.h); a pair neither format can carry is a problem of its column.
  absl::Status ChooseMoveFormat();

  static absl::StatusOr<std::string> TypeName(pg::Connection& conn, uint32_t oid);

  absl::Status Estimate();
  // What the application-health signals (throttle.max_statement_latency, ...) can read here:
  // pg_stat_statements, the roles that show other sessions, the archiver and CPU pressure.
  absl::Status CheckApplicationSignals();
  // Whether the server's CPU pressure can be read: `readable` = the role may read the file.
  absl::Status CheckCpuPressure(bool readable);

  void BuildBatchSql();
  // EXPLAINs the write of a first and a later batch into report_.batch_scans, and warns when
  // one would scan the whole table (batch_plan.cc).
  absl::Status ExplainBatchWrites();
  absl::StatusOr<std::optional<BatchScan>> ExplainWrite(const std::string& sql,
                                                        const std::vector<pg::Param>& params);

  // --- The written table's own triggers (preflight_triggers.cc) ---
  // Lists the triggers the batches' writes fire (report_.triggers) and warns about them; with
  // `triggers: skip`, refuses a role that may not set session_replication_role and warns about
  // what replica mode still fires, and about the foreign keys it no longer checks.
  absl::Status CheckUserTriggers();
  // Whether a batch's write meets `trigger` at all (event and UPDATE OF columns).
  bool WriteMeets(const catalog::Trigger& trigger, const Table& written) const;
  // The columns a batch writes: `set` in update mode, the copied columns in copy mode.
  std::vector<std::string> WrittenColumns() const;
  void WarnAboutTriggers(const std::string& written_name);
  absl::Status CheckSkipPrivilege();
  absl::Status WarnAboutForeignKeys(Catalog& catalog, const Table& written);

  pg::Connection& conn_;
  const plan::Plan& plan_;
  Catalog catalog_;
  const bool moves_;
  pg::Connection& target_conn_;
  std::optional<Catalog> own_target_catalog_;  // moving only
  Catalog& target_catalog_;
  std::string target_user_;
  std::vector<uint32_t> source_types_;  // moving: each copy column's type on the source
  PreflightReport report_;
  std::optional<Table> target_;
  std::string user_search_path_;
  bool server_supported_ = true;  // PostgreSQL 15 or later on every server checked
};

}  // namespace pgbackfill::preflight
