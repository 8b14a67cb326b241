#include "pgbackfill/throttle/probe_command.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "pgbackfill/util/strings.h"

extern char** environ;

namespace pgbackfill::throttle {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Closes a file descriptor on scope exit.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { Close(); }
  int get() const { return fd_; }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

absl::Status Errno(std::string_view what, int error) {
  return absl::InternalError(
      absl::StrCat("throttle.command: ", ToAbsl(what), ": ", std::strerror(error)));
}

// Starts `/bin/sh -c command` in a new process group with stdin /dev/null and stdout on
// `stdout_fd`. posix_spawn, not fork: this process has threads, and only async-signal-safe calls
// may run between fork and exec. Signals the parent ignores (SIGPIPE) or the runner handles are
// reset to their defaults, as a shell would have them.
absl::StatusOr<pid_t> Spawn(const std::string& command, int stdout_fd) {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, stdout_fd, STDOUT_FILENO);
  sigset_t defaults;
  sigemptyset(&defaults);
  for (int signal_number : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT}) {
    sigaddset(&defaults, signal_number);
  }
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, static_cast<short>(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF |
                                                     POSIX_SPAWN_SETSIGMASK));
  std::string sh = "/bin/sh";
  std::string dash_c = "-c";
  std::string text = command;
  char* argv[] = {sh.data(), dash_c.data(), text.data(), nullptr};
  pid_t pid = 0;
  const int error = posix_spawn(&pid, "/bin/sh", &actions, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (error != 0) return Errno("cannot start /bin/sh", error);
  return pid;
}

int ExitCodeOf(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

// Reads what is available on `fd` into `kept` (up to kCommandOutputLimit, the rest dropped).
// False at end of file or on a read error.
bool ReadSome(int fd, std::string& kept) {
  char buffer[4096];
  const ssize_t n = ::read(fd, buffer, sizeof buffer);
  if (n < 0) return errno == EINTR || errno == EAGAIN;
  if (n == 0) return false;
  const size_t room = kCommandOutputLimit - std::min(kCommandOutputLimit, kept.size());
  kept.append(buffer, std::min(room, static_cast<size_t>(n)));
  return true;
}

}  // namespace

std::string FirstLine(std::string_view output) {
  std::string_view line = output.substr(0, output.find('\n'));
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return std::string(line);
}

absl::StatusOr<CommandResult> RunProbeCommand(const std::string& command, absl::Duration limit) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Errno("pipe", errno);
  Fd read_end(fds[0]);
  Fd write_end(fds[1]);
  absl::StatusOr<pid_t> pid = Spawn(command, write_end.get());
  if (!pid.ok()) return pid.status();
  write_end.Close();  // the child holds its copy; EOF comes when it (and its children) close it

  const SteadyClock::time_point deadline = SteadyClock::now() + absl::ToChronoNanoseconds(limit);
  std::string output;
  bool open = true;
  std::optional<int> wait_status;
  // Until the child has exited and, while the pipe is open, its output has been drained. The
  // pipe is polled in short slices so that a child that exits while a background grandchild keeps
  // stdout open is noticed (its status is what we report; the grandchild is not ours to wait for).
  while (SteadyClock::now() < deadline) {
    if (!wait_status.has_value()) {
      int status = 0;
      const pid_t done = ::waitpid(*pid, &status, WNOHANG);
      if (done == *pid) wait_status = status;
    }
    if (!open) {
      if (wait_status.has_value()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      continue;
    }
    pollfd readable{read_end.get(), POLLIN, 0};
    const int ready = ::poll(&readable, 1, wait_status.has_value() ? 0 : 10);
    if (ready > 0) {
      open = ReadSome(read_end.get(), output);
    } else if (wait_status.has_value()) {
      break;  // exited, and nothing more to read right now
    }
  }
  if (!wait_status.has_value()) {
    // Also the shell's children: the group is the one Spawn made, led by the shell.
    ::kill(-*pid, SIGKILL);
    int status = 0;
    while (::waitpid(*pid, &status, 0) < 0 && errno == EINTR) {
    }
    return absl::DeadlineExceededError(
        absl::StrCat("throttle.command did not finish within ", absl::FormatDuration(limit),
                     " and was killed"));
  }
  return CommandResult{ExitCodeOf(*wait_status), FirstLine(output)};
}

}  // namespace pgbackfill::throttle
