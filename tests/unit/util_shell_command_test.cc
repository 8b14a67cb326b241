// RunShellCommand's inputs: stdin text and environment (the hooks' event and PGBACKFILL_*
// variables). Its time limit and process-group kill are proven through RunProbeCommand
// (throttle_app_readings_test.cc).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "pgbackfill/util/shell_command.h"

namespace pgbackfill {
namespace {

TEST(ShellCommandTest, TheCommandReadsItsStdinTextThenEndOfFile) {
  absl::StatusOr<ShellResult> result =
      RunShellCommand({.command = "cat; echo end",
                       .limit = absl::Seconds(10),
                       .what = "test",
                       .stdin_text = "{\"event\":\"phase_done\"}\n",
                       .env = {},
                       .drop_env = {}});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 0);
  EXPECT_EQ(result->output, "{\"event\":\"phase_done\"}\nend\n");
}

TEST(ShellCommandTest, AddedVariablesJoinOursAndReplaceOnesOfTheSameName) {
  ASSERT_EQ(::setenv("PGBACKFILL_SHELL_TEST_KEPT", "ours", 1), 0);
  ASSERT_EQ(::setenv("PGBACKFILL_SHELL_TEST_REPLACED", "old", 1), 0);
  absl::StatusOr<ShellResult> result = RunShellCommand(
      {.command = "echo \"$PGBACKFILL_SHELL_TEST_KEPT $PGBACKFILL_SHELL_TEST_REPLACED $NEW_ONE\";"
                  " env | grep -c PGBACKFILL_SHELL_TEST_REPLACED",
       .limit = absl::Seconds(10),
       .what = "test",
       .stdin_text = "",
       .env = {{"PGBACKFILL_SHELL_TEST_REPLACED", "new"}, {"NEW_ONE", "x y"}},
       .drop_env = {}});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->output, "ours new x y\n1\n");
}

TEST(ShellCommandTest, NoOtherDescriptorOfOursAndNoDroppedVariableReachesTheCommand) {
  const int inherited = ::dup(STDERR_FILENO);  // dup: not close-on-exec, like Asio's sockets
  ASSERT_GE(inherited, 3);
  ASSERT_EQ(::setenv("PGPASSWORD", "not-for-hooks", 1), 0);
  absl::StatusOr<ShellResult> result = RunShellCommand(
      {.command = absl::StrCat("test -e /proc/$$/fd/", inherited,
                               " && echo open || echo closed; echo \"[${PGPASSWORD:-}]\""),
       .limit = absl::Seconds(10),
       .what = "test",
       .stdin_text = "",
       .env = {},
       .drop_env = {"PGPASSWORD"}});
  ::close(inherited);
  ::unsetenv("PGPASSWORD");
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->output, "closed\n[]\n");
}

TEST(ShellCommandTest, ATimeOutNamesTheCommand) {
  absl::StatusOr<ShellResult> result = RunShellCommand({.command = "sleep 5",
                                                        .limit = absl::Milliseconds(100),
                                                        .what = "hook on_done",
                                                        .stdin_text = "",
                                                        .env = {},
                                                        .drop_env = {}});
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(result.status().message(), "hook on_done did not finish within 100ms and was killed");
}

}  // namespace
}  // namespace pgbackfill
