#include "pgbackfill/catalog/preflight.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "pgbackfill/exec/batch_sql.h"
#include "pgbackfill/pg/error.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/util/status.h"
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
  Preflighter(pg::Connection& conn, const plan::Plan& plan)
      : conn_(conn), plan_(plan), catalog_(conn) {}

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
    // Every read below waits at most the plan's lock_timeout behind someone's DDL: a clear error
    // beats a `check` that hangs, and is what the backfill itself would meet.
    RETURN_IF_ERROR(conn_.Exec("SELECT pg_catalog.set_config('lock_timeout', $1, false)",
                               {Millis(plan_.throttle.lock_timeout)})
                        .status());
    absl::StatusOr<PreflightReport> report = RunChecks();
    if (!report.ok()) return report;
    RETURN_IF_ERROR(conn_.Exec("RESET lock_timeout").status());
    return report;
  }

 private:
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
    } else {
      RETURN_IF_ERROR(CheckCopyTarget());
    }
    RETURN_IF_ERROR(CheckPrivileges());
    RETURN_IF_ERROR(CompileExpressions());
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

  absl::Status CheckCopyTarget() {
    auto target = catalog_.LookupTable(*plan_.into);
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
    for (const plan::Assignment& assignment : plan_.columns) {
      const Column* column = target_->FindColumn(assignment.column);
      if (column == nullptr) {
        Problem(absl::StrCat(At(plan_, "columns", assignment), "column ",
                             pg::QuoteIdent(assignment.column), " does not exist in ",
                             plan::QuoteQualified(target_->name)));
      } else if (column->generated) {
        Problem(absl::StrCat(At(plan_, "columns", assignment), "column ",
                             pg::QuoteIdent(column->name), " of ",
                             plan::QuoteQualified(target_->name),
                             " is a generated column and cannot be written"));
      }
    }
    return absl::OkStatus();
  }

  absl::Status RequireTable(const Table& target, const std::string& privilege,
                            const std::string& why) {
    ASSIGN_OR_RETURN(bool has, catalog_.HasTablePrivilege(target, privilege));
    if (!has) {
      Problem(absl::StrCat("role ", pg::QuoteIdent(report_.user), " lacks ", privilege, " on ",
                           plan::QuoteQualified(target.name), ", needed ", why, "; GRANT ",
                           privilege, " ON ", plan::QuoteQualified(target.name), " TO ",
                           pg::QuoteIdent(report_.user)));
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
    } else {
      RETURN_IF_ERROR(RequireTable(table(), "TRIGGER", "to install the sync trigger on the source"));
      if (target_.has_value()) {
        RETURN_IF_ERROR(RequireTable(*target_, "INSERT", "to copy rows into the target"));
        if (plan_.on_conflict == plan::OnConflict::kUpdate) {
          RETURN_IF_ERROR(RequireTable(*target_, "UPDATE", "for on_conflict: update"));
        }
      }
    }
    // The job store lives in schema pgbackfill of this database.
    ASSIGN_OR_RETURN(bool store_exists, catalog_.SchemaExists(exec::kJobStoreSchema));
    if (store_exists) {
      ASSIGN_OR_RETURN(bool usage, catalog_.HasSchemaPrivilege(exec::kJobStoreSchema, "USAGE"));
      if (!usage) {
        Problem(absl::StrCat("role ", pg::QuoteIdent(report_.user),
                             " lacks USAGE on schema \"pgbackfill\" (the job store); GRANT USAGE "
                             "ON SCHEMA pgbackfill TO ",
                             pg::QuoteIdent(report_.user)));
      }
    } else {
      ASSIGN_OR_RETURN(bool create, catalog_.HasDatabaseCreate());
      if (!create) {
        Problem(absl::StrCat("role ", pg::QuoteIdent(report_.user),
                             " cannot create the job-store schema \"pgbackfill\": it lacks CREATE "
                             "on the database; GRANT CREATE ON DATABASE ... TO ",
                             pg::QuoteIdent(report_.user),
                             ", or have an owner create the schema once"));
      }
    }
    return absl::OkStatus();
  }

  // Runs `sql` under a savepoint. What the server said about the SQL goes to `*compile_error`
  // (OK when it compiled); the returned Status is for failures of the check itself.
  absl::Status TryCompile(const std::string& sql, absl::Status* compile_error) {
    RETURN_IF_ERROR(conn_.Exec("SAVEPOINT pgbackfill_preflight").status());
    absl::Status compiled = conn_.Exec(sql).status();
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
    } else if (target_.has_value()) {
      for (const plan::Assignment& assignment : plan_.columns) {
        if (target_->FindColumn(assignment.column) == nullptr) continue;
        absl::Status compiled;
        RETURN_IF_ERROR(TryCompile(absl::StrCat("EXPLAIN (COSTS OFF) INSERT INTO ",
                                                plan::QuoteQualified(target_->name), " (",
                                                pg::QuoteIdent(assignment.column), ") SELECT (",
                                                assignment.expression, ") FROM ", source,
                                                " WHERE false"),
                                   &compiled));
        if (!compiled.ok()) {
          Problem(absl::StrCat(At(plan_, "columns", assignment), "expression does not compile "
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
    if (!report_.key.has_value() || plan_.mode != plan::Mode::kUpdate) return;
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
  PreflightReport report_;
  std::optional<Table> target_;
  std::string user_search_path_;
};

}  // namespace

absl::StatusOr<PreflightReport> Preflight(pg::Connection& conn, const plan::Plan& plan) {
  return Preflighter(conn, plan).Run();
}

}  // namespace pgbackfill::catalog
