#include "pgbackfill/follow/apply.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/sql/lexer.h"
#include "pgbackfill/util/status.h"

namespace pgbackfill::follow {
namespace {

// Builds one statement's text and parameters; $n numbers follow the parameters added.
class Builder {
 public:
  std::string Param(pg::Param value, const std::string& type) {
    params_.push_back(std::move(value));
    return absl::StrCat("$", params_.size(), "::", type);
  }
  ChangeStatement Take(std::string sql, bool must_hold = false) {
    ChangeStatement statement{std::move(sql), std::move(params_), must_hold};
    params_.clear();
    return statement;
  }

 private:
  std::vector<pg::Param> params_;
};

std::string Quoted(const std::vector<std::string>& names) {
  std::vector<std::string> quoted;
  for (const std::string& name : names) quoted.push_back(pg::QuoteIdent(name));
  return absl::StrJoin(quoted, ", ");
}

absl::StatusOr<pg::Param> ValueParam(const Value& value, const std::string& column) {
  switch (value.kind) {
    case Value::Kind::kNull:
    case Value::Kind::kUnchanged:  // the columns that read it are left out wherever it is
      return pg::Param();
    case Value::Kind::kText:
      return pg::Param(value.bytes);
    case Value::Kind::kBinary:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("column ", column, " came in binary, which this stream never asks for"));
}

// `(SELECT $1::type AS "c1", ...) AS t`: the source row of `row` in the source's types.
absl::StatusOr<std::string> SourceRow(const ApplySpec& spec, const Relation& relation,
                                      const Tuple& row, Builder& builder) {
  RETURN_IF_ERROR(CheckTupleFits(relation, row));
  std::vector<std::string> items;
  for (size_t i = 0; i < row.size(); ++i) {
    const std::string& name = relation.columns[i].name;
    auto type = spec.source_types.find(name);
    if (type == spec.source_types.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the source table has a column ", pg::QuoteIdent(name),
          " that it did not have when the job started; a move cannot follow a change of the "
          "table's columns (roll back and start the move again)"));
    }
    ASSIGN_OR_RETURN(pg::Param value, ValueParam(row[i], name));
    items.push_back(
        absl::StrCat(builder.Param(std::move(value), type->second), " AS ", pg::QuoteIdent(name)));
  }
  return absl::StrCat("(SELECT ", absl::StrJoin(items, ", "), ") AS t");
}

// The key's values in `row` (by the source key's names), as text.
absl::StatusOr<std::vector<std::string>> KeyOf(const ApplySpec& spec, const Relation& relation,
                                               const Tuple& row) {
  RETURN_IF_ERROR(CheckTupleFits(relation, row));
  std::vector<std::string> key;
  for (const std::string& name : spec.source_key) {
    auto column = std::find_if(relation.columns.begin(), relation.columns.end(),
                               [&](const RelationColumn& c) { return c.name == name; });
    if (column == relation.columns.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the change stream's rows have no key column ", pg::QuoteIdent(name)));
    }
    const Value& value = row[static_cast<size_t>(column - relation.columns.begin())];
    if (value.kind != Value::Kind::kText) {
      return absl::InvalidArgumentError(
          absl::StrCat("key column ", pg::QuoteIdent(name), " of a change is ",
                       value.null() ? "NULL" : "not sent",
                       ": the table's replica identity must cover the move's key"));
    }
    key.push_back(value.bytes);
  }
  return key;
}

// `("k1", "k2") = ($n::type, ...)` on the target row `alias`.
std::string KeyCondition(const ApplySpec& spec, const std::vector<std::string>& key,
                         const std::string& alias, Builder& builder) {
  std::vector<std::string> columns, values;
  for (size_t i = 0; i < key.size(); ++i) {
    columns.push_back(absl::StrCat(alias, ".", pg::QuoteIdent(spec.target_key[i])));
    values.push_back(builder.Param(key[i], spec.target_key_types[i]));
  }
  return absl::StrCat("(", absl::StrJoin(columns, ", "), ") = (", absl::StrJoin(values, ", "), ")");
}

