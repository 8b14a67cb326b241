#include "pgbackfill/catalog/catalog.h"

#include <algorithm>
#include <charconv>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::catalog {
namespace {

constexpr uint32_t kInt2Oid = 21;
constexpr uint32_t kInt4Oid = 23;
constexpr uint32_t kInt8Oid = 20;

// Below this many pages an unanalysed table is counted exactly; above it a count could take long.
constexpr int64_t kExactCountMaxPages = 10000;

int64_t ToInt64(std::string_view text) {
  int64_t value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

uint32_t ToOid(std::string_view text) {
  uint32_t value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

std::string OidParam(uint32_t oid) { return std::to_string(oid); }

std::string KeyList(const Key& key) {
  std::vector<std::string> parts;
  for (const Column& column : key.columns) parts.push_back(pg::QuoteIdent(column.name));
  return absl::StrJoin(parts, ", ");
}

}  // namespace

const Column* Table::FindColumn(const std::string& column_name) const {
  for (const Column& column : columns) {
    if (column.name == column_name) return &column;
  }
  return nullptr;
}

bool Key::IsSingleInteger() const {
  return columns.size() == 1 &&
         (columns[0].type_oid == kInt2Oid || columns[0].type_oid == kInt4Oid ||
          columns[0].type_oid == kInt8Oid);
}

std::string Key::Describe() const {
  std::vector<std::string> parts;
  for (const Column& column : columns) {
    parts.push_back(absl::StrCat(pg::QuoteIdent(column.name), " ", column.type));
  }
  return absl::StrCat("(", absl::StrJoin(parts, ", "), ") via ",
                      primary ? "primary key " : "unique index ", pg::QuoteIdent(index_name));
}

absl::StatusOr<std::string> Catalog::Harden() {
  // A pin, not a session-level SET: through a transaction-pooling pooler a SET would reach
  // whichever client gets the server connection next, and this session's next transaction
  // might not see it (pg::Connection::Pin). The session's own path stays the user's.
  conn_.Unpin("search_path");
  ASSIGN_OR_RETURN(pg::Result path,
                   conn_.Exec("SELECT pg_catalog.current_setting('search_path')"));
  user_search_path_ = std::string(path.Get(0, 0));
  conn_.Pin("search_path", "pg_catalog, pg_temp");
  return *user_search_path_;
}

absl::StatusOr<uint32_t> Catalog::ResolveOid(const plan::QualifiedName& name) {
  // to_regclass resolves a schema-less name through search_path, as the user's own queries would,
  // and returns NULL instead of raising for a missing relation. A hardened session resolves it
  // under the user's path for the length of one transaction.
  const bool use_user_path = name.schema.empty() && user_search_path_.has_value();
  if (use_user_path) {
    RETURN_IF_ERROR(conn_.Exec("BEGIN").status());
    RETURN_IF_ERROR(conn_.Exec("SELECT pg_catalog.set_config('search_path', $1, true)",
                               {*user_search_path_})
                        .status());
  }
  auto oid = conn_.Exec("SELECT pg_catalog.to_regclass($1)::pg_catalog.oid",
                        {plan::QuoteQualified(name)});
  if (use_user_path) RETURN_IF_ERROR(conn_.Exec("COMMIT").status());
  if (!oid.ok()) return oid.status();
  return oid->IsNull(0, 0) ? 0u : ToOid(oid->Get(0, 0));
}

absl::StatusOr<Table> Catalog::LookupTable(const plan::QualifiedName& name) {
  ASSIGN_OR_RETURN(uint32_t oid, ResolveOid(name));
  ASSIGN_OR_RETURN(
      pg::Result rel,
      conn_.Exec("SELECT c.oid, n.nspname, c.relname, c.relkind, c.reltuples::float8, c.relpages,"
                 "       pg_catalog.pg_relation_size(c.oid)"
                 "  FROM pg_catalog.pg_class c"
                 "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                 " WHERE c.oid = $1",
                 {OidParam(oid)}));
  const std::string shown = plan::QuoteQualified(name);
  if (rel.Rows() == 0) {
    return absl::NotFoundError(absl::StrCat(
        "table ", shown, " does not exist",
        name.schema.empty() ? " in the search_path (qualify it with its schema)" : ""));
  }
  Table table;
  table.oid = ToOid(rel.Get(0, 0));
  table.name = plan::QualifiedName{std::string(rel.Get(0, 1)), std::string(rel.Get(0, 2))};
  table.kind = rel.Get(0, 3).empty() ? '?' : rel.Get(0, 3)[0];
  table.reltuples = std::stod(std::string(rel.Get(0, 4)));
  table.relpages = ToInt64(rel.Get(0, 5));
  table.size_bytes = ToInt64(rel.Get(0, 6));
  if (table.kind == 'p') {
    // A partitioned table has no storage of its own: its size and statistics are its leaves'.
    ASSIGN_OR_RETURN(
        pg::Result leaves,
        conn_.Exec("SELECT COALESCE(sum(GREATEST(c.reltuples, 0)), 0)::float8,"
                   "       COALESCE(sum(c.relpages), 0),"
                   "       COALESCE(sum(pg_catalog.pg_relation_size(c.oid)), 0),"
                   "       bool_and(c.reltuples >= 0)"
                   "  FROM pg_catalog.pg_partition_tree($1::pg_catalog.regclass) p"
                   "  JOIN pg_catalog.pg_class c ON c.oid = p.relid"
                   " WHERE p.isleaf",
                   {OidParam(table.oid)}));
    const bool analysed = leaves.Get(0, 3) == "t";
    table.reltuples = analysed ? std::stod(std::string(leaves.Get(0, 0))) : -1;
    table.relpages = ToInt64(leaves.Get(0, 1));
    table.size_bytes = ToInt64(leaves.Get(0, 2));
  }
  if (table.kind != 'r' && table.kind != 'p') {
    return absl::FailedPreconditionError(
        absl::StrCat(shown, " is not a table (relkind '", std::string(1, table.kind),
                     "'); pgbackfill fills ordinary and partitioned tables"));
  }

  ASSIGN_OR_RETURN(
      pg::Result cols,
      conn_.Exec("SELECT a.attnum, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod),"
                 "       a.atttypid, a.attnotnull, a.attgenerated <> '', a.attidentity = 'a',"
                 "       a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''"
                 "  FROM pg_catalog.pg_attribute a"
                 " WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped"
                 " ORDER BY a.attnum",
                 {OidParam(table.oid)}));
  for (int row = 0; row < cols.Rows(); ++row) {
    Column column;
    column.attnum = static_cast<int>(ToInt64(cols.Get(row, 0)));
    column.name = std::string(cols.Get(row, 1));
    column.type = std::string(cols.Get(row, 2));
    column.type_oid = ToOid(cols.Get(row, 3));
    column.not_null = cols.Get(row, 4) == "t";
    column.generated = cols.Get(row, 5) == "t";
    column.identity_always = cols.Get(row, 6) == "t";
    column.has_default = cols.Get(row, 7) == "t";
    table.columns.push_back(std::move(column));
  }
  return table;
}

absl::StatusOr<KeyChoice> Catalog::ChooseKey(const Table& table,
                                             const std::vector<std::string>& requested) {
  // indkey is an int2vector; its text form is space-separated attnums in index order.
  ASSIGN_OR_RETURN(
      pg::Result indexes,
      conn_.Exec("SELECT ic.relname, i.indisprimary, i.indkey::text,"
                 "       i.indisvalid AND i.indisready AND i.indislive,"
                 "       i.indpred IS NULL, i.indexprs IS NULL, i.indnkeyatts"
                 "  FROM pg_catalog.pg_index i"
                 "  JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid"
                 " WHERE i.indrelid = $1 AND i.indisunique"
                 " ORDER BY i.indisprimary DESC, i.indnkeyatts, ic.relname",
                 {OidParam(table.oid)}));
  KeyChoice choice;
  std::vector<std::string> wanted = requested;
  std::sort(wanted.begin(), wanted.end());
  for (int row = 0; row < indexes.Rows(); ++row) {
    const std::string index_name(indexes.Get(row, 0));
    auto reject = [&](std::string reason) {
      choice.rejected.push_back(RejectedKey{index_name, std::move(reason)});
    };
    if (indexes.Get(row, 3) != "t") {
      reject("the index is not valid (a failed CREATE INDEX CONCURRENTLY?)");
      continue;
    }
    if (indexes.Get(row, 4) != "t") {
      reject("the index is partial (has a WHERE clause), so it does not cover every row");
      continue;
    }
    if (indexes.Get(row, 5) != "t") {
      reject("the index is on expressions, not plain columns");
      continue;
    }
    Key key;
    key.index_name = index_name;
    key.primary = indexes.Get(row, 1) == "t";
    const int64_t key_attrs = ToInt64(indexes.Get(row, 6));
    std::vector<std::string> attnums = absl::StrSplit(std::string(indexes.Get(row, 2)), ' ');
    std::string nullable;
    for (int64_t i = 0; i < key_attrs && i < static_cast<int64_t>(attnums.size()); ++i) {
      const int attnum = static_cast<int>(ToInt64(attnums[static_cast<size_t>(i)]));
      auto it = std::find_if(table.columns.begin(), table.columns.end(),
                             [&](const Column& c) { return c.attnum == attnum; });
      if (it == table.columns.end()) break;
      if (!it->not_null) nullable = it->name;
      key.columns.push_back(*it);
    }
    if (!nullable.empty()) {
      reject(absl::StrCat("column ", pg::QuoteIdent(nullable),
                          " is nullable; rows with NULL there would never be visited by key "
                          "ranges (add NOT NULL or name another key)"));
      continue;
    }
    if (!wanted.empty()) {
      std::vector<std::string> names;
      for (const Column& column : key.columns) names.push_back(column.name);
      std::sort(names.begin(), names.end());
      if (names != wanted) continue;
    }
    if (!choice.key.has_value()) choice.key = std::move(key);
  }
  return choice;
}

absl::StatusOr<std::vector<Key>> Catalog::UniqueKeys(const Table& table) {
  ASSIGN_OR_RETURN(
      pg::Result indexes,
      conn_.Exec("SELECT ic.relname, i.indisprimary, i.indkey::text, i.indnkeyatts"
                 "  FROM pg_catalog.pg_index i"
                 "  JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid"
                 " WHERE i.indrelid = $1 AND i.indisunique"
                 "   AND i.indisvalid AND i.indisready AND i.indislive"
                 "   AND i.indpred IS NULL AND i.indexprs IS NULL"
                 " ORDER BY i.indisprimary DESC, i.indnkeyatts, ic.relname",
                 {OidParam(table.oid)}));
  std::vector<Key> keys;
  for (int row = 0; row < indexes.Rows(); ++row) {
    Key key;
    key.index_name = std::string(indexes.Get(row, 0));
    key.primary = indexes.Get(row, 1) == "t";
    const int64_t key_attrs = ToInt64(indexes.Get(row, 3));
    std::vector<std::string> attnums = absl::StrSplit(std::string(indexes.Get(row, 2)), ' ');
    bool complete = true;
    for (int64_t i = 0; i < key_attrs && i < static_cast<int64_t>(attnums.size()); ++i) {
      const int attnum = static_cast<int>(ToInt64(attnums[static_cast<size_t>(i)]));
      auto it = std::find_if(table.columns.begin(), table.columns.end(),
                             [&](const Column& c) { return c.attnum == attnum; });
      if (it == table.columns.end()) {
        complete = false;
        break;
      }
      key.columns.push_back(*it);
    }
    if (complete && !key.columns.empty()) keys.push_back(std::move(key));
  }
  return keys;
}

absl::StatusOr<RowEstimate> Catalog::EstimateRows(const Table& table) {
  if (table.reltuples >= 0 && table.relpages > 0) {
    // As the planner does: density from the last ANALYZE/VACUUM times the current page count.
    const double pages_now = static_cast<double>(table.size_bytes) / 8192.0;
    const double density = table.reltuples / static_cast<double>(table.relpages);
    return RowEstimate{static_cast<int64_t>(density * pages_now), "reltuples"};
  }
  if (table.reltuples >= 0 && table.size_bytes == 0) return RowEstimate{0, "reltuples"};
  if (table.size_bytes / 8192 <= kExactCountMaxPages) {
    ASSIGN_OR_RETURN(pg::Result count,
                     conn_.Exec(absl::StrCat("SELECT count(*) FROM ", QuoteQualified(table.name))));
    return RowEstimate{ToInt64(count.Get(0, 0)), "count"};
  }
  // No statistics and too big to count: assume ~100-byte rows. Said as such to the user.
  return RowEstimate{table.size_bytes / 100, "size"};
}

absl::StatusOr<std::optional<std::vector<std::string>>> Catalog::KeyBound(
    const Table& table, const Key& key, bool smallest,
    const std::optional<std::vector<std::string>>& after) {
  std::vector<std::string> order;
  std::vector<std::string> placeholders;
  for (const Column& column : key.columns) {
    order.push_back(absl::StrCat(pg::QuoteIdent(column.name), smallest ? "" : " DESC"));
    placeholders.push_back(absl::StrCat("$", placeholders.size() + 1, "::", column.type));
  }
  std::string where;
  std::vector<pg::Param> params;
  if (after.has_value()) {
    where = absl::StrCat(" WHERE (", KeyList(key), ") > (", absl::StrJoin(placeholders, ", "), ")");
    params.assign(after->begin(), after->end());
  }
  ASSIGN_OR_RETURN(
      pg::Result bound,
      conn_.Exec(absl::StrCat("SELECT ", KeyList(key), " FROM ", QuoteQualified(table.name), where,
                              " ORDER BY ", absl::StrJoin(order, ", "), " LIMIT 1"),
                 params));
  if (bound.Rows() == 0) return std::optional<std::vector<std::string>>();
  std::vector<std::string> values;
  for (int column = 0; column < bound.Columns(); ++column) {
    values.emplace_back(bound.Get(0, column));
  }
  return std::optional<std::vector<std::string>>(std::move(values));
}

absl::StatusOr<bool> Catalog::HasTablePrivilege(const Table& table, const std::string& privilege) {
  ASSIGN_OR_RETURN(pg::Result result,
                   conn_.Exec("SELECT pg_catalog.has_table_privilege($1::pg_catalog.oid, $2)",
                              {OidParam(table.oid), privilege}));
  return result.Get(0, 0) == "t";
}

absl::StatusOr<bool> Catalog::CanVacuum(const Table& table) {
  // PostgreSQL 15's rule (vacuum_is_relation_owner): superuser, a member of the table's owner, or
  // a member of the database's owner (for tables other than shared catalogs); from 17 also
  // MAINTAIN. Anyone else gets a WARNING and a skipped table, not an error, so it has to be asked
  // here.
  ASSIGN_OR_RETURN(
      pg::Result result,
      conn_.Exec("SELECT r.rolsuper OR pg_catalog.pg_has_role(c.relowner, 'MEMBER')\n"
                 "       OR (NOT c.relisshared AND pg_catalog.pg_has_role(d.datdba, 'MEMBER'))\n"
                 // PostgreSQL 17 adds the MAINTAIN privilege (and pg_maintain); asked only
                 // there, since older servers do not know the privilege's name.
                 "       OR CASE WHEN pg_catalog.current_setting('server_version_num')::int >= "
                 "170000\n"
                 "          THEN pg_catalog.has_table_privilege(c.oid, 'MAINTAIN') ELSE false END\n"
                 "  FROM pg_catalog.pg_class c, pg_catalog.pg_roles r, pg_catalog.pg_database d\n"
                 " WHERE c.oid = $1::pg_catalog.oid AND r.rolname = current_user\n"
                 "   AND d.datname = pg_catalog.current_database()",
                 {OidParam(table.oid)}));
  return result.Rows() == 1 && result.Get(0, 0) == "t";
}

absl::StatusOr<bool> Catalog::HasColumnPrivilege(const Table& table, const Column& column,
                                                 const std::string& privilege) {
  ASSIGN_OR_RETURN(
      pg::Result result,
      conn_.Exec("SELECT pg_catalog.has_column_privilege($1::pg_catalog.oid, $2::int2, $3)",
                 {OidParam(table.oid), std::to_string(column.attnum), privilege}));
  return result.Get(0, 0) == "t";
}

absl::StatusOr<bool> Catalog::HasAnyColumnPrivilege(const Table& table,
                                                    const std::string& privilege) {
  ASSIGN_OR_RETURN(
      pg::Result result,
      conn_.Exec("SELECT pg_catalog.has_any_column_privilege($1::pg_catalog.oid, $2)",
                 {OidParam(table.oid), privilege}));
  return result.Get(0, 0) == "t";
}

absl::StatusOr<bool> Catalog::HasDatabaseCreate() {
  ASSIGN_OR_RETURN(pg::Result result,
                   conn_.Exec("SELECT pg_catalog.has_database_privilege("
                              "pg_catalog.current_database(), 'CREATE')"));
  return result.Get(0, 0) == "t";
}

absl::StatusOr<bool> Catalog::SchemaExists(const std::string& schema) {
  ASSIGN_OR_RETURN(
      pg::Result result,
      conn_.Exec("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1", {schema}));
  return result.Rows() > 0;
}

absl::StatusOr<bool> Catalog::HasSchemaPrivilege(const std::string& schema,
                                                 const std::string& privilege) {
  ASSIGN_OR_RETURN(pg::Result result,
                   conn_.Exec("SELECT pg_catalog.has_schema_privilege($1, $2)",
                              {schema, privilege}));  // a plain name, not parsed
  return result.Get(0, 0) == "t";
}

absl::StatusOr<std::string> Catalog::CurrentUser() {
  ASSIGN_OR_RETURN(pg::Result result, conn_.Exec("SELECT CURRENT_USER"));
  return std::string(result.Get(0, 0));
}

absl::StatusOr<std::vector<Trigger>> Catalog::Triggers(const Table& table) {
  // A write to a partitioned table fires the triggers of the partition the row lands in; those a
  // partition got from its parent (tgparentid) are the parent's, listed once.
  ASSIGN_OR_RETURN(pg::Result result,
                   conn_.Exec("SELECT t.tgrelid::pg_catalog.regclass::text, t.tgname, n.nspname,\n"
                              "       pg_catalog.pg_get_triggerdef(t.oid), t.tgtype, t.tgenabled,\n"
                              "       t.tgattr::text\n"
                              "  FROM pg_catalog.pg_trigger t\n"
                              "  JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid\n"
                              "  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace\n"
                              " WHERE (t.tgrelid = $1::pg_catalog.oid OR t.tgrelid IN\n"
                              "        (SELECT relid FROM pg_catalog.pg_partition_tree("
                              "$1::pg_catalog.oid)))\n"
                              "   AND NOT t.tgisinternal AND t.tgparentid = 0\n"
                              " ORDER BY t.tgrelid = $1::pg_catalog.oid DESC, 1, t.tgname",
                              {OidParam(table.oid)}));
  std::vector<Trigger> triggers;
  for (int row = 0; row < result.Rows(); ++row) {
    Trigger trigger;
    trigger.table = std::string(result.Get(row, 0));
    trigger.name = std::string(result.Get(row, 1));
    trigger.function_schema = std::string(result.Get(row, 2));
    trigger.definition = std::string(result.Get(row, 3));
    trigger.type = std::stoi(std::string(result.Get(row, 4)));
    trigger.enabled = result.Get(row, 5).empty() ? 'O' : result.Get(row, 5).front();
    // int2vector's text: attnums separated by spaces.
    for (absl::string_view attnum :
         absl::StrSplit(ToAbsl(result.Get(row, 6)), ' ', absl::SkipEmpty())) {
      trigger.update_of.push_back(std::stoi(std::string(attnum)));
    }
    triggers.push_back(std::move(trigger));
  }
  return triggers;
}

absl::StatusOr<std::vector<ForeignKey>> Catalog::ForeignKeys(const Table& table) {
  ASSIGN_OR_RETURN(pg::Result result,
                   conn_.Exec("SELECT c.conname, c.conrelid::pg_catalog.regclass::text,\n"
                              "       c.confrelid::pg_catalog.regclass::text, side.referencing,\n"
                              "       pg_catalog.array_to_string(side.columns, ' ')\n"
                              "  FROM pg_catalog.pg_constraint c,\n"
                              "       LATERAL (VALUES (true, c.conkey, c.conrelid),\n"
                              "                       (false, c.confkey, c.confrelid))"
                              " AS side (referencing, columns, rel)\n"
                              " WHERE c.contype = 'f' AND side.rel = $1::pg_catalog.oid\n"
                              " ORDER BY c.conname, side.referencing DESC",
                              {OidParam(table.oid)}));
  std::vector<ForeignKey> keys;
  for (int row = 0; row < result.Rows(); ++row) {
    ForeignKey key;
    key.name = std::string(result.Get(row, 0));
    key.referencing = std::string(result.Get(row, 1));
    key.referenced = std::string(result.Get(row, 2));
    key.table_references = result.Get(row, 3) == "t";
    for (absl::string_view attnum :
         absl::StrSplit(ToAbsl(result.Get(row, 4)), ' ', absl::SkipEmpty())) {
      key.columns.push_back(std::stoi(std::string(attnum)));
    }
    keys.push_back(std::move(key));
  }
  return keys;
}

absl::StatusOr<bool> Catalog::MaySetParameter(const std::string& name) {
  ASSIGN_OR_RETURN(pg::Result result,
                   conn_.Exec("SELECT pg_catalog.has_parameter_privilege($1, 'SET')", {name}));
  return result.Get(0, 0) == "t";
}

}  // namespace pgbackfill::catalog
