#include <algorithm>
#include <optional>
#include <ostream>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "pgbackfill/checkpoint/job_store.h"
#include "pgbackfill/cli/cli.h"
#include "pgbackfill/cli/output.h"
#include "pgbackfill/cli/run_command.h"
#include "pgbackfill/exec/runner.h"
#include "pgbackfill/pg/connection.h"
#include "pgbackfill/pg/lsn.h"
#include "pgbackfill/util/status.h"

namespace pgbackfill::cli {
namespace {

using nlohmann::json;

json Nullable(const std::string& text) { return text.empty() ? json() : json(text); }

// jobs.throttle_state as stored; null when absent (an older store, a job not running) or
// unreadable.
json ThrottleStateJson(const std::string& text) {
  if (text.empty()) return nullptr;
  json object = json::parse(text, nullptr, false);
  if (!events::ThrottleStateFromJson(object).has_value()) return nullptr;
  return object;
}

std::string ThrottleLine(const json& throttle) {
  const std::optional<events::ThrottleState> state = events::ThrottleStateFromJson(throttle);
  return state.has_value() ? ThrottleText(*state) : "";
}

json KeyJson(const std::optional<ranges::KeyValue>& key) {
  if (!key.has_value()) return nullptr;
  return *key;
}

json RunnersJson(const std::vector<checkpoint::RunnerRecord>& runners) {
  json list = json::array();
  for (const checkpoint::RunnerRecord& runner : runners) {
    list.push_back({{"id", runner.id},
                    {"kind", runner.kind},
                    {"host", Nullable(runner.host)},
                    {"pid", runner.pid == 0 ? json() : json(runner.pid)},
                    {"started_at", runner.started_at},
                    {"heartbeat_at", runner.heartbeat_at},
                    {"lease_until", runner.lease_until},
                    {"live", runner.live}});
  }
  return list;
}

json JobJson(const checkpoint::JobRecord& job, const std::vector<checkpoint::RangeRecord>& ranges,
             const std::vector<checkpoint::RunnerRecord>& runners, bool with_ranges) {
  int ranges_done = 0;
  int64_t rows_done = 0;
  for (const checkpoint::RangeRecord& range : ranges) {
    ranges_done += range.state == "done" ? 1 : 0;
    rows_done += range.rows_done;
  }
  const int64_t estimated = std::max(job.estimated_rows, rows_done);
  json out = {
      {"name", job.name},
      {"state", job.state},
      {"phase", job.phase},
      // From the ranges, not the job row: batches update ranges in the same transaction as the
      // data, so this total is exact even while the job runs or after a crash.
      {"rows_done", rows_done},
      {"estimated_rows", job.estimated_rows},
      {"percent", estimated > 0
                      ? 100.0 * static_cast<double>(rows_done) / static_cast<double>(estimated)
                      : (job.state == "done" ? 100.0 : 0.0)},
      {"ranges_total", ranges.size()},
      {"ranges_done", ranges_done},
      {"retries", job.retries},
      {"errors", job.errors},
      {"last_error", Nullable(job.last_error)},
      {"throttle_reason", Nullable(job.throttle_reason)},
      // What the throttle last decided (pace, active workers, the application signals), while
      // the job runs: the row keeps the last state after that.
      {"throttle", job.state == "running" ? ThrottleStateJson(job.throttle_state) : json()},
      {"pid", job.pid == 0 ? json() : json(job.pid)},
      {"host", Nullable(job.host)},
      {"plan_hash", job.plan_hash},
      {"plan_file", Nullable(job.plan_file)},
      {"created_at", Nullable(job.created_at)},
      {"started_at", Nullable(job.started_at)},
      {"updated_at", Nullable(job.updated_at)},
      {"finished_at", Nullable(job.finished_at)},
      // Live control (`pgbackfill pause/resume/abort/set`): what operators asked, and who last.
      {"control", job.control},
      {"control_by", Nullable(job.control_by)},
      {"control_at", Nullable(job.control_at)},
      {"settings", job.settings},
      // The processes working on the job (`pgbackfill run` on any host, or a phase), live or
      // with an expired lease (killed, or cut off), and the ranges each owns.
      {"runners", RunnersJson(runners)},
  };
  if (with_ranges) {
    json list = json::array();
    for (const checkpoint::RangeRecord& range : ranges) {
      list.push_back({{"id", range.id},
                      {"lower", KeyJson(range.lower)},
                      {"upper", KeyJson(range.upper)},
                      {"done_upto", KeyJson(range.done_upto)},
                      {"rows_done", range.rows_done},
                      {"state", range.state},
                      {"owner", Nullable(range.owner)}});
    }
    out["ranges"] = list;
  }
  return out;
}

void PrintJob(const json& job, std::ostream& out) {
  out << absl::StrFormat("%-24s %-11s %6.1f%%  %d/%d rows  %d/%d ranges  retries %d",
                         job["name"].get<std::string>(), job["state"].get<std::string>(),
                         job["percent"].get<double>(), job["rows_done"].get<int64_t>(),
                         job["estimated_rows"].get<int64_t>(), job["ranges_done"].get<int>(),
                         job["ranges_total"].get<int>(), job["retries"].get<int64_t>());
  if (job["throttle_reason"].is_string()) {
    out << "  held: " << job["throttle_reason"].get<std::string>();
  }
  out << "\n";
  if (const std::string throttle = ThrottleLine(job["throttle"]); !throttle.empty()) {
    out << "  throttle: " << throttle << "\n";
  }
  for (const json& runner : job["runners"]) {
    const std::string id = runner["id"].get<std::string>();
    std::string owned;
    for (const json& range : job.value("ranges", json::array())) {
      if (range["owner"] != id || range["state"] == "done") continue;
      absl::StrAppend(&owned, owned.empty() ? "" : ",", range["id"].get<int>());
    }
    out << absl::StrFormat(
        "  runner %s (%s, pid %s on %s): heartbeat %s, lease until %s%s%s\n", id,
        runner["kind"].get<std::string>(), runner["pid"].is_null() ? "?" : runner["pid"].dump(),
        runner["host"].is_null() ? "?" : runner["host"].get<std::string>(),
        runner["heartbeat_at"].get<std::string>(), runner["lease_until"].get<std::string>(),
        runner["live"].get<bool>() ? "" : " (expired)", owned.empty() ? "" : ", ranges " + owned);
  }
  if (job["last_error"].is_string()) out << "  last error: " << job["last_error"].get<std::string>() << "\n";
  const std::string control = job["control"].get<std::string>();
  if (control != "run") out << "  control: " << control << "\n";
  if (!job["settings"].empty()) {
    std::string settings;
    for (const auto& [key, value] : job["settings"].items()) {
      absl::StrAppend(&settings, settings.empty() ? "" : ", ", key, "=",
                      value.is_string() ? value.get<std::string>() : value.dump());
    }
    out << "  settings: " << settings << "\n";
  }
  // One requester for control and settings alike: the store keeps only the last request.
  if (job["control_by"].is_string()) {
    out << "  last request: by " << job["control_by"].get<std::string>();
    if (job["control_at"].is_string()) out << " at " << job["control_at"].get<std::string>();
    out << "\n";
  }
}

// A move that follows its source: its slot (which holds WAL on the source until the job cuts
// over or is rolled back, also when no process runs it) and how far the target has applied.
absl::Status AddFollow(checkpoint::JobStore& store, const checkpoint::JobRecord& job, json& entry) {
  entry["follow"] = json();
  ASSIGN_OR_RETURN(int version, store.Version());
  if (version < 6) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::optional<checkpoint::FollowRecord> follow, store.LoadFollow(job.name));
  if (!follow.has_value()) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::set<std::string> steps, store.StepsDone(job.name));
  const bool cut_over = steps.contains("follow:cutover");
  entry["follow"] = {{"slot", follow->slot},
                     {"publication", follow->publication},
                     {"start_lsn", pg::FormatLsn(follow->start_lsn)},
                     {"applied_lsn", pg::FormatLsn(follow->applied_lsn)},
                     {"changes", follow->changes},
                     {"cut_over", cut_over},
                     {"slot_left", !cut_over && job.state != "rolled_back"}};
  // The copy is done while the job follows: say what it does.
  if (!cut_over && job.state == "done") entry["state"] = "following";
  return absl::OkStatus();
}

