#include "pgbackfill/sql/names.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"

namespace pgbackfill::sql {

std::string TimeoutSetting(absl::Duration timeout) {
  const int64_t ms = absl::ToInt64Milliseconds(absl::Ceil(timeout, absl::Milliseconds(1)));
  return absl::StrCat(std::max<int64_t>(ms, 1), "ms");
}

std::string SetLocalTimeout(const char* setting, absl::Duration timeout) {
  return absl::StrCat("SET LOCAL ", setting, " = '", TimeoutSetting(timeout), "'");
}

}  // namespace pgbackfill::sql
