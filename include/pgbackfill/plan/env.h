// `${NAME}` expansion for connection strings in plan files. Only DSNs are expanded, never SQL:
// a `$` in SQL (dollar quoting, `$1`) must reach the server untouched.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace pgbackfill::plan {

// Looks up an environment variable for `${NAME}` expansion; nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(std::string_view)>;

// The process environment (getenv).
EnvLookup ProcessEnv();

// Replaces `${NAME}` with the variable's value (verbatim, no escaping), `${NAME:-default}` with
// the default when NAME is unset or empty, and `$$` with `$`. Any other `$` is kept as is, so
// passwords holding a `$` still work. Fails on an unset variable without default or a malformed
// `${...}`; messages name the variable but never echo `text`, which may hold a password.
absl::StatusOr<std::string> ExpandEnv(std::string_view text, const EnvLookup& env);

}  // namespace pgbackfill::plan
