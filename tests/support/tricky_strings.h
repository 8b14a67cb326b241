// Strings that break naive text encodings (text[] literals, key values), for round-trip tests.
#pragma once

#include <string>
#include <vector>

namespace pgbackfill::testing {

// Strings that break naive array literals: quoting, separators, escapes, braces, whitespace, the
// word NULL, non-ASCII, and the empty string.
inline const std::vector<std::string>& TrickyStrings() {
  static const std::vector<std::string>* const strings = new std::vector<std::string>{
      "plain",  "",           "NULL",      "null",        "a,b",          "{x}",      "}",
      "{",      "say \"hi\"", "\"",        "back\\slash", "\\",           "\\\"",     " lead",
      "trail ", " ",          "tab\there", "new\nline",   "é日本🙂", "'single'", "semi;colon",
      "a b c",  "NuLl",       "x\\ny"};
  return *strings;
}

}  // namespace pgbackfill::testing
