#include "support/run_events.h"

#include <gtest/gtest.h>

#include "absl/strings/str_split.h"

namespace pgbackfill::testing {

using nlohmann::json;

std::vector<events::Event> ReadEvents(const std::string& out) {
  std::vector<events::Event> read;
  for (const json& object : ParseEvents(out)) {
    std::optional<events::Event> event = events::FromJson(object);
    if (!event.has_value()) {
      ADD_FAILURE() << "not an event: " << object.dump();
      continue;
    }
    read.push_back(*std::move(event));
  }
  return read;
}

std::vector<json> ParseEvents(const std::string& out) {
  std::vector<json> events;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    json event = json::parse(line.begin(), line.end(), nullptr, false);
    if (event.is_discarded()) {
      ADD_FAILURE() << "not JSON: " << line;
      continue;
    }
    events.push_back(std::move(event));
  }
  return events;
}

const json* FindEvent(const std::vector<json>& events, const std::string& type) {
  for (const json& event : events) {
    if (event.value("event", "") == type) return &event;
  }
  return nullptr;
}

std::vector<json> EventsOfType(const std::vector<json>& events, const std::string& type) {
  std::vector<json> found;
  for (const json& event : events) {
    if (event.value("event", "") == type) found.push_back(event);
  }
  return found;
}

}  // namespace pgbackfill::testing
