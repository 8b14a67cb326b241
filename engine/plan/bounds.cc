#include "bounds.h"

#include <yaml-cpp/anchor.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "pgbackfill/util/status.h"

namespace pgbackfill::plan::internal {
namespace {

// The length of the UTF-8 sequence that starts at text[i]; 0 when there is none (overlong
// forms, surrogates and code points past U+10FFFF included).
size_t Utf8Length(std::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char first = byte(i);
  if (first < 0x80) return 1;
  size_t length = 0;
  unsigned char low = 0x80;  // the second byte's range
  unsigned char high = 0xBF;
  if (first >= 0xC2 && first <= 0xDF) {
    length = 2;
  } else if (first >= 0xE0 && first <= 0xEF) {
    length = 3;
    if (first == 0xE0) low = 0xA0;
    if (first == 0xED) high = 0x9F;
  } else if (first >= 0xF0 && first <= 0xF4) {
    length = 4;
    if (first == 0xF0) low = 0x90;
    if (first == 0xF4) high = 0x8F;
  } else {
    return 0;
  }
  if (text.size() - i < length || byte(i + 1) < low || byte(i + 1) > high) return 0;
  for (size_t k = 2; k < length; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return length;
}

bool IsControl(unsigned char c) {
  return (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7F;
}

// What the event scan refuses, thrown out of yaml-cpp's parser to stop it at once.
struct Refusal {
  int line = 0;
  std::string key;
  std::string what;
};

// Walks one document's events: notes whether it has content and where it starts, follows the
// key each node is under (for messages), and refuses aliases, deep nesting and long mappings and
// lists as they come.
class DocumentScanner final : public YAML::EventHandler {
 public:
  bool has_content() const { return content_line_ > 0; }
  int content_line() const { return content_line_; }

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override {
    Entry();
    NodeDone(nullptr, LineOf(mark));
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override {
    Content(mark);
    throw Refusal{LineOf(mark), Path(),
                  "YAML aliases (*name) are not accepted in a plan file; write the value out"};
  }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string& value) override {
    Content(mark);
    Entry();
    NodeDone(&value, LineOf(mark));
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    Open(mark, /*map=*/false);
  }
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    Open(mark, /*map=*/true);
  }
  void OnMapEnd() override { Close(); }

 private:
  // A mapping or list being read; in a mapping, whether the next node is a key.
  struct Level {
    bool map = false;
    bool at_key = true;
    std::string key;   // the last key read
    int key_line = 0;  // its line
    int line = 0;      // where the mapping or list starts
    size_t entries = 0;
  };

  static int LineOf(const YAML::Mark& mark) { return mark.is_null() ? 1 : mark.line + 1; }

  void Content(const YAML::Mark& mark) {
    if (content_line_ == 0) content_line_ = LineOf(mark);
  }

  // A node starts in the current mapping (as a key) or list: one more entry.
  void Entry() {
    if (levels_.empty()) return;
    Level& level = levels_.back();
    if (level.map && !level.at_key) return;
    if (++level.entries <= kMaxEntries) return;
    // Named by the key it is under, at that key's line.
    const bool named = levels_.size() >= 2 && levels_[levels_.size() - 2].map;
    throw Refusal{named ? levels_[levels_.size() - 2].key_line : level.line, Path(),
                  absl::StrFormat("has more than %d entries; no mapping or list of a plan holds "
                                  "more (a table has at most %d columns, PostgreSQL's limit)",
                                  kMaxEntries, kMaxEntries)};
  }

  void Open(const YAML::Mark& mark, bool map) {
    Content(mark);
    Entry();
    if (levels_.size() == kMaxDepth) {
      throw Refusal{
          LineOf(mark), Path(),
          absl::StrFormat("nests mappings and lists more than %d deep; a plan needs 3", kMaxDepth)};
    }
    Level& level = levels_.emplace_back();
    level.map = map;
    level.line = LineOf(mark);
  }

  void Close() {
    const int line = levels_.back().line;
    levels_.pop_back();
    NodeDone(nullptr, line);
  }

  // A node ended: in a mapping, a key is followed by its value and a value by the next key.
  void NodeDone(const std::string* scalar, int line) {
    if (levels_.empty() || !levels_.back().map) return;
    Level& level = levels_.back();
    if (level.at_key) {
      level.key = scalar != nullptr ? *scalar : "?";
      level.key_line = line;
    }
    level.at_key = !level.at_key;
  }

  // The keys above the current node, dotted ("throttle.replicas").
  std::string Path() const {
    std::string path;
    for (const Level& level : levels_) {
      if (!level.map || level.at_key) continue;
      if (!path.empty()) path += '.';
      path += level.key;
    }
    return path.empty() ? "(top level)" : path;
  }

  int content_line_ = 0;
  std::vector<Level> levels_;
};

bool IsBlank(std::string_view text, size_t i) {
  return i >= text.size() || text[i] == ' ' || text[i] == '\t' || text[i] == '\r' ||
         text[i] == '\n';
}

// Where the line holding text[i] ends: its newline, or the end of the text.
size_t LineEnd(std::string_view text, size_t i) {
  const size_t end = text.find('\n', i);
  return end == std::string_view::npos ? text.size() : end;
}

// The closing quote of the quoted scalar opened at text[i] ('' and \" escapes), or the end.
size_t SkipQuoted(std::string_view text, size_t i) {
  const char quote = text[i];
  for (++i; i < text.size(); ++i) {
    if (quote == '"' && text[i] == '\\') {
      ++i;
    } else if (text[i] == quote) {
      if (quote == '\'' && i + 1 < text.size() && text[i + 1] == '\'') {
        ++i;
      } else {
        return i;
      }
    }
  }
  return text.size();
}

// The newline that ends a block scalar (| or >) whose indicator is on the line ending at
// text[i], on a line indented `indent`: its content is the lines after that are blank or
// indented deeper.
size_t SkipBlockScalar(std::string_view text, size_t i, size_t indent) {
  while (i < text.size()) {
    size_t at = i + 1;
    while (at < text.size() && text[at] == ' ') ++at;
    const bool blank = at == text.size() || text[at] == '\n' || text[at] == '\r';
    if (!blank && at - (i + 1) <= indent) return i;
    i = LineEnd(text, at);
  }
  return i;
}

// yaml-cpp reads a whole flow collection ([...] or {...}) into tokens before it reports its
// first event (the collection might turn out to be a mapping key), so the event scan would see a
// megabyte of brackets (or of one list's entries) only after holding a million tokens. This lexical
// pass finds flow collections where a node starts (a line's start, after "- ", "? ", ": ", an
// anchor or a tag) and counts their brackets and entries, quoted scalars, comments and block
// scalars skipped. It returns where the flow depth first passes kMaxDepth or a collection's entries
// kMaxEntries, just past that bracket or comma, or npos: the event scan of the text up to there is
// then short and decides. A bracket it takes for a collection wrongly (inside a plain scalar) costs
// that short scan and nothing else.
size_t FindDeepFlow(std::string_view text) {
  std::vector<size_t> commas(kMaxDepth + 1);  // per open flow collection
  size_t depth = 0;                           // 0: block context
  bool node_start = true;                     // in block context: a node may start here
  size_t indent = 0;                          // the current line's indentation
  bool in_indent = true;                      // still in the current line's leading spaces
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (depth > 0) {
      if (c == '[' || c == '{') {
        if (++depth > kMaxDepth) return i + 1;
        commas[depth] = 0;
      } else if (c == ',') {
        if (++commas[depth] > kMaxEntries) return i + 1;
      } else if (c == ']' || c == '}') {
        if (--depth == 0) node_start = false;
      } else if (c == '\'' || c == '"') {
        i = SkipQuoted(text, i);
      } else if (c == '#' && IsBlank(text, i - 1)) {
        i = LineEnd(text, i) - 1;
      }
      continue;
    }
    if (c == '\n') {
      node_start = true;
      indent = 0;
      in_indent = true;
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\r') {
      if (in_indent && c == ' ') ++indent;
      continue;
    }
    in_indent = false;
    if (c == '#' && (i == 0 || IsBlank(text, i - 1))) {
      i = LineEnd(text, i) - 1;
    } else if ((c == '-' || c == '?' || c == ':') && IsBlank(text, i + 1)) {
      node_start = true;
    } else if (node_start) {
      node_start = false;
      if (c == '[' || c == '{') {
        depth = 1;
        commas[depth] = 0;
      } else if (c == '\'' || c == '"') {
        i = SkipQuoted(text, i);
      } else if (c == '|' || c == '>') {
        i = SkipBlockScalar(text, LineEnd(text, i), indent) - 1;
      } else if (c == '&' || c == '!') {
        while (!IsBlank(text, i + 1)) ++i;
        node_start = true;  // the node follows its anchor or tag
      }
    }
  }
  return std::string_view::npos;
}

// The event scan of every document in `text`: one at most, no alias, no deep nesting. Syntax
// errors escape as YAML::Exception.
absl::Status ScanDocuments(std::string_view text, std::string_view file) {
  std::istringstream stream{std::string(text)};
  YAML::Parser parser(stream);
  // YAML::LoadAll is not used to count documents: in yaml-cpp 0.7 it loops forever, allocating,
  // on input such as a lone "," (jbeder/yaml-cpp#1040; fixed upstream in 2024 by stopping at the
  // first empty document, which is what this loop does).
  try {
    for (int documents = 0;;) {
      DocumentScanner scanner;
      if (!parser.HandleNextDocument(scanner) || !scanner.has_content()) break;
      if (++documents == 2) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s:%d: a second YAML document starts here; a plan file holds exactly one plan", file,
            scanner.content_line()));
      }
    }
  } catch (const Refusal& refusal) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s:%d: %s: %s", file, refusal.line, refusal.key, refusal.what));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckPlanSize(size_t bytes, std::string_view file) {
  if (bytes <= kMaxPlanBytes) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrFormat("%s:1: the file is larger than the 1 MiB (%d bytes) a plan file may be", file,
                      kMaxPlanBytes));
}

absl::Status CheckPlanText(std::string_view text, std::string_view file) {
  int line = 1;
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    const size_t length = IsControl(c) ? 0 : Utf8Length(text, i);
    if (length == 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s:%d: the file is not UTF-8 text (byte 0x%02x); a plan file is YAML text", file, line,
          c));
    }
    if (c == '\n') ++line;
    i += length;
  }
  return absl::OkStatus();
}

absl::Status CheckPlanShape(std::string_view text, std::string_view file) {
  if (const size_t cut = FindDeepFlow(text); cut != std::string_view::npos) {
    try {
      RETURN_IF_ERROR(ScanDocuments(text.substr(0, cut), file));
    } catch (const YAML::Exception&) {
      // The text cut short need not parse; the whole text decides.
    }
  }
  return ScanDocuments(text, file);
}

}  // namespace pgbackfill::plan::internal
