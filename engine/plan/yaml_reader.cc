// The plan file's YAML reading layer: entries of a mapping with their lines, key checks with
// did-you-mean hints, and typed values (strings, SQL, integers, booleans, durations, byte counts,
// DSNs, lists, relation and column names, `column: expression` mappings).
#include "yaml_reader.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "pgbackfill/plan/parse.h"  // ParseIdentifier, ParseQualifiedName
#include "pgbackfill/plan/suggest.h"
#include "pgbackfill/plan/units.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::plan::internal {
namespace {

std::string IntegerRange(int64_t min, int64_t max) {
  // Upper bounds that only guard against overflow are not worth telling the operator about.
  if (max >= std::numeric_limits<int>::max()) {
    if (min == 1) return "a positive integer";
    if (min == 0) return "a non-negative integer";
    return absl::StrCat("an integer of at least ", min);
  }
  return absl::StrFormat("an integer between %d and %d", min, max);
}

// Hint for a mapping where a string belongs: plain YAML scalars end at ": ", which SQL such as
// `ALTER TABLE t ADD COLUMN c: ...` or a `CASE ... 'a: b'` may well contain.
constexpr char kQuoteHint[] =
    " (text containing \": \" or starting with [ { & * ! | > ' \" % @ must be quoted in YAML)";

}  // namespace

int LineOf(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  return mark.is_null() ? 1 : mark.line + 1;
}

std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar: {
      constexpr size_t kMax = 40;
      const std::string& text = node.Scalar();
      if (text.size() <= kMax) return absl::StrCat("\"", text, "\"");
      return absl::StrCat("\"", text.substr(0, kMax - 3), "...\"");
    }
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

const Entry* Find(const std::vector<Entry>& entries, std::string_view name) {
  for (const Entry& entry : entries) {
    if (entry.name == name) return &entry;
  }
  return nullptr;
}

std::string Trim(std::string_view text) {
  return std::string(absl::StripAsciiWhitespace(ToAbsl(text)));
}

Reader::Reader(std::string_view file, const EnvLookup& env, std::span<const Section> sections)
    : file_(file), env_(env), sections_(sections) {}

Reader::Reader(const EnvLookup& env, std::span<const Section> sections)
    : env_(env), sections_(sections), located_(false) {}

absl::Status Reader::Error(int line, std::string_view key, std::string_view what) const {
  if (!located_) return absl::InvalidArgumentError(absl::StrFormat("%s: %s", key, what));
  return absl::InvalidArgumentError(absl::StrFormat("%s:%d: %s: %s", file_, line, key, what));
}

absl::Status Reader::Error(const Entry& entry, std::string_view what) const {
  return Error(entry.line, entry.path, what);
}

// --- Mappings ---------------------------------------------------------------------------------

absl::StatusOr<std::vector<Entry>> Reader::ReadMap(const YAML::Node& map, const Section& section) {
  const std::string prefix = section.name.empty() ? "" : absl::StrFormat("%s.", section.name);
  std::vector<Entry> entries;
  for (auto it = map.begin(); it != map.end(); ++it) {
    const YAML::Node key = it->first;  // a copy: `it->` yields a temporary proxy
    const int line = LineOf(key);
    if (!key.IsScalar()) {
      return Error(line, section.name.empty() ? "(top level)" : section.name,
                   absl::StrCat("keys must be plain words, got ", Describe(key)));
    }
    Entry entry{.name = key.Scalar(),
                .path = absl::StrCat(prefix, key.Scalar()),
                .line = line,
                .value = it->second};
    if (std::find(section.keys.begin(), section.keys.end(), entry.name) == section.keys.end()) {
      return Error(entry, absl::StrCat("unknown key", UnknownKeyHint(entry.name, section)));
    }
    if (const Entry* first = Find(entries, entry.name)) {
      return Error(entry,
                   absl::StrFormat("given twice (first at line %d); remove one", first->line));
    }
    key_lines_[entry.path] = entry.line;
    entries.push_back(std::move(entry));
  }
  return entries;
}

std::string Reader::UnknownKeyHint(std::string_view name, const Section& section) const {
  if (std::optional<std::string_view> close = Suggest(name, section.keys)) {
    return absl::StrFormat(" (did you mean \"%s\"?)", *close);
  }
  // A key of another section written at the wrong indentation (lock_timeout is in two).
  std::string owners;
  for (const Section& other : sections_) {
    if (other.name == section.name) continue;
    for (std::string_view key : other.keys) {
      if (EditDistance(name, key) != 0) continue;
      if (other.name.empty()) return absl::StrFormat(" (%s is a top-level key)", key);
      absl::StrAppend(&owners, owners.empty() ? "" : " or ", ToAbsl(other.name), ":");
    }
  }
  if (!owners.empty()) return absl::StrFormat(" (%s belongs under %s)", name, owners);
  if (section.name.empty()) return "";
  std::string known;
  for (std::string_view key : section.keys) {
    absl::StrAppend(&known, known.empty() ? "" : ", ", ToAbsl(key));
  }
  return absl::StrFormat(" (%s takes: %s)", section.name, known);
}

