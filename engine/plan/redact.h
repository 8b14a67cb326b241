// The plan text kept with a job, without secrets (private to engine/plan). The job store's
// `plan_text` is readable by whoever can read that table, in the target database when moving
// between databases, so the passwords of connection strings never reach it.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "yaml_reader.h"

namespace pgbackfill::plan::internal {

// `text` with the secrets of its connection strings (`dsn`, `source_dsn`, `target_dsn`,
// `throttle.replicas`; what pg::FindDsnSecrets finds, `${NAME}` references kept) replaced by
// pg::kRedacted where the file writes them. Every other byte stays, and so does every line, so
// `file:line` messages and `status` still match. `root` is `text` loaded and already read into a
// plan by `reader`: those keys are unique and hold strings. A secret that cannot be found in the
// file as it is in the string (YAML escapes, or a value folded over lines before it) is refused
// with the key's `file:line: key:` message.
absl::StatusOr<std::string> RedactPlanText(std::string_view text, const YAML::Node& root,
                                           const Reader& reader);

}  // namespace pgbackfill::plan::internal
