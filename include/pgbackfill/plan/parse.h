// Parsing and validating plan files. Pure: the only I/O is reading the file itself.
// Every error message has the form `file:line: key: what is wrong`, e.g.
//   plans/users.yaml:7: batch.rows: must be a positive integer, got "-5"
//   plans/users.yaml:3: tabel: unknown key (did you mean "table"?)
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "pgbackfill/plan/env.h"  // EnvLookup, ProcessEnv
#include "pgbackfill/plan/plan.h"

namespace pgbackfill::plan {

// Parses plan text. `file_name` is only used in messages. Returns kInvalidArgument with a
// `file:line: key: ...` message on the first problem found.
absl::StatusOr<Plan> ParsePlan(std::string_view text, std::string_view file_name,
                               const EnvLookup& env);

// Reads and parses a plan file (kNotFound when it cannot be read).
absl::StatusOr<Plan> LoadPlanFile(const std::string& path, const EnvLookup& env);

// Parses a SQL identifier as psql would: unquoted text is folded to lower case, "quoted" text is
// kept as is with "" standing for one double quote. Used for `table`, `into`, `key` and the
// column names in `set`/`columns`.
absl::StatusOr<std::string> ParseIdentifier(std::string_view text);
// `name` or `schema.name`, each part as ParseIdentifier.
absl::StatusOr<QualifiedName> ParseQualifiedName(std::string_view text);

}  // namespace pgbackfill::plan
