#include "pgbackfill/sql/names.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::sql {

std::string Tagged(std::string_view sql) { return absl::StrCat(kTag, ToAbsl(sql)); }

std::string TimeoutSetting(absl::Duration timeout) {
  const int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(timeout, absl::Milliseconds(1)));
  return absl::StrCat(std::max<int64_t>(ms, 1), "ms");
}

std::string SetLocalTimeout(const char* setting, absl::Duration timeout) {
  return absl::StrCat(kTag, "SET LOCAL ", setting, " = '", TimeoutSetting(timeout), "'");
}

std::string BatchSettings(absl::Duration statement_timeout, bool skip_triggers) {
  // Transaction-local like the timeouts: the session's next transaction fires triggers again.
  // Each change of session_replication_role discards the session's cached plans; a worker's
  // session caches none worth keeping, as every batch is sent unprepared.
  return absl::StrCat(
      "SELECT pg_catalog.set_config('statement_timeout', '", TimeoutSetting(statement_timeout),
      "', true), pg_catalog.set_config('", kInBatchSetting, "', 'on', true)",
      skip_triggers ? ", pg_catalog.set_config('session_replication_role', 'replica', true)" : "");
}

}  // namespace pgbackfill::sql
