// Micro-benchmarks of event output: how the engine's events (events/events.h) become what the CLI
// prints, through the public sinks of cli/output.h, written to a std::ostringstream. `progress` is
// emitted every second; `retry` / `throttle` / `range_done` whenever they happen; `run --json`
// prints each as one line.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <sstream>
#include <string>

#include "pgbackfill/cli/output.h"
#include "pgbackfill/events/events.h"

namespace pgbackfill {
namespace {

// A `progress` event with the fields the runner fills (README "Output").
events::Event Progress(int64_t rows_done) {
  events::Progress event;
  event.job = "users-split-name";
  event.rows_done = rows_done;
  event.estimated_rows = 48'000'000;
  event.percent = 100.0 * static_cast<double>(rows_done) / 48e6;
  event.rows_per_second = 61'234;
  event.eta_seconds = 512;
  event.workers = 4;
  event.batch_rows = 7'500;
  event.ranges_done = 17;
  event.ranges_total = 96;
  event.retries = 3;
  return event;
}

events::Event Retry() {
  return events::Retry{.worker = 2,
                       .range = 41,
                       .sqlstate = "55P03",
                       .error = "canceling statement due to lock timeout",
                       .wait_ms = 180,
                       .batch_rows = 3'750};
}

events::Event Throttle() {
  events::Throttle event;
  event.state = "held";
  event.reason = "replica standby-b replay lag 7.2s > 5.0s; 3 lock waiters > 0";
  return event;
}

// Keeps the stream from growing for the whole run; the reset is outside the measured work only
// once per ~1 MB.
void Drain(std::ostringstream& out) {
  if (out.tellp() > (1 << 20)) out.str(std::string());
}

void EmitEach(benchmark::State& state, events::EventSink& sink, std::ostringstream& out,
              const events::Event& event) {
  for (auto _ : state) {
    sink.Emit(event);
    Drain(out);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel("items = events");
}

void BM_JsonLinesProgress(benchmark::State& state) {
  std::ostringstream out;
  std::unique_ptr<events::EventSink> sink = cli::MakeJsonLinesSink(out);
  EmitEach(state, *sink, out, Progress(12'345'678));
}
BENCHMARK(BM_JsonLinesProgress);

// What the runner pays per progress event: building it, then its line (with the time stamp).
void BM_JsonLinesProgressBuildAndEmit(benchmark::State& state) {
  std::ostringstream out;
  std::unique_ptr<events::EventSink> sink = cli::MakeJsonLinesSink(out);
  int64_t rows = 0;
  for (auto _ : state) {
    rows += 7'500;
    sink->Emit(Progress(rows));
    Drain(out);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel("items = events");
}
BENCHMARK(BM_JsonLinesProgressBuildAndEmit);

void BM_JsonLinesRetry(benchmark::State& state) {
  std::ostringstream out;
  std::unique_ptr<events::EventSink> sink = cli::MakeJsonLinesSink(out);
  EmitEach(state, *sink, out, Retry());
}
BENCHMARK(BM_JsonLinesRetry);

void BM_JsonLinesThrottle(benchmark::State& state) {
  std::ostringstream out;
  std::unique_ptr<events::EventSink> sink = cli::MakeJsonLinesSink(out);
  EmitEach(state, *sink, out, Throttle());
}
BENCHMARK(BM_JsonLinesThrottle);

// The terminal renderer redraws its progress line for every progress event.
void BM_TerminalProgressLine(benchmark::State& state) {
  std::ostringstream out;
  std::unique_ptr<events::EventSink> sink = cli::MakeHumanSink(out, /*terminal=*/true);
  EmitEach(state, *sink, out, Progress(12'345'678));
}
BENCHMARK(BM_TerminalProgressLine);

// Log lines (not a terminal): a retry is described in words, with its time stamp.
void BM_LogLineRetry(benchmark::State& state) {
  std::ostringstream out;
  std::unique_ptr<events::EventSink> sink = cli::MakeHumanSink(out, /*terminal=*/false);
  EmitEach(state, *sink, out, Retry());
}
BENCHMARK(BM_LogLineRetry);

}  // namespace
}  // namespace pgbackfill
