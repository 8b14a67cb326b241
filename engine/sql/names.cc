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

}  // namespace pgbackfill::sql