absl::StatusOr<std::vector<Entry>> Reader::SectionEntries(const Entry& entry,
                                                          const Section& section,
                                                          std::string_view example) {
  if (entry.value.IsNull()) return std::vector<Entry>{};
  if (!entry.value.IsMap()) {
    return Error(entry, absl::StrFormat("must be a mapping such as %s, got %s", example,
                                        Describe(entry.value)));
  }
  return ReadMap(entry.value, section);
}

void Reader::NoteKeyLine(std::string path, int line) { key_lines_[std::move(path)] = line; }

std::map<std::string, int> Reader::TakeKeyLines() { return std::move(key_lines_); }

// --- Typed values -------------------------------------------------------------------------

absl::StatusOr<std::string> Reader::Text(const Entry& entry) const {
  if (entry.value.IsNull()) {
    return Error(entry, "has no value; give one or remove the key");
  }
  if (!entry.value.IsScalar()) {
    return Error(entry, absl::StrCat("must be a string, got ", Describe(entry.value), kQuoteHint));
  }
  return entry.value.Scalar();
}

absl::StatusOr<std::string> Reader::Sql(const Entry& entry) const {
  ASSIGN_OR_RETURN(std::string text, Text(entry));
  return Trim(text);
}

absl::StatusOr<int64_t> Reader::Integer(const Entry& entry, int64_t min, int64_t max) const {
  int64_t value = 0;
  if (!entry.value.IsScalar() || !absl::SimpleAtoi(entry.value.Scalar(), &value) || value < min ||
      value > max) {
    return Error(entry, absl::StrFormat("must be %s, got %s", IntegerRange(min, max),
                                        Describe(entry.value)));
  }
  return value;
}

absl::StatusOr<bool> Reader::Bool(const Entry& entry) const {
  if (entry.value.IsScalar()) {
    const std::string text = absl::AsciiStrToLower(entry.value.Scalar());
    // YAML 1.1 spellings too: yaml-cpp and most operators' habits accept them.
    if (text == "true" || text == "yes" || text == "on") return true;
    if (text == "false" || text == "no" || text == "off") return false;
  }
  return Error(entry, absl::StrCat("must be true or false, got ", Describe(entry.value)));
}

absl::StatusOr<Limit> Reader::LimitValue(const Entry& entry, LimitUnit unit) const {
  if (!entry.value.IsScalar()) {
    return Error(entry, absl::StrCat("must be a limit such as ", ToAbsl(LimitExample(unit)),
                                     ", got ", Describe(entry.value)));
  }
  absl::StatusOr<Limit> value = ParseLimit(entry.value.Scalar(), unit);
  if (!value.ok()) return Error(entry, ToStd(value.status().message()));
  return *value;
}

absl::StatusOr<absl::Duration> Reader::Duration(const Entry& entry, absl::Duration minimum,
                                                std::string_view why) const {
  if (!entry.value.IsScalar()) {
    return Error(entry, absl::StrCat("must be a duration such as 200ms, 5s or 1m, got ",
                                     Describe(entry.value)));
  }
  absl::StatusOr<absl::Duration> value = ParseDurationValue(entry.value.Scalar());
  if (!value.ok()) return Error(entry, ToStd(value.status().message()));
  if (*value < minimum) {
    return Error(entry, absl::StrFormat("must be at least %s%s, got \"%s\"",
                                        absl::FormatDuration(minimum), why, entry.value.Scalar()));
  }
  return *value;
}

absl::StatusOr<int64_t> Reader::ByteSize(const Entry& entry) const {
  if (!entry.value.IsScalar()) {
    return Error(entry,
                 absl::StrCat("must be a byte count such as 16MB, got ", Describe(entry.value)));
  }
  absl::StatusOr<int64_t> value = ParseByteSize(entry.value.Scalar());
  if (!value.ok()) return Error(entry, ToStd(value.status().message()));
  return *value;
}

absl::StatusOr<double> Reader::Rate(const Entry& entry) const {
  double value = 0;
  if (!entry.value.IsScalar() || !absl::SimpleAtod(entry.value.Scalar(), &value) ||
      !std::isfinite(value) || value < 0) {
    return Error(entry, absl::StrCat("must be a non-negative number, got ", Describe(entry.value)));
  }
  return value;
}

absl::StatusOr<std::string> Reader::Dsn(const Entry& entry) const {
  ASSIGN_OR_RETURN(std::string text, Text(entry));
  absl::StatusOr<std::string> expanded = ExpandEnv(text, env_);
  if (!expanded.ok()) return Error(entry, ToStd(expanded.status().message()));
  return *std::move(expanded);
}

