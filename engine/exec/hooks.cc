#include "pgbackfill/exec/hooks.h"

#include "absl/strings/str_cat.h"
#include "pgbackfill/util/shell_command.h"

namespace pgbackfill::exec {
namespace {

// One line of JSON, as `--json` prints the event.
std::string Line(const events::Event& event) {
  return events::ToJson(event, events::NowText())
             .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
         "\n";
}

std::string TypeOf(const events::Event& event) { return std::string(events::TypeName(event)); }

}  // namespace

Hooks::Hooks(const plan::Plan& plan, events::EventSink& inner) : plan_(plan), inner_(inner) {}

Hooks::~Hooks() {
  {
    std::lock_guard lock(mu_);
    closing_ = true;
  }
  wake_.notify_all();
  if (thread_.has_value()) thread_->join();
}

void Hooks::Emit(const events::Event& event) {
  {
    std::lock_guard lock(emit_mu_);
    inner_.Emit(event);
  }
  Notify(event);
}

void Hooks::Notify(const events::Event& event) {
  if (const auto* throttle = std::get_if<events::Throttle>(&event)) {
    Call call{.name = throttle->state == "held" ? "on_hold" : "on_resume",
              .event = TypeOf(event),
              .json = Line(event),
              .env = {}};
    if (throttle->reason.has_value()) call.env.emplace_back("PGBACKFILL_REASON", *throttle->reason);
    Queue(std::move(call));
  } else if (const auto* finished = std::get_if<events::JobFinished>(&event)) {
    Queue(Call{
        .name = finished->outcome == "done" ? "on_done" : "on_failure",
        .event = TypeOf(event),
        .json = Line(event),
        .env = {{"PGBACKFILL_PHASE", finished->phase}, {"PGBACKFILL_OUTCOME", finished->outcome}}});
  }
}

absl::Status Hooks::BeforePhase(std::string_view phase) {
  const events::Event starting =
      events::PhaseStarted{.job = plan_.name, .phase = std::string(phase)};
  const std::vector<std::pair<std::string, std::string>> env = {
      {"PGBACKFILL_PHASE", std::string(phase)}};
  WaitForQueue();  // the previous phase's after_ hook first
  if (!started_) {
    started_ = true;
    (void)Run(
        Call{.name = "on_start", .event = TypeOf(starting), .json = Line(starting), .env = env});
  }
  absl::Status ran = Run(Call{.name = absl::StrCat("before_", std::string(phase)),
                              .event = TypeOf(starting),
                              .json = Line(starting),
                              .env = env});
  auto hook = plan_.hooks.find(absl::StrCat("before_", std::string(phase)));
  if (ran.ok() || hook == plan_.hooks.end() || !hook->second.stop_on_failure) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "hook before_", std::string(phase), " (", plan_.file, ":", hook->second.line, ") failed: ",
      ran.message(), "; the ", std::string(phase), " phase did not start (on_failure: stop)"));
}

void Hooks::AfterPhase(std::string_view phase) {
  const events::Event done = events::PhaseDone{
      .job = plan_.name, .phase = std::string(phase), .skipped = false, .message = ""};
  Queue(Call{.name = absl::StrCat("after_", std::string(phase)),
             .event = TypeOf(done),
             .json = Line(done),
             .env = {{"PGBACKFILL_PHASE", std::string(phase)}}});
}

absl::Status Hooks::Run(const Call& call) {
  auto hook = plan_.hooks.find(call.name);
  if (hook == plan_.hooks.end()) return absl::OkStatus();
  ShellCommand command{.command = hook->second.command,
                       .limit = hook->second.timeout,
                       .what = absl::StrCat("hook ", call.name),
                       .stdin_text = call.json,
                       .env = {{"PGBACKFILL_HOOK", call.name},
                               {"PGBACKFILL_JOB", plan_.name},
                               {"PGBACKFILL_EVENT", call.event},
                               {"PGBACKFILL_PLAN", plan_.file},
                               {"PGBACKFILL_TABLE", plan::QuoteQualified(plan_.table)}},
                       // libpq's password variable is the runner's, not the hook's to see.
                       .drop_env = {"PGPASSWORD"}};
  command.env.insert(command.env.end(), call.env.begin(), call.env.end());
  absl::StatusOr<ShellResult> ran = RunShellCommand(command);
  absl::Status failed;
  if (!ran.ok()) {
    failed = ran.status();
  } else if (ran->exit_code != 0) {
    failed = absl::AbortedError(
        absl::StrCat("hook ", call.name, " exited with status ", ran->exit_code));
  }
  if (!failed.ok()) Report(std::string(failed.message()));
  return failed;
}

void Hooks::Queue(Call call) {
  if (!plan_.hooks.contains(call.name)) return;
  std::lock_guard lock(mu_);
  // A throttle that flaps faster than its hooks run leaves only its latest state waiting.
  if (call.name == "on_hold" || call.name == "on_resume") {
    std::erase_if(queue_, [](const Call& queued) {
      return queued.name == "on_hold" || queued.name == "on_resume";
    });
  }
  queue_.push_back(std::move(call));
  if (!thread_.has_value()) thread_.emplace([this] { Drain(); });
  wake_.notify_one();
}

void Hooks::Drain() {
  std::unique_lock lock(mu_);
  while (true) {
    wake_.wait(lock, [this] { return closing_ || !queue_.empty(); });
    if (queue_.empty()) return;  // closing, nothing left
    Call call = std::move(queue_.front());
    queue_.pop_front();
    running_ = true;
    lock.unlock();
    (void)Run(call);
    lock.lock();
    running_ = false;
    idle_.notify_all();
  }
}

void Hooks::WaitForQueue() {
  std::unique_lock lock(mu_);
  idle_.wait(lock, [this] { return queue_.empty() && !running_; });
}

void Hooks::Report(std::string message) {
  std::lock_guard lock(emit_mu_);
  inner_.Emit(events::Warning{std::move(message)});
}

}  // namespace pgbackfill::exec
