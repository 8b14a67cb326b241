// Reading a plan file: the file itself within its bounds (bounds.h), the one YAML document in it
// and its top-level mapping, handed to the plan's sections (sections.h) through the YAML reader
// (yaml_reader.h), and its text without secrets (redact.h); and the same per-key code for values
// that come from `pgbackfill set` (parse_internal.h).
#include "pgbackfill/plan/parse.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "bounds.h"
#include "parse_internal.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/util/strings.h"
#include "redact.h"
#include "sections.h"
#include "yaml_reader.h"

namespace pgbackfill::plan {
namespace {

using internal::Entry;
using internal::kSections;
using internal::Reader;

// "batch.rows" -> {"batch", "rows"}; "workers" -> {"", "workers"}.
std::pair<std::string_view, std::string_view> SplitPath(std::string_view path) {
  const size_t dot = path.find('.');
  if (dot == std::string_view::npos) return {"", path};
  return {path.substr(0, dot), path.substr(dot + 1)};
}

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

absl::StatusOr<Plan> ParseRoot(Reader& reader, const YAML::Node& root, std::string_view text) {
  const std::string& file = reader.file();
  if (root.IsNull()) {
    // Also what yaml-cpp 0.7 makes of some malformed input, which then deserves better
    // than "empty".
    if (const int line = FirstContentLine(text); line > 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s:%d: invalid YAML: no plan found at this line", file, line));
    }
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s:1: the plan is empty; it needs at least version, name, table, and set or into", file));
  }
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s:%d: the plan must be a mapping of keys (version: 1, name: ..., table: ...), "
        "got %s",
        file, internal::LineOf(root), internal::Describe(root)));
  }
  ASSIGN_OR_RETURN(std::vector<Entry> entries, reader.ReadMap(root, internal::kTopSection));
  return internal::ParsePlanEntries(reader, entries, internal::LineOf(root));
}

absl::StatusOr<Plan> Parse(std::string_view text, std::string_view file, const EnvLookup& env) {
  // The bounds first, cheapest first: yaml-cpp's nodes are built only for what passed them.
  RETURN_IF_ERROR(internal::CheckPlanSize(text.size(), file));
  RETURN_IF_ERROR(internal::CheckPlanText(text, file));
  try {
    RETURN_IF_ERROR(internal::CheckPlanShape(text, file));
    const YAML::Node root = YAML::Load(std::string(text));
    Reader reader(file, env, kSections);
    ASSIGN_OR_RETURN(Plan plan, ParseRoot(reader, root, text));
    ASSIGN_OR_RETURN(plan.text, internal::RedactPlanText(text, root, reader));
    return plan;
  } catch (const YAML::Exception& e) {
    // Syntax errors, and anything else yaml-cpp throws: no exception leaves this module.
    if (e.mark.is_null()) {
      return absl::InvalidArgumentError(absl::StrFormat("%s:1: invalid YAML: %s", file, e.msg));
    }
    return absl::InvalidArgumentError(absl::StrFormat("%s:%d: invalid YAML: %s (column %d)", file,
                                                      e.mark.line + 1, e.msg, e.mark.column + 1));
  }
}

}  // namespace

absl::StatusOr<Plan> ParsePlan(std::string_view text, std::string_view file_name,
                               const EnvLookup& env) {
  return Parse(text, file_name, env);
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

// `path: value` as if the file had it, through the code that parses that key in a file: the
// value is one YAML scalar, as a plain scalar in the file would be.
absl::Status ApplyPlanValue(Plan& plan, std::string_view path, std::string_view value) {
  // Values from the command line never hold ${ENV}: nothing is expanded.
  const EnvLookup no_env = [](std::string_view) -> std::optional<std::string> {
    return std::nullopt;
  };
  const Reader reader(no_env, kSections);
  const auto [section, key] = SplitPath(path);
  try {
    const Entry entry{
        .name = std::string(key), .path = std::string(path), .value = YAML::Node(Trim(value))};
    if (section == "batch") return ApplyBatch(reader, {entry}, plan.batch);
    if (section == "throttle") return ApplyThrottle(reader, {entry}, plan.throttle);
    if (path == "workers") return ApplyWorkers(reader, entry, plan);
    if (path == "vacuum_every") return ApplyVacuumEvery(reader, entry, plan);
  } catch (const YAML::Exception& e) {
    return absl::InternalError(absl::StrFormat("%s: %s", path, e.msg));
  }
  return absl::InternalError(absl::StrFormat("%s: not a key of batch or throttle", path));
}

}  // namespace internal

absl::StatusOr<Plan> LoadPlanFile(const std::string& path, const EnvLookup& env) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrFormat("%s: cannot read plan file: %s", path, std::strerror(errno)));
  }
  // One byte past the bound is enough to refuse a file, however large (or endless: /dev/zero).
  std::string text(internal::kMaxPlanBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) {
    return absl::NotFoundError(
        absl::StrFormat("%s: cannot read plan file: %s", path, std::strerror(errno)));
  }
  text.resize(static_cast<size_t>(in.gcount()));
  return ParsePlan(text, path, env);
}

}  // namespace pgbackfill::plan
