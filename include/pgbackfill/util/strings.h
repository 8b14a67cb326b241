// Debian's abseil is built with ABSL_OPTION_USE_STD_STRING_VIEW=0, so absl::string_view is a type
// of its own and does not convert from std::string_view. Our interfaces take std::string_view;
// these two conversions are the bridge where a value crosses into absl (StrCat, Status, Cord).
//
// Also the two byte-level string helpers more than one module needs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/strings/string_view.h"

namespace pgbackfill {

inline absl::string_view ToAbsl(std::string_view s) { return {s.data(), s.size()}; }
inline std::string_view ToStd(absl::string_view s) { return {s.data(), s.size()}; }

// At most `max_bytes` of `text`, never cutting a UTF-8 sequence in two: the server refuses an
// identifier with a broken character, and JSON must stay valid.
inline std::string_view Utf8Prefix(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  size_t end = max_bytes;
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return text.substr(0, end);
}

// FNV-1a, 32 bit: fixed by its definition (unlike std::hash), so a name one build or run derives
// is the name the next one derives.
inline uint32_t Fnv1a32(std::string_view text) {
  uint32_t hash = 0x811c9dc5u;
  for (char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x01000193u;
  }
  return hash;
}

}  // namespace pgbackfill
