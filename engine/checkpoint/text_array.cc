// text[] literals for key values. The grammar is array_in's (src/backend/utils/adt/arrayfuncs.c)
// for one dimension with the default ',' delimiter: elements are double-quoted (with `\"` and `\\`
// escapes) or bare (backslash escapes, surrounding whitespace ignored, bare NULL is SQL NULL).
// array_out quotes an element when it is empty, is NULL in any case, or holds `{}",\` or
// whitespace, so both forms occur in what the server returns.
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "pgbackfill/checkpoint/job_store.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::checkpoint {
namespace {

// array_isspace: the whitespace array_in skips around bare elements.
bool IsArraySpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

absl::Status Malformed(std::string_view literal, std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("malformed text[] literal ", ToAbsl(literal), ": ", ToAbsl(why)));
}

}  // namespace

absl::StatusOr<std::optional<ranges::KeyValue>> ParseTextArray(std::optional<std::string> literal) {
  if (!literal.has_value()) return std::nullopt;
  const std::string& text = *literal;
  size_t i = 0;
  auto skip_space = [&] {
    while (i < text.size() && IsArraySpace(text[i])) ++i;
  };

  skip_space();
  if (i < text.size() && text[i] == '[') {
    // "[0:1]={...}": array_out writes bounds only for arrays not starting at 1, which a key value
    // (built by ARRAY[...] or by us) never is.
    return Malformed(text, "explicit array bounds are not expected for a key value");
  }
  if (i >= text.size() || text[i] != '{') return Malformed(text, "does not start with '{'");
  ++i;

  ranges::KeyValue elements;
  skip_space();
  if (i < text.size() && text[i] == '}') {
    ++i;
  } else {
    while (true) {
      skip_space();
      if (i >= text.size()) return Malformed(text, "ends inside the array");
      std::string element;
      if (text[i] == '{') {
        return Malformed(text, "multi-dimensional arrays are not key values");
      } else if (text[i] == '"') {
        ++i;
        bool closed = false;
        while (i < text.size()) {
          const char c = text[i++];
          if (c == '"') {
            closed = true;
            break;
          }
          if (c == '\\') {
            if (i >= text.size()) break;
            element.push_back(text[i++]);
          } else {
            element.push_back(c);
          }
        }
        if (!closed) return Malformed(text, "unterminated quoted element");
        skip_space();
      } else {
        // A bare element: up to the next unescaped ',' or '}', trailing whitespace not kept
        // (escaped whitespace is).
        size_t keep = 0;
        bool escaped_any = false;
        while (i < text.size() && text[i] != ',' && text[i] != '}') {
          const char c = text[i++];
          if (c == '"' || c == '{') return Malformed(text, "unexpected quote or brace in element");
          if (c == '\\') {
            if (i >= text.size()) return Malformed(text, "ends after a backslash");
            element.push_back(text[i++]);
            escaped_any = true;
            keep = element.size();
          } else {
            element.push_back(c);
            if (!IsArraySpace(c)) keep = element.size();
          }
        }
        element.resize(keep);
        if (element.empty() && !escaped_any) return Malformed(text, "empty bare element");
        if (!escaped_any && absl::EqualsIgnoreCase(element, "NULL")) {
          return Malformed(text, "NULL element in a key value");
        }
      }
      elements.push_back(std::move(element));
      if (i >= text.size()) return Malformed(text, "ends inside the array");
      if (text[i] == ',') {
        ++i;
        continue;
      }
      if (text[i] == '}') {
        ++i;
        break;
      }
      return Malformed(text, "expected ',' or '}' after an element");
    }
  }
  skip_space();
  if (i != text.size()) return Malformed(text, "text after the closing '}'");
  return elements;
}

std::optional<std::string> TextArrayLiteral(const std::optional<ranges::KeyValue>& value) {
  if (!value.has_value()) return std::nullopt;
  // Quoting every element is always valid and leaves no case to get wrong ("", "NULL", "a b").
  std::string literal = "{";
  for (size_t i = 0; i < value->size(); ++i) {
    if (i > 0) literal.push_back(',');
    literal.push_back('"');
    for (char c : (*value)[i]) {
      if (c == '"' || c == '\\') literal.push_back('\\');
      literal.push_back(c);
    }
    literal.push_back('"');
  }
  literal.push_back('}');
  return literal;
}

}  // namespace pgbackfill::checkpoint