bool IsTargetKey(const ApplySpec& spec, const std::string& column) {
  return std::find(spec.target_key.begin(), spec.target_key.end(), column) != spec.target_key.end();
}

// The target columns a row image can set: all of them, less those whose expression reads a
// value the image left out.
std::vector<const plan::Assignment*> Settable(const ApplySpec& spec, const Relation& relation,
                                              const Tuple& row) {
  std::set<std::string> unchanged;
  for (size_t i = 0; i < row.size() && i < relation.columns.size(); ++i) {
    if (row[i].unchanged()) unchanged.insert(relation.columns[i].name);
  }
  std::vector<const plan::Assignment*> settable;
  for (const plan::Assignment& assignment : spec.columns) {
    const std::vector<std::string> names = sql::MentionedIdentifiers(assignment.expression);
    if (std::none_of(names.begin(), names.end(),
                     [&](const std::string& name) { return unchanged.contains(name); })) {
      settable.push_back(&assignment);
    }
  }
  return settable;
}

bool Complete(const Tuple& row) {
  return std::none_of(row.begin(), row.end(), [](const Value& v) { return v.unchanged(); });
}

absl::StatusOr<ChangeStatement> Upsert(const ApplySpec& spec, const Relation& relation,
                                       const Tuple& row) {
  Builder builder;
  ASSIGN_OR_RETURN(std::string source, SourceRow(spec, relation, row, builder));
  std::vector<std::string> names, expressions, updates;
  for (const plan::Assignment& assignment : spec.columns) {
    names.push_back(assignment.column);
    expressions.push_back(absl::StrCat("(", assignment.expression, ")"));
    if (!IsTargetKey(spec, assignment.column)) {
      const std::string column = pg::QuoteIdent(assignment.column);
      updates.push_back(absl::StrCat(column, " = EXCLUDED.", column));
    }
  }
  const std::string action =
      updates.empty() ? "DO NOTHING" : absl::StrCat("DO UPDATE SET ", absl::StrJoin(updates, ", "));
  return builder.Take(absl::StrCat("INSERT INTO ", plan::QuoteQualified(spec.target), " AS d (",
                                   Quoted(names), ") SELECT ", absl::StrJoin(expressions, ", "),
                                   " FROM ", source, " ON CONFLICT (", Quoted(spec.target_key),
                                   ") ", action));
}

// Sets the settable columns of the target row with `key` (none there: nothing happens).
absl::StatusOr<std::optional<ChangeStatement>> UpdateInPlace(const ApplySpec& spec,
                                                             const Relation& relation,
                                                             const Tuple& row,
                                                             const std::vector<std::string>& key) {
  std::vector<std::string> names, expressions;
  for (const plan::Assignment* assignment : Settable(spec, relation, row)) {
    names.push_back(assignment->column);
    expressions.push_back(absl::StrCat("(", assignment->expression, ")"));
  }
  if (names.empty()) return std::optional<ChangeStatement>();
  Builder builder;
  ASSIGN_OR_RETURN(std::string source, SourceRow(spec, relation, row, builder));
  const std::string condition = KeyCondition(spec, key, "d", builder);
  return std::optional<ChangeStatement>(builder.Take(absl::StrCat(
      "UPDATE ", plan::QuoteQualified(spec.target), " AS d SET (", Quoted(names), ") = (SELECT ",
      absl::StrJoin(expressions, ", "), " FROM ", source, ") WHERE ", condition)));
}

ChangeStatement DeleteByKey(const ApplySpec& spec, const std::vector<std::string>& key) {
  Builder builder;
  const std::string condition = KeyCondition(spec, key, "d", builder);
  return builder.Take(
      absl::StrCat("DELETE FROM ", plan::QuoteQualified(spec.target), " AS d WHERE ", condition));
}

