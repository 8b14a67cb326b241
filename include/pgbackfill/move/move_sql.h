// SQL text of the data mover (copy mode between databases: `source_dsn` / `target_dsn`). Pure
// string building, unit-tested without a server.
//
// One batch of a range runs on two sessions:
//   source  (inside its REPEATABLE READ transaction on the run's exported snapshot)
//           BatchEndSql: the key `rows` keys past the checkpoint, and how many keys that is
//           CopyOutSql:  COPY (SELECT <columns> ... WHERE <batch's key span> ORDER BY key) TO
//           STDOUT
//   target  BEGIN; SET LOCAL ...; ClaimSql (locks the range's checkpoint row); [StageSql]
//           CopyInSql (into `into`, or into the stage); [InsertFromStageSql]; AdvanceSql; COMMIT
// so the rows and the checkpoint that says they were copied commit together, on the target.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "pgbackfill/sql/key.h"
#include "pgbackfill/plan/plan.h"
#include "pgbackfill/ranges/key_range.h"

namespace pgbackfill::move {

struct MoveSpec {
  plan::QualifiedName source;             // schema set; read on the source
  std::vector<sql::KeyColumn> key;       // the source key, in index order, source types
  plan::QualifiedName target;             // `into`, schema set; written on the target
  std::vector<plan::Assignment> columns;  // target column -> expression over the source row (t)
  std::vector<std::string> column_types;  // format_type of each target column, same order
  // target_key[i] is the target column filled unchanged from key[i]; target_key_types[i] its type.
  std::vector<std::string> target_key;
  std::vector<std::string> target_key_types;
  bool target_key_unique = false;  // a unique index covers target_key: ON CONFLICT can use it
  plan::OnConflict on_conflict = plan::OnConflict::kError;
  std::string where;   // over the source row; empty = none
  bool binary = true;  // FORMAT binary, else text (column types differ; see copy_format.h)
  // The two servers' encodings are the same: row texts hash to the same value on both sides.
  // Else verify hashes each row's text converted to UTF8 (slower, and only then).
  bool same_encoding = true;
};

// The job step recorded when `into` had no row at the job's first planning (plain COPY into it;
// and repair may delete a span's target rows, as every one of them came from the source).
inline constexpr char kTargetWasEmptyStep[] = "move:target_was_empty";

// The temporary table a staged batch is copied into on the target before INSERT ... ON CONFLICT.
inline constexpr char kStageTable[] = "pgbackfill_stage";

// Parameters: the lower bound (k values, exclusive; only when ends.has_lower), the upper bound (k
// values, inclusive; only when ends.has_upper), then the batch's row count. Result: no row when no
// key is left in the span; else one row (keys bigint, then the last key's columns as text): the
// number of keys walked (at most `rows`) and the last of them.
std::string BatchEndSql(const MoveSpec& spec, sql::RangeEnds ends);

// COPY of the source rows with key in (after, upto] (each end only when given) that match
// `where`, in key order, as the target columns. COPY takes no bind parameters: the bounds are
// quoted literals cast to the key's types.
std::string CopyOutSql(const MoveSpec& spec, const std::optional<ranges::KeyValue>& after,
                       const std::optional<ranges::KeyValue>& upto);

// COPY into `into` (staged = false) or into the stage table, the target columns in order.
std::string CopyInSql(const MoveSpec& spec, bool staged);

// Creates the session's stage table (columns and types of `into`'s target columns, emptied at
// every commit) unless it exists.
std::string StageSql(const MoveSpec& spec);

// Moves the staged rows into `into` by on_conflict: error = a plain INSERT (a duplicate key fails
// the batch), skip = DO NOTHING, update = DO UPDATE of every non-key column.
std::string InsertFromStageSql(const MoveSpec& spec);

// The claim, first in the target's transaction: locks the range's checkpoint row when it is still
// where the batch starts from and still ends where the batch's span was measured against.
// Parameters: $1 job, $2 range id, $3 that checkpoint (text[], NULL for none), $4 the range's
// upper bound the source's batch end was found under (text[], NULL when open). One row when the
// claim holds; none when another run moved the checkpoint or a split moved the upper bound (the
// span may reach past it, into the new range's keys): nothing may commit then.
std::string ClaimSql();
// Moves the claimed checkpoint, last before COMMIT. Parameters: $1 job, $2 range id, $3 the new
// checkpoint (text[]), $4 rows copied (bigint), $5 whether the range is done (bool).
std::string AdvanceSql();

// The target's side of one batch, built once for the worker that runs it and for `check` that
// prints it: `head` (one pipeline: BEGIN, SET LOCAL lock_timeout, the batch settings of
// sql::BatchSettings (statement_timeout, pgbackfill.in_batch, and with triggers: skip the
// replication role), the claim at kClaimIndex, the stage table when staged), then the COPY
// `copy_in`, then `tail` (one pipeline: the stage's INSERT when staged, the checkpoint at
// advance_index, COMMIT).
struct TargetTransaction {
  static constexpr size_t kClaimIndex = 3;
  std::vector<std::string> head;
  std::string copy_in;
  std::vector<std::string> tail;
  size_t advance_index = 0;
};
TargetTransaction BuildTargetTransaction(const MoveSpec& spec, const plan::Throttle& throttle,
                                         plan::Triggers triggers, bool staged);

// Verify: count(*) and the sum of hashtextextended(row::text, 0) of one key span, on each side.
// The source side casts each expression to its target column's type so both sides print the
// same text; both sessions must use the same output settings (VerifySessionSettings). Parameters
// as BatchEndSql's bounds (source key on the source, target key on the target).
std::string SourceHashSql(const MoveSpec& spec, sql::RangeEnds ends);
std::string TargetHashSql(const MoveSpec& spec, sql::RangeEnds ends);
// The output settings both verify sessions run with, so that row::text is the same text (also
// used where key bounds are printed as text on one server and cast back on the other).
std::string VerifySessionSettings();

// Repair: the target rows of a key span, deleted before the span is copied again. Parameters as
// TargetHashSql's.
std::string DeleteTargetRangeSql(const MoveSpec& spec, sql::RangeEnds ends);

}  // namespace pgbackfill::move
