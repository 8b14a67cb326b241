// Between parse.cc and settings.cc (not installed): the plan file's per-key parsing, for values
// that come from elsewhere than a plan file, so that `pgbackfill set` and the plan file can never
// disagree about what a value means or how a bad one is reported.
#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "pgbackfill/plan/plan.h"

namespace pgbackfill::plan::internal {

// Whether a plan file may set `path`: a top-level key ("workers") or a key of `batch` or
// `throttle` written dotted ("batch.rows", "throttle.canary").
bool IsPlanKey(std::string_view path);

// Parses `value` as the plan file parses the value of `path` (`workers` or a key of `batch` or
// `throttle`), with the same rules, including the rules between keys of one section, and stores
// it in `plan`. Messages are the plan file's without the file and line: `path: what is wrong`.
absl::Status ApplyPlanValue(Plan& plan, std::string_view path, std::string_view value);

}  // namespace pgbackfill::plan::internal
