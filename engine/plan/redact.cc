#include "redact.h"

#include <algorithm>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "pgbackfill/pg/dsn.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::plan::internal {
namespace {

constexpr char kUsePassFile[] =
    "supply the password through PGPASSFILE, ~/.pgpass or PGPASSWORD instead";

// A connection string of the plan and the key it is under.
struct DsnValue {
  std::string path;
  YAML::Node node;
};

// `dsn`, `source_dsn`, `target_dsn` and `throttle.replicas` (a string or a list of them).
std::vector<DsnValue> DsnValues(const YAML::Node& root) {
  std::vector<DsnValue> out;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string key = it->first.Scalar();
    const YAML::Node value = it->second;  // a copy: `it->` yields a temporary proxy
    if (key == "dsn" || key == "source_dsn" || key == "target_dsn") out.push_back({key, value});
    if (key != "throttle" || !value.IsMap()) continue;
    for (auto entry = value.begin(); entry != value.end(); ++entry) {
      if (entry->first.Scalar() != "replicas") continue;
      const YAML::Node replicas = entry->second;
      if (!replicas.IsSequence()) {
        out.push_back({"throttle.replicas", replicas});
        continue;
      }
      for (const YAML::Node& replica : replicas) out.push_back({"throttle.replicas", replica});
    }
  }
  return out;
}

// Where a scalar's string starts in `text`: its mark, past the opening quote of a quoted one.
// yaml-cpp counts positions after a byte order mark.
size_t StringStart(std::string_view text, const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  if (mark.is_null() || mark.pos < 0) return text.size();
  constexpr std::string_view kUtf8Bom = "\xEF\xBB\xBF";
  size_t start = static_cast<size_t>(mark.pos) + (text.starts_with(kUtf8Bom) ? kUtf8Bom.size() : 0);
  if (start < text.size() && (text[start] == '\'' || text[start] == '"')) ++start;
  return start;
}

// Adds the places in `text` of the secrets of one connection string.
absl::Status AddSecretPlaces(std::string_view text, const DsnValue& dsn, const Reader& reader,
                             std::vector<pg::SecretSpan>& places) {
  const std::string_view value = dsn.node.Scalar();
  const int line = LineOf(dsn.node);
  absl::StatusOr<std::vector<pg::SecretSpan>> secrets = pg::FindDsnSecrets(value);
  if (!secrets.ok()) {
    return reader.Error(line, dsn.path,
                        absl::StrCat(secrets.status().message(), "; ", kUsePassFile));
  }
  const size_t start = StringStart(text, dsn.node);
  for (const pg::SecretSpan& secret : *secrets) {
    // Up to the secret's end the file must spell the string byte for byte; YAML escapes or
    // folded lines before it would move it elsewhere.
    const size_t end = secret.offset + secret.length;
    if (start > text.size() || text.size() - start < end ||
        text.substr(start, end) != value.substr(0, end)) {
      return reader.Error(
          line, dsn.path,
          absl::StrCat("has a password written with YAML escapes or over several lines, where it "
                       "cannot be removed from the plan text stored with the job; write the "
                       "connection string on one line, or ",
                       kUsePassFile));
    }
    places.push_back({.offset = start + secret.offset, .length = secret.length});
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> RedactPlanText(std::string_view text, const YAML::Node& root,
                                           const Reader& reader) {
  std::vector<pg::SecretSpan> places;
  for (const DsnValue& dsn : DsnValues(root)) {
    if (dsn.node.IsScalar()) RETURN_IF_ERROR(AddSecretPlaces(text, dsn, reader, places));
  }
  std::sort(places.begin(), places.end(),
            [](const pg::SecretSpan& a, const pg::SecretSpan& b) { return a.offset < b.offset; });
  std::string out;
  out.reserve(text.size());
  size_t done = 0;
  for (const pg::SecretSpan& place : places) {
    if (place.offset < done) continue;  // no two values share bytes; kept safe all the same
    out.append(text.substr(done, place.offset - done));
    out.append(pg::kRedacted);
    done = place.offset + place.length;
  }
  out.append(text.substr(done));
  return out;
}

}  // namespace pgbackfill::plan::internal
