// Debian's abseil is built with ABSL_OPTION_USE_STD_STRING_VIEW=0, so absl::string_view is a type
// of its own and does not convert from std::string_view. Our interfaces take std::string_view;
// these two conversions are the bridge where a value crosses into absl (StrCat, Status, Cord).
#pragma once

#include <string_view>

#include "absl/strings/string_view.h"

namespace pgbackfill {

inline absl::string_view ToAbsl(std::string_view s) { return {s.data(), s.size()}; }
inline std::string_view ToStd(absl::string_view s) { return {s.data(), s.size()}; }

}  // namespace pgbackfill
