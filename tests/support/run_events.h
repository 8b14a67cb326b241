// Reading the JSON Lines that `pgbackfill run --json` prints (README "JSON events").
#pragma once

#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace pgbackfill::testing {

// Every JSON line of `out`; a line that does not parse fails the calling test (ADD_FAILURE) and is
// skipped.
std::vector<nlohmann::json> ParseEvents(const std::string& out);

// The first event of `type`, nullptr when there is none.
const nlohmann::json* FindEvent(const std::vector<nlohmann::json>& events, const std::string& type);

// Every event of `type`, in order.
std::vector<nlohmann::json> EventsOfType(const std::vector<nlohmann::json>& events,
                                         const std::string& type);

}  // namespace pgbackfill::testing
