// The one SQL lexer: just enough of PostgreSQL's lexical rules (scan.l) to find words,
// identifiers and the semicolons that end statements. Everything that can hide a keyword, a name
// or a semicolon (comments, string constants, quoted identifiers, dollar quotes) becomes one token.
// Used by the DDL step checks (expand/ddl.h), plan names (plan/parse.h) and the identifiers an
// expression mentions (verify/verify.h). Pure; never fails: text the server would refuse lexes
// into something, and the server says what is wrong with it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace pgbackfill::sql {

enum class TokenKind {
  kWord,         // unquoted identifier or keyword
  kQuotedIdent,  // "..."
  kString,       // '...', E'...', $tag$...$tag$
  kParam,        // $1
  kComment,      // -- ... or /* ... */ (nested)
  kOther,        // one character of punctuation or a digit
};

struct Token {
  TokenKind kind;
  std::string_view text;  // as written, a view into the lexed text
  int depth = 0;          // parentheses open around the token ("(" itself counts as outside)
  bool closed = true;     // a quoted token, comment or dollar quote reached its end
};

// scan.l: ident_start [A-Za-z\200-\377_], ident_cont adds [0-9\$].
bool IsIdentStart(char c);
bool IsIdentCont(char c);
bool IsSpace(char c);

// Every token of `sql` in order, whitespace dropped, comments kept.
std::vector<Token> Lex(std::string_view sql);

struct Statement {
  std::vector<Token> tokens;  // without comments and the terminating semicolon

  // The statement as written, from its first token to its last.
  std::string_view Text() const;
};

// Splits `sql` into statements the way psql does before sending them: at semicolons outside
// parentheses and outside the BEGIN ... END body of CREATE [OR REPLACE] FUNCTION/PROCEDURE (the
// SQL-standard body, PostgreSQL 14+), found with psql's own heuristic (psqlscan.l). Empty
// statements (";;", a trailing comment) are dropped.
std::vector<Statement> Split(std::string_view sql);

// Whether `token` is the unquoted word `keyword`, in any case.
bool IsWord(const Token& token, std::string_view keyword);
// The name a word or quoted identifier stands for: an unquoted word folded to lower case (ASCII
// only, as PostgreSQL's downcase_identifier does in multibyte encodings), a quoted one without
// its quotes and with "" as ".
std::string NameOf(const Token& token);

// Identifiers an expression mentions, as the catalog spells them (NameOf of every word and quoted
// identifier); string literals, dollar-quoted strings and comments skipped. Over-approximates
// (function names and keywords are words too): callers use it where a false "mentions" only errs
// on the safe side ("not verifiable", "leave this column alone").
std::vector<std::string> MentionedIdentifiers(std::string_view expression);

// The elements of a list setting such as search_path, as the server's SplitIdentifierString reads
// them: comma-separated, "quoted" elements as written, unquoted ones folded to lower case and
// ended by a comma or a space. Not SQL: `$user` is one element here.
std::vector<std::string> SplitIdentifierList(std::string_view text);

}  // namespace pgbackfill::sql
