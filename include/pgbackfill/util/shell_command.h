// An operator's shell command, run to completion under a time limit: `throttle.command` and the
// plan's hooks. Blocks the calling thread for at most about `limit` (from the io thread, call it
// through OnOwnThread, util/offload.h). The command runs as `/bin/sh -c command` in a process
// group of its own, stderr shared with ours, stdout captured; on time-out the whole group is
// killed (SIGKILL) and the child is always reaped, so no zombie is left. It inherits no other
// descriptor of ours (sockets such as the metrics endpoint's are not all close-on-exec: a hook's
// leftover background process would keep the port). Thread-safe.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace pgbackfill {

// The most of the command's stdout kept; the rest is read and dropped, so that a chatty command
// does not die of SIGPIPE and report a status of its own making.
inline constexpr size_t kShellOutputLimit = 4096;

struct ShellCommand {
  std::string command;
  absl::Duration limit = absl::Seconds(10);
  std::string what;        // names the command in errors: "throttle.command", "hook on_done"
  std::string stdin_text;  // written to its stdin, then EOF (what does not fit a pipe is dropped)
  std::vector<std::pair<std::string, std::string>> env;  // added to (or replacing in) ours
  std::vector<std::string> drop_env;  // names of ours it must not see (PGPASSWORD for hooks)
};

struct ShellResult {
  int exit_code = 0;   // 128 + signal number when a signal ended it, as the shell reports it
  std::string output;  // stdout, within kShellOutputLimit
};

// Errors: the command could not be started, or did not exit within `limit` (DeadlineExceeded;
// its process group is killed).
absl::StatusOr<ShellResult> RunShellCommand(const ShellCommand& spec);

}  // namespace pgbackfill
