// Renderers of the engine's events (events/events.h): JSON Lines for machines, an updating progress
// line for a terminal, plain log lines for files and CI logs.
#pragma once

#include <iosfwd>
#include <memory>

#include "pgbackfill/events/events.h"

namespace pgbackfill::cli {

// One JSON object per line, flushed per event, so a caller can stream it.
std::unique_ptr<events::EventSink> MakeJsonLinesSink(std::ostream& out);

// `terminal`: redraws one progress line in place (\r) and prints other events above it;
// otherwise one line per event, progress at most every 10 s.
std::unique_ptr<events::EventSink> MakeHumanSink(std::ostream& out, bool terminal);

}  // namespace pgbackfill::cli
