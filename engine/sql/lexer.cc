#include "pgbackfill/sql/lexer.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::sql {
namespace {

// The end (exclusive) of a quoted run starting at `start` (the opening quote), where a doubled
// quote stands for one; `closed` says whether the closing quote was found.
size_t EndOfQuoted(std::string_view sql, size_t start, char quote, bool backslash_escapes,
                   bool* closed) {
  size_t pos = start + 1;
  while (pos < sql.size()) {
    const char c = sql[pos];
    if (backslash_escapes && c == '\\') {
      pos += 2;
      continue;
    }
    if (c == quote) {
      if (pos + 1 < sql.size() && sql[pos + 1] == quote) {
        pos += 2;
        continue;
      }
      *closed = true;
      return pos + 1;
    }
    ++pos;
  }
  *closed = false;
  return sql.size();
}

// A dollar-quote opening delimiter ($$ or $tag$) at `start`, or 0 when there is none.
size_t DollarTagLength(std::string_view sql, size_t start) {
  size_t pos = start + 1;
  if (pos < sql.size() && sql[pos] != '$') {
    if (!IsIdentStart(sql[pos])) return 0;
    while (pos < sql.size() && IsIdentCont(sql[pos]) && sql[pos] != '$') ++pos;
  }
  if (pos >= sql.size() || sql[pos] != '$') return 0;
  return pos + 1 - start;
}

// The end of a comment starting at `pos`; C-style comments nest in PostgreSQL, unlike in C.
size_t EndOfComment(std::string_view sql, size_t pos, bool* closed) {
  if (sql[pos] == '-') {
    const size_t newline = sql.find('\n', pos);
    *closed = true;
    return newline == std::string_view::npos ? sql.size() : newline + 1;
  }
  int nesting = 0;
  while (pos < sql.size()) {
    if (sql.substr(pos, 2) == "/*") {
      ++nesting;
      pos += 2;
    } else if (sql.substr(pos, 2) == "*/") {
      pos += 2;
      if (--nesting == 0) {
        *closed = true;
        return pos;
      }
    } else {
      ++pos;
    }
  }
  *closed = false;
  return sql.size();
}

// psql's heuristic for the SQL-standard routine body: inside CREATE [OR REPLACE]
// FUNCTION/PROCEDURE, BEGIN ... END (with CASE ... END inside) hides semicolons.
class RoutineBody {
 public:
  void See(const Token& token) {
    if (token.kind != TokenKind::kWord) return;
    const std::string lower = absl::AsciiStrToLower(ToAbsl(token.text));
    if (first_words_.size() < 4) first_words_.push_back(lower);
    if (token.depth != 0 || !InRoutineHeader()) return;
    if (lower == "begin") {
      ++depth_;
    } else if (lower == "case") {
      if (depth_ > 0) ++depth_;  // CASE ends with END too; it only matters inside a BEGIN
    } else if (lower == "end") {
      if (depth_ > 0) --depth_;
    }
  }
  bool Open() const { return depth_ > 0; }

 private:
  bool InRoutineHeader() const {
    auto at = [&](size_t i, std::string_view word) {
      return i < first_words_.size() && first_words_[i] == word;
    };
    if (!at(0, "create")) return false;
    if (at(1, "function") || at(1, "procedure")) return true;
    return at(1, "or") && at(2, "replace") && (at(3, "function") || at(3, "procedure"));
  }

  std::vector<std::string> first_words_;  // lower case, up to 4
  int depth_ = 0;
};

}  // namespace

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

bool IsIdentStart(char c) {
  const auto u = static_cast<unsigned char>(c);
  return absl::ascii_isalpha(u) || c == '_' || u >= 0x80;
}

bool IsIdentCont(char c) {
  return IsIdentStart(c) || absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '$';
}

