// Reading the JSON Lines that `pgbackfill run --json` prints (README "Output") back into the
// engine's typed events (events/events.h), through the same decoder the JSON came from.
#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "pgbackfill/events/events.h"

namespace pgbackfill::testing {

// Every line of `out` as an event; a line that is not JSON, or not an event, fails the calling
// test (ADD_FAILURE) and is skipped.
std::vector<events::Event> ReadEvents(const std::string& out);

// Every event of kind T, in order.
template <typename T>
std::vector<T> EventsOf(const std::vector<events::Event>& all) {
  std::vector<T> found;
  for (const events::Event& event : all) {
    if (const T* typed = std::get_if<T>(&event)) found.push_back(*typed);
  }
  return found;
}

// The first event of kind T, nullopt when there is none.
template <typename T>
std::optional<T> FirstEvent(const std::vector<events::Event>& all) {
  for (const events::Event& event : all) {
    if (const T* typed = std::get_if<T>(&event)) return *typed;
  }
  return std::nullopt;
}

// `event` as its JSON line without "time", for failure messages.
std::string EventText(const events::Event& event);

}  // namespace pgbackfill::testing
