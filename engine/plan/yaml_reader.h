// The plan file's YAML reading layer (private to engine/plan): the entries of a mapping with the
// lines they were written on, and typed values read from them, every problem reported as
// `file:line: key: what is wrong`. The plan's sections (sections.h) read through it; parse.cc
// loads the document.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pgbackfill/plan/env.h"
#include "pgbackfill/plan/plan.h"
#include "pgbackfill/plan/units.h"

namespace pgbackfill::plan::internal {

// One `key: value` of a mapping, with where it was written.
struct Entry {
  std::string name;  // the key as written
  std::string path;  // dotted for messages: "batch.rows", "set.first_name"
  int line = 0;      // the key's line: yaml-cpp marks an empty value at the next token
  YAML::Node value;
};

// A mapping of the plan file and the keys it takes.
struct Section {
  std::string_view name;  // empty for the top level
  std::span<const std::string_view> keys;
};

// 1-based; yaml-cpp counts from 0 and has no mark for nodes it made up.
int LineOf(const YAML::Node& node);

// What a node holds, for "got ..." in messages. Long scalars are cut: they are usually SQL.
std::string Describe(const YAML::Node& node);

// The entry named `name`, or nullptr.
const Entry* Find(const std::vector<Entry>& entries, std::string_view name);

std::string Trim(std::string_view text);

// Reads entries and typed values of one plan file (or of values given as if a file had them),
// and remembers the line of every key it read, for Plan::key_lines. Holds `env` by reference:
// it must outlive the reader.
class Reader {
 public:
  // `sections` are all the sections a file may have, so that a key written under the wrong one
  // is reported with the section it belongs to.
  Reader(std::string_view file, const EnvLookup& env, std::span<const Section> sections);
  // For values that come from elsewhere than a file (`pgbackfill set`): messages are
  // `key: what is wrong`, without a file and line.
  Reader(const EnvLookup& env, std::span<const Section> sections);

  const std::string& file() const { return file_; }
  const EnvLookup& env() const { return env_; }

  absl::Status Error(int line, std::string_view key, std::string_view what) const;
  absl::Status Error(const Entry& entry, std::string_view what) const;

  // The entries of a mapping in file order. Refuses keys the section does not know and keys
  // given twice: yaml-cpp keeps both copies of a duplicate key, and silently using one of them
  // would run a plan other than the one the operator reviewed.
  absl::StatusOr<std::vector<Entry>> ReadMap(const YAML::Node& map, const Section& section);
  // ReadMap of a section's value; no value is an empty section. `example` shows the mapping
  // syntax in the message for anything else.
  absl::StatusOr<std::vector<Entry>> SectionEntries(const Entry& entry, const Section& section,
                                                    std::string_view example);

  // Records where a key the file did not spell that way (a folded column name) was written.
  void NoteKeyLine(std::string path, int line);
  // The lines of every key read so far, keyed by dotted path; leaves the reader without them.
  std::map<std::string, int> TakeKeyLines();

  // --- Typed values: each refuses anything else with the key's line and what it got. ---

  absl::StatusOr<std::string> Text(const Entry& entry) const;
  // Text without surrounding white space.
  absl::StatusOr<std::string> Sql(const Entry& entry) const;
  absl::StatusOr<int64_t> Integer(const Entry& entry, int64_t min, int64_t max) const;
  absl::StatusOr<bool> Bool(const Entry& entry) const;
  // `minimum` > 0 refuses 0; `why` explains a minimum the operator may not expect.
  absl::StatusOr<absl::Duration> Duration(const Entry& entry,
                                          absl::Duration minimum = absl::ZeroDuration(),
                                          std::string_view why = "") const;
  absl::StatusOr<int64_t> ByteSize(const Entry& entry) const;
  // A non-negative number, such as rows per second.
  absl::StatusOr<double> Rate(const Entry& entry) const;
  // A throttle limit (units.h ParseLimit) in the signal's unit.
  absl::StatusOr<Limit> LimitValue(const Entry& entry, LimitUnit unit) const;
  // A connection string, with ${ENV} expanded.
  absl::StatusOr<std::string> Dsn(const Entry& entry) const;
  // A list of non-empty strings, or one string standing for a list of one; each with its line.
  absl::StatusOr<std::vector<std::pair<std::string, int>>> StringList(const Entry& entry) const;
  // `name` or `schema.name`, as ParseQualifiedName.
  absl::StatusOr<QualifiedName> Relation(const Entry& entry) const;
  // `column: expression` pairs of `set` or `columns`.
  absl::StatusOr<std::vector<Assignment>> Assignments(const Entry& entry);
  // A list of column names (a bare name is a one-element list), folded like SQL identifiers,
  // each once; with the line each came from. `key` names the key in the list-syntax hint.
  absl::StatusOr<std::vector<std::pair<std::string, int>>> ColumnList(const Entry& entry,
                                                                      std::string_view key) const;

 private:
  std::string UnknownKeyHint(std::string_view name, const Section& section) const;

  std::string file_;
  const EnvLookup& env_;
  std::span<const Section> sections_;
  bool located_ = true;                   // messages carry `file:line: `
  std::map<std::string, int> key_lines_;  // becomes Plan::key_lines
};

}  // namespace pgbackfill::plan::internal
