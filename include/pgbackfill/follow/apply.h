// How one change of the source table becomes statements on the target (pure). pgoutput sends row
// images in text; each is applied as an idempotent "make the target row look like this":
// an insert, and an update whose image is complete, upsert the whole row; an update that left a
// TOASTed value out (pgoutput's `u`) sets only the target columns whose expressions do not read
// it; a delete deletes by key. Applied in source commit order from the slot's start, this brings
// every row to its source state whatever snapshot (at or after that start) its copy was read
// under: a change older than a row's copy is overwritten by the later changes that made the copy
// what it was. The `columns` transform runs on the target, over a row `t` of the source's types.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "pgbackfill/follow/pgoutput.h"
#include "pgbackfill/pg/connection.h"
#include "pgbackfill/plan/plan.h"

namespace pgbackfill::follow {

struct ApplySpec {
  plan::QualifiedName target;             // schema set
  std::vector<plan::Assignment> columns;  // target column -> expression over the source row `t`
  std::vector<std::string> target_key;    // the target's key columns, filled 1:1 from source_key
  std::vector<std::string> target_key_types;
  std::vector<std::string> source_key;  // the source key's column names, in the same order
  // The type (format_type on the source) of every source column by name: a row image's values
  // are cast to these on the target. A column the stream names and this map lacks (added on the
  // source after the job started) is an error, never dropped.
  absl::flat_hash_map<std::string, std::string> source_types;
};

struct ChangeStatement {
  std::string sql;
  std::vector<pg::Param> params;
  // The statement answers one boolean that must be true: the row an incomplete image moved to
  // its new key exists. False means a value the stream did not send is missing on the target.
  bool must_hold = false;
};

// The statements of one Insert, Update or Delete of `relation` (other messages: InvalidArgument).
absl::StatusOr<std::vector<ChangeStatement>> ChangeStatements(const ApplySpec& spec,
                                                              const Relation& relation,
                                                              const Message& change);

// The upsert of a complete row, for preflight to compile on the target (its parameters typed
// NULLs): whether the transform and the source types make sense there.
std::string UpsertProbeSql(const ApplySpec& spec);

}  // namespace pgbackfill::follow
