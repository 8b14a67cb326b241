// `throttle.command`: an operator's shell command run once per probe round, whose exit status and
// first output line become Samples::command (sample.h).
//
// Contract: RunProbeCommand blocks its calling thread for at most about `limit` (call it through
// OnOwnThread, util/offload.h, never on the io thread). The command runs as `/bin/sh -c command`
// in a process group of its own, stdin /dev/null, stdout captured, stderr shared with ours. It
// never leaves a zombie: the child is always reaped, and on time-out its whole process group is
// killed (SIGKILL) first. Thread-safe: nothing is shared between calls.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pgbackfill/throttle/sample.h"

namespace pgbackfill::throttle {

// The most of the command's stdout kept; the rest is read and dropped, so that a chatty command
// does not die of SIGPIPE and report a status of its own making.
inline constexpr size_t kCommandOutputLimit = 4096;

// Runs `command` and returns its exit status (128 + signal number when a signal ended it, as the
// shell reports it) and its first output line (without the newline, within kCommandOutputLimit).
// Errors: the command could not be started, or did not exit within `limit` (DeadlineExceeded;
// its process group is killed).
absl::StatusOr<CommandResult> RunProbeCommand(const std::string& command, absl::Duration limit);

// The first line of `output` (up to the first '\n', a trailing '\r' removed).
std::string FirstLine(std::string_view output);

}  // namespace pgbackfill::throttle
