#include "pgbackfill/throttle/probe_command.h"

#include "pgbackfill/util/shell_command.h"

namespace pgbackfill::throttle {

std::string FirstLine(std::string_view output) {
  std::string_view line = output.substr(0, output.find('\n'));
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return std::string(line);
}

absl::StatusOr<CommandResult> RunProbeCommand(const std::string& command, absl::Duration limit) {
  absl::StatusOr<ShellResult> ran = RunShellCommand(ShellCommand{.command = command,
                                                                 .limit = limit,
                                                                 .what = "throttle.command",
                                                                 .stdin_text = "",
                                                                 .env = {},
                                                                 .drop_env = {}});
  if (!ran.ok()) return ran.status();
  return CommandResult{ran->exit_code, FirstLine(ran->output)};
}

}  // namespace pgbackfill::throttle