absl::StatusOr<std::vector<std::pair<std::string, int>>> Reader::StringList(
    const Entry& entry) const {
  std::vector<std::pair<std::string, int>> out;
  if (entry.value.IsScalar()) {
    std::string text = Trim(entry.value.Scalar());
    if (text.empty()) return Error(entry, "is empty; remove the key or give a value");
    out.emplace_back(std::move(text), entry.line);
    return out;
  }
  if (!entry.value.IsSequence()) {
    return Error(entry, absl::StrCat("must be a list of strings, got ", Describe(entry.value),
                                     entry.value.IsMap() ? kQuoteHint : ""));
  }
  int index = 0;
  for (const YAML::Node& item : entry.value) {
    ++index;
    const int line = item.IsNull() ? entry.line : LineOf(item);
    if (!item.IsScalar()) {
      return Error(line, entry.path,
                   absl::StrCat("entry ", index, " must be a string, got ", Describe(item),
                                item.IsMap() ? kQuoteHint : ""));
    }
    std::string text = Trim(item.Scalar());
    if (text.empty()) return Error(line, entry.path, absl::StrCat("entry ", index, " is empty"));
    out.emplace_back(std::move(text), line);
  }
  return out;
}

absl::StatusOr<QualifiedName> Reader::Relation(const Entry& entry) const {
  ASSIGN_OR_RETURN(std::string text, Text(entry));
  absl::StatusOr<QualifiedName> name = ParseQualifiedName(text);
  if (!name.ok()) return Error(entry, ToStd(name.status().message()));
  return *std::move(name);
}

absl::StatusOr<std::vector<Assignment>> Reader::Assignments(const Entry& entry) {
  if (!entry.value.IsMap()) {
    return Error(entry, absl::StrCat("must be a mapping of column: SQL expression, got ",
                                     Describe(entry.value)));
  }
  if (entry.value.size() == 0) {
    return Error(entry, "is empty; give at least one column: SQL expression");
  }
  std::vector<Assignment> out;
  absl::flat_hash_map<std::string, int> first_lines;  // folded column -> its line
  for (auto it = entry.value.begin(); it != entry.value.end(); ++it) {
    const YAML::Node key = it->first;  // a copy: `it->` yields a temporary proxy
    const YAML::Node value = it->second;
    const int line = LineOf(key);
    if (!key.IsScalar()) {
      return Error(line, entry.path,
                   absl::StrCat("column names must be strings, got ", Describe(key)));
    }
    const std::string path = absl::StrCat(entry.path, ".", key.Scalar());
    absl::StatusOr<std::string> column = ParseIdentifier(key.Scalar());
    if (!column.ok()) return Error(line, path, ToStd(column.status().message()));
    // Compare folded names: `Name` and `name` are one column, and yaml-cpp keeps both
    // copies of a key written twice. A hash map: a scan of the earlier ones made this quadratic.
    if (const auto [earlier, added] = first_lines.try_emplace(*column, line); !added) {
      return Error(line, path,
                   absl::StrFormat("column \"%s\" is given twice (first at line %d)", *column,
                                   earlier->second));
    }
    if (value.IsNull()) {
      return Error(line, path,
                   "empty expression (for SQL NULL write 'NULL' in quotes: YAML reads a "
                   "bare null or nothing as no value)");
    }
    if (!value.IsScalar()) {
      return Error(
          line, path,
          absl::StrCat("must be a SQL expression string, got ", Describe(value), kQuoteHint));
    }
    std::string expression = Trim(value.Scalar());
    if (expression.empty()) return Error(line, path, "empty expression");
    // Later checks address the column by its catalog spelling, not as written.
    NoteKeyLine(absl::StrFormat("%s.%s", entry.path, *column), line);
    out.push_back(Assignment{
        .column = *std::move(column), .expression = std::move(expression), .line = line});
  }
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, int>>> Reader::ColumnList(
    const Entry& entry, std::string_view key) const {
  ASSIGN_OR_RETURN(auto items, StringList(entry));
  std::vector<std::pair<std::string, int>> columns;
  absl::flat_hash_map<std::string, int> first_lines;  // folded column -> its line
  for (auto& [text, line] : items) {
    absl::StatusOr<std::string> column = ParseIdentifier(text);
    if (!column.ok()) {
      const bool looks_like_a_list = entry.value.IsScalar() && absl::StrContains(text, ",");
      return Error(
          line, entry.path,
          absl::StrCat(
              column.status().message(),
              looks_like_a_list
                  ? absl::StrCat("; give several columns as a list: ", ToAbsl(key), ": [a, b]")
                  : ""));
    }
    if (const auto [earlier, added] = first_lines.try_emplace(*column, line); !added) {
      return Error(line, entry.path,
                   absl::StrFormat("column \"%s\" is listed twice (first at line %d)", *column,
                                   earlier->second));
    }
    columns.emplace_back(*std::move(column), line);
  }
  return columns;
}

}  // namespace pgbackfill::plan::internal
