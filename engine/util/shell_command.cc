#include "pgbackfill/util/shell_command.h"

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

namespace pgbackfill {
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
  void Reset(int fd) {
    Close();
    fd_ = fd;
  }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

absl::Status Errno(const ShellCommand& spec, std::string_view what, int error) {
  return absl::InternalError(
      absl::StrCat(spec.what, ": ", ToAbsl(what), ": ", std::strerror(error)));
}

// Our environment with spec.env added (a name given there replaces ours).
std::vector<std::string> Environment(const ShellCommand& spec) {
  std::vector<std::string> entries;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const std::string_view name = text.substr(0, text.find('='));
    bool replaced = false;
    for (const auto& [key, value] : spec.env) replaced |= key == name;
    for (const std::string& dropped : spec.drop_env) replaced |= dropped == name;
    if (!replaced) entries.emplace_back(text);
  }
  for (const auto& [key, value] : spec.env) entries.push_back(absl::StrCat(key, "=", value));
  return entries;
}

// Starts `/bin/sh -c command` in a new process group with stdin from `stdin_fd` and stdout on
// `stdout_fd`. posix_spawn, not fork: this process has threads, and only async-signal-safe calls
// may run between fork and exec. Signals the parent ignores (SIGPIPE) or the runner handles are
// reset to their defaults, as a shell would have them.
absl::StatusOr<pid_t> Spawn(const ShellCommand& spec, int stdin_fd, int stdout_fd) {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_adddup2(&actions, stdin_fd, STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, stdout_fd, STDOUT_FILENO);
  posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);
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
  std::string text = spec.command;
  char* argv[] = {sh.data(), dash_c.data(), text.data(), nullptr};
  std::vector<std::string> env = Environment(spec);
  std::vector<char*> envp;
  for (std::string& entry : env) envp.push_back(entry.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  const int error = posix_spawn(&pid, "/bin/sh", &actions, &attr, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (error != 0) return Errno(spec, "cannot start /bin/sh", error);
  return pid;
}

int ExitCodeOf(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

// Reads what is available on `fd` into `kept` (up to kShellOutputLimit, the rest dropped).
// False at end of file or on a read error.
bool ReadSome(int fd, std::string& kept) {
  char buffer[4096];
  const ssize_t n = ::read(fd, buffer, sizeof buffer);
  if (n < 0) return errno == EINTR || errno == EAGAIN;
  if (n == 0) return false;
  const size_t room = kShellOutputLimit - std::min(kShellOutputLimit, kept.size());
  kept.append(buffer, std::min(room, static_cast<size_t>(n)));
  return true;
}

// The stdin pipe's read end, `text` already in it: written before the child starts, without
// blocking (a pipe holds 64 KiB; an event is a few hundred bytes), then closed for EOF.
absl::StatusOr<int> StdinWith(const ShellCommand& spec, const std::string& text, Fd& keep) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return Errno(spec, "pipe", errno);
  keep.Reset(fds[0]);
  Fd write_end(fds[1]);
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = ::write(write_end.get(), text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    written += static_cast<size_t>(n);
  }
  // The child reads without O_NONBLOCK surprises: it sees a plain pipe at EOF once drained.
  ::fcntl(keep.get(), F_SETFL, ::fcntl(keep.get(), F_GETFL) & ~O_NONBLOCK);
  return keep.get();
}

}  // namespace

absl::StatusOr<ShellResult> RunShellCommand(const ShellCommand& spec) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Errno(spec, "pipe", errno);
  Fd read_end(fds[0]);
  Fd write_end(fds[1]);
  Fd stdin_end;
  absl::StatusOr<int> stdin_fd = StdinWith(spec, spec.stdin_text, stdin_end);
  if (!stdin_fd.ok()) return stdin_fd.status();
  absl::StatusOr<pid_t> pid = Spawn(spec, *stdin_fd, write_end.get());
  if (!pid.ok()) return pid.status();
  write_end.Close();  // the child holds its copy; EOF comes when it (and its children) close it
  stdin_end.Close();

  const SteadyClock::time_point deadline =
      SteadyClock::now() + absl::ToChronoNanoseconds(spec.limit);
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
    return absl::DeadlineExceededError(absl::StrCat(
        spec.what, " did not finish within ", absl::FormatDuration(spec.limit), " and was killed"));
  }
  return ShellResult{ExitCodeOf(*wait_status), std::move(output)};
}

}  // namespace pgbackfill
