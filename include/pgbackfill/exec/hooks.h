// The plan's hooks (plan::Plan::hooks): operator commands run on the job's events, each given the
// event as one line of JSON on stdin and PGBACKFILL_* variables (never a DSN or a password).
// before_<phase> runs in line, before the phase changes anything, and with `on_failure: stop`
// keeps it from starting; on_start runs in line too, first. The others (after_<phase>, on_hold,
// on_resume, on_done, on_failure) run in order on a thread of their own, so that a slow webhook
// never holds up a batch. A hook that fails, or outlives its timeout (its process group is
// killed), is reported as a `warning` event.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "pgbackfill/events/events.h"
#include "pgbackfill/plan/plan.h"

namespace pgbackfill::exec {

class Hooks final : public events::EventSink {
 public:
  // Events pass through to `inner`, which must outlive this.
  Hooks(const plan::Plan& plan, events::EventSink& inner);
  Hooks(const Hooks&) = delete;
  Hooks& operator=(const Hooks&) = delete;
  // Runs the hooks still queued (each within its timeout) before returning.
  ~Hooks() override;

  void Emit(const events::Event& event) override;
  // The hooks of `event` without passing it on (an event the command shows in another form).
  void Notify(const events::Event& event);

  // on_start (the first time), then before_<phase>. An error only when a stop hook failed.
  absl::Status BeforePhase(std::string_view phase);
  // after_<phase>, queued: the phase finished.
  void AfterPhase(std::string_view phase);

 private:
  struct Call {
    std::string name;                                      // the hook's
    std::string event;                                     // its type, PGBACKFILL_EVENT
    std::string json;                                      // stdin
    std::vector<std::pair<std::string, std::string>> env;  // beyond the common ones
  };
  // Runs `call` now; its failure is reported, and returned.
  absl::Status Run(const Call& call);
  void Queue(Call call);
  void Drain();
  // Until the queued hooks have run: hooks run in the order of their events.
  void WaitForQueue();
  void Report(std::string message);

  const plan::Plan& plan_;
  events::EventSink& inner_;
  std::mutex emit_mu_;  // the inner sink is written from the run's thread and the hooks' thread
  bool started_ = false;

  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::deque<Call> queue_;
  bool running_ = false;  // the hooks' thread is running one
  bool closing_ = false;
  std::optional<std::thread> thread_;
};

}  // namespace pgbackfill::exec
