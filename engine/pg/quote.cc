#include "pgbackfill/pg/quote.h"

namespace pgbackfill::pg {

std::string QuoteIdent(std::string_view name) {
  std::string out;
  out.reserve(name.size() + 2);
  out.push_back('"');
  for (char c : name) {
    if (c == '\0') continue;
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::string QuoteLiteral(std::string_view text) {
  const bool has_backslash = text.find('\\') != std::string_view::npos;
  std::string out;
  out.reserve(text.size() + 3);
  // With a backslash present, the E'' form is unambiguous whatever standard_conforming_strings
  // says; PQescapeLiteral makes the same choice.
  if (has_backslash) out.push_back('E');
  out.push_back('\'');
  for (char c : text) {
    if (c == '\0') continue;
    if (c == '\'' || (has_backslash && c == '\\')) out.push_back(c);
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

}  // namespace pgbackfill::pg