std::vector<Token> Lex(std::string_view sql) {
  std::vector<Token> tokens;
  int depth = 0;
  auto push = [&](TokenKind kind, size_t start, size_t end, bool closed = true) {
    tokens.push_back(Token{kind, sql.substr(start, end - start), depth, closed});
  };
  size_t pos = 0;
  while (pos < sql.size()) {
    const char c = sql[pos];
    const char next = pos + 1 < sql.size() ? sql[pos + 1] : '\0';
    const size_t start = pos;
    bool closed = true;
    if (IsSpace(c)) {
      ++pos;
    } else if ((c == '-' && next == '-') || (c == '/' && next == '*')) {
      pos = EndOfComment(sql, pos, &closed);
      push(TokenKind::kComment, start, pos, closed);
    } else if (c == '\'' || c == '"') {
      pos = EndOfQuoted(sql, pos, c, /*backslash_escapes=*/false, &closed);
      push(c == '"' ? TokenKind::kQuotedIdent : TokenKind::kString, start, pos, closed);
    } else if (c == '$' && absl::ascii_isdigit(static_cast<unsigned char>(next))) {
      ++pos;
      while (pos < sql.size() && absl::ascii_isdigit(static_cast<unsigned char>(sql[pos]))) ++pos;
      push(TokenKind::kParam, start, pos);
    } else if (const size_t tag_length = c == '$' ? DollarTagLength(sql, pos) : 0;
               tag_length > 0) {
      const std::string_view tag = sql.substr(pos, tag_length);
      const size_t close = sql.find(tag, pos + tag_length);
      pos = close == std::string_view::npos ? sql.size() : close + tag_length;
      push(TokenKind::kString, start, pos, close != std::string_view::npos);
    } else if (IsIdentStart(c)) {
      while (pos < sql.size() && IsIdentCont(sql[pos])) ++pos;
      if (pos - start == 1 && (c == 'e' || c == 'E') && pos < sql.size() && sql[pos] == '\'') {
        // E'...' takes C-style escapes: \' does not end it.
        pos = EndOfQuoted(sql, pos, '\'', /*backslash_escapes=*/true, &closed);
        push(TokenKind::kString, start, pos, closed);
        continue;
      }
      push(TokenKind::kWord, start, pos);
    } else {
      if (c == ')' && depth > 0) --depth;
      push(TokenKind::kOther, pos, pos + 1);
      if (c == '(') ++depth;
      ++pos;
    }
  }
  return tokens;
}

std::string_view Statement::Text() const {
  if (tokens.empty()) return {};
  const char* begin = tokens.front().text.data();
  const char* end = tokens.back().text.data() + tokens.back().text.size();
  return {begin, static_cast<size_t>(end - begin)};
}

std::vector<Statement> Split(std::string_view sql) {
  std::vector<Statement> statements;
  Statement current;
  RoutineBody body;
  for (const Token& token : Lex(sql)) {
    if (token.kind == TokenKind::kComment) continue;
    if (token.kind == TokenKind::kOther && token.text == ";" && token.depth == 0 &&
        !body.Open()) {
      if (!current.tokens.empty()) statements.push_back(std::move(current));
      current = Statement();
      body = RoutineBody();
      continue;
    }
    body.See(token);
    current.tokens.push_back(token);
  }
  if (!current.tokens.empty()) statements.push_back(std::move(current));
  return statements;
}

bool IsWord(const Token& token, std::string_view keyword) {
  return token.kind == TokenKind::kWord &&
         absl::EqualsIgnoreCase(ToAbsl(token.text), ToAbsl(keyword));
}

std::vector<std::string> MentionedIdentifiers(std::string_view text) {
  std::vector<std::string> names;
  for (const Token& token : Lex(text)) {
    if (token.kind == TokenKind::kWord || token.kind == TokenKind::kQuotedIdent) {
      names.push_back(NameOf(token));
    }
  }
  return names;
}

std::string NameOf(const Token& token) {
  if (token.kind != TokenKind::kQuotedIdent) {
    return absl::AsciiStrToLower(ToAbsl(token.text));
  }
  std::string name;
  const std::string_view inner =
      token.text.substr(1, token.text.size() - (token.closed ? 2 : 1));
  for (size_t i = 0; i < inner.size(); ++i) {
    name.push_back(inner[i]);
    if (inner[i] == '"') ++i;  // "" stands for "
  }
  return name;
}

std::vector<std::string> SplitIdentifierList(std::string_view text) {
  std::vector<std::string> elements;
  size_t pos = 0;
  auto space = [&] {
    while (pos < text.size() && absl::ascii_isspace(static_cast<unsigned char>(text[pos]))) ++pos;
  };
  for (;;) {
    space();
    if (pos >= text.size()) break;
    std::string element;
    if (text[pos] == '"') {
      ++pos;
      while (pos < text.size()) {
        if (text[pos] == '"') {
          if (pos + 1 < text.size() && text[pos + 1] == '"') {
            element.push_back('"');
            pos += 2;
            continue;
          }
          ++pos;
          break;
        }
        element.push_back(text[pos++]);
      }
    } else {
      while (pos < text.size() && text[pos] != ',' &&
             !absl::ascii_isspace(static_cast<unsigned char>(text[pos]))) {
        element.push_back(absl::ascii_tolower(static_cast<unsigned char>(text[pos++])));
      }
    }
    if (!element.empty()) elements.push_back(std::move(element));
    space();
    if (pos < text.size() && text[pos] == ',') ++pos;
  }
  return elements;
}

}  // namespace pgbackfill::sql
