#include "pgbackfill/plan/suggest.h"

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"

namespace pgbackfill::plan {

size_t EditDistance(std::string_view a, std::string_view b) {
  // Three rolling rows: the transposition case looks two rows back.
  std::vector<size_t> before(b.size() + 1), previous(b.size() + 1), current(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) previous[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    current[0] = i;
    const char ai = absl::ascii_tolower(static_cast<unsigned char>(a[i - 1]));
    for (size_t j = 1; j <= b.size(); ++j) {
      const char bj = absl::ascii_tolower(static_cast<unsigned char>(b[j - 1]));
      const size_t substitution = previous[j - 1] + (ai == bj ? 0 : 1);
      current[j] = std::min({previous[j] + 1, current[j - 1] + 1, substitution});
      if (i > 1 && j > 1 && ai == absl::ascii_tolower(static_cast<unsigned char>(b[j - 2])) &&
          absl::ascii_tolower(static_cast<unsigned char>(a[i - 2])) == bj) {
        current[j] = std::min(current[j], before[j - 2] + 1);
      }
    }
    std::swap(before, previous);
    std::swap(previous, current);
  }
  return previous[b.size()];
}

std::optional<std::string_view> Suggest(std::string_view word,
                                        std::span<const std::string_view> candidates) {
  std::optional<std::string_view> best;
  size_t best_distance = 0;
  for (std::string_view candidate : candidates) {
    // A third of the shorter word, at least one edit and at most three: enough for typos
    // ("wokers", "max_replica_lga") without suggesting "set" for "key".
    const size_t limit = std::clamp<size_t>(std::min(word.size(), candidate.size()) / 3, 1, 3);
    const size_t distance = EditDistance(word, candidate);
    if (distance > limit) continue;
    if (!best || distance < best_distance) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

}  // namespace pgbackfill::plan
