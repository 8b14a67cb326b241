// What a running job reports. One event model, rendered three ways by the CLI: JSON Lines
// (--json), an updating progress line on a terminal, plain log lines elsewhere. The schema of
// every event is documented in README.md ("JSON events").
#pragma once

#include "nlohmann/json.hpp"

namespace pgbackfill::exec {

// Receives events on the runner's thread, in order. Implementations must not block for long.
class EventSink {
 public:
  virtual ~EventSink() = default;
  // `event` always has "event" (type) and "time" (RFC 3339 UTC) keys.
  virtual void Emit(const nlohmann::json& event) = 0;
};

}  // namespace pgbackfill::exec
