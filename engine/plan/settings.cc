#include "pgbackfill/plan/settings.h"

#include <algorithm>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "parse_internal.h"
#include "pgbackfill/plan/suggest.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::plan {
namespace {

// Why a key is refused, with the way forward.
std::string Refusal(std::string_view key) {
  const std::vector<std::string_view>& keys = SettableKeys();
  std::string hint;
  if (std::optional<std::string_view> close = Suggest(key, keys)) {
    hint = absl::StrFormat("unknown key (did you mean \"%s\"?)", *close);
  } else if (auto owner = std::find_if(keys.begin(), keys.end(),
                                       [&](std::string_view settable) {
                                         return settable.ends_with(absl::StrCat(".", ToAbsl(key)));
                                       });
             owner != keys.end()) {
    // The key without its section, as it sits in the plan file under `throttle:`.
    hint = absl::StrFormat("unknown key (did you mean \"%s\"?)", *owner);
  } else if (internal::IsPlanKey(key)) {
    hint =
        "cannot be changed while a job runs; edit the plan file and run it again to resume with "
        "the new value";
  } else {
    hint = "unknown key";
  }
  return absl::StrFormat("%s: %s; pgbackfill set takes: %s", key, hint,
                         absl::StrJoin(keys, ", ", [](std::string* out, std::string_view k) {
                           absl::StrAppend(out, ToAbsl(k));
                         }));
}

}  // namespace

const std::vector<std::string_view>& SettableKeys() {
  // Tuning only: none of these is part of the plan hash, so changing them never changes which
  // rows get which values. Each is read again by the running job at its next throttle interval.
  static const std::vector<std::string_view>* const keys = new std::vector<std::string_view>{
      "workers",
      "vacuum_every",
      "batch.target",
      "throttle.max_replica_lag",
      "throttle.max_replica_lag_bytes",
      "throttle.max_lock_waiters",
      "throttle.max_wal_bytes_per_second",
      "throttle.max_canary_latency",
      "throttle.max_rows_per_second",
      "throttle.lock_timeout",
      "throttle.statement_timeout",
      "throttle.max_statement_latency",
      "throttle.max_statement_tail",
      "throttle.max_commit_latency",
      "throttle.max_active_sessions",
      "throttle.max_cpu_pressure",
      "throttle.max_slot_wal",
      "throttle.max_archive_pending",
      // Not throttle.command: whoever may write the job store would choose a program for the
      // runner's host to run.
  };
  return *keys;
}

absl::Status ApplySetting(Plan& plan, std::string_view key, std::string_view value) {
  const std::vector<std::string_view>& keys = SettableKeys();
  if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
    return absl::InvalidArgumentError(Refusal(key));
  }
  // On a copy, so a value refused by a rule between keys leaves the caller's plan as it was.
  Plan changed = plan;
  RETURN_IF_ERROR(internal::ApplyPlanValue(changed, key, value));
  plan = std::move(changed);
  return absl::OkStatus();
}

}  // namespace pgbackfill::plan
