#include "pgbackfill/move/copy_format.h"

#include <algorithm>
#include <array>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "pgbackfill/pg/quote.h"

namespace pgbackfill::move {
namespace {

constexpr std::array<std::string_view, 5> kStrings = {"text", "character varying", "character",
                                                      "bpchar", "name"};
constexpr std::array<std::string_view, 3> kIntegers = {"smallint", "integer", "bigint"};
constexpr std::array<std::string_view, 3> kDecimals = {"numeric", "real", "double precision"};
constexpr std::array<std::string_view, 2> kJson = {"json", "jsonb"};

template <size_t N>
bool In(const std::array<std::string_view, N>& set, const std::string& type) {
  return std::find(set.begin(), set.end(), type) != set.end();
}

// Whether every text the source type prints is valid input for the target type.
bool TextCarries(const std::string& source, const std::string& target) {
  if (In(kStrings, target)) return true;  // a too-long value fails as it would in an INSERT
  if (In(kIntegers, target)) return In(kIntegers, source);  // overflow fails as in an INSERT
  if (In(kDecimals, target)) return In(kIntegers, source) || In(kDecimals, source);
  if (In(kJson, target)) return In(kJson, source);
  if (target == "timestamp without time zone") return source == "date";
  return false;
}

}  // namespace

Carry HowToCarry(const ColumnTypes& types) {
  if (types.source_oid == types.target_oid && types.source_oid != 0 &&
      types.source_oid < kFirstNormalObjectId) {
    return Carry::kBinary;
  }
  // A user-defined type of the same name: its text form is its definition's, on both sides.
  if (types.source_type == types.target_type) return Carry::kText;
  return TextCarries(types.source_type, types.target_type) ? Carry::kText : Carry::kRefused;
}

FormatChoice ChooseFormat(const std::vector<ColumnTypes>& columns) {
  FormatChoice choice;
  for (size_t i = 0; i < columns.size(); ++i) {
    const ColumnTypes& types = columns[i];
    switch (HowToCarry(types)) {
      case Carry::kBinary:
        break;
      case Carry::kText:
        choice.binary = false;
        choice.text_because.push_back(absl::StrCat(
            "column ", pg::QuoteIdent(types.column), ": ", types.source_type, " on the source, ",
            types.target_type, " in the target",
            types.source_type == types.target_type ? " (a user-defined type: by name, as text)"
                                                   : ""));
        break;
      case Carry::kRefused:
        choice.refused.push_back(i);
        break;
    }
  }
  return choice;
}

}  // namespace pgbackfill::move
