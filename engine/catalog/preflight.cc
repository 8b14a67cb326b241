#include "pgbackfill/catalog/preflight.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "pgbackfill/exec/batch_sql.h"
#include "pgbackfill/move/copy_format.h"
#include "pgbackfill/move/move_sql.h"
#include "pgbackfill/pg/error.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/plan/parse.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/verify/verify.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::catalog {
namespace {

// `file:line: key: ` for a plan key; the line is left out when the file did not set the key.
std::string At(const plan::Plan& plan, const std::string& key) {
  auto it = plan.key_lines.find(key);
  if (it == plan.key_lines.end()) return absl::StrCat(plan.file, ": ", key, ": ");
  return absl::StrCat(plan.file, ":", it->second, ": ", key, ": ");
}

std::string At(const plan::Plan& plan, const std::string& section,
               const plan::Assignment& assignment) {
  const std::string key = absl::StrCat(section, ".", assignment.column);
  if (assignment.line > 0) return absl::StrCat(plan.file, ":", assignment.line, ": ", key, ": ");
  return At(plan, key);
}

std::string Millis(absl::Duration value) {
  return absl::StrCat(absl::ToInt64Milliseconds(value), "ms");
}

std::string SetLocalMillis(const char* setting, absl::Duration value) {
  return absl::StrCat("SET LOCAL ", setting, " = '", absl::ToInt64Milliseconds(value), "ms'");
}

// A short message for a server error, without the statement we wrapped the expression in.
std::string ServerMessage(const absl::Status& status) {
  std::string message(status.message());
  if (auto pos = message.find(" in: "); pos != std::string::npos) message.resize(pos);
  return message;
}

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

  absl::StatusOr<PreflightReport> Run() {
    report_.plan_hash = plan::PlanHash(plan_);
    ASSIGN_OR_RETURN(pg::Result version, conn_.Exec("SHOW server_version_num"));
    if (std::stoi(std::string(version.Get(0, 0))) < 150000) {
      Problem(absl::StrCat("the server runs PostgreSQL ", ToAbsl(version.Get(0, 0)),
                           "; pgbackfill needs 15 or later"));
    }
    ASSIGN_OR_RETURN(pg::Result show, conn_.Exec("SHOW server_version"));
    report_.server_version = std::string(show.Get(0, 0));
    ASSIGN_OR_RETURN(report_.user, catalog_.CurrentUser());
    ASSIGN_OR_RETURN(user_search_path_, catalog_.Harden());
    report_.user_search_path = user_search_path_;
    // Every read below waits at most the plan's lock_timeout behind someone's DDL: a clear error
    // beats a `check` that hangs, and is what the backfill itself would meet.
    RETURN_IF_ERROR(conn_.Exec("SELECT pg_catalog.set_config('lock_timeout', $1, false)",
                               {Millis(plan_.throttle.lock_timeout)})
                        .status());
    target_user_ = report_.user;
    if (moves_) {
      ASSIGN_OR_RETURN(pg::Result target_version, target_conn_.Exec("SHOW server_version_num"));
      if (std::stoi(std::string(target_version.Get(0, 0))) < 150000) {
        Problem(absl::StrCat("the target server runs PostgreSQL ",
                             ToAbsl(target_version.Get(0, 0)), "; pgbackfill needs 15 or later"));
      }
      ASSIGN_OR_RETURN(target_user_, target_catalog_.CurrentUser());
      RETURN_IF_ERROR(target_catalog_.Harden().status());
      RETURN_IF_ERROR(CompareDatabases());
      RETURN_IF_ERROR(
          target_conn_
              .Exec("SELECT pg_catalog.set_config('lock_timeout', $1, false)",
                    {Millis(plan_.throttle.lock_timeout)})
              .status());
    }
    absl::StatusOr<PreflightReport> report = RunChecks();
    if (!report.ok()) return report;
    RETURN_IF_ERROR(conn_.Exec("RESET lock_timeout").status());
    if (moves_) RETURN_IF_ERROR(target_conn_.Exec("RESET lock_timeout").status());
    return report;
  }

