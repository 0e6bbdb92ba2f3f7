#include "hull/core/process.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "hull/core/sys.h"
#include "hull/core/syscall.h"

namespace hull {

std::string ExitStatus::ToString() const {
  if (signal != 0) {
    const char* name = sigabbrev_np(signal);
    return std::string("killed by signal ") + std::to_string(signal) +
           (name != nullptr ? std::string(" (SIG") + name + ")" : "");
  }
  return "exited with code " + std::to_string(code);
}

ExitStatus ExitStatus::FromWaitStatus(int status) {
  ExitStatus out;
  if (WIFSIGNALED(status)) {
    out.signal = WTERMSIG(status);
  } else if (WIFEXITED(status)) {
    out.code = WEXITSTATUS(status);
  }
  return out;
}

Result<Child> Child::Spawn(const SpawnOptions& options) {
  if (options.argv.empty()) return MakeError(ErrorCode::kInvalidArgument, "spawn: empty argv");
  // Everything that allocates happens before fork: the child only makes syscalls.
  std::vector<char*> argv;
  for (const auto& arg : options.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);

  UniqueFd out_fd, err_fd;
  if (!options.inherit_stdio) {
    auto open_sink = [](const std::string& path) {
      return path.empty() ? ::open("/dev/null", O_WRONLY | O_CLOEXEC)
                          : ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    };
    out_fd.reset(open_sink(options.stdout_path));
    if (!out_fd) return ErrnoError("open `" + options.stdout_path + "` for the child's stdout");
    err_fd.reset(open_sink(options.stderr_path));
    if (!err_fd) return ErrnoError("open `" + options.stderr_path + "` for the child's stderr");
  }
  UniqueFd null_in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  UniqueFd netns;
  if (!options.netns_path.empty()) {
    netns.reset(::open(options.netns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!netns) return ErrnoError("open network namespace `" + options.netns_path + "`");
  }
  std::vector<UniqueFd> cgroups;
  for (const auto& procs : options.cgroup_procs) {
    cgroups.emplace_back(::open(procs.c_str(), O_WRONLY | O_CLOEXEC));
    if (!cgroups.back()) return ErrnoError("open `" + procs + "`");
  }
  int report[2];
  if (::pipe2(report, O_CLOEXEC) < 0) return ErrnoError("pipe2");
  UniqueFd report_read(report[0]), report_write(report[1]);
  pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) return ErrnoError("fork `" + options.argv[0] + "`");
  if (pid == 0) {
    auto fail = [&](int err) {
      [[maybe_unused]] auto n = ::write(report_write.get(), &err, sizeof err);
      ::_exit(127);
    };
    if (options.new_session && ::setsid() < 0) fail(errno);
    if (options.kill_with_parent) {
      if (::prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) fail(errno);
      if (::getppid() != parent) ::_exit(127);
    }
    if (netns && ::setns(netns.get(), CLONE_NEWNET) < 0) fail(errno);
    for (const UniqueFd& cgroup : cgroups) {
      if (::write(cgroup.get(), "0", 1) != 1) fail(errno);  // "0": the writing process
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (!options.inherit_stdio) {
      if (::dup2(null_in.get(), 0) < 0 || ::dup2(out_fd.get(), 1) < 0 ||
          ::dup2(err_fd.get(), 2) < 0) {
        fail(errno);
      }
    }
    for (int fd : options.pass_fds) {
      int flags = ::fcntl(fd, F_GETFD);
      if (flags < 0 || ::fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC) < 0) fail(errno);
    }
    ::execv(argv[0], argv.data());
    fail(errno);
  }
  report_write.reset();
  UniqueFd pidfd(sys::PidfdOpen(pid));
  Child child(pid, std::move(pidfd));
  int child_errno = 0;
  ssize_t n =
      RetryEintr([&] { return ::read(report_read.get(), &child_errno, sizeof child_errno); });
  if (n == sizeof child_errno) {
    (void)child.Wait();
    return ErrnoError("execute `" + options.argv[0] + "`", child_errno);
  }
  if (!child.pidfd_) return ErrnoError("pidfd_open");
  return child;
}

Child::Child(Child&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::move(other.pidfd_)),
      status_(other.status_) {}

Child& Child::operator=(Child&& other) noexcept {
  if (this != &other) {
    KillAndReap();
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    status_ = other.status_;
  }
  return *this;
}

Child::~Child() { KillAndReap(); }

void Child::KillAndReap() {
  if (pid_ > 0 && !status_) {
    ::kill(pid_, SIGKILL);
    (void)Wait();
  }
}

Result<std::optional<ExitStatus>> Child::WaitFor(std::chrono::milliseconds timeout) {
  if (status_) return status_;
  if (pidfd_) {
    pollfd p{pidfd_.get(), POLLIN, 0};
    int rc = RetryEintr([&] { return ::poll(&p, 1, static_cast<int>(timeout.count())); });
    if (rc < 0) return ErrnoError("poll pidfd");
    if (rc == 0) return std::optional<ExitStatus>{};
  }
  int status = 0;
  pid_t r = RetryEintr([&] { return ::waitpid(pid_, &status, pidfd_ ? 0 : WNOHANG); });
  if (r < 0) return ErrnoError("waitpid " + std::to_string(pid_));
  if (r == 0) return std::optional<ExitStatus>{};
  status_ = ExitStatus::FromWaitStatus(status);
  return status_;
}

Result<ExitStatus> Child::Wait() {
  if (status_) return *status_;
  int status = 0;
  if (RetryEintr([&] { return ::waitpid(pid_, &status, 0); }) < 0) {
    return ErrnoError("waitpid " + std::to_string(pid_));
  }
  status_ = ExitStatus::FromWaitStatus(status);
  return *status_;
}

Status Child::Signal(int sig) {
  if (status_)
    return MakeError(ErrorCode::kNotFound, "process " + std::to_string(pid_) + " already exited");
  if (pidfd_) {
    if (sys::PidfdSendSignal(pidfd_.get(), sig) < 0) {
      return ErrnoError("signal process " + std::to_string(pid_));
    }
  } else if (::kill(pid_, sig) < 0) {
    return ErrnoError("signal process " + std::to_string(pid_));
  }
  return Ok();
}

ExitStatus Child::Terminate(std::chrono::milliseconds grace) {
  if (status_) return *status_;
  (void)Signal(SIGTERM);
  auto waited = WaitFor(grace);
  if (waited && *waited) return **waited;
  (void)Signal(SIGKILL);
  auto status = Wait();
  return status ? *status : ExitStatus{0, SIGKILL};
}

}  // namespace hull
