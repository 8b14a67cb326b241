// `throttle.command`: an operator's shell command run once per probe round, whose exit status and
// first output line become Samples::command (sample.h).
//
// It runs through RunShellCommand (util/shell_command.h): its own process group, stdin empty,
// stdout captured, a time limit, never a zombie.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "pgbackfill/throttle/sample.h"

namespace pgbackfill::throttle {

// Runs `command` and returns its exit status (128 + signal number when a signal ended it, as the
// shell reports it) and its first output line (without the newline, within kShellOutputLimit).
// Errors: the command could not be started, or did not exit within `limit` (DeadlineExceeded;
// its process group is killed).
absl::StatusOr<CommandResult> RunProbeCommand(const std::string& command, absl::Duration limit);

// The first line of `output` (up to the first '\n', a trailing '\r' removed).
std::string FirstLine(std::string_view output);

}  // namespace pgbackfill::throttle
