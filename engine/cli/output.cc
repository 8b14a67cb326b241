#include "pgbackfill/cli/output.h"

#include <cmath>
#include <ostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace pgbackfill::cli {
namespace {

using nlohmann::json;

class JsonLinesSink : public exec::EventSink {
 public:
  explicit JsonLinesSink(std::ostream& out) : out_(out) {}
  // Server text (error messages, key values) need not be UTF-8 in every database encoding; a
  // replacement character beats an exception in the middle of a run.
  void Emit(const json& event) override {
    out_ << event.dump(-1, ' ', false, json::error_handler_t::replace) << std::endl;
  }

 private:
  std::ostream& out_;
};

std::string Count(int64_t n) {
  if (n >= 10'000'000) return absl::StrFormat("%.1fM", static_cast<double>(n) / 1e6);
  if (n >= 10'000) return absl::StrFormat("%.1fk", static_cast<double>(n) / 1e3);
  return std::to_string(n);
}

std::string Eta(const json& seconds) {
  if (!seconds.is_number()) return "--";
  const int64_t s = seconds.get<int64_t>();
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

std::string ProgressLine(const json& e) {
  std::string line = absl::StrFormat(
      "%s/%s rows (%.1f%%)  %s rows/s  ETA %s  workers %d  batch %s  ranges %d/%d",
      Count(e.value("rows_done", int64_t{0})), Count(e.value("estimated_rows", int64_t{0})),
      e.value("percent", 0.0), Count(e.value("rows_per_second", int64_t{0})),
      Eta(e.value("eta_seconds", json())), e.value("workers", 0),
      Count(e.value("batch_rows", int64_t{0})), e.value("ranges_done", 0),
      e.value("ranges_total", 0));
  if (e.value("retries", int64_t{0}) > 0) {
    line += absl::StrFormat("  retries %d", e.value("retries", int64_t{0}));
  }
  if (e.contains("throttle") && e["throttle"].is_string()) {
    line += "  held: " + e["throttle"].get<std::string>();
  }
  return line;
}

std::string Describe(const json& e) {
  const std::string type = e.value("event", "");
  if (type == "job_started") {
    return absl::StrFormat("job %s on %s, key %s: ~%d rows in %d ranges (%d to do), %d workers%s",
                           e.value("job", ""), e.value("table", ""), e.value("key", ""),
                           e.value("estimated_rows", int64_t{0}), e.value("ranges_total", 0),
                           e.value("ranges_pending", 0), e.value("workers", 0),
                           e.value("resumed", false)
                               ? absl::StrFormat(", resuming after %d rows",
                                                 e.value("rows_done_before", int64_t{0}))
                               : "");
  }
  if (type == "retry" || type == "reconnect") {
    return absl::StrFormat("%s: worker %d range %d, SQLSTATE %s: %s", type, e.value("worker", 0),
                           e.value("range", 0), e.value("sqlstate", ""), e.value("error", ""));
  }
  if (type == "reconnected") return absl::StrFormat("worker %d reconnected", e.value("worker", 0));
  if (type == "range_done") {
    return absl::StrFormat("range %d done (%d rows)", e.value("range", 0),
                           e.value("rows", int64_t{0}));
  }
  if (type == "signal") {
    return absl::StrFormat("%s: %s", e.value("signal", ""), e.value("action", ""));
  }
  if (type == "phase_started") {
    return absl::StrFormat("%s of job %s", e.value("phase", ""), e.value("job", ""));
  }
  if (type == "phase_done") {
    return absl::StrFormat("%s %s: %s", e.value("phase", ""),
                           e.value("skipped", false) ? "skipped" : "done", e.value("message", ""));
  }
  if (type == "ddl") return absl::StrFormat("%s: %s", e.value("step", ""), e.value("sql", ""));
  if (type == "ddl_retry") {
    return absl::StrFormat("%s: attempt %d waited for a lock (SQLSTATE %s), retrying in %dms",
                           e.value("step", ""), e.value("attempt", 0), e.value("sqlstate", ""),
                           e.value("wait_ms", int64_t{0}));
  }
  if (type == "verify" && e.contains("differing_ranges")) {
    return absl::StrFormat("verify: %d of %d range(s) differ between source and target%s",
                           e.value("differing_ranges", int64_t{0}), e.value("ranges_checked", 0),
                           e.value("repaired_ranges", 0) > 0
                               ? absl::StrCat(", ", e.value("repaired_ranges", 0), " copied again")
                               : "");
  }
  if (type == "snapshot") {
    return absl::StrFormat("source snapshot %s exported (the source sessions read it)",
                           e.value("id", ""));
  }
  if (type == "verify") {
    return absl::StrFormat("verify: %d differing row(s) in %d range(s) checked%s",
                           e.value("differing_rows", int64_t{0}), e.value("ranges_checked", 0),
                           e.value("differing_rows", int64_t{0}) > 0
                               ? "; first keys: " + e["first_keys"].dump()
                               : "");
  }
  if (type == "throttle") {
    return e.value("state", "") == "held" ? "held: " + e.value("reason", "") : "running again";
  }
  if (type == "concurrency") {
    const json& pace = e.contains("pace_rows_per_second") ? e["pace_rows_per_second"] : json();
    return absl::StrFormat("active workers %d of %d%s", e.value("active_workers", 0),
                           e.value("max_workers", 0),
                           pace.is_number() ? absl::StrCat(", paced at ", pace.get<int64_t>(),
                                                           " rows/s")
                                            : std::string());
  }
  if (type == "control") {
    return absl::StrFormat("operator: %s (by %s)", e.value("control", ""), e.value("by", ""));
  }
  if (type == "settings") return "settings now: " + e["settings"].dump();
  if (type == "vacuum") {
    return absl::StrFormat("bloat control: VACUUM %s took %.1fs, table now %s",
                           e.value("table", ""), e.value("seconds", 0.0),
                           e.contains("table_bytes")
                               ? absl::StrCat(e.value("table_bytes", int64_t{0}) / (1024 * 1024), " MiB")
                               : "of unknown size");
  }
  if (type == "job_finished" && e.value("phase", "backfill") != "backfill" &&
      e.value("batches", int64_t{0}) == 0) {
    return absl::StrFormat("job %s %s %s%s", e.value("job", ""), e.value("phase", ""),
                           e.value("outcome", ""),
                           e.value("message", "").empty() ? "" : ": " + e.value("message", ""));
  }
  if (type == "job_finished") {
    return absl::StrFormat("job %s %s: %d rows in %.1fs (%d rows/s), %d batches, %d retries%s",
                           e.value("job", ""), e.value("outcome", ""), e.value("rows", int64_t{0}),
                           e.value("seconds", 0.0), e.value("rows_per_second", int64_t{0}),
                           e.value("batches", int64_t{0}), e.value("retries", int64_t{0}),
                           e.value("message", "").empty() ? "" : "\n" + e.value("message", ""));
  }
  if (type == "warning") return "warning: " + e.value("message", "");
  return e.dump(-1, ' ', false, json::error_handler_t::replace);
}

class HumanSink : public exec::EventSink {
 public:
  HumanSink(std::ostream& out, bool terminal) : out_(out), terminal_(terminal) {}
  ~HumanSink() override {
    if (line_shown_) out_ << "\n" << std::flush;
  }

  void Emit(const json& event) override {
    const std::string type = event.value("event", "");
    if (type == "progress") {
      if (terminal_) {
        // \x1b[K clears what a longer previous line left behind.
        out_ << "\r" << ProgressLine(event) << "\x1b[K" << std::flush;
        line_shown_ = true;
      } else if (absl::Now() - last_logged_ >= absl::Seconds(10)) {
        out_ << event.value("time", "") << " " << ProgressLine(event) << "\n" << std::flush;
        last_logged_ = absl::Now();
      }
      return;
    }
    if (terminal_ && line_shown_) {
      out_ << "\r\x1b[K";
      line_shown_ = false;
    }
    if (terminal_) {
      out_ << Describe(event) << "\n" << std::flush;
    } else {
      out_ << event.value("time", "") << " " << Describe(event) << "\n" << std::flush;
    }
  }

 private:
  std::ostream& out_;
  bool terminal_;
  bool line_shown_ = false;
  absl::Time last_logged_ = absl::InfinitePast();
};

}  // namespace

std::unique_ptr<exec::EventSink> MakeJsonLinesSink(std::ostream& out) {
  return std::make_unique<JsonLinesSink>(out);
}

std::unique_ptr<exec::EventSink> MakeHumanSink(std::ostream& out, bool terminal) {
  return std::make_unique<HumanSink>(out, terminal);
}

}  // namespace pgbackfill::cli