 private:
  // Between databases: not the same database twice (the copy would read what it writes), and
  // whether the servers' encodings differ (verify then hashes rows as UTF8).
  absl::Status CompareDatabases() {
    constexpr char kWhich[] =
        "SELECT pg_catalog.pg_postmaster_start_time()::text, d.oid::text, d.datname,"
        " pg_catalog.pg_encoding_to_char(d.encoding)"
        "  FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()";
    ASSIGN_OR_RETURN(pg::Result source, conn_.Exec(kWhich));
    ASSIGN_OR_RETURN(pg::Result target, target_conn_.Exec(kWhich));
    if (source.Get(0, 0) == target.Get(0, 0) && source.Get(0, 1) == target.Get(0, 1)) {
      Problem(absl::StrCat(At(plan_, plan_.target_dsn.empty() ? "source_dsn" : "target_dsn"),
                           "source and target are the same database (",
                           ToAbsl(source.Get(0, 2)),
                           "); to copy within one database leave out source_dsn and target_dsn "
                           "(copy mode with its trigger)"));
    }
    report_.same_encoding = source.Get(0, 3) == target.Get(0, 3);
    if (!report_.same_encoding) {
      Note(absl::StrCat("the source's encoding is ", ToAbsl(source.Get(0, 3)),
                        " and the target's ", ToAbsl(target.Get(0, 3)),
                        ": rows travel as UTF8 and are converted by each server (a character the "
                        "target cannot store fails its batch), and verify hashes them as UTF8"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<PreflightReport> RunChecks() {

    auto table = catalog_.LookupTable(plan_.table);
    if (!table.ok()) {
      if (pg::Classify(table.status()) != pg::ErrorClass::kFatal &&
          table.status().code() != absl::StatusCode::kNotFound &&
          table.status().code() != absl::StatusCode::kFailedPrecondition) {
        return table.status();
      }
      Problem(absl::StrCat(At(plan_, "table"), table.status().message()));
      return std::move(report_);
    }
    report_.table = *table;
    RETURN_IF_ERROR(CheckKey());
    if (plan_.mode == plan::Mode::kUpdate) {
      RETURN_IF_ERROR(CheckUpdateColumns());
      CheckDualWriteWhere();
    } else {
      RETURN_IF_ERROR(CheckCopyTarget());
    }
    RETURN_IF_ERROR(CheckPrivileges());
    RETURN_IF_ERROR(CompileExpressions());
    if (moves_) RETURN_IF_ERROR(ChooseMoveFormat());
    RETURN_IF_ERROR(Estimate());
    BuildBatchSql();
    return std::move(report_);
  }

  void Problem(std::string text) { report_.problems.push_back(std::move(text)); }
  void Note(std::string text) { report_.notes.push_back(std::move(text)); }

  const Table& table() const { return *report_.table; }
  std::string TableName() const { return plan::QuoteQualified(table().name); }

  absl::Status CheckKey() {
    ASSIGN_OR_RETURN(KeyChoice choice, catalog_.ChooseKey(table(), plan_.key));
    report_.rejected_keys = choice.rejected;
    if (!plan_.key.empty()) {
      for (const std::string& name : plan_.key) {
        if (table().FindColumn(name) == nullptr) {
          Problem(absl::StrCat(At(plan_, "key"), "column ", pg::QuoteIdent(name),
                               " does not exist in ", TableName()));
          return absl::OkStatus();
        }
      }
    }
    if (choice.key.has_value()) {
      report_.key = std::move(choice.key);
      return absl::OkStatus();
    }
    std::string reasons;
    for (const RejectedKey& rejected : choice.rejected) {
      absl::StrAppend(&reasons, "; ", pg::QuoteIdent(rejected.index_name), ": ", rejected.reason);
    }
    if (!plan_.key.empty()) {
      std::vector<std::string> names;
      for (const std::string& name : plan_.key) names.push_back(pg::QuoteIdent(name));
      Problem(absl::StrCat(At(plan_, "key"), "no usable unique index of ", TableName(),
                           " covers exactly (", absl::StrJoin(names, ", "),
                           "); a key must be the columns of a valid, non-partial unique index "
                           "over NOT NULL columns", reasons));
    } else {
      Problem(absl::StrCat(At(plan_, "table"), TableName(),
                           " has no usable key: it needs a primary key or a unique index over NOT "
                           "NULL columns so every row can be visited exactly once",
                           reasons.empty() ? " (it has no unique index at all)" : reasons,
                           ". Add a primary key, or name `key:` explicitly."));
    }
    return absl::OkStatus();
  }

  bool IsKeyColumn(const std::string& name) const {
    if (!report_.key.has_value()) return false;
    return std::any_of(report_.key->columns.begin(), report_.key->columns.end(),
                       [&](const Column& c) { return c.name == name; });
  }

  absl::Status CheckUpdateColumns() {
    for (const plan::Assignment& assignment : plan_.set) {
      const Column* column = table().FindColumn(assignment.column);
      if (column == nullptr) {
        if (!plan_.expand.empty()) {
          Note(absl::StrCat(At(plan_, "set", assignment), "column ",
                            pg::QuoteIdent(assignment.column), " does not exist yet; `expand` is "
                            "expected to add it, and its expression is compiled after expand"));
        } else {
          Problem(absl::StrCat(At(plan_, "set", assignment), "column ",
                               pg::QuoteIdent(assignment.column), " does not exist in ",
                               TableName(), "; add it first (or list the DDL under `expand:`)"));
        }
        continue;
      }
      if (column->generated) {
        Problem(absl::StrCat(At(plan_, "set", assignment), "column ",
                             pg::QuoteIdent(column->name), " is a generated column and cannot "
                             "be assigned"));
      }
      if (IsKeyColumn(column->name)) {
        Problem(absl::StrCat(At(plan_, "set", assignment), "column ",
                             pg::QuoteIdent(column->name), " is part of the key batches walk; "
                             "changing it during the walk would skip or revisit rows"));
      }
    }
    return absl::OkStatus();
  }

  // `file:line: columns.x: ` for an entry of `columns`, or for a column copied by name (no
  // `columns:` in the plan) `file:line: into: column "x" (copied by name, ...): `.
  std::string AtColumn(const plan::Assignment& assignment) const {
    if (!plan_.columns.empty()) return At(plan_, "columns", assignment);
    return absl::StrCat(At(plan_, "into"), "column ", pg::QuoteIdent(assignment.column),
                        " (copied by name, as `columns` is omitted): ");
  }

  // The dual-write trigger computes `set` only for rows matching `where`. A `where` that reads a
  // column the plan writes (`first_name IS NULL`) is false for every filled row, so an
  // application UPDATE of the source columns of a filled row would leave it stale, and verify,
  // bound by the same `where`, would never look at it.
  void CheckDualWriteWhere() {
    if (!plan_.dual_write || plan_.where.empty()) return;
    const std::vector<std::string> names = verify::MentionedIdentifiers(plan_.where);
    for (const plan::Assignment& assignment : plan_.set) {
      if (std::find(names.begin(), names.end(), assignment.column) != names.end()) {
        Problem(absl::StrCat(At(plan_, "where"), "reads column ", pg::QuoteIdent(assignment.column),
                             ", which the plan writes; with dual_write the trigger would skip "
                             "filled rows whose sources the application changes. Drop the "
                             "`where` (the trigger and the batches then cover every row) or "
                             "filter on other columns"));
        return;
      }
    }
  }

  absl::Status CheckCopyTarget() {
    auto target = target_catalog_.LookupTable(*plan_.into);
    if (!target.ok()) {
      if (target.status().code() != absl::StatusCode::kNotFound &&
          target.status().code() != absl::StatusCode::kFailedPrecondition) {
        return target.status();
      }
      if (plan_.expand.empty()) {
        Problem(absl::StrCat(At(plan_, "into"), target.status().message()));
      } else {
        Note(absl::StrCat(At(plan_, "into"), target.status().message(),
                          "; `expand` is expected to create it"));
      }
      return absl::OkStatus();
    }
    target_ = *target;
    report_.target = *target;
    const std::string target_name = plan::QuoteQualified(target_->name);
    if (plan_.columns.empty()) {
      for (const Column& column : target_->columns) {
        if (column.generated || table().FindColumn(column.name) == nullptr) continue;
        report_.copy_columns.push_back(
            plan::Assignment{column.name, pg::QuoteIdent(column.name), 0});
      }
      if (report_.copy_columns.empty()) {
        Problem(absl::StrCat(At(plan_, "into"), target_name, " has no column that ", TableName(),
                             " also has; list what to fill under `columns:`"));
        return absl::OkStatus();
      }
    } else {
      for (const plan::Assignment& assignment : plan_.columns) {
        const Column* column = target_->FindColumn(assignment.column);
        if (column == nullptr) {
          Problem(absl::StrCat(At(plan_, "columns", assignment), "column ",
                               pg::QuoteIdent(assignment.column), " does not exist in ",
                               target_name));
        } else if (column->generated) {
          Problem(absl::StrCat(At(plan_, "columns", assignment), "column ",
                               pg::QuoteIdent(column->name), " of ", target_name,
                               " is a generated column and cannot be written"));
        } else {
          report_.copy_columns.push_back(assignment);
        }
      }
    }
    // Columns the copy leaves out get their default; without one, the first row fails.
    for (const Column& column : target_->columns) {
      if (!column.not_null || column.has_default) continue;
      const bool filled = std::any_of(
          report_.copy_columns.begin(), report_.copy_columns.end(),
          [&](const plan::Assignment& assignment) { return assignment.column == column.name; });
      if (!filled) {
        Problem(absl::StrCat(At(plan_, plan_.columns.empty() ? "into" : "columns"), "column ",
                             pg::QuoteIdent(column.name), " of ", target_name,
                             " is NOT NULL without a default, and the copy does not fill it; "
                             "map it under `columns:` or give it a default"));
      }
    }
    return moves_ ? CheckMoveKey() : CheckCopyKey();
  }

  // The source key column an expression copies unchanged: a plain (folded) column name, or
  // `t.name` with the alias the batches give the source; nullopt for anything else.
  std::optional<std::string> CopiedKeyColumn(const std::string& expression) const {
    std::optional<std::string> name;
    if (auto single = plan::ParseIdentifier(expression); single.ok()) {
      name = *single;
    } else if (auto qualified = plan::ParseQualifiedName(expression);
               qualified.ok() && qualified->schema == "t") {
      name = qualified->name;
    }
    if (!name.has_value() || !IsKeyColumn(*name)) return std::nullopt;
    return name;
  }

  // The copy finds "the target row of a source row" by key, in the batches (ON CONFLICT) and in
  // the sync trigger (DELETE of OLD's key): that needs a unique key of `into` whose columns are
  // filled 1:1 from the source key's columns. A narrower target key would take rows of two
  // source rows as one; a wider one, or a transformed key, could not be looked up from OLD.
  absl::Status CheckCopyKey() {
    if (!report_.key.has_value() || report_.copy_columns.empty()) return absl::OkStatus();
    const std::string target_name = plan::QuoteQualified(target_->name);
    ASSIGN_OR_RETURN(std::vector<Key> keys, catalog_.UniqueKeys(*target_));
    const std::vector<Column>& source_key = report_.key->columns;
    std::vector<std::string> reasons;
    for (const Key& key : keys) {
      std::vector<std::string> mapped(source_key.size());
      std::string reason;
      if (key.columns.size() != source_key.size()) {
        reason = absl::StrCat("has ", key.columns.size(), " column(s), the source key ",
                              source_key.size());
      }
      for (const Column& column : key.columns) {
        if (!reason.empty()) break;
        auto assignment = std::find_if(
            report_.copy_columns.begin(), report_.copy_columns.end(),
            [&](const plan::Assignment& a) { return a.column == column.name; });
        if (assignment == report_.copy_columns.end()) {
          reason = absl::StrCat("column ", pg::QuoteIdent(column.name), " is not filled");
          break;
        }
        std::optional<std::string> source = CopiedKeyColumn(assignment->expression);
        if (!source.has_value()) {
          reason = absl::StrCat("column ", pg::QuoteIdent(column.name), " is filled with `",
                                assignment->expression,
                                "`, not a plain copy of a source key column");
          break;
        }
        for (size_t i = 0; i < source_key.size(); ++i) {
          if (source_key[i].name != *source) continue;
          if (!mapped[i].empty()) {
            reason = absl::StrCat("columns ", pg::QuoteIdent(mapped[i]), " and ",
                                  pg::QuoteIdent(column.name), " both copy ",
                                  pg::QuoteIdent(*source));
          }
          mapped[i] = column.name;
        }
      }
      if (reason.empty()) {
        report_.target_key = std::move(mapped);
        report_.target_key_index = key.index_name;
        CheckIdentityColumns();
        return absl::OkStatus();
      }
      reasons.push_back(absl::StrCat(pg::QuoteIdent(key.index_name), ": ", reason));
    }
    std::vector<std::string> source_names;
    for (const Column& column : source_key) source_names.push_back(pg::QuoteIdent(column.name));
    Problem(absl::StrCat(
        At(plan_, "into"), target_name, " has no unique key filled from the key (",
        absl::StrJoin(source_names, ", "), ") of ", TableName(),
        ": batches (ON CONFLICT) and the sync trigger find the target row of a source row by "
        "it. Give ", target_name, " a primary key or unique index on the columns that copy (",
        absl::StrJoin(source_names, ", "), ") unchanged, e.g. `columns: {",
        report_.key->columns.front().name, ": ", report_.key->columns.front().name, ", ...}`",
        reasons.empty() ? absl::StrCat(" (", target_name, " has no usable unique index)")
                        : absl::StrCat(" (", absl::StrJoin(reasons, "; "), ")")));
    return absl::OkStatus();
  }

  // Between databases the target row of a source row is found by the key's columns copied
  // unchanged (verify and repair compare and delete key spans on the target; exactly-once rests
  // on the checkpoint, not on a constraint). A unique key over them is needed only for ON CONFLICT.
  absl::Status CheckMoveKey() {
    if (!report_.key.has_value() || report_.copy_columns.empty()) return absl::OkStatus();
    const std::string target_name = plan::QuoteQualified(target_->name);
    const std::vector<Column>& source_key = report_.key->columns;
    std::vector<std::string> mapped(source_key.size());
    for (const plan::Assignment& assignment : report_.copy_columns) {
      std::optional<std::string> source = CopiedKeyColumn(assignment.expression);
      if (!source.has_value()) continue;
      for (size_t i = 0; i < source_key.size(); ++i) {
        if (source_key[i].name == *source && mapped[i].empty()) mapped[i] = assignment.column;
      }
    }
    for (size_t i = 0; i < source_key.size(); ++i) {
      if (!mapped[i].empty()) continue;
      Problem(absl::StrCat(
          At(plan_, plan_.columns.empty() ? "into" : "columns"), "no column of ", target_name,
          " is filled with the key column ", pg::QuoteIdent(source_key[i].name), " of ",
          TableName(), " unchanged; a copy between databases finds a range's rows on the target "
          "by the key (to verify and repair it), e.g. `columns: {", source_key[i].name, ": ",
          source_key[i].name, ", ...}`"));
      return absl::OkStatus();
    }
    report_.target_key = mapped;
    for (const std::string& name : mapped) {
      report_.target_key_types.push_back(target_->FindColumn(name)->type);
    }
    ASSIGN_OR_RETURN(std::vector<Key> keys, target_catalog_.UniqueKeys(*target_));
    for (const Key& key : keys) {
      std::vector<std::string> names;
      for (const Column& column : key.columns) names.push_back(column.name);
      if (std::is_permutation(names.begin(), names.end(), mapped.begin(), mapped.end())) {
        report_.target_key_index = key.index_name;
        break;
      }
    }
    RETURN_IF_ERROR(CompareKeyCollations());
    if (report_.target_key_index.empty() && plan_.on_conflict != plan::OnConflict::kError) {
      Problem(absl::StrCat(At(plan_, "on_conflict"), "needs a unique key of ", target_name,
                           " over the columns the key is copied into (",
                           absl::StrJoin(mapped, ", "), "), for ON CONFLICT; it has none"));
    }
    if (plan_.on_conflict == plan::OnConflict::kUpdate) CheckIdentityColumns();
    return absl::OkStatus();
  }

  // The ranges are cut in the source's key order, and verify and repair select the same spans on
  // the target: a text key must sort the same way there, so its collations must be the same.
  absl::Status CompareKeyCollations() {
    constexpr char kCollation[] =
        "SELECT CASE WHEN c.collname = 'default' THEN d.datcollate::text ELSE c.collname::text END"
        "  FROM pg_catalog.pg_attribute a"
        "  JOIN pg_catalog.pg_collation c ON c.oid = a.attcollation"
        "  JOIN pg_catalog.pg_database d ON d.datname = pg_catalog.current_database()"
        " WHERE a.attrelid = $1::oid AND a.attname = $2";
    const std::vector<Column>& source_key = report_.key->columns;
    for (size_t i = 0; i < source_key.size(); ++i) {
      ASSIGN_OR_RETURN(pg::Result source,
                       conn_.Exec(kCollation, {std::to_string(table().oid), source_key[i].name}));
      ASSIGN_OR_RETURN(pg::Result target,
                       target_conn_.Exec(kCollation, {std::to_string(target_->oid),
                                                      report_.target_key[i]}));
      if (source.Rows() != 1 || target.Rows() != 1 || source.Get(0, 0) == target.Get(0, 0)) {
        continue;
      }
      Problem(absl::StrCat(
          At(plan_, "into"), "key column ", pg::QuoteIdent(source_key[i].name), " sorts by ",
          ToAbsl(source.Get(0, 0)), " on the source and column ",
          pg::QuoteIdent(report_.target_key[i]), " of ", plan::QuoteQualified(target_->name),
          " by ", ToAbsl(target.Get(0, 0)), "; verify and repair select a range's rows on both "
          "sides by the key, so give the target column the source's collation"));
    }
    return absl::OkStatus();
  }

  // ON CONFLICT DO UPDATE (the sync trigger's, and on_conflict: update) may set an identity
  // ALWAYS column only to DEFAULT, so such a column can be filled only as part of the key.
  void CheckIdentityColumns() {
    for (const plan::Assignment& assignment : report_.copy_columns) {
      const Column* column = target_->FindColumn(assignment.column);
      if (column == nullptr || !column->identity_always) continue;
      if (std::find(report_.target_key.begin(), report_.target_key.end(), column->name) !=
          report_.target_key.end()) {
        continue;
      }
      Problem(absl::StrCat(AtColumn(assignment), "column ", pg::QuoteIdent(column->name), " of ",
                           plan::QuoteQualified(target_->name),
                           " is GENERATED ALWAYS AS IDENTITY and not part of the key the copy "
                           "writes by: the sync trigger could not update it (PostgreSQL allows "
                           "only DEFAULT there); make it GENERATED BY DEFAULT, or leave it out "
                           "of `columns` so it numbers new rows itself"));
    }
  }

  // A target with rows is written through a temporary stage table (move/move_sql.h).
  absl::Status CheckTargetRows() {
    ASSIGN_OR_RETURN(bool select, target_catalog_.HasTablePrivilege(*target_, "SELECT"));
    if (!select) return absl::OkStatus();
    ASSIGN_OR_RETURN(pg::Result rows,
                     target_conn_.Exec(absl::StrCat("SELECT EXISTS (SELECT FROM ",
                                                    plan::QuoteQualified(target_->name), ")")));
    report_.target_has_rows = rows.Get(0, 0) == "t";
    if (!report_.target_has_rows) return absl::OkStatus();
    ASSIGN_OR_RETURN(pg::Result temp,
                     target_conn_.Exec("SELECT pg_catalog.has_database_privilege("
                                       "pg_catalog.current_database(), 'TEMP')"));
    if (temp.Get(0, 0) != "t") {
      Problem(absl::StrCat("role ", pg::QuoteIdent(target_user_),
                           " may not create temporary tables in the target database, needed "
                           "because ", plan::QuoteQualified(target_->name),
                           " has rows (batches go through a stage table); GRANT TEMPORARY ON "
                           "DATABASE ... TO ", pg::QuoteIdent(target_user_)));
    }
    return absl::OkStatus();
  }

  absl::Status RequireTable(const Table& target, const std::string& privilege,
                            const std::string& why, bool on_target = false) {
    Catalog& catalog = on_target ? target_catalog_ : catalog_;
    const std::string& user = on_target ? target_user_ : report_.user;
    ASSIGN_OR_RETURN(bool has, catalog.HasTablePrivilege(target, privilege));
    if (!has) {
      Problem(absl::StrCat("role ", pg::QuoteIdent(user), " lacks ", privilege, " on ",
                           plan::QuoteQualified(target.name), moves_ && on_target ? " (target)" : "",
                           ", needed ", why, "; GRANT ", privilege, " ON ",
                           plan::QuoteQualified(target.name), " TO ", pg::QuoteIdent(user)));
    }
    return absl::OkStatus();
  }

  absl::Status CheckPrivileges() {
    RETURN_IF_ERROR(RequireTable(table(), "SELECT", "to read the rows a batch fills"));
    if (plan_.mode == plan::Mode::kUpdate) {
      for (const plan::Assignment& assignment : plan_.set) {
        const Column* column = table().FindColumn(assignment.column);
        if (column == nullptr) continue;
        ASSIGN_OR_RETURN(bool has, catalog_.HasColumnPrivilege(table(), *column, "UPDATE"));
        if (!has) {
          Problem(absl::StrCat(At(plan_, "set", assignment), "role ",
                               pg::QuoteIdent(report_.user), " lacks UPDATE on column ",
                               pg::QuoteIdent(column->name), " of ", TableName(),
                               "; GRANT UPDATE ON ", TableName(), " TO ",
                               pg::QuoteIdent(report_.user)));
        }
      }
      if (plan_.dual_write) {
        RETURN_IF_ERROR(RequireTable(table(), "TRIGGER", "to install the dual-write trigger"));
      }
    } else if (moves_) {
      if (target_.has_value()) {
        RETURN_IF_ERROR(RequireTable(*target_, "INSERT", "to copy rows into the target", true));
        RETURN_IF_ERROR(RequireTable(*target_, "SELECT",
                                     "to see whether it has rows, and to verify it", true));
        RETURN_IF_ERROR(CheckTargetRows());
        if (plan_.on_conflict == plan::OnConflict::kUpdate) {
          RETURN_IF_ERROR(RequireTable(*target_, "UPDATE", "by on_conflict: update", true));
        }
      }
    } else {
      RETURN_IF_ERROR(RequireTable(table(), "TRIGGER", "to install the sync trigger on the source"));
      // FOR SHARE, which keeps a batch's source rows still until it commits, needs UPDATE on at
      // least one column (PostgreSQL's rule for row-lock clauses).
      ASSIGN_OR_RETURN(bool lock, catalog_.HasAnyColumnPrivilege(table(), "UPDATE"));
      if (!lock) {
        Problem(absl::StrCat("role ", pg::QuoteIdent(report_.user),
                             " lacks UPDATE on every column of ", TableName(),
                             ", needed to lock the rows a batch copies (FOR SHARE; nothing is "
                             "updated); GRANT UPDATE (",
                             report_.key.has_value()
                                 ? pg::QuoteIdent(report_.key->columns.front().name)
                                 : std::string("<a column>"),
                             ") ON ", TableName(), " TO ", pg::QuoteIdent(report_.user)));
      }
      if (target_.has_value()) {
        // The sync trigger runs with pgbackfill's privileges (SECURITY DEFINER) and inserts,
        // updates and deletes target rows whatever on_conflict says.
        RETURN_IF_ERROR(RequireTable(*target_, "INSERT", "to copy rows into the target"));
        RETURN_IF_ERROR(RequireTable(*target_, "UPDATE",
                                     "by the sync trigger (and on_conflict: update)"));
        RETURN_IF_ERROR(RequireTable(*target_, "DELETE", "by the sync trigger"));
      }
    }
    if (plan_.vacuum_every.enabled()) {
      const Table& written = plan_.mode == plan::Mode::kCopy && target_.has_value() ? *target_ : table();
      ASSIGN_OR_RETURN(bool can_vacuum,
                       (moves_ ? target_catalog_ : catalog_).CanVacuum(written));
      if (!can_vacuum) {
        Problem(absl::StrCat(At(plan_, "vacuum_every"), "role ", pg::QuoteIdent(target_user_),
                             " may not VACUUM ", plan::QuoteQualified(written.name),
                             " (only its owner, the database's owner or a superuser may); run "
                             "as the owner, or remove vacuum_every"));
      }
    }
    // The job store lives in schema pgbackfill of the written database (the target, when moving).
    ASSIGN_OR_RETURN(bool store_exists, target_catalog_.SchemaExists(exec::kJobStoreSchema));
    if (store_exists) {
      ASSIGN_OR_RETURN(bool usage,
                       target_catalog_.HasSchemaPrivilege(exec::kJobStoreSchema, "USAGE"));
      if (!usage) {
        Problem(absl::StrCat("role ", pg::QuoteIdent(target_user_),
                             " lacks USAGE on schema \"pgbackfill\" (the job store); GRANT USAGE "
                             "ON SCHEMA pgbackfill TO ",
                             pg::QuoteIdent(target_user_)));
      }
    } else {
      ASSIGN_OR_RETURN(bool create, target_catalog_.HasDatabaseCreate());
      if (!create) {
        Problem(absl::StrCat("role ", pg::QuoteIdent(target_user_),
                             " cannot create the job-store schema \"pgbackfill\": it lacks CREATE "
                             "on the database; GRANT CREATE ON DATABASE ... TO ",
                             pg::QuoteIdent(target_user_),
                             ", or have an owner create the schema once"));
      }
    }
    return absl::OkStatus();
  }

  // Runs `sql` under a savepoint. What the server said about the SQL goes to `*compile_error`
  // (OK when it compiled); the returned Status is for failures of the check itself.
  absl::Status TryCompile(const std::string& sql, absl::Status* compile_error,
                          pg::Result* result = nullptr) {
    RETURN_IF_ERROR(conn_.Exec("SAVEPOINT pgbackfill_preflight").status());
    absl::StatusOr<pg::Result> ran = conn_.Exec(sql);
    absl::Status compiled = ran.status();
    if (ran.ok() && result != nullptr) *result = std::move(ran).value();
    const pg::ErrorClass error_class = pg::Classify(compiled);
    if (error_class == pg::ErrorClass::kReconnect) return compiled;
    if (error_class == pg::ErrorClass::kRetry) {
      // Not the expression's fault: a lock or timeout got in the way. Say so, as a runtime error.
      return absl::UnavailableError(absl::StrCat(
          "compiling the plan's expressions against ", TableName(),
          " waited longer than the plan's lock_timeout (", Millis(plan_.throttle.lock_timeout),
          "): another session holds a conflicting lock on it (DDL?); try again. Server said: ",
          ServerMessage(compiled)));
    }
    RETURN_IF_ERROR(conn_.Exec("ROLLBACK TO SAVEPOINT pgbackfill_preflight").status());
    *compile_error = std::move(compiled);
    return absl::OkStatus();
  }

  absl::Status CompileExpressions() {
    // EXPLAIN without ANALYZE parses, type-checks and plans but executes nothing, and is allowed in
    // a READ ONLY transaction. The expressions see the user's own search_path.
    RETURN_IF_ERROR(conn_.Exec("BEGIN READ ONLY").status());
    RETURN_IF_ERROR(conn_.Exec(SetLocalMillis("lock_timeout", plan_.throttle.lock_timeout)).status());
    RETURN_IF_ERROR(conn_.Exec("SET LOCAL statement_timeout = '10s'").status());
    RETURN_IF_ERROR(
        conn_.Exec("SELECT pg_catalog.set_config('search_path', $1, true)", {user_search_path_})
            .status());
    absl::Status status = CompileEach();
    absl::Status rolled_back = conn_.Exec("ROLLBACK").status();
    RETURN_IF_ERROR(status);
    return rolled_back;
  }

  absl::Status CompileEach() {
    const std::string source = absl::StrCat(TableName(), " AS t");
    if (plan_.mode == plan::Mode::kUpdate) {
      for (const plan::Assignment& assignment : plan_.set) {
        if (table().FindColumn(assignment.column) == nullptr) continue;
        absl::Status compiled;
        RETURN_IF_ERROR(TryCompile(absl::StrCat("EXPLAIN (COSTS OFF) UPDATE ", source, " SET ",
                                                pg::QuoteIdent(assignment.column), " = (",
                                                assignment.expression, ") WHERE false"),
                                   &compiled));
        if (!compiled.ok()) {
          Problem(absl::StrCat(At(plan_, "set", assignment), "expression does not compile: ",
                               ServerMessage(compiled)));
        }
      }
    } else if (moves_) {
      // Compiled on the source, where they run; the result types decide the COPY format.
      source_types_.assign(report_.copy_columns.size(), 0);
      for (size_t i = 0; i < report_.copy_columns.size(); ++i) {
        const plan::Assignment& assignment = report_.copy_columns[i];
        absl::Status compiled;
        pg::Result result;
        RETURN_IF_ERROR(TryCompile(absl::StrCat("SELECT (", assignment.expression, ") FROM ",
                                                source, " LIMIT 0"),
                                   &compiled, &result));
        if (!compiled.ok()) {
          Problem(absl::StrCat(AtColumn(assignment), "expression does not compile on the source: ",
                               ServerMessage(compiled)));
        } else {
          source_types_[i] = result.ColumnType(0);
        }
      }
    } else if (target_.has_value()) {
      for (const plan::Assignment& assignment : report_.copy_columns) {
        absl::Status compiled;
        RETURN_IF_ERROR(TryCompile(absl::StrCat("EXPLAIN (COSTS OFF) INSERT INTO ",
                                                plan::QuoteQualified(target_->name), " (",
                                                pg::QuoteIdent(assignment.column),
                                                ") OVERRIDING SYSTEM VALUE SELECT (",
                                                assignment.expression, ") FROM ", source,
                                                " WHERE false"),
                                   &compiled));
        if (!compiled.ok()) {
          Problem(absl::StrCat(AtColumn(assignment), "expression does not compile "
                               "into the target column: ", ServerMessage(compiled)));
        }
      }
    }
    if (!plan_.where.empty()) {
      absl::Status compiled;
      RETURN_IF_ERROR(TryCompile(
          absl::StrCat("EXPLAIN (COSTS OFF) SELECT FROM ", source, " WHERE (", plan_.where, ")"),
          &compiled));
      if (!compiled.ok()) {
        Problem(absl::StrCat(At(plan_, "where"), "condition does not compile: ",
                             ServerMessage(compiled)));
      }
    }
    return absl::OkStatus();
  }

  // The COPY stream's format from the expressions' types on the source and the columns' types on
  // the target (move/copy_format.h); a pair neither format can carry is a problem of its column.
  absl::Status ChooseMoveFormat() {
    if (!target_.has_value() || source_types_.size() != report_.copy_columns.size()) {
      return absl::OkStatus();
    }
    std::vector<move::ColumnTypes> types;
    std::vector<const plan::Assignment*> assignments;
    for (size_t i = 0; i < report_.copy_columns.size(); ++i) {
      const plan::Assignment& assignment = report_.copy_columns[i];
      const Column* column = target_->FindColumn(assignment.column);
      report_.target_column_types.push_back(column != nullptr ? column->type : "");
      if (source_types_[i] == 0 || column == nullptr) continue;
      move::ColumnTypes pair;
      pair.column = column->name;
      pair.source_oid = source_types_[i];
      pair.target_oid = column->type_oid;
      ASSIGN_OR_RETURN(pair.source_type, TypeName(conn_, pair.source_oid));
      ASSIGN_OR_RETURN(pair.target_type, TypeName(target_conn_, pair.target_oid));
      types.push_back(std::move(pair));
      assignments.push_back(&assignment);
    }
    const move::FormatChoice choice = move::ChooseFormat(types);
    for (size_t index : choice.refused) {
      const move::ColumnTypes& pair = types[index];
      Problem(absl::StrCat(
          AtColumn(*assignments[index]), "the source gives ", pair.source_type, " and column ",
          pg::QuoteIdent(pair.column), " of ", plan::QuoteQualified(target_->name), " is ",
          pair.target_type, ": neither a binary nor a text COPY can carry one into the other. Cast "
          "it on the source, e.g. `", pair.column, ": (", assignments[index]->expression, ")::",
          pair.target_type, "`"));
    }
    report_.move_binary = choice.binary;
    if (choice.binary) {
      Note("the COPY stream is binary: every column has the same built-in type on both sides");
    } else {
      Note(absl::StrCat("the COPY stream is text, because ",
                        absl::StrJoin(choice.text_because, "; "),
                        " (binary needs the same built-in type on both sides)"));
    }
    return absl::OkStatus();
  }

  static absl::StatusOr<std::string> TypeName(pg::Connection& conn, uint32_t oid) {
    ASSIGN_OR_RETURN(pg::Result name, conn.Exec("SELECT pg_catalog.format_type($1::oid, NULL)",
                                                {std::to_string(oid)}));
    return std::string(name.Get(0, 0));
  }

  absl::Status Estimate() {
    ASSIGN_OR_RETURN(report_.estimate, catalog_.EstimateRows(table()));
    if (report_.estimate->source == "size") {
      Note(absl::StrCat(TableName(), " has no statistics; the row estimate is a guess from its "
                        "size. Run ANALYZE for a better one."));
    }
    if (!report_.key.has_value()) return absl::OkStatus();
    ASSIGN_OR_RETURN(report_.min_key, catalog_.KeyBound(table(), *report_.key, true));
    ASSIGN_OR_RETURN(report_.max_key, catalog_.KeyBound(table(), *report_.key, false));
    return absl::OkStatus();
  }

  void BuildBatchSql() {
    if (!report_.key.has_value()) return;
    if (moves_) {
      if (!target_.has_value() || report_.target_key.empty()) return;
      const move::MoveSpec spec = MoveSpecFor(report_, plan_);
      const exec::RangeEnds ends;
      // As the run decides at its first planning: a target with rows goes through the stage.
      const bool staged = report_.target_has_rows;
      report_.batch_statements = {
          absl::StrCat("-- source, in the run's snapshot: ", move::BatchEndSql(spec, ends)),
          absl::StrCat("-- source: ", move::CopyOutSql(spec, ranges::KeyValue{"$after"},
                                                       ranges::KeyValue{"$upto"})),
          "-- target:\nBEGIN",
          absl::StrCat("SET LOCAL lock_timeout = '",
                       absl::ToInt64Milliseconds(plan_.throttle.lock_timeout), "ms'"),
          absl::StrCat("SET LOCAL statement_timeout = '",
                       absl::ToInt64Milliseconds(plan_.throttle.statement_timeout), "ms'"),
          move::ClaimSql()};
      if (staged) report_.batch_statements.push_back(move::StageSql(spec));
      report_.batch_statements.push_back(move::CopyInSql(spec, staged));
      if (staged) report_.batch_statements.push_back(move::InsertFromStageSql(spec));
      report_.batch_statements.push_back(move::AdvanceSql());
      report_.batch_statements.push_back("COMMIT");
      return;
    }
    if (plan_.mode == plan::Mode::kCopy) {
      if (!target_.has_value() || report_.target_key.empty()) return;
      exec::CopyBatchSpec spec;
      spec.source = table().name;
      for (const Column& column : report_.key->columns) {
        spec.key.push_back(exec::KeyColumn{column.name, column.type});
      }
      spec.target = target_->name;
      spec.columns = report_.copy_columns;
      spec.target_key = report_.target_key;
      spec.on_conflict = plan_.on_conflict;
      spec.where = plan_.where;
      report_.batch_statements =
          exec::BatchTransaction(plan_.throttle, exec::BuildCopyBatch(spec, exec::RangeEnds{}));
      return;
    }
    exec::UpdateBatchSpec spec;
    spec.table = table().name;
    for (const Column& column : report_.key->columns) {
      spec.key.push_back(exec::KeyColumn{column.name, column.type});
    }
    spec.set = plan_.set;
    spec.where = plan_.where;
    report_.batch_statements =
        exec::BatchTransaction(plan_.throttle, exec::BuildUpdateBatch(spec, exec::RangeEnds{}));
  }

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
};

}  // namespace

absl::StatusOr<PreflightReport> Preflight(pg::Connection& conn, const plan::Plan& plan) {
  return Preflighter(conn, nullptr, plan).Run();
}

absl::StatusOr<PreflightReport> PreflightMove(pg::Connection& source, pg::Connection& target,
                                              const plan::Plan& plan) {
  return Preflighter(source, &target, plan).Run();
}

absl::StatusOr<PreflightReport> PreflightPlan(pg::Connection& home, const plan::Plan& plan,
                                              const std::string& dsn) {
  if (!plan::MovesBetweenDatabases(plan)) return Preflight(home, plan);
  auto source = pg::Connection::Connect(plan::SourceDsn(plan, dsn));
  if (!source.ok()) {
    return absl::Status(source.status().code(),
                        absl::StrCat(plan.file, ": the source database (source_dsn, else --dsn or "
                                     "dsn): ", source.status().message()));
  }
  return PreflightMove(*source, home, plan);
}

move::MoveSpec MoveSpecFor(const PreflightReport& report, const plan::Plan& plan) {
  move::MoveSpec spec;
  spec.source = report.table->name;
  for (const Column& column : report.key->columns) {
    spec.key.push_back(exec::KeyColumn{column.name, column.type});
  }
  spec.target = report.target->name;
  spec.columns = report.copy_columns;
  spec.column_types = report.target_column_types;
  spec.target_key = report.target_key;
  spec.target_key_types = report.target_key_types;
  spec.target_key_unique = !report.target_key_index.empty();
  spec.on_conflict = plan.on_conflict;
  spec.where = plan.where;
  spec.binary = report.move_binary;
  spec.same_encoding = report.same_encoding;
  return spec;
}

}  // namespace pgbackfill::catalog
