// Preflight of a copy between databases: not one database twice, the key on the target, key
// collations, the COPY stream's format.
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

absl::Status Preflighter::CompareDatabases() {
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

absl::Status Preflighter::CheckMoveKey() {
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

absl::Status Preflighter::CompareKeyCollations() {
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

absl::Status Preflighter::ChooseMoveFormat() {
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
}  // namespace pgbackfill::preflight
