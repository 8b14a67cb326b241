#include "pgbackfill/plan/parse.h"

#include <yaml-cpp/anchor.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <span>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "parse_internal.h"
#include "pgbackfill/plan/suggest.h"
#include "pgbackfill/plan/units.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::plan {
namespace {

constexpr std::string_view kTopKeys[] = {
    "version",    "name",       "dsn",      "table",    "key",         "set",
    "where",      "dual_write", "into",     "columns",  "on_conflict", "source_dsn",
    "target_dsn", "expand",     "contract", "rollback", "not_null",    "ddl",
    "batch",      "workers",    "throttle", "verify",      "vacuum_every"};
constexpr std::string_view kBatchKeys[] = {"rows", "target", "min_rows", "max_rows"};
constexpr std::string_view kThrottleKeys[] = {"interval",
                                              "max_replica_lag",
                                              "max_replica_lag_bytes",
                                              "replicas",
                                              "max_lock_waiters",
                                              "lock_timeout",
                                              "statement_timeout",
                                              "max_rows_per_second",
                                              "max_wal_bytes_per_second",
                                              "max_canary_latency",
                                              "canary",
                                              "query",
                                              "hold_on_autovacuum"};

constexpr std::string_view kDdlKeys[] = {"lock_timeout", "retry_for"};

struct Section {
  std::string_view name;  // empty for the top level
  std::span<const std::string_view> keys;
};
constexpr Section kSections[] = {
    {"", kTopKeys}, {"batch", kBatchKeys}, {"throttle", kThrottleKeys}, {"ddl", kDdlKeys}};

// "batch.rows" -> {"batch", "rows"}; "workers" -> {"", "workers"}.
std::pair<std::string_view, std::string_view> SplitPath(std::string_view path) {
  const size_t dot = path.find('.');
  if (dot == std::string_view::npos) return {"", path};
  return {path.substr(0, dot), path.substr(dot + 1)};
}

constexpr int kMaxWorkers = 256;
constexpr size_t kMaxNameLength = 63;

// 1-based; yaml-cpp counts from 0 and has no mark for nodes it made up.
int LineOf(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  return mark.is_null() ? 1 : mark.line + 1;
}

// What a node holds, for "got ..." in messages. Long scalars are cut: they are usually SQL.
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

// One `key: value` of a mapping, with where it was written.
struct Entry {
  std::string name;  // the key as written
  std::string path;  // dotted for messages: "batch.rows", "set.first_name"
  int line = 0;      // the key's line: yaml-cpp marks an empty value at the next token
  YAML::Node value;
};

const Entry* Find(const std::vector<Entry>& entries, std::string_view name) {
  for (const Entry& entry : entries) {
    if (entry.name == name) return &entry;
  }
  return nullptr;
}

std::string Trim(std::string_view text) {
  return std::string(absl::StripAsciiWhitespace(ToAbsl(text)));
}

bool IsValidJobName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

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

// Notes whether a document has any content, and where it starts.
class DocumentScanner final : public YAML::EventHandler {
 public:
  bool has_content() const { return content_line_ > 0; }
  int content_line() const { return content_line_; }

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { Content(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    Content(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    Content(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    Content(mark);
  }
  void OnMapEnd() override {}

 private:
  void Content(const YAML::Mark& mark) {
    if (content_line_ == 0) content_line_ = mark.is_null() ? 1 : mark.line + 1;
  }
  int content_line_ = 0;
};

// 1-based line of the first line that is not blank, a comment or a document marker; 0 if none.
int FirstContentLine(std::string_view text) {
  int line = 0;
  for (std::string_view rest = text; !rest.empty();) {
    ++line;
    const size_t end = rest.find('\n');
    const std::string_view current = ToStd(absl::StripAsciiWhitespace(ToAbsl(rest.substr(0, end))));
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    if (current.empty() || current.front() == '#' || current == "---" || current == "...") {
      continue;
    }
    return line;
  }
  return 0;
}

class Parser {
 public:
  Parser(std::string_view file, const EnvLookup& env) : file_(file), env_(env) {}
  // For values that come from elsewhere than a file (`pgbackfill set`): messages are
  // `key: what is wrong`, without a file and line.
  explicit Parser(const EnvLookup& env) : env_(env), located_(false) {}

  absl::StatusOr<Plan> Parse(std::string_view text) {
    try {
      RETURN_IF_ERROR(CheckSingleDocument(text));
      const YAML::Node root = YAML::Load(std::string(text));
      ASSIGN_OR_RETURN(Plan plan, ParseRoot(root, text));
      plan.text = std::string(text);
      return plan;
    } catch (const YAML::Exception& e) {
      // Syntax errors, and anything else yaml-cpp throws: no exception leaves this module.
      if (e.mark.is_null()) {
        return absl::InvalidArgumentError(absl::StrFormat("%s:1: invalid YAML: %s", file_, e.msg));
      }
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s:%d: invalid YAML: %s (column %d)", file_, e.mark.line + 1, e.msg, e.mark.column + 1));
    }
  }

  // `path: value` as if the file had it, through the code that parses that key in a file: the
  // value is one YAML scalar, as a plain scalar in the file would be. Only `workers` and keys of
  // `batch` and `throttle` (the ones a running job can take).
  absl::Status ApplyValue(std::string_view path, std::string_view text, Plan& plan) {
    const auto [section, key] = SplitPath(path);
    try {
      const Entry entry{
          .name = std::string(key), .path = std::string(path), .value = YAML::Node(Trim(text))};
      if (section == "batch") return ApplyBatch({entry}, plan.batch);
      if (section == "throttle") return ApplyThrottle({entry}, plan.throttle);
      if (path == "workers") return ApplyWorkers(entry, plan);
      if (path == "vacuum_every") return ApplyVacuumEvery(entry, plan);
    } catch (const YAML::Exception& e) {
      return absl::InternalError(absl::StrFormat("%s: %s", path, e.msg));
    }
    return absl::InternalError(absl::StrFormat("%s: not a key of batch or throttle", path));
  }

 private:
  absl::Status Error(int line, std::string_view key, std::string_view what) const {
    if (!located_) return absl::InvalidArgumentError(absl::StrFormat("%s: %s", key, what));
    return absl::InvalidArgumentError(absl::StrFormat("%s:%d: %s: %s", file_, line, key, what));
  }
  absl::Status Error(const Entry& entry, std::string_view what) const {
    return Error(entry.line, entry.path, what);
  }

  // A plan file holds one document. YAML::LoadAll is not used to find out: in yaml-cpp 0.7 it
  // loops forever, allocating, on input such as a lone "," (jbeder/yaml-cpp#1040; fixed upstream
  // in 2024 by stopping at the first empty document, which is what this loop does).
  absl::Status CheckSingleDocument(std::string_view text) const {
    std::istringstream stream{std::string(text)};
    YAML::Parser parser(stream);
    for (int documents = 0;;) {
      DocumentScanner scanner;
      if (!parser.HandleNextDocument(scanner) || !scanner.has_content()) break;
      if (++documents == 2) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s:%d: a second YAML document starts here; a plan file holds exactly one plan", file_,
            scanner.content_line()));
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Plan> ParseRoot(const YAML::Node& root, std::string_view text) {
    if (root.IsNull()) {
      // Also what yaml-cpp 0.7 makes of some malformed input, which then deserves better
      // than "empty".
      if (const int line = FirstContentLine(text); line > 0) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s:%d: invalid YAML: no plan found at this line", file_, line));
      }
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s:1: the plan is empty; it needs at least version, name, table, and set or into",
          file_));
    }
    if (!root.IsMap()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s:%d: the plan must be a mapping of keys (version: 1, name: ..., table: ...), "
          "got %s",
          file_, LineOf(root), Describe(root)));
    }
    root_line_ = LineOf(root);
    ASSIGN_OR_RETURN(std::vector<Entry> entries, ReadMap(root, kSections[0]));
    return ParsePlanEntries(entries);
  }

  // The entries of a mapping in file order. Refuses keys the section does not know and keys
  // given twice: yaml-cpp keeps both copies of a duplicate key, and silently using one of them
  // would run a plan other than the one the operator reviewed.
  absl::StatusOr<std::vector<Entry>> ReadMap(const YAML::Node& map, const Section& section) {
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

  static std::string UnknownKeyHint(std::string_view name, const Section& section) {
    if (std::optional<std::string_view> close = Suggest(name, section.keys)) {
      return absl::StrFormat(" (did you mean \"%s\"?)", *close);
    }
    // A key of another section written at the wrong indentation (lock_timeout is in two).
    std::string owners;
    for (const Section& other : kSections) {
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

  // --- Typed values -----------------------------------------------------------------------

  absl::StatusOr<std::string> Text(const Entry& entry) const {
    if (entry.value.IsNull()) {
      return Error(entry, "has no value; give one or remove the key");
    }
    if (!entry.value.IsScalar()) {
      return Error(entry,
                   absl::StrCat("must be a string, got ", Describe(entry.value), kQuoteHint));
    }
    return entry.value.Scalar();
  }

  absl::StatusOr<std::string> Sql(const Entry& entry) const {
    ASSIGN_OR_RETURN(std::string text, Text(entry));
    return Trim(text);
  }

  absl::StatusOr<int64_t> Integer(const Entry& entry, int64_t min, int64_t max) const {
    int64_t value = 0;
    if (!entry.value.IsScalar() || !absl::SimpleAtoi(entry.value.Scalar(), &value) || value < min ||
        value > max) {
      return Error(entry, absl::StrFormat("must be %s, got %s", IntegerRange(min, max),
                                          Describe(entry.value)));
    }
    return value;
  }

  absl::StatusOr<bool> Bool(const Entry& entry) const {
    if (entry.value.IsScalar()) {
      const std::string text = absl::AsciiStrToLower(entry.value.Scalar());
      // YAML 1.1 spellings too: yaml-cpp and most operators' habits accept them.
      if (text == "true" || text == "yes" || text == "on") return true;
      if (text == "false" || text == "no" || text == "off") return false;
    }
    return Error(entry, absl::StrCat("must be true or false, got ", Describe(entry.value)));
  }

  // `minimum` > 0 refuses 0; `why` explains a minimum the operator may not expect.
  absl::StatusOr<absl::Duration> Duration(const Entry& entry,
                                          absl::Duration minimum = absl::ZeroDuration(),
                                          std::string_view why = "") const {
    if (!entry.value.IsScalar()) {
      return Error(entry, absl::StrCat("must be a duration such as 200ms, 5s or 1m, got ",
                                       Describe(entry.value)));
    }
    absl::StatusOr<absl::Duration> value = ParseDurationValue(entry.value.Scalar());
    if (!value.ok()) return Error(entry, ToStd(value.status().message()));
    if (*value < minimum) {
      return Error(
          entry, absl::StrFormat("must be at least %s%s, got \"%s\"", absl::FormatDuration(minimum),
                                 why, entry.value.Scalar()));
    }
    return *value;
  }

  absl::StatusOr<int64_t> ByteSize(const Entry& entry) const {
    if (!entry.value.IsScalar()) {
      return Error(entry,
                   absl::StrCat("must be a byte count such as 16MB, got ", Describe(entry.value)));
    }
    absl::StatusOr<int64_t> value = ParseByteSize(entry.value.Scalar());
    if (!value.ok()) return Error(entry, ToStd(value.status().message()));
    return *value;
  }

  absl::StatusOr<double> Rate(const Entry& entry) const {
    double value = 0;
    if (!entry.value.IsScalar() || !absl::SimpleAtod(entry.value.Scalar(), &value) ||
        !std::isfinite(value) || value < 0) {
      return Error(entry,
                   absl::StrCat("must be a non-negative number, got ", Describe(entry.value)));
    }
    return value;
  }

  absl::StatusOr<std::string> Dsn(const Entry& entry) const {
    ASSIGN_OR_RETURN(std::string text, Text(entry));
    absl::StatusOr<std::string> expanded = ExpandEnv(text, env_);
    if (!expanded.ok()) return Error(entry, ToStd(expanded.status().message()));
    return *std::move(expanded);
  }

  // A list of non-empty strings, or one string standing for a list of one.
  absl::StatusOr<std::vector<std::pair<std::string, int>>> StringList(const Entry& entry) const {
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

  absl::StatusOr<QualifiedName> Relation(const Entry& entry) const {
    ASSIGN_OR_RETURN(std::string text, Text(entry));
    absl::StatusOr<QualifiedName> name = ParseQualifiedName(text);
    if (!name.ok()) return Error(entry, ToStd(name.status().message()));
    return *std::move(name);
  }

  // `column: expression` pairs of `set` or `columns`.
  absl::StatusOr<std::vector<Assignment>> Assignments(const Entry& entry) {
    if (!entry.value.IsMap()) {
      return Error(entry, absl::StrCat("must be a mapping of column: SQL expression, got ",
                                       Describe(entry.value)));
    }
    if (entry.value.size() == 0) {
      return Error(entry, "is empty; give at least one column: SQL expression");
    }
    std::vector<Assignment> out;
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
      // copies of a key written twice.
      for (const Assignment& earlier : out) {
        if (earlier.column == *column) {
          return Error(line, path,
                       absl::StrFormat("column \"%s\" is given twice (first at line %d)", *column,
                                       earlier.line));
        }
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
      key_lines_[absl::StrFormat("%s.%s", entry.path, *column)] = line;
      out.push_back(Assignment{
          .column = *std::move(column), .expression = std::move(expression), .line = line});
    }
    return out;
  }

  // --- The plan ---------------------------------------------------------------------------

  absl::StatusOr<Plan> ParsePlanEntries(const std::vector<Entry>& entries) {
    Plan plan;
    plan.file = file_;

    const Entry* version = Find(entries, "version");
    if (version == nullptr) {
      return Error(root_line_, "version", "missing; plans start with version: 1");
    }
    int64_t version_number = 0;
    if (!version->value.IsScalar() || !absl::SimpleAtoi(version->value.Scalar(), &version_number)) {
      return Error(*version, absl::StrCat("must be 1, got ", Describe(version->value)));
    }
    if (version_number != 1) {
      return Error(*version, absl::StrFormat("unsupported version %d; this pgbackfill reads "
                                             "version 1",
                                             version_number));
    }
    plan.version = 1;

    const Entry* name = Find(entries, "name");
    if (name == nullptr) {
      return Error(root_line_, "name",
                   "missing; name the job, e.g. name: users-split-name (unique per database)");
    }
    ASSIGN_OR_RETURN(plan.name, Text(*name));
    if (!IsValidJobName(plan.name)) {
      return Error(*name, absl::StrFormat("must be 1 to %d characters from A-Z a-z 0-9 _ . -, "
                                          "got %s",
                                          kMaxNameLength, Describe(name->value)));
    }

    if (const Entry* dsn = Find(entries, "dsn")) {
      ASSIGN_OR_RETURN(plan.dsn, Dsn(*dsn));
    }

    const Entry* table = Find(entries, "table");
    if (table == nullptr) {
      return Error(root_line_, "table",
                   "missing; name the table to backfill, e.g. "
                   "table: public.users");
    }
    ASSIGN_OR_RETURN(plan.table, Relation(*table));

    if (const Entry* key = Find(entries, "key")) RETURN_IF_ERROR(ParseKey(*key, plan));

    RETURN_IF_ERROR(ParseMode(entries, plan));

    if (const Entry* where = Find(entries, "where")) {
      ASSIGN_OR_RETURN(plan.where, Sql(*where));
    }

    for (auto [field, list] :
         {std::pair{"expand", &plan.expand}, std::pair{"contract", &plan.contract},
          std::pair{"rollback", &plan.rollback}}) {
      if (const Entry* entry = Find(entries, field)) {
        ASSIGN_OR_RETURN(auto statements, StringList(*entry));
        for (auto& [statement, line] : statements) list->push_back(std::move(statement));
      }
    }

    if (const Entry* not_null = Find(entries, "not_null")) {
      RETURN_IF_ERROR(ParseNotNull(*not_null, plan));
    }
    if (const Entry* ddl = Find(entries, "ddl")) RETURN_IF_ERROR(ParseDdl(*ddl, plan.ddl));

    if (const Entry* batch = Find(entries, "batch")) RETURN_IF_ERROR(ParseBatch(*batch, plan));
    if (const Entry* workers = Find(entries, "workers"))
      RETURN_IF_ERROR(ApplyWorkers(*workers, plan));
    if (const Entry* throttle = Find(entries, "throttle")) {
      RETURN_IF_ERROR(ParseThrottle(*throttle, plan.throttle));
    }
    if (const Entry* verify = Find(entries, "verify")) {
      ASSIGN_OR_RETURN(plan.verify, Bool(*verify));
    }
    if (const Entry* vacuum_every = Find(entries, "vacuum_every")) {
      RETURN_IF_ERROR(ApplyVacuumEvery(*vacuum_every, plan));
    }
    plan.key_lines = std::move(key_lines_);
    return plan;
  }

  // A list of column names (a bare name is a one-element list), folded like SQL identifiers,
  // each once; with the line each came from. `key` names the key in the list-syntax hint.
  absl::StatusOr<std::vector<std::pair<std::string, int>>> ColumnList(const Entry& entry,
                                                                      std::string_view key) const {
    ASSIGN_OR_RETURN(auto items, StringList(entry));
    std::vector<std::pair<std::string, int>> columns;
    for (auto& [text, line] : items) {
      absl::StatusOr<std::string> column = ParseIdentifier(text);
      if (!column.ok()) {
        const bool looks_like_a_list = entry.value.IsScalar() && absl::StrContains(text, ",");
        return Error(line, entry.path,
                     absl::StrCat(column.status().message(),
                                  looks_like_a_list
                                      ? absl::StrCat("; give several columns as a list: ",
                                                     ToAbsl(key), ": [a, b]")
                                      : ""));
      }
      const auto earlier = std::find_if(columns.begin(), columns.end(),
                                        [&](const auto& seen) { return seen.first == *column; });
      if (earlier != columns.end()) {
        return Error(line, entry.path,
                     absl::StrFormat("column \"%s\" is listed twice (first at line %d)", *column,
                                     earlier->second));
      }
      columns.emplace_back(*std::move(column), line);
    }
    return columns;
  }

  absl::Status ParseKey(const Entry& entry, Plan& plan) const {
    if (entry.value.IsSequence() && entry.value.size() == 0) {
      return Error(entry,
                   "is an empty list; name at least one column, or remove key to use "
                   "the primary key");
    }
    ASSIGN_OR_RETURN(auto columns, ColumnList(entry, "key"));
    for (auto& [column, line] : columns) plan.key.push_back(std::move(column));
    return absl::OkStatus();
  }

  // Column names of `table`, folded like `key`; an empty list is no list.
  absl::Status ParseNotNull(const Entry& entry, Plan& plan) {
    if (entry.value.IsSequence() && entry.value.size() == 0) return absl::OkStatus();
    ASSIGN_OR_RETURN(auto columns, ColumnList(entry, "not_null"));
    for (auto& [column, line] : columns) {
      key_lines_[absl::StrFormat("%s.%s", entry.path, column)] = line;
      plan.not_null.push_back(std::move(column));
    }
    return absl::OkStatus();
  }

  absl::Status ParseDdl(const Entry& section, Plan::Ddl& ddl) {
    ASSIGN_OR_RETURN(std::vector<Entry> entries,
                     SectionEntries(section, kSections[3], "{ lock_timeout: 1s, retry_for: 10m }"));
    for (const Entry& entry : entries) {
      if (entry.name == "lock_timeout") {
        // As for throttle.lock_timeout: PostgreSQL reads 0 as "wait forever".
        ASSIGN_OR_RETURN(ddl.lock_timeout, Duration(entry, absl::Milliseconds(1),
                                                    " (0 would turn PostgreSQL's timeout off)"));
      } else if (entry.name == "retry_for") {
        ASSIGN_OR_RETURN(ddl.retry_for, Duration(entry));
      }
    }
    return absl::OkStatus();
  }

  // Update mode (`set`) or copy mode (`into`), and the keys that only make sense in one.
  absl::Status ParseMode(const std::vector<Entry>& entries, Plan& plan) {
    const Entry* set = Find(entries, "set");
    const Entry* into = Find(entries, "into");
    if (set != nullptr && into != nullptr) {
      return Error(*into,
                   absl::StrFormat("cannot be combined with set (line %d): set updates table in "
                                   "place, into copies it to another table; use one of them",
                                   set->line));
    }
    if (set == nullptr && into == nullptr) {
      return Error(root_line_, "set",
                   "missing; give set (update columns of table in place) or into (copy table "
                   "into another table)");
    }
    if (set != nullptr) {
      plan.mode = Mode::kUpdate;
      for (std::string_view copy_only : {"columns", "on_conflict", "source_dsn", "target_dsn"}) {
        if (const Entry* entry = Find(entries, copy_only)) {
          return Error(*entry,
                       absl::StrFormat("only applies with into (copy mode); this plan updates %s "
                                       "in place with set (line %d)%s",
                                       TableText(entries), set->line,
                                       copy_only.ends_with("dsn") ? "; use dsn" : ""));
        }
      }
      ASSIGN_OR_RETURN(plan.set, Assignments(*set));
      if (const Entry* dual_write = Find(entries, "dual_write")) {
        ASSIGN_OR_RETURN(plan.dual_write, Bool(*dual_write));
      }
      return absl::OkStatus();
    }

    plan.mode = Mode::kCopy;
    if (const Entry* dual_write = Find(entries, "dual_write")) {
      return Error(*dual_write,
                   "only applies with set (update mode); copy mode always installs the trigger "
                   "that carries concurrent writes into the into table, so remove dual_write");
    }
    ASSIGN_OR_RETURN(plan.into, Relation(*into));
    if (const Entry* columns = Find(entries, "columns")) {
      ASSIGN_OR_RETURN(plan.columns, Assignments(*columns));
    }
    if (const Entry* on_conflict = Find(entries, "on_conflict")) {
      ASSIGN_OR_RETURN(std::string text, Text(*on_conflict));
      if (text == "error") {
        plan.on_conflict = OnConflict::kError;
      } else if (text == "skip") {
        plan.on_conflict = OnConflict::kSkip;
      } else if (text == "update") {
        plan.on_conflict = OnConflict::kUpdate;
      } else {
        return Error(*on_conflict, absl::StrCat("must be error, skip or update, got ",
                                                Describe(on_conflict->value)));
      }
    }
    if (const Entry* source_dsn = Find(entries, "source_dsn")) {
      ASSIGN_OR_RETURN(plan.source_dsn, Dsn(*source_dsn));
    }
    if (const Entry* target_dsn = Find(entries, "target_dsn")) {
      ASSIGN_OR_RETURN(plan.target_dsn, Dsn(*target_dsn));
    }
    // Between databases the same name is two tables (the data mover).
    if (*plan.into == plan.table && !MovesBetweenDatabases(plan)) {
      return Error(*into, "names the same table as table; copy mode needs another table (or "
                          "source_dsn/target_dsn, to copy it to another database)");
    }
    return absl::OkStatus();
  }

  static std::string TableText(const std::vector<Entry>& entries) {
    const Entry* table = Find(entries, "table");
    if (table == nullptr || !table->value.IsScalar()) return "table";
    return table->value.Scalar();
  }

  absl::StatusOr<std::vector<Entry>> SectionEntries(const Entry& entry, const Section& section,
                                                    std::string_view example) {
    if (entry.value.IsNull()) return std::vector<Entry>{};
    if (!entry.value.IsMap()) {
      return Error(entry, absl::StrFormat("must be a mapping such as %s, got %s", example,
                                          Describe(entry.value)));
    }
    return ReadMap(entry.value, section);
  }

  absl::Status ApplyWorkers(const Entry& entry, Plan& plan) const {
    ASSIGN_OR_RETURN(const int64_t count, Integer(entry, 1, kMaxWorkers));
    plan.workers = static_cast<int>(count);
    return absl::OkStatus();
  }

  // `5%` (of the table's estimated rows), a row count, or off/0.
  absl::Status ApplyVacuumEvery(const Entry& entry, Plan& plan) const {
    constexpr std::string_view kExample =
        "a share of the table such as 5% or a row count such as 500000, or off";
    if (!entry.value.IsScalar()) {
      return Error(entry, absl::StrFormat("must be %s, got %s", kExample, Describe(entry.value)));
    }
    const std::string text = Trim(entry.value.Scalar());
    VacuumEvery every;
    if (text == "off" || text == "0") {
      plan.vacuum_every = every;
      return absl::OkStatus();
    }
    if (text.ends_with("%")) {
      double percent = 0;
      if (!absl::SimpleAtod(ToAbsl(std::string_view(text).substr(0, text.size() - 1)), &percent) ||
          !(percent > 0 && percent <= 100)) {
        return Error(entry, absl::StrFormat("'%s' is not a share between 0%% and 100%%; use %s",
                                            text, kExample));
      }
      every.fraction = percent / 100;
    } else {
      int64_t rows = 0;
      if (!absl::SimpleAtoi(ToAbsl(text), &rows) || rows < 1) {
        return Error(entry, absl::StrFormat("'%s' is not a share or a row count; use %s", text,
                                            kExample));
      }
      every.rows = rows;
    }
    plan.vacuum_every = every;
    return absl::OkStatus();
  }

  absl::Status ParseBatch(const Entry& section, Plan& plan) {
    ASSIGN_OR_RETURN(std::vector<Entry> entries,
                     SectionEntries(section, kSections[1], "{ rows: 5000, target: 200ms }"));
    return ApplyBatch(entries, plan.batch);
  }

  // Explicit values must agree with each other; defaults (and, for `pgbackfill set`, the values
  // the plan already has) give way to explicit values, so `batch: {max_rows: 1000}` alone is
  // valid and starts at 1000 rows.
  absl::Status ApplyBatch(const std::vector<Entry>& entries, Batch& batch) const {
    constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
    const Entry* rows = Find(entries, "rows");
    const Entry* min_rows = Find(entries, "min_rows");
    const Entry* max_rows = Find(entries, "max_rows");
    if (rows != nullptr) {
      ASSIGN_OR_RETURN(batch.rows, Integer(*rows, 1, kMax));
    }
    if (min_rows != nullptr) {
      ASSIGN_OR_RETURN(batch.min_rows, Integer(*min_rows, 1, kMax));
    }
    if (max_rows != nullptr) {
      ASSIGN_OR_RETURN(batch.max_rows, Integer(*max_rows, 1, kMax));
    }
    if (const Entry* target = Find(entries, "target")) {
      ASSIGN_OR_RETURN(batch.target, Duration(*target, absl::Milliseconds(1)));
    }

    if (min_rows == nullptr) {
      if (rows != nullptr) batch.min_rows = std::min(batch.min_rows, batch.rows);
      if (max_rows != nullptr) batch.min_rows = std::min(batch.min_rows, batch.max_rows);
    }
    if (max_rows == nullptr) {
      if (rows != nullptr) batch.max_rows = std::max(batch.max_rows, batch.rows);
      if (min_rows != nullptr) batch.max_rows = std::max(batch.max_rows, batch.min_rows);
    }
    if (batch.min_rows > batch.max_rows) {  // both explicit
      return Error(*min_rows, absl::StrFormat("must not exceed batch.max_rows (%d), got %d",
                                              batch.max_rows, batch.min_rows));
    }
    if (rows == nullptr) {
      batch.rows = std::clamp(batch.rows, batch.min_rows, batch.max_rows);
    } else if (batch.rows < batch.min_rows) {
      return Error(*rows, absl::StrFormat("must be at least batch.min_rows (%d), got %d",
                                          batch.min_rows, batch.rows));
    } else if (batch.rows > batch.max_rows) {
      return Error(*rows, absl::StrFormat("must not exceed batch.max_rows (%d), got %d",
                                          batch.max_rows, batch.rows));
    }
    return absl::OkStatus();
  }

  absl::Status ParseThrottle(const Entry& section, Throttle& throttle) {
    ASSIGN_OR_RETURN(
        std::vector<Entry> entries,
        SectionEntries(section, kSections[2], "{ max_replica_lag: 5s, lock_timeout: 200ms }"));
    return ApplyThrottle(entries, throttle);
  }

  absl::Status ApplyThrottle(const std::vector<Entry>& entries, Throttle& throttle) const {
    // PostgreSQL reads 0 as "no timeout" and counts in whole milliseconds, so anything below
    // 1ms would silently switch the protection off.
    constexpr std::string_view kTimeoutWhy = " (0 would turn PostgreSQL's timeout off)";
    for (const Entry& entry : entries) {
      const std::string_view key = entry.name;
      if (key == "interval") {
        ASSIGN_OR_RETURN(throttle.interval, Duration(entry, absl::Milliseconds(1)));
      } else if (key == "max_replica_lag") {
        ASSIGN_OR_RETURN(throttle.max_replica_lag, Duration(entry));
      } else if (key == "max_replica_lag_bytes") {
        ASSIGN_OR_RETURN(throttle.max_replica_lag_bytes, ByteSize(entry));
      } else if (key == "replicas") {
        RETURN_IF_ERROR(ParseReplicas(entry, throttle));
      } else if (key == "max_lock_waiters") {
        ASSIGN_OR_RETURN(const int64_t waiters, Integer(entry, 0, std::numeric_limits<int>::max()));
        throttle.max_lock_waiters = static_cast<int>(waiters);
      } else if (key == "lock_timeout") {
        ASSIGN_OR_RETURN(throttle.lock_timeout,
                         Duration(entry, absl::Milliseconds(1), kTimeoutWhy));
      } else if (key == "statement_timeout") {
        ASSIGN_OR_RETURN(throttle.statement_timeout,
                         Duration(entry, absl::Milliseconds(1), kTimeoutWhy));
      } else if (key == "max_rows_per_second") {
        ASSIGN_OR_RETURN(throttle.max_rows_per_second, Rate(entry));
      } else if (key == "max_wal_bytes_per_second") {
        ASSIGN_OR_RETURN(throttle.max_wal_bytes_per_second, ByteSize(entry));
      } else if (key == "max_canary_latency") {
        ASSIGN_OR_RETURN(throttle.max_canary_latency, Duration(entry));
      } else if (key == "canary") {
        ASSIGN_OR_RETURN(throttle.canary, Sql(entry));
      } else if (key == "query") {
        ASSIGN_OR_RETURN(throttle.query, Sql(entry));
      } else if (key == "hold_on_autovacuum") {
        ASSIGN_OR_RETURN(throttle.hold_on_autovacuum, Bool(entry));
      }
    }
    return absl::OkStatus();
  }

  absl::Status ParseReplicas(const Entry& entry, Throttle& throttle) const {
    if (entry.value.IsSequence() && entry.value.size() == 0) return absl::OkStatus();
    ASSIGN_OR_RETURN(auto items, StringList(entry));
    for (auto& [text, line] : items) {
      absl::StatusOr<std::string> dsn = ExpandEnv(text, env_);
      if (!dsn.ok()) return Error(line, entry.path, ToStd(dsn.status().message()));
      throttle.replicas.push_back(*std::move(dsn));
    }
    return absl::OkStatus();
  }

  std::string file_;
  const EnvLookup& env_;
  bool located_ = true;  // messages carry `file:line: `
  int root_line_ = 1;
  std::map<std::string, int> key_lines_;  // becomes Plan::key_lines
};

}  // namespace

absl::StatusOr<Plan> ParsePlan(std::string_view text, std::string_view file_name,
                               const EnvLookup& env) {
  return Parser(file_name, env).Parse(text);
}

namespace internal {

bool IsPlanKey(std::string_view path) {
  const auto [section, key] = SplitPath(path);
  for (const Section& candidate : kSections) {
    if (candidate.name != section) continue;
    return std::find(candidate.keys.begin(), candidate.keys.end(), key) != candidate.keys.end();
  }
  return false;
}

absl::Status ApplyPlanValue(Plan& plan, std::string_view path, std::string_view value) {
  // Values from the command line never hold ${ENV}: nothing is expanded.
  const EnvLookup no_env = [](std::string_view) -> std::optional<std::string> {
    return std::nullopt;
  };
  return Parser(no_env).ApplyValue(path, value, plan);
}

}  // namespace internal

absl::StatusOr<Plan> LoadPlanFile(const std::string& path, const EnvLookup& env) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrFormat("%s: cannot read plan file: %s", path, std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return absl::NotFoundError(
        absl::StrFormat("%s: cannot read plan file: %s", path, std::strerror(errno)));
  }
  return ParsePlan(text.str(), path, env);
}

}  // namespace pgbackfill::plan
