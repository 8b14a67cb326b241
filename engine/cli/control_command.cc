#include "pgbackfill/cli/control_command.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <map>
#include <ostream>
#include <string_view>
#include <utility>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "pgbackfill/checkpoint/job_store.h"
#include "pgbackfill/cli/cli.h"
#include "pgbackfill/pg/connection.h"
#include "pgbackfill/plan/settings.h"
#include "pgbackfill/util/status.h"
#include "pgbackfill/util/strings.h"

namespace pgbackfill::cli {
namespace {

using nlohmann::json;

// "user@host pid N": who asked, recorded as control_by so `status` on any host can tell.
std::string Requester() {
  std::string user;
  if (const passwd* entry = getpwuid(geteuid()); entry != nullptr) {
    user = entry->pw_name;
  } else if (const char* env = std::getenv("USER"); env != nullptr) {
    user = env;
  } else {
    user = std::to_string(geteuid());
  }
  std::array<char, 256> host{};
  if (gethostname(host.data(), host.size() - 1) != 0) host[0] = '\0';
  return absl::StrFormat("%s@%s pid %d", user, host.data(), getpid());
}

// `set`'s key=value arguments, each checked as the plan file checks that key, all of them before
// anything is written.
absl::StatusOr<std::map<std::string, std::string>> ParseSettings(
    const std::vector<std::string>& args) {
  std::map<std::string, std::string> settings;
  plan::Plan scratch;
  for (const std::string& arg : args) {
    const size_t eq = arg.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "expected key=value, got \"%s\" (e.g. throttle.max_replica_lag=10s)", arg));
    }
    std::string key = arg.substr(0, eq);
    std::string value = arg.substr(eq + 1);
    if (settings.contains(key)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: given twice (%s=%s and %s); give each key once", key, key, settings[key], arg));
    }
    RETURN_IF_ERROR(plan::ApplySetting(scratch, key, value));
    settings.emplace(std::move(key), std::move(value));
  }
  return settings;
}

std::string SettingsText(const std::map<std::string, std::string>& settings) {
  return absl::StrJoin(settings, ", ", absl::PairFormatter("="));
}

// What the action is called in "nothing to ..." and in the output.
std::string_view Verb(std::string_view action) { return action == "set" ? "change" : action; }

std::string NoSuchJob(checkpoint::JobStore& store, const std::string& name,
                      const std::string& database) {
  std::string message = absl::StrFormat("no job named %s in this database (%s)", name, database);
  absl::StatusOr<std::vector<checkpoint::JobRecord>> jobs = store.ListJobs();
  if (!jobs.ok()) return message;
  if (jobs->empty()) return message + "; there are no jobs here";
  std::vector<std::string> names;
  for (const checkpoint::JobRecord& job : *jobs) names.push_back(job.name);
  return absl::StrFormat("%s; jobs here: %s", message, absl::StrJoin(names, ", "));
}

// A crashed run leaves state running; only a live lease says whether a process still has it.
std::string EffectiveState(const checkpoint::JobRecord& job, bool running) {
  return job.state == "running" && !running ? "interrupted" : job.state;
}

class ControlCommand {
 public:
  ControlCommand(const ControlOptions& options, std::ostream& out, std::ostream& err)
      : options_(options), out_(out), err_(err) {}

