// SQL identifier syntax for the names a plan file gives: `table`, `into`, `key` and the columns
// of `set`/`columns`. Declared in plan/parse.h.
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "pgbackfill/plan/parse.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/util/status.h"

namespace pgbackfill::plan {
namespace {

// PostgreSQL silently truncates longer names (with a NOTICE), which would make us address a
// different column than the one the operator wrote, so we refuse them instead.
using pg::kMaxIdentifierBytes;

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Unquoted identifier bytes as the PostgreSQL scanner accepts them: ASCII letters, digits, `_`,
// `$`, and any non-ASCII byte (multibyte letters).
bool IsIdentChar(char c) {
  const auto u = static_cast<unsigned char>(c);
  return absl::ascii_isalnum(u) || c == '_' || c == '$' || u >= 0x80;
}

void SkipSpaces(std::string_view text, size_t& pos) {
  while (pos < text.size() && IsSpace(text[pos])) ++pos;
}

// One name part starting at `pos` (no leading space); leaves `pos` after it.
absl::StatusOr<std::string> ParsePart(std::string_view text, size_t& pos) {
  std::string out;
  if (pos < text.size() && text[pos] == '"') {
    ++pos;
    for (;;) {
      if (pos >= text.size()) {
        return absl::InvalidArgumentError(
            absl::StrFormat("unterminated quoted identifier in %s", text));
      }
      if (text[pos] == '"') {
        if (pos + 1 < text.size() && text[pos + 1] == '"') {
          out.push_back('"');
          pos += 2;
          continue;
        }
        ++pos;
        break;
      }
      if (text[pos] == '\0') {
        return absl::InvalidArgumentError("identifiers cannot contain a NUL byte");
      }
      out.push_back(text[pos++]);
    }
    if (out.empty()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("zero-length quoted identifier in %s", text));
    }
  } else {
    const size_t start = pos;
    while (pos < text.size() && IsIdentChar(text[pos])) {
      // ASCII-only folding, as PostgreSQL's downcase_identifier does in multibyte encodings:
      // non-ASCII bytes are kept as written.
      out.push_back(absl::ascii_tolower(static_cast<unsigned char>(text[pos])));
      ++pos;
    }
    if (pos == start) {
      if (pos >= text.size() || text[pos] == '.') {
        return absl::InvalidArgumentError(absl::StrFormat("empty name part in \"%s\"", text));
      }
      return absl::InvalidArgumentError(
          absl::StrFormat("unexpected character '%c' in %s; quote names that are not plain words, "
                          "e.g. '\"My-Table\"' in YAML",
                          text[pos], text));
    }
    const char first = text[start];
    if (absl::ascii_isdigit(static_cast<unsigned char>(first)) || first == '$') {
      return absl::InvalidArgumentError(absl::StrFormat(
          "unquoted name %s cannot start with '%c'; quote it, e.g. '\"%s\"' in YAML",
          text.substr(start, pos - start), first, text.substr(start, pos - start)));
    }
  }
  if (out.size() > kMaxIdentifierBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("name \"%s\" is longer than %d bytes; PostgreSQL would truncate it", out,
                        kMaxIdentifierBytes));
  }
  return out;
}

// Splits `text` into dot-separated parts (dots inside quotes do not count).
absl::StatusOr<std::vector<std::string>> ParseParts(std::string_view text) {
  std::vector<std::string> parts;
  size_t pos = 0;
  SkipSpaces(text, pos);
  if (pos == text.size()) return absl::InvalidArgumentError("empty name");
  for (;;) {
    ASSIGN_OR_RETURN(std::string part, ParsePart(text, pos));
    parts.push_back(std::move(part));
    SkipSpaces(text, pos);
    if (pos == text.size()) break;
    if (text[pos] != '.') {
      return absl::InvalidArgumentError(
          absl::StrFormat("unexpected character '%c' in %s; quote names that are not plain words, "
                          "e.g. '\"My-Table\"' in YAML",
                          text[pos], text));
    }
    ++pos;
    SkipSpaces(text, pos);
  }
  return parts;
}

}  // namespace

absl::StatusOr<std::string> ParseIdentifier(std::string_view text) {
  ASSIGN_OR_RETURN(std::vector<std::string> parts, ParseParts(text));
  if (parts.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("expected a single name, got %s (quote a name that contains a dot)", text));
  }
  return std::move(parts.front());
}

absl::StatusOr<QualifiedName> ParseQualifiedName(std::string_view text) {
  ASSIGN_OR_RETURN(std::vector<std::string> parts, ParseParts(text));
  if (parts.size() == 1) return QualifiedName{.schema = "", .name = std::move(parts[0])};
  if (parts.size() == 2) {
    return QualifiedName{.schema = std::move(parts[0]), .name = std::move(parts[1])};
  }
  return absl::InvalidArgumentError(absl::StrFormat(
      "too many dots in %s; expected name or schema.name (the database comes from the DSN)", text));
}

}  // namespace pgbackfill::plan
