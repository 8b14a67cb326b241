#include "pgbackfill/sql/key.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "pgbackfill/pg/quote.h"

namespace pgbackfill::sql {

std::string KeyRow(const std::vector<KeyColumn>& key, const std::string& qualifier) {
  std::vector<std::string> parts;
  for (const KeyColumn& column : key) {
    parts.push_back(absl::StrCat(qualifier, pg::QuoteIdent(column.name)));
  }
  return absl::StrCat("(", absl::StrJoin(parts, ", "), ")");
}

std::string ParamRow(const std::vector<KeyColumn>& key, int first) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < key.size(); ++i) {
    parts.push_back(absl::StrCat("$", first + static_cast<int>(i), "::", key[i].type));
  }
  return absl::StrCat("(", absl::StrJoin(parts, ", "), ")");
}

}  // namespace pgbackfill::sql
