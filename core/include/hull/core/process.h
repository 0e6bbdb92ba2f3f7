// Child processes owned by RAII handles (QEMU, virtiofsd, helpers).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "hull/core/error.h"
#include "hull/core/fd.h"

namespace hull {

struct ExitStatus {
  int code = 0;    // exit code when the process exited
  int signal = 0;  // the signal that killed it, else 0

  bool success() const { return signal == 0 && code == 0; }
  // The shell's convention: the code, or 128+signal.
  int ShellCode() const { return signal != 0 ? 128 + signal : code; }
  std::string ToString() const;
  static ExitStatus FromWaitStatus(int status);
};

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is the path of the program
  // Where stdout/stderr go: a file path opened for append, or empty for /dev/null.
  std::string stdout_path;
  std::string stderr_path;
  bool inherit_stdio = false;    // overrides the paths: share the parent's stdio
  std::vector<int> pass_fds;     // kept open (same number) in the child
  bool kill_with_parent = true;  // PR_SET_PDEATHSIG(SIGKILL)
  bool new_session = true;       // setsid(): no terminal signals from ours
  // A network namespace to enter before exec (e.g. a pod's CNI netns); "" = ours.
  std::string netns_path;
  // cgroup.procs files (one per hierarchy) the child joins before exec, so
  // everything it ever allocates is charged there.
  std::vector<std::string> cgroup_procs;
};

// A spawned child. Destroying a Child that has not been reaped kills it
// (SIGKILL) and reaps it, so no process outlives its owner by accident.
class Child {
 public:
  // Fails if the program cannot be executed (the exec error is reported back
  // through a pipe, so a missing binary is an error here, not a dead child).
  static Result<Child> Spawn(const SpawnOptions& options);

  Child(Child&&) noexcept;
  Child& operator=(Child&&) noexcept;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child();

  pid_t pid() const { return pid_; }
  // A pidfd: readable once the child has exited (for poll loops).
  int pidfd() const { return pidfd_.get(); }
  bool reaped() const { return status_.has_value(); }
  const std::optional<ExitStatus>& exit_status() const { return status_; }

  // Waits up to `timeout` for the child to exit; nullopt if it is still running.
  Result<std::optional<ExitStatus>> WaitFor(std::chrono::milliseconds timeout);
  Result<ExitStatus> Wait();
  Status Signal(int sig);
  // SIGTERM, up to `grace` for it to exit, then SIGKILL; always reaps.
  ExitStatus Terminate(std::chrono::milliseconds grace);

 private:
  Child(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
  void KillAndReap();

  pid_t pid_ = -1;
  UniqueFd pidfd_;
  std::optional<ExitStatus> status_;
};

}  // namespace hull
