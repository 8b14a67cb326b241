// "Did you mean" for misspelled keys and names.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string_view>

namespace pgbackfill::plan {

// Optimal string alignment distance (Levenshtein plus adjacent transpositions, so "tabel" is
// one edit from "table"), ASCII case-insensitive.
size_t EditDistance(std::string_view a, std::string_view b);

// The closest candidate when it is close enough to be a plausible typo of `word`, else nullopt.
// Ties go to the earlier candidate.
std::optional<std::string_view> Suggest(std::string_view word,
                                        std::span<const std::string_view> candidates);

}  // namespace pgbackfill::plan
