// Introspection of the target through pg_catalog. Every query is schema-qualified (pg_catalog.)
// and takes names as bind parameters, so neither search_path nor a hostile name can change what
// is read. Read-only: nothing here changes the database.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "pgbackfill/pg/connection.h"
#include "pgbackfill/plan/plan.h"

namespace pgbackfill::catalog {

struct Column {
  int attnum = 0;
  std::string name;
  std::string type;  // format_type(), e.g. "bigint", "character varying(20)", "uuid"
  uint32_t type_oid = 0;
  bool not_null = false;
  bool generated = false;  // GENERATED ALWAYS AS (...) STORED: cannot be assigned
  bool identity_always = false;
  // An INSERT that leaves the column out still gives it a value: a DEFAULT, an identity or a
  // generated column.
  bool has_default = false;
};

struct Table {
  uint32_t oid = 0;
  plan::QualifiedName name;  // resolved: schema always set
  char kind = 'r';           // pg_class.relkind: r, p (partitioned), ...
  std::vector<Column> columns;
  double reltuples = -1;     // -1 when never analyzed/vacuumed (PostgreSQL 14+)
  int64_t relpages = 0;
  int64_t size_bytes = 0;    // pg_relation_size of the main fork

  const Column* FindColumn(const std::string& name) const;
};

// The columns batches walk in order, and the unique index that makes that order total.
struct Key {
  std::vector<Column> columns;  // in index order
  std::string index_name;
  bool primary = false;

  // A single int2/int4/int8 column: ranges can be split arithmetically.
  bool IsSingleInteger() const;
  std::string Describe() const;  // e.g. `("tenant_id" text, "id" uuid) via users_pkey`
};

// A unique index that could not serve as the key, with the reason (shown to the user).
struct RejectedKey {
  std::string index_name;
  std::string reason;
};

struct KeyChoice {
  std::optional<Key> key;
  std::vector<RejectedKey> rejected;
};

struct RowEstimate {
  int64_t rows = 0;
  std::string source;  // "reltuples", "count", "size"
};

// A trigger that is not internal (foreign keys' triggers are), on a table or on one of its
// partitions (a partition's clone of a parent's trigger counts once, as the parent's).
struct Trigger {
  std::string table;  // where it is defined, as regclass prints it
  std::string name;
  std::string function_schema;
  std::string definition;      // pg_get_triggerdef: CREATE TRIGGER ...
  int type = 0;                // pg_trigger.tgtype bits
  char enabled = 'O';          // tgenabled: O origin/local, A always, R replica only, D disabled
  std::vector<int> update_of;  // attnums of `UPDATE OF col, ...`; empty = any UPDATE

  bool OnInsert() const { return (type & 4) != 0; }
  bool OnUpdate() const { return (type & 16) != 0; }
  // Whether it fires in a session whose session_replication_role is `replica` (else origin).
  bool FiresAs(bool replica) const {
    return enabled == 'A' || (replica ? enabled == 'R' : enabled == 'O');
  }
};

// A foreign key that `table` takes part in, from `table`'s side: the columns of `table` it
// constrains (referencing) or whose values it protects (referenced). A self-reference is both.
struct ForeignKey {
  std::string name;
  std::string referencing;  // the constrained table, as regclass prints it
  std::string referenced;
  bool table_references = false;  // true: `table` is the referencing side
  std::vector<int> columns;       // attnums of `table`
};

class Catalog {
 public:
  // `conn` must outlive the Catalog.
  explicit Catalog(pg::Connection& conn) : conn_(conn) {}

  // Pins this session's search_path to pg_catalog, pg_temp (pg::Connection::Pin: for each
  // statement's own transaction, nothing left on the server session) so that no object in a user
  // schema can shadow a function or operator our catalog queries use, and returns the user's own
  // search_path (for resolving schema-less plan names and compiling plan expressions).
  absl::StatusOr<std::string> Harden();

  // kNotFound (naming the table) when it does not exist or is not a table. A schema-less name is
  // resolved through the user's search_path.
  absl::StatusOr<Table> LookupTable(const plan::QualifiedName& name);

  // The key to walk: `requested` column names (empty = choose), else the primary key, else the
  // narrowest usable unique index. Usable = valid, not partial, no expressions, all columns NOT
  // NULL. A requested key must be exactly the column set of such an index. Returns an empty key
  // with the rejection reasons when none qualifies.
  absl::StatusOr<KeyChoice> ChooseKey(const Table& table, const std::vector<std::string>& requested);

  // Every unique index of `table` that INSERT ... ON CONFLICT (columns) can infer as its arbiter:
  // valid, not partial, on plain columns. Unlike ChooseKey, nullable columns are allowed (copy
  // mode fills them from NOT NULL source key columns). Primary key first, then narrowest, by name.
  absl::StatusOr<std::vector<Key>> UniqueKeys(const Table& table);

  // Estimated rows: reltuples scaled to the current size when the table has statistics, an exact
  // count for small unanalysed tables, a size-based guess otherwise.
  absl::StatusOr<RowEstimate> EstimateRows(const Table& table);

  // The smallest and largest key (text form per column), nullopt for an empty table; with
  // `after`, among the keys past it (a row comparison the key's index answers).
  absl::StatusOr<std::optional<std::vector<std::string>>> KeyBound(
      const Table& table, const Key& key, bool smallest,
      const std::optional<std::vector<std::string>>& after = std::nullopt);

  // Whether the current user has `privilege` (SELECT, INSERT, UPDATE, TRIGGER) on the table.
  absl::StatusOr<bool> HasTablePrivilege(const Table& table, const std::string& privilege);
  // Whether the current user may VACUUM the table (bloat control).
  absl::StatusOr<bool> CanVacuum(const Table& table);
  absl::StatusOr<bool> HasColumnPrivilege(const Table& table, const Column& column,
                                          const std::string& privilege);
  // `privilege` on the table or on at least one of its columns (a row-lock clause such as FOR
  // SHARE needs UPDATE in that sense).
  absl::StatusOr<bool> HasAnyColumnPrivilege(const Table& table, const std::string& privilege);
  // CREATE on the current database (needed to create the job-store schema).
  absl::StatusOr<bool> HasDatabaseCreate();
  absl::StatusOr<bool> SchemaExists(const std::string& schema);
  // USAGE and CREATE on an existing schema.
  absl::StatusOr<bool> HasSchemaPrivilege(const std::string& schema, const std::string& privilege);
  absl::StatusOr<std::string> CurrentUser();

  // The table's triggers (see Trigger), by table and name.
  absl::StatusOr<std::vector<Trigger>> Triggers(const Table& table);
  absl::StatusOr<std::vector<ForeignKey>> ForeignKeys(const Table& table);
  // Whether the current user may SET the superuser-only parameter `name` (a superuser, or
  // GRANT SET ON PARAMETER, new in PostgreSQL 15: the server must be 15 or later).
  absl::StatusOr<bool> MaySetParameter(const std::string& name);

 private:
  absl::StatusOr<uint32_t> ResolveOid(const plan::QualifiedName& name);

  pg::Connection& conn_;
  std::optional<std::string> user_search_path_;  // set by Harden()
};

}  // namespace pgbackfill::catalog
