// Renderers of the engine's events (events/events.h): JSON Lines for machines, an updating progress
// line for a terminal, plain log lines for files and CI logs.
#pragma once

#include <iosfwd>
#include <memory>
#include <string>

#include "pgbackfill/events/events.h"

namespace pgbackfill::cli {

// One JSON object per line, flushed per event, so a caller can stream it.
std::unique_ptr<events::EventSink> MakeJsonLinesSink(std::ostream& out);

// `terminal`: redraws one progress line in place (\r) and prints other events above it;
// otherwise one line per event, progress at most every 10 s.
std::unique_ptr<events::EventSink> MakeHumanSink(std::ostream& out, bool terminal);

// The throttle's pace and application signals for people: "pace 1,200 rows/s  statement_latency
// 1.2/2.0ms (base 0.8)"; empty when there is neither. Progress lines and `status` use it.
std::string ThrottleText(const events::ThrottleState& state);

}  // namespace pgbackfill::cli
