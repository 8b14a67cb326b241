// Preflight of copy mode: `into`, its columns and key, identity columns, a target with rows.
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

std::string Preflighter::AtColumn(const plan::Assignment& assignment) const {
  if (!plan_.columns.empty()) return At(plan_, "columns", assignment);
  return absl::StrCat(At(plan_, "into"), "column ", pg::QuoteIdent(assignment.column),
                      " (copied by name, as `columns` is omitted): ");
}

absl::Status Preflighter::CheckCopyTarget() {
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

std::optional<std::string> Preflighter::CopiedKeyColumn(const std::string& expression) const {
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

absl::Status Preflighter::CheckCopyKey() {
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

void Preflighter::CheckIdentityColumns() {
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

absl::Status Preflighter::CheckTargetRows() {
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
}  // namespace pgbackfill::preflight
