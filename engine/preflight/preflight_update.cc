// Preflight of UPDATE mode: the `set` columns and the dual-write trigger's `where`.
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
#include "pgbackfill/sql/lexer.h"
#include "pgbackfill/sql/names.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/util/strings.h"
#include "pgbackfill/verify/verify.h"
#include "preflighter.h"

namespace pgbackfill::preflight {

absl::Status Preflighter::CheckUpdateColumns() {
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

void Preflighter::CheckDualWriteWhere() {
  if (!plan_.dual_write || plan_.where.empty()) return;
  const std::vector<std::string> names = sql::MentionedIdentifiers(plan_.where);
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
}  // namespace pgbackfill::preflight
