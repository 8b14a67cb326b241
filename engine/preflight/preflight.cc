#include "pgbackfill/preflight/preflight.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "pgbackfill/batch/batch_sql.h"
#include "pgbackfill/move/copy_format.h"
#include "pgbackfill/move/move_sql.h"
#include "pgbackfill/pg/error.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/plan/parse.h"
#include "pgbackfill/sql/names.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/verify/verify.h"
#include "pgbackfill/util/strings.h"
#include "preflighter.h"

namespace pgbackfill::preflight {

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

std::string ServerMessage(const absl::Status& status) {
  std::string message(status.message());
  if (auto pos = message.find(" in: "); pos != std::string::npos) message.resize(pos);
  return message;
}

absl::StatusOr<PreflightReport> Preflighter::Run() {
  report_.plan_hash = plan::PlanHash(plan_);
  ASSIGN_OR_RETURN(pg::Result version, conn_.Exec("SHOW server_version_num"));
  if (std::stoi(std::string(version.Get(0, 0))) < 150000) {
    Problem(absl::StrCat("the server runs PostgreSQL ", ToAbsl(version.Get(0, 0)),
                         "; pgbackfill needs 15 or later"));
    server_supported_ = false;
  }
  ASSIGN_OR_RETURN(pg::Result show, conn_.Exec("SHOW server_version"));
  report_.server_version = std::string(show.Get(0, 0));
  ASSIGN_OR_RETURN(report_.user, catalog_.CurrentUser());
  ASSIGN_OR_RETURN(user_search_path_, catalog_.Harden());
  report_.user_search_path = user_search_path_;
  // Every read below waits at most the plan's lock_timeout behind someone's DDL: a clear error
  // beats a `check` that hangs, and is what the backfill itself would meet.
  conn_.Pin("lock_timeout", sql::TimeoutSetting(plan_.throttle.lock_timeout));
  target_user_ = report_.user;
  if (moves_) {
    ASSIGN_OR_RETURN(pg::Result target_version, target_conn_.Exec("SHOW server_version_num"));
    if (std::stoi(std::string(target_version.Get(0, 0))) < 150000) {
      Problem(absl::StrCat("the target server runs PostgreSQL ",
                           ToAbsl(target_version.Get(0, 0)), "; pgbackfill needs 15 or later"));
      server_supported_ = false;
    }
    ASSIGN_OR_RETURN(target_user_, target_catalog_.CurrentUser());
    RETURN_IF_ERROR(target_catalog_.Harden().status());
    RETURN_IF_ERROR(CompareDatabases());
    target_conn_.Pin("lock_timeout", sql::TimeoutSetting(plan_.throttle.lock_timeout));
  }
  absl::StatusOr<PreflightReport> report = RunChecks();
  if (!report.ok()) return report;
  conn_.Unpin("lock_timeout");
  if (moves_) target_conn_.Unpin("lock_timeout");
  return report;
}

absl::StatusOr<PreflightReport> Preflighter::RunChecks() {

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
  RETURN_IF_ERROR(CheckUserTriggers());
  RETURN_IF_ERROR(CompileExpressions());
  if (moves_) RETURN_IF_ERROR(ChooseMoveFormat());
  RETURN_IF_ERROR(CheckApplicationSignals());
  RETURN_IF_ERROR(Estimate());
  BuildBatchSql();
  RETURN_IF_ERROR(ExplainBatchWrites());
  return std::move(report_);
}

absl::Status Preflighter::CheckKey() {
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

bool Preflighter::IsKeyColumn(const std::string& name) const {
  if (!report_.key.has_value()) return false;
  return std::any_of(report_.key->columns.begin(), report_.key->columns.end(),
                     [&](const Column& c) { return c.name == name; });
}

absl::Status Preflighter::RequireTable(const Table& target, const std::string& privilege,
                                       const std::string& why, bool on_target) {
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

absl::Status Preflighter::CheckPrivileges() {
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
  ASSIGN_OR_RETURN(bool store_exists, target_catalog_.SchemaExists(sql::kJobStoreSchema));
  if (store_exists) {
    ASSIGN_OR_RETURN(bool usage,
                     target_catalog_.HasSchemaPrivilege(sql::kJobStoreSchema, "USAGE"));
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

absl::Status Preflighter::TryCompile(const std::string& sql, absl::Status* compile_error,
                                     pg::Result* result) {
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
        " waited longer than the plan's lock_timeout (", sql::TimeoutSetting(plan_.throttle.lock_timeout),
        "): another session holds a conflicting lock on it (DDL?); try again. Server said: ",
        ServerMessage(compiled)));
  }
  RETURN_IF_ERROR(conn_.Exec("ROLLBACK TO SAVEPOINT pgbackfill_preflight").status());
  *compile_error = std::move(compiled);
  return absl::OkStatus();
}

absl::Status Preflighter::CompileExpressions() {
  // EXPLAIN without ANALYZE parses, type-checks and plans but executes nothing, and is allowed in
  // a READ ONLY transaction. The expressions see the user's own search_path.
  RETURN_IF_ERROR(conn_.Exec("BEGIN READ ONLY").status());
  RETURN_IF_ERROR(conn_.Exec(sql::SetLocalTimeout("lock_timeout", plan_.throttle.lock_timeout)).status());
  RETURN_IF_ERROR(conn_.Exec("SET LOCAL statement_timeout = '10s'").status());
  RETURN_IF_ERROR(
      conn_.Exec("SELECT pg_catalog.set_config('search_path', $1, true)", {user_search_path_})
          .status());
  absl::Status status = CompileEach();
  absl::Status rolled_back = conn_.Exec("ROLLBACK").status();
  RETURN_IF_ERROR(status);
  return rolled_back;
}

absl::Status Preflighter::CompileEach() {
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

absl::StatusOr<std::string> Preflighter::TypeName(pg::Connection& conn, uint32_t oid) {
  ASSIGN_OR_RETURN(pg::Result name, conn.Exec("SELECT pg_catalog.format_type($1::oid, NULL)",
                                              {std::to_string(oid)}));
  return std::string(name.Get(0, 0));
}

absl::Status Preflighter::CheckApplicationSignals() {
  const plan::Throttle& throttle = plan_.throttle;
  // The probes watch the database the batches write: between databases, the target.
  pg::Connection& home = target_conn_;
  // One round trip: whether pg_stat_statements is there, and what the role may see.
  ASSIGN_OR_RETURN(
      pg::Result roles,
      home.Exec("SELECT r.rolsuper,"
                " pg_catalog.pg_has_role(r.oid, 'pg_read_all_stats', 'USAGE'),"
                " pg_catalog.pg_has_role(r.oid, 'pg_monitor', 'USAGE'),"
                " EXISTS (SELECT FROM pg_catalog.pg_extension"
                "          WHERE extname = 'pg_stat_statements'),"
                " pg_catalog.has_function_privilege("
                "   'pg_catalog.pg_read_file(text, bigint, bigint, boolean)', 'EXECUTE')"
                "   AND (r.rolsuper"
                "        OR pg_catalog.pg_has_role(r.oid, 'pg_read_server_files', 'USAGE'))"
                "  FROM pg_catalog.pg_roles r WHERE r.rolname = current_user"));
  // The statement limits both read pg_stat_statements; a note names the first one set.
  const std::string statements_key = throttle.max_statement_latency.enabled()
                                         ? "throttle.max_statement_latency"
                                         : "throttle.max_statement_tail";
  if (throttle.ReadsStatements()) {
    if (roles.Get(0, 3) == "t") {
      Note(absl::StrCat(statements_key,
                        " reads the application's statements from pg_stat_statements"));
    } else {
      Note(absl::StrCat(
          At(plan_, statements_key),
          "pg_stat_statements is not installed in this database, so statement latency is not "
          "checked; the run uses the other signals (commit latency, active sessions, lock "
          "waiters, replica lag, the canary). To use it: shared_preload_libraries = "
          "'pg_stat_statements' and CREATE EXTENSION pg_stat_statements"));
    }
  }
  const bool super = roles.Get(0, 0) == "t";
  if (throttle.max_active_sessions.enabled() && !super && roles.Get(0, 1) != "t") {
    Note(absl::StrCat(At(plan_, "throttle.max_active_sessions"),
                      "the role cannot see other roles' sessions in pg_stat_activity; grant it "
                      "pg_read_all_stats, or only its own role's sessions are counted"));
  }
  if (throttle.ReadsStatements() && roles.Get(0, 3) == "t" && !super && roles.Get(0, 1) != "t") {
    Note(absl::StrCat(At(plan_, statements_key),
                      "pg_stat_statements hides other roles' statements from this role; grant it "
                      "pg_read_all_stats, or only its own role's statements are counted"));
  }
  if (throttle.max_archive_pending > 0 && !super && roles.Get(0, 2) != "t") {
    Problem(absl::StrCat(At(plan_, "throttle.max_archive_pending"),
                         "reading the archiver's pending WAL needs pg_monitor "
                         "(pg_ls_archive_statusdir): GRANT pg_monitor TO the role, or leave "
                         "the key out"));
  }
  if (throttle.max_cpu_pressure.enabled())
    RETURN_IF_ERROR(CheckCpuPressure(roles.Get(0, 4) == "t"));
  if (!throttle.command.empty()) {
    Note(absl::StrCat(At(plan_, "throttle.command"),
                      "runs with /bin/sh -c on the runner's host every throttle interval; a "
                      "non-zero exit or `true` holds, a printed number is the application's "
                      "latency over its budget (over 1 slows the job, over 1.5 holds it)"));
  }
  return absl::OkStatus();
}

absl::Status Preflighter::CheckCpuPressure(bool readable) {
  const std::string key = "throttle.max_cpu_pressure";
  constexpr char kInstead[] =
      "the run uses the other signals (for a CPU-bound application, max_statement_tail: 1.5x "
      "makes up for part of it)";
  if (!readable) {
    Note(absl::StrCat(At(plan_, key),
                      "the role may not read the server's /proc/pressure/cpu, so CPU pressure is "
                      "not checked; ",
                      kInstead,
                      ". To use it: GRANT pg_read_server_files TO the role and GRANT EXECUTE ON "
                      "FUNCTION pg_read_file(text, bigint, bigint, boolean) TO the role (a "
                      "superuser needs neither)"));
    return absl::OkStatus();
  }
  // A second round trip, not a CASE in the role query: PostgreSQL checks EXECUTE on
  // pg_read_file when it prepares the query, whether or not the CASE would call it.
  ASSIGN_OR_RETURN(pg::Result file,
                   target_conn_.Exec("SELECT pg_catalog.pg_read_file('/proc/pressure/cpu', 0, "
                                     "4096, true) IS NOT NULL"));
  if (file.Get(0, 0) == "t") {
    Note(absl::StrCat(key,
                      " reads how long runnable tasks wait for a CPU on the database server "
                      "(/proc/pressure/cpu)"));
  } else {
    Note(absl::StrCat(At(plan_, key),
                      "the database server has no /proc/pressure/cpu (Linux 4.20 or later with "
                      "PSI on), so CPU pressure is not checked; ",
                      kInstead));
  }
  return absl::OkStatus();
}

absl::Status Preflighter::Estimate() {
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

void Preflighter::BuildBatchSql() {
  if (!report_.key.has_value()) return;
  if (moves_) {
    if (!target_.has_value() || report_.target_key.empty()) return;
    const move::MoveSpec spec = MoveSpecFor(report_, plan_);
    const sql::RangeEnds ends;
    // As the run decides at its first planning: a target with rows goes through the stage.
    const bool staged = report_.target_has_rows;
    report_.batch_statements = {
        absl::StrCat("-- source, in the run's snapshot: ", move::BatchEndSql(spec, ends)),
        absl::StrCat("-- source: ", move::CopyOutSql(spec, ranges::KeyValue{"$after"},
                                                     ranges::KeyValue{"$upto"})),
    };
    move::TargetTransaction target =
        move::BuildTargetTransaction(spec, plan_.throttle, plan_.triggers, staged);
    target.head.front().insert(0, "-- target:\n");
    std::vector<std::string>& out = report_.batch_statements;
    out.insert(out.end(), target.head.begin(), target.head.end());
    out.push_back(target.copy_in);
    out.insert(out.end(), target.tail.begin(), target.tail.end());
    return;
  }
  if (plan_.mode == plan::Mode::kCopy) {
    if (!target_.has_value() || report_.target_key.empty()) return;
    batch::CopyBatchSpec spec;
    spec.source = table().name;
    for (const Column& column : report_.key->columns) {
      spec.key.push_back(sql::KeyColumn{column.name, column.type});
    }
    spec.target = target_->name;
    spec.columns = report_.copy_columns;
    spec.target_key = report_.target_key;
    spec.on_conflict = plan_.on_conflict;
    spec.where = plan_.where;
    report_.batch_statements = batch::BatchTransaction(
        plan_.throttle, plan_.triggers, batch::BuildCopyBatch(spec, sql::RangeEnds{}));
    return;
  }
  batch::UpdateBatchSpec spec;
  spec.table = table().name;
  for (const Column& column : report_.key->columns) {
    spec.key.push_back(sql::KeyColumn{column.name, column.type});
  }
  spec.set = plan_.set;
  spec.where = plan_.where;
  report_.batch_statements = batch::BatchTransaction(
      plan_.throttle, plan_.triggers, batch::BuildUpdateBatch(spec, sql::RangeEnds{}));
}

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
    spec.key.push_back(sql::KeyColumn{column.name, column.type});
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

}  // namespace pgbackfill::preflight
