#include "support/run_events.h"

#include <gtest/gtest.h>

#include <utility>

#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace pgbackfill::testing {

using nlohmann::json;

std::vector<events::Event> ReadEvents(const std::string& out) {
  std::vector<events::Event> read;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    const json object = json::parse(line.begin(), line.end(), nullptr, false);
    if (object.is_discarded()) {
      ADD_FAILURE() << "not JSON: " << line;
      continue;
    }
    std::optional<events::Event> event = events::FromJson(object);
    if (!event.has_value()) {
      ADD_FAILURE() << "not an event: " << line;
      continue;
    }
    read.push_back(*std::move(event));
  }
  return read;
}

std::string EventText(const events::Event& event) {
  // The time is the encoder's argument, not part of the event: leave it out rather than print a
  // made-up one.
  json object = events::ToJson(event, "");
  object.erase("time");
  return object.dump();
}

}  // namespace pgbackfill::testing
