#include "pgbackfill/cli/output.h"

#include <algorithm>
#include <ostream>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

namespace pgbackfill::cli {
namespace {

using nlohmann::json;

class JsonLinesSink : public events::EventSink {
 public:
  explicit JsonLinesSink(std::ostream& out) : out_(out) {}
  // Server text (error messages, key values) need not be UTF-8 in every database encoding; a
  // replacement character beats an exception in the middle of a run.
  void Emit(const events::Event& event) override {
    if (std::holds_alternative<events::Batch>(event)) return;  // progress carries the totals
    out_ << events::ToJson(event, events::NowText())
                .dump(-1, ' ', false, json::error_handler_t::replace)
         << std::endl;
  }

 private:
  std::ostream& out_;
};

std::string Count(int64_t n) {
  if (n >= 10'000'000) return absl::StrFormat("%.1fM", static_cast<double>(n) / 1e6);
  if (n >= 10'000) return absl::StrFormat("%.1fk", static_cast<double>(n) / 1e3);
  return std::to_string(n);
}

std::string Eta(const std::optional<int64_t>& seconds) {
  if (!seconds.has_value()) return "--";
  const int64_t s = *seconds;
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

}  // namespace

std::string ThrottleText(const events::ThrottleState& state) {
  std::vector<std::string> parts;
  if (state.pace_rows_per_second.has_value()) {
    parts.push_back(absl::StrFormat("pace %s rows/s", Count(*state.pace_rows_per_second)));
  }
  // What the application feels against its budget: reading/limit (baseline). Latencies in ms.
  for (const events::ThrottleSignal& signal : state.signals) {
    if (signal.name == "cpu_pressure") {
      std::string part =
          absl::StrFormat("%s %.1f/%.1f%%", signal.name, signal.value * 100, signal.limit * 100);
      if (signal.baseline.has_value()) {
        absl::StrAppendFormat(&part, " (base %.1f)", *signal.baseline * 100);
      }
      parts.push_back(std::move(part));
      continue;
    }
    const bool count = signal.name == "active_sessions" || signal.name == "command";
    const double scale = count ? 1 : 1000;
    // Statement means and tails of an OLTP application are tens of microseconds.
    const int digits = count ? 2 : (signal.limit < 0.001 ? 3 : 1);
    std::string part = absl::StrFormat("%s %.*f/%.*f%s", signal.name, digits, signal.value * scale,
                                       digits, signal.limit * scale, count ? "" : "ms");
    if (signal.baseline.has_value()) {
      absl::StrAppendFormat(&part, " (base %.*f)", digits, *signal.baseline * scale);
    }
    parts.push_back(std::move(part));
  }
  return absl::StrJoin(parts, "  ");
}

namespace {

std::string ProgressLine(const events::Progress& e) {
  std::string line = absl::StrFormat(
      "%s/%s rows (%.1f%%)  %s rows/s  ETA %s  workers %d  batch %s  ranges %d/%d",
      Count(e.rows_done), Count(e.estimated_rows), e.percent, Count(e.rows_per_second),
      Eta(e.eta_seconds), e.workers, Count(e.batch_rows), e.ranges_done, e.ranges_total);
  if (e.retries > 0) line += absl::StrFormat("  retries %d", e.retries);
  // The line must fit a terminal: the pace and the signal nearest its limit (status shows all).
  events::ThrottleState state{
      .active_workers = e.workers, .pace_rows_per_second = e.pace_rows_per_second, .signals = {}};
  const auto worst = std::max_element(
      e.signals.begin(), e.signals.end(),
      [](const events::ThrottleSignal& a, const events::ThrottleSignal& b) {
        return a.value * b.limit < b.value * a.limit;  // a's ratio < b's; limits are positive
      });
  if (worst != e.signals.end()) state.signals.push_back(*worst);
  const std::string throttle = ThrottleText(state);
  if (!throttle.empty()) line += "  " + throttle;
  if (e.throttle.has_value()) line += "  held: " + *e.throttle;
  return line;
}

// One line per event kind, for people.
std::string Describe(const events::JobStarted& e) {
  return absl::StrFormat("job %s on %s, key %s: ~%d rows in %d ranges (%d to do), %d workers%s",
                         e.job, e.table, e.key, e.estimated_rows, e.ranges_total, e.ranges_pending,
                         e.workers,
                         e.resumed ? absl::StrFormat(", resuming after %d rows", e.rows_done_before)
                                   : "");
}
std::string Describe(const events::Progress& e) { return ProgressLine(e); }
std::string Describe(const events::Retry& e) {
  return absl::StrFormat("retry: worker %d range %d, SQLSTATE %s: %s", e.worker, e.range,
                         e.sqlstate, e.error);
}
std::string Describe(const events::Reconnect& e) {
  return absl::StrFormat("reconnect: worker %d range %d, SQLSTATE %s: %s", e.worker, e.range,
                         e.sqlstate, e.error);
}
std::string Describe(const events::Reconnected& e) {
  return absl::StrFormat("worker %d reconnected", e.worker);
}
std::string Describe(const events::Batch& e) {
  return absl::StrFormat("batch: worker %d range %d, %d rows in %.3fs", e.worker, e.range, e.rows,
                         e.seconds);
}
std::string Describe(const events::RangeDone& e) {
  return absl::StrFormat("range %d done (%d rows)", e.range, e.rows);
}
std::string Describe(const events::RangeSplit& e) {
  return absl::StrFormat("range %d split at %s: worker %d takes range %d (~%d rows)", e.range, e.at,
                         e.worker, e.new_range, e.estimated_rows);
}
std::string Describe(const events::Signal& e) {
  return absl::StrFormat("%s: %s", e.signal, e.action);
}
std::string Describe(const events::PhaseStarted& e) {
  return absl::StrFormat("%s of job %s", e.phase, e.job);
}
std::string Describe(const events::PhaseDone& e) {
  return absl::StrFormat("%s %s: %s", e.phase, e.skipped ? "skipped" : "done", e.message);
}
std::string Describe(const events::Ddl& e) { return absl::StrFormat("%s: %s", e.step, e.sql); }
std::string Describe(const events::DdlRetry& e) {
  return absl::StrFormat("%s: attempt %d waited for a lock (SQLSTATE %s), retrying in %dms",
                         e.step, e.attempt, e.sqlstate, e.wait_ms);
}
std::string Describe(const events::MoveVerified& e) {
  return absl::StrFormat(
      "verify: %d of %d range(s) differ between source and target%s", e.differing_ranges,
      e.ranges_checked,
      e.repaired_ranges > 0 ? absl::StrCat(", ", e.repaired_ranges, " copied again") : "");
}
std::string Describe(const events::Following& e) {
  return absl::StrFormat(
      "following: applied %s, %d change(s); lag %d bytes, %.1f s; spool %d record(s)",
      e.applied_lsn, e.changes, e.lag_bytes, e.lag_seconds, e.spool_records);
}
std::string Describe(const events::CutOver& e) {
  return absl::StrFormat(
      "cut over at %s: source writes waited %d ms, and are refused from now on%s", e.applied_lsn,
      e.write_block_ms,
      e.sequences.empty() ? "" : "; sequences set: " + absl::StrJoin(e.sequences, ", "));
}
std::string Describe(const events::Snapshot& e) {
  return absl::StrFormat("source snapshot %s exported (the source sessions read it)", e.id);
}
std::string Describe(const events::Verified& e) {
  return absl::StrFormat("verify: %d differing row(s) in %d range(s) checked%s", e.differing_rows,
                         e.ranges_checked,
                         e.differing_rows > 0 ? "; first keys: " + json(e.first_keys).dump() : "");
}
std::string Describe(const events::Throttle& e) {
  return e.state == "held" ? "held: " + e.reason.value_or("") : "running again";
}
std::string Describe(const events::Concurrency& e) {
  return absl::StrFormat(
      "active workers %d of %d%s", e.active_workers, e.max_workers,
      e.pace_rows_per_second.has_value()
          ? absl::StrCat(", paced at ", *e.pace_rows_per_second, " rows/s")
          : std::string());
}
std::string Describe(const events::Control& e) {
  return absl::StrFormat("operator: %s (by %s)", e.control, e.by);
}
std::string Describe(const events::Settings& e) {
  return "settings now: " + json(e.settings).dump();
}
std::string Describe(const events::Vacuum& e) {
  return absl::StrFormat(
      "bloat control: VACUUM %s took %.1fs, table now %s", e.table, e.seconds,
      e.table_bytes.has_value() ? absl::StrCat(*e.table_bytes / (1024 * 1024), " MiB")
                                : "of unknown size");
}
std::string Describe(const events::JobFinished& e) {
  if (e.phase != "backfill" && e.batches == 0) {
    return absl::StrFormat("job %s %s %s%s", e.job, e.phase, e.outcome,
                           e.message.empty() ? "" : ": " + e.message);
  }
  return absl::StrFormat("job %s %s: %d rows in %.1fs (%d rows/s), %d batches, %d retries%s",
                         e.job, e.outcome, e.rows, e.seconds, e.rows_per_second, e.batches,
                         e.retries, e.message.empty() ? "" : "\n" + e.message);
}
std::string Describe(const events::Warning& e) { return "warning: " + e.message; }
std::string Describe(const events::BenchFinished& e) {
  return absl::StrFormat("bench of %s %s: %d rows/s", e.table, e.outcome, e.rows_per_second);
}

class HumanSink : public events::EventSink {
 public:
  HumanSink(std::ostream& out, bool terminal) : out_(out), terminal_(terminal) {}
  ~HumanSink() override {
    if (line_shown_) out_ << "\n" << std::flush;
  }

  void Emit(const events::Event& event) override {
    if (const auto* progress = std::get_if<events::Progress>(&event)) {
      if (terminal_) {
        // \x1b[K clears what a longer previous line left behind.
        out_ << "\r" << ProgressLine(*progress) << "\x1b[K" << std::flush;
        line_shown_ = true;
      } else if (absl::Now() - last_logged_ >= absl::Seconds(10)) {
        out_ << events::NowText() << " " << ProgressLine(*progress) << "\n" << std::flush;
        last_logged_ = absl::Now();
      }
      return;
    }
    if (std::holds_alternative<events::Batch>(event)) return;  // the progress line counts them
    if (terminal_ && line_shown_) {
      out_ << "\r\x1b[K";
      line_shown_ = false;
    }
    const std::string line = std::visit([](const auto& e) { return Describe(e); }, event);
    if (terminal_) {
      out_ << line << "\n" << std::flush;
    } else {
      out_ << events::NowText() << " " << line << "\n" << std::flush;
    }
  }

 private:
  std::ostream& out_;
  bool terminal_;
  bool line_shown_ = false;
  absl::Time last_logged_ = absl::InfinitePast();
};

}  // namespace

std::unique_ptr<events::EventSink> MakeJsonLinesSink(std::ostream& out) {
  return std::make_unique<JsonLinesSink>(out);
}

std::unique_ptr<events::EventSink> MakeHumanSink(std::ostream& out, bool terminal) {
  return std::make_unique<HumanSink>(out, terminal);
}

}  // namespace pgbackfill::cli