void PrintFollow(const json& job, std::ostream& out) {
  const json& follow = job["follow"];
  if (!follow.is_object()) return;
  out << absl::StrFormat("  follow: slot %s, applied %s, %d change(s)%s\n",
                         follow["slot"].get<std::string>(),
                         follow["applied_lsn"].get<std::string>(), follow["changes"].get<int64_t>(),
                         follow["cut_over"].get<bool>()
                             ? "; cut over, slot dropped"
                             : "; the slot holds WAL on the source until `pgbackfill cutover` or "
                               "rollback");
}

}  // namespace

int RunStatus(const StatusOptions& options, std::ostream& out, std::ostream& err) {
  auto conn = pg::Connection::Connect(options.dsn);
  if (!conn.ok()) {
    err << "pgbackfill: " << conn.status().message() << "\n";
    return kExitError;
  }
  checkpoint::JobStore store(*conn);
  auto exists = store.Exists();
  if (!exists.ok()) {
    err << "pgbackfill: " << exists.status().message() << "\n";
    return kExitError;
  }
  std::vector<checkpoint::JobRecord> jobs;
  if (*exists) {
    if (options.job.empty()) {
      auto listed = store.ListJobs();
      if (!listed.ok()) {
        err << "pgbackfill: " << listed.status().message() << "\n";
        return kExitError;
      }
      jobs = std::move(listed).value();
    } else {
      auto job = store.LoadJob(options.job);
      if (!job.ok()) {
        err << "pgbackfill: " << job.status().message() << "\n";
        return kExitError;
      }
      if (job->has_value()) jobs.push_back(**job);
    }
  }
  if (!options.job.empty() && jobs.empty()) {
    err << "pgbackfill: no job named " << options.job << " in this database\n";
    return kExitBadInput;
  }
  json list = json::array();
  for (const checkpoint::JobRecord& job : jobs) {
    auto ranges = store.LoadRanges(job.name);
    if (!ranges.ok()) {
      err << "pgbackfill: " << ranges.status().message() << "\n";
      return kExitError;
    }
    auto runners = store.ListRunners(job.name);
    if (!runners.ok()) {
      err << "pgbackfill: " << runners.status().message() << "\n";
      return kExitError;
    }
    // A killed runner of this host is dead before its lease says so.
    for (checkpoint::RunnerRecord& runner : *runners) {
      if (runner.live && exec::RunnerProcessGone(runner)) runner.live = false;
    }
    json entry = JobJson(job, *ranges, *runners, !options.job.empty());
    if (absl::Status followed = AddFollow(store, job, entry); !followed.ok()) {
      err << "pgbackfill: " << followed.message() << "\n";
      return kExitError;
    }
    // A process killed with -9 cannot record its end; its lease expires. (Any kind: the follow
    // phase keeps a job running too.)
    const bool running =
        std::any_of(runners->begin(), runners->end(),
                    [](const checkpoint::RunnerRecord& runner) { return runner.live; });
    if (job.state == "running" && !running) entry["state"] = "interrupted";
    list.push_back(std::move(entry));
  }
  if (options.json) {
    out << json{{"jobs", list}}.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  } else if (list.empty()) {
    out << "no pgbackfill jobs in this database\n";
  } else {
    for (const json& job : list) {
      PrintJob(job, out);
      PrintFollow(job, out);
    }
  }
  return kExitOk;
}

}  // namespace pgbackfill::cli