absl::StatusOr<std::vector<ChangeStatement>> ForUpdate(const ApplySpec& spec,
                                                       const Relation& relation,
                                                       const Update& update) {
  ASSIGN_OR_RETURN(std::vector<std::string> new_key, KeyOf(spec, relation, update.row));
  std::vector<std::string> old_key = new_key;
  if (update.old_kind.has_value()) {
    ASSIGN_OR_RETURN(old_key, KeyOf(spec, relation, update.old_row));
  }
  std::vector<ChangeStatement> statements;
  if (Complete(update.row)) {
    if (old_key != new_key) statements.push_back(DeleteByKey(spec, old_key));
    ASSIGN_OR_RETURN(ChangeStatement upsert, Upsert(spec, relation, update.row));
    statements.push_back(std::move(upsert));
    return statements;
  }
  if (old_key == new_key) {
    ASSIGN_OR_RETURN(std::optional<ChangeStatement> set,
                     UpdateInPlace(spec, relation, update.row, new_key));
    if (set.has_value()) statements.push_back(std::move(*set));
    return statements;
  }
  // A new key and a value left out: the target row moves to the new key and keeps what it had
  // for that value. A row already at the new key (copied after this change) gives way only when
  // the old one is there to move; else it is the row, and takes the image's other values.
  Builder builder;
  const std::string target = plan::QuoteQualified(spec.target);
  const std::string at_new = KeyCondition(spec, new_key, "d", builder);
  const std::string old_there = KeyCondition(spec, old_key, "o", builder);
  statements.push_back(builder.Take(absl::StrCat("DELETE FROM ", target, " AS d WHERE ", at_new,
                                                 " AND EXISTS (SELECT FROM ", target,
                                                 " AS o WHERE ", old_there, ")")));
  for (const std::vector<std::string>* key : {&old_key, &new_key}) {
    ASSIGN_OR_RETURN(std::optional<ChangeStatement> set,
                     UpdateInPlace(spec, relation, update.row, *key));
    if (set.has_value()) statements.push_back(std::move(*set));
  }
  const std::string exists = KeyCondition(spec, new_key, "d", builder);
  statements.push_back(builder.Take(
      absl::StrCat("SELECT EXISTS (SELECT FROM ", target, " AS d WHERE ", exists, ")"), true));
  return statements;
}

}  // namespace

absl::StatusOr<std::vector<ChangeStatement>> ChangeStatements(const ApplySpec& spec,
                                                              const Relation& relation,
                                                              const Message& change) {
  if (const auto* insert = std::get_if<Insert>(&change)) {
    if (!Complete(insert->row)) {
      return absl::InvalidArgumentError("an Insert left a value out");
    }
    ASSIGN_OR_RETURN(ChangeStatement upsert, Upsert(spec, relation, insert->row));
    return std::vector<ChangeStatement>{std::move(upsert)};
  }
  if (const auto* update = std::get_if<Update>(&change)) return ForUpdate(spec, relation, *update);
  if (const auto* deleted = std::get_if<Delete>(&change)) {
    ASSIGN_OR_RETURN(std::vector<std::string> key, KeyOf(spec, relation, deleted->old_row));
    return std::vector<ChangeStatement>{DeleteByKey(spec, key)};
  }
  return absl::InvalidArgumentError(
      absl::StrCat("a ", std::string(MessageName(change)), " message is not a change of a row"));
}

std::string UpsertProbeSql(const ApplySpec& spec) {
  Relation relation;
  Tuple row;
  for (const auto& [name, type] : spec.source_types) {
    RelationColumn column;
    column.name = name;
    relation.columns.push_back(std::move(column));
    row.push_back(Value{});
  }
  absl::StatusOr<ChangeStatement> upsert = Upsert(spec, relation, row);
  return upsert.ok() ? upsert->sql : "";
}

}  // namespace pgbackfill::follow
