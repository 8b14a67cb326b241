// Plan keys an operator may change while a job runs (`pgbackfill set JOB key=value`). Values are
// stored in the job store as the operator wrote them and applied to the job's plan with
// ApplySetting, by `set` to validate them and by the running process to use them.
#pragma once

#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "pgbackfill/plan/plan.h"

namespace pgbackfill::plan {

// Keys `pgbackfill set` may change on a running job, dotted as in messages: "workers",
// "batch.target", and the throttle's limits and timeouts ("throttle.max_replica_lag", ...).
const std::vector<std::string_view>& SettableKeys();

// Applies one `key=value` to `plan`, validated exactly as the plan file validates that key (same
// value rules, same wording: `throttle.max_replica_lag: must be a duration such as 200ms, 5s or
// 1m, got "x"`), including the parser's rules between keys of one section. An unknown or
// not-settable key is InvalidArgument naming the settable keys, with a did-you-mean when one is
// close. On error `plan` is unchanged.
absl::Status ApplySetting(Plan& plan, std::string_view key, std::string_view value);

}  // namespace pgbackfill::plan