  int Run() {
    std::map<std::string, std::string> settings;
    if (options_.action == "set") {
      absl::StatusOr<std::map<std::string, std::string>> parsed = ParseSettings(options_.settings);
      if (!parsed.ok()) return Fail(kExitBadInput, parsed.status());
      settings = *std::move(parsed);
    }
    absl::StatusOr<pg::Connection> conn = pg::Connection::Connect(options_.dsn);
    if (!conn.ok()) return Fail(kExitError, conn.status());
    checkpoint::JobStore store(*conn);
    absl::StatusOr<bool> exists = store.Exists();
    if (!exists.ok()) return Fail(kExitError, exists.status());
    if (!*exists) {
      return Fail(kExitBadInput,
                  absl::StrFormat("no pgbackfill job store in this database (%s): no job has "
                                  "run here; check --dsn or the PG* variables",
                                  conn->Database()));
    }
    // A store written by an older pgbackfill gets the control columns; a newer one is refused.
    if (absl::Status schema = store.EnsureSchema(); !schema.ok()) return Fail(kExitError, schema);

    absl::StatusOr<std::optional<checkpoint::JobRecord>> loaded = store.LoadJob(options_.job);
    if (!loaded.ok()) return Fail(kExitError, loaded.status());
    if (!loaded->has_value()) {
      return Fail(kExitBadInput, NoSuchJob(store, options_.job, conn->Database()));
    }
    const checkpoint::JobRecord& job = **loaded;
    // A move that follows its source is "done" copying while it follows: cutover (and abort)
    // are for it then.
    absl::StatusOr<std::optional<checkpoint::FollowRecord>> follow = store.LoadFollow(job.name);
    absl::StatusOr<std::set<std::string>> steps = store.StepsDone(job.name);
    if (!follow.ok()) return Fail(kExitError, follow.status());
    if (!steps.ok()) return Fail(kExitError, steps.status());
    const bool following = follow->has_value() && !steps->contains("follow:cutover");
    if (options_.action == "cutover" && !following) {
      return Fail(kExitBadInput,
                  absl::StrFormat("job %s does not follow its source (plan key follow), or has "
                                  "cut over already; nothing to cut over",
                                  job.name));
    }
    if (job.state == "done" && !following) {
      return Fail(kExitBadInput, absl::StrFormat("job %s is done; nothing to %s", job.name,
                                                 Verb(options_.action)));
    }
    absl::StatusOr<std::vector<checkpoint::RunnerRecord>> runners = store.ListRunners(job.name);
    if (!runners.ok()) return Fail(kExitError, runners.status());
    // Running: some process holds a lease on the job (a killed one's expires).
    running_ = std::any_of(runners->begin(), runners->end(),
                           [](const checkpoint::RunnerRecord& runner) { return runner.live; });
    state_before_ = EffectiveState(job, running_);

    const std::string by = Requester();
    absl::Status done;
    if (options_.action == "pause") {
      done = store.SetControl(job.name, "pause", by);
    } else if (options_.action == "resume") {
      done = store.SetControl(job.name, "run", by);
    } else if (options_.action == "set") {
      done = store.MergeSettings(job.name, settings, by);
    } else if (options_.action == "abort") {
      done = Abort(store, job, by);
    } else if (options_.action == "cutover") {
      done = store.SetControl(job.name, "cutover", by);
    } else {
      return Fail(kExitBadInput, absl::StrFormat("unknown action %s", options_.action));
    }
    if (!done.ok()) {
      // A standing abort refuses a pause or resume: the operator's request, not the server, is
      // what cannot be done.
      return Fail(done.code() == absl::StatusCode::kFailedPrecondition ? kExitBadInput : kExitError,
                  done);
    }

    absl::StatusOr<std::optional<checkpoint::JobRecord>> after = store.LoadJob(job.name);
    if (!after.ok()) return Fail(kExitError, after.status());
    if (!after->has_value()) return Fail(kExitError, absl::StrFormat("job %s vanished", job.name));
    Report(**after, settings, by);
    return kExitOk;
  }

 private:
  int Fail(int code, std::string_view message) {
    err_ << "pgbackfill: " << message << "\n";
    return code;
  }
  int Fail(int code, const absl::Status& status) { return Fail(code, ToStd(status.message())); }

  // A running job is asked to stop; a job nobody runs is marked aborted here and now. A run
  // starting at the same moment keeps the abort (asked after its start, ClearAbort) and stops
  // at its first look at the control row.
  absl::Status Abort(checkpoint::JobStore& store, const checkpoint::JobRecord& job,
                     const std::string& by) {
    if (running_) return store.SetControl(job.name, "abort", by);
    if (job.state == "aborted") {
      already_aborted_ = true;
      return absl::OkStatus();
    }
    RETURN_IF_ERROR(store.SetControl(job.name, "abort", by));
    RETURN_IF_ERROR(store.FinishJob(job.name, "aborted", "aborted by " + by));
    marked_aborted_ = true;
    return absl::OkStatus();
  }

  void Report(const checkpoint::JobRecord& job, const std::map<std::string, std::string>& settings,
              const std::string& by) {
    if (options_.json) {
      json object = {
          {"job", job.name},
          {"action", options_.action},
          {"control", job.control},
          {"settings", job.settings},
          {"state", EffectiveState(job, running_)},
          {"running", running_},
          {"pid", running_ && job.pid != 0 ? json(job.pid) : json()},
          {"host", running_ && !job.host.empty() ? json(job.host) : json()},
          {"requested_by", by},
      };
      out_ << object.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
      return;
    }
    const std::string what = options_.action == "set" ? SettingsText(settings) : options_.action;
    if (already_aborted_) {
      out_ << absl::StrFormat("job %s: already aborted; nothing to do\n", job.name);
    } else if (marked_aborted_) {
      out_ << absl::StrFormat(
          "job %s: aborted by %s; no process was running it (it was %s). Committed work is kept; "
          "`pgbackfill run` starts it again\n",
          job.name, by, state_before_);
    } else if (running_) {
      out_ << absl::StrFormat(
          "job %s: %s requested by %s; the running process (pid %d on host %s) picks it up "
          "within one throttle interval\n",
          job.name, what, by, job.pid, job.host.empty() ? "?" : job.host);
    } else {
      out_ << absl::StrFormat(
          "job %s: %s recorded by %s; no process is running it (it is %s): %s when it next "
          "runs\n",
          job.name, what, by, state_before_,
          options_.action == "pause" ? "it starts paused"
          : options_.action == "set" ? "the new values apply"
                                     : "it proceeds");
    }
  }

  const ControlOptions& options_;
  std::ostream& out_;
  std::ostream& err_;
  bool running_ = false;
  std::string state_before_;
  bool already_aborted_ = false;
  bool marked_aborted_ = false;
};

}  // namespace

int RunControl(const ControlOptions& options, std::ostream& out, std::ostream& err) {
  return ControlCommand(options, out, err).Run();
}

}  // namespace pgbackfill::cli
