// SQL identifier syntax for the names a plan file gives: `table`, `into`, `key` and the columns
// of `set`/`columns`. Declared in plan/parse.h.
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "pgbackfill/plan/parse.h"
#include "pgbackfill/pg/quote.h"
#include "pgbackfill/sql/lexer.h"
#include "pgbackfill/util/status.h"

namespace pgbackfill::plan {
namespace {

// PostgreSQL silently truncates longer names (with a NOTICE), which would make us address a
// different column than the one the operator wrote, so we refuse them instead.
using pg::kMaxIdentifierBytes;

constexpr char kQuoteHint[] = "quote names that are not plain words, e.g. '\"My-Table\"' in YAML";

// The name `token` stands for, or why it is not one. `text` is the whole value, for messages.
absl::StatusOr<std::string> NamePart(const sql::Token& token, std::string_view text) {
  if (token.kind == sql::TokenKind::kQuotedIdent) {
    if (!token.closed) {
      return absl::InvalidArgumentError(
          absl::StrFormat("unterminated quoted identifier in %s", text));
    }
    std::string name = sql::NameOf(token);
    if (name.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError("identifiers cannot contain a NUL byte");
    }
    if (name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("zero-length quoted identifier in %s", text));
    }
    return name;
  }
  if (token.kind == sql::TokenKind::kWord) return sql::NameOf(token);
  const char first = token.text.front();
  if (first == '.') {
    return absl::InvalidArgumentError(absl::StrFormat("empty name part in \"%s\"", text));
  }
  if (absl::ascii_isdigit(static_cast<unsigned char>(first)) || first == '$') {
    // The lexer reads `1abc` as a digit and a word: name the whole run as the operator wrote it.
    const size_t start = static_cast<size_t>(token.text.data() - text.data());
    size_t end = start + 1;
    while (end < text.size() && sql::IsIdentCont(text[end])) ++end;
    const std::string_view run = text.substr(start, end - start);
    return absl::InvalidArgumentError(absl::StrFormat(
        "unquoted name %s cannot start with '%c'; quote it, e.g. '\"%s\"' in YAML", run, first,
        run));
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("unexpected character '%c' in %s; %s", first, text, kQuoteHint));
}

// Splits `text` into dot-separated parts (dots inside quotes do not count).
absl::StatusOr<std::vector<std::string>> ParseParts(std::string_view text) {
  const std::vector<sql::Token> tokens = sql::Lex(text);
  if (tokens.empty()) return absl::InvalidArgumentError("empty name");
  std::vector<std::string> parts;
  for (size_t i = 0;; i += 2) {
    if (i >= tokens.size()) {
      return absl::InvalidArgumentError(absl::StrFormat("empty name part in \"%s\"", text));
    }
    ASSIGN_OR_RETURN(std::string part, NamePart(tokens[i], text));
    if (part.size() > kMaxIdentifierBytes) {
      return absl::InvalidArgumentError(
          absl::StrFormat("name \"%s\" is longer than %d bytes; PostgreSQL would truncate it",
                          part, kMaxIdentifierBytes));
    }
    parts.push_back(std::move(part));
    if (i + 1 >= tokens.size()) break;
    if (tokens[i + 1].text != ".") {
      return absl::InvalidArgumentError(absl::StrFormat(
          "unexpected character '%c' in %s; %s", tokens[i + 1].text.front(), text, kQuoteHint));
    }
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
