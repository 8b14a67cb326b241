// Command line entry point: subcommands, output mode, exit codes (see README "Exit codes").
#pragma once

namespace pgbackfill::cli {

// Exit codes are part of the interface other tools script against; never renumber.
enum ExitCode : int {
  kExitOk = 0,           // done / plan runnable
  kExitError = 1,        // runtime error (server, network, bug)
  kExitBadInput = 2,     // bad plan, bad usage, or a target the plan cannot run against
  kExitInterrupted = 3,  // stopped by a signal; committed work is kept, run again to resume
  kExitVerifyFailed = 4,
  kExitAborted = 5,      // aborted by an operator
};

int Main(int argc, char** argv);

}  // namespace pgbackfill::cli
