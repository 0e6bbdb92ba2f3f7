#include "engine/launch.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <sstream>

#include "hull/core/log.h"
#include "hull/core/sys.h"
#include "hull/core/syscall.h"
#include "hull/core/thread.h"

namespace hull::engine {

namespace {

constexpr char kDefaultPath[] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

std::vector<std::string> ExecCandidates(const std::string& name,
                                        const std::vector<std::string>& env) {
  if (name.find('/') != std::string::npos) return {name};
  std::string path = kDefaultPath;
  for (const auto& entry : env) {
    if (entry.starts_with("PATH=")) path = entry.substr(5);
  }
  std::vector<std::string> candidates;
  std::stringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    // Appended piecewise: GCC 12 misreports `dir + "/" + name` (-Wrestrict).
    std::string candidate = dir.empty() ? std::string(".") : dir;
    candidate.append("/").append(name);
    candidates.push_back(std::move(candidate));
  }
  return candidates;
}

// --- the child: syscalls only from here ------------------------------------------

[[noreturn]] void Fail(int report_fd, int step, int err, const RootfsFailure* rootfs = nullptr) {
  LaunchReport report;
  report.step = step;
  report.err = err;
  if (rootfs != nullptr) report.rootfs = *rootfs;
  [[maybe_unused]] auto n = ::write(report_fd, &report, sizeof report);
  ::_exit(step == kStepExecNotFound ? 127 : step == kStepExecDenied ? 126 : 127);
}

// Closes every fd from 3 up except `keep_a` and `keep_b` (-1: none).
// Allocation-free: it runs in the child.
void CloseFdsExcept(int keep_a, int keep_b) {
  const int keep[2] = {std::min(keep_a, keep_b), std::max(keep_a, keep_b)};
  unsigned int next = 3;
  for (int fd : keep) {
    if (fd < 0 || static_cast<unsigned int>(fd) < next) continue;
    if (static_cast<unsigned int>(fd) > next) {
      sys::CloseRange(next, static_cast<unsigned int>(fd) - 1);
    }
    next = static_cast<unsigned int>(fd) + 1;
  }
  sys::CloseRange(next, ~0U);
}

bool WriteProcFile(const char* path, const char* value) {
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  size_t len = ::strlen(value);
  bool ok = ::write(fd, value, len) == static_cast<ssize_t>(len);
  ::close(fd);
  return ok;
}

[[noreturn]] void ChildMain(LaunchPlan& plan, const ChildStdio& stdio, int go_read,
                            int report_write, int start_read) {
  // Signals: the agent blocks SIGCHLD and ignores SIGPIPE; neither may leak
  // into the container (ignored dispositions survive execve).
  sigset_t none;
  sigemptyset(&none);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::signal(sig, SIG_DFL);
  }
  if (::sigprocmask(SIG_SETMASK, &none, nullptr) < 0) Fail(report_write, kStepSignals, errno);

  // Wait until the parent has put us into the container's cgroup.
  char go = 0;
  if (::read(go_read, &go, 1) != 1) ::_exit(127);
  ::close(go_read);

  if (::setsid() < 0) Fail(report_write, kStepSetsid, errno);
  int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  int in = stdio.stdin_fd >= 0 ? stdio.stdin_fd : null_fd;
  int out = stdio.stdout_fd >= 0 ? stdio.stdout_fd : null_fd;
  int err = stdio.stderr_fd >= 0 ? stdio.stderr_fd : null_fd;
  if (stdio.pty_slave >= 0) in = out = err = stdio.pty_slave;
  if ((in >= 0 && ::dup2(in, 0) < 0) || (out >= 0 && ::dup2(out, 1) < 0) ||
      (err >= 0 && ::dup2(err, 2) < 0)) {
    Fail(report_write, kStepStdio, errno);
  }
  if (stdio.pty_slave >= 0 && ::ioctl(0, TIOCSCTTY, 0) < 0)
    Fail(report_write, kStepTerminal, errno);

  for (auto& [fd, type] : plan.join_namespaces) {
    if (::setns(fd.get(), type) < 0) Fail(report_write, kStepJoinNamespaces, errno);
  }
  // Nothing of the agent's beyond stdio and the two handshake pipes stays
  // open: not even until execve (which O_CLOEXEC waits for), since a created
  // container waits for StartContainer as long as the host likes, and what
  // the clone copied would stay open with it -- another process's stdin pipe
  // among them, which then never reaches EOF.
  CloseFdsExcept(report_write, start_read);
  if (plan.new_cgroup_namespace && ::unshare(CLONE_NEWCGROUP) < 0) {
    Fail(report_write, kStepCgroupNamespace, errno);
  }
  if (plan.hostname && ::sethostname(plan.hostname->c_str(), plan.hostname->size()) < 0) {
    Fail(report_write, kStepHostname, errno);
  }
  if (plan.domainname && ::setdomainname(plan.domainname->c_str(), plan.domainname->size()) < 0) {
    Fail(report_write, kStepHostname, errno);
  }
  // Sysctls go between the two rootfs phases, as runc does: after /proc is
  // mounted, before /proc/sys is made read-only.
  RootfsFailure failure{};
  if (plan.rootfs) {
    if (int rc = ApplyRootfsPlan(*plan.rootfs, RootfsPhase::kSetup, &failure); rc != 0) {
      Fail(report_write, kStepRootfs, rc, &failure);
    }
  }
  for (const auto& [path, value] : plan.sysctls) {
    if (!WriteProcFile(path.c_str(), value.c_str())) Fail(report_write, kStepSysctl, errno);
  }
  if (plan.rootfs) {
    if (int rc = ApplyRootfsPlan(*plan.rootfs, RootfsPhase::kProtectPaths, &failure); rc != 0) {
      Fail(report_write, kStepRootfs, rc, &failure);
    }
  }
  if (plan.oom_score_adj &&
      !WriteProcFile("/proc/self/oom_score_adj", plan.oom_score_adj->c_str())) {
    Fail(report_write, kStepOomScoreAdj, errno);
  }
  if (::chdir(plan.cwd.c_str()) < 0) Fail(report_write, kStepCwd, errno);
  if (plan.security) {
    const char* failed_step = nullptr;
    if (int rc = ApplyProcessSecurity(*plan.security, &failed_step); rc != 0) {
      Fail(report_write, kStepSecurity, rc);
    }
  }
  if (start_read >= 0) {
    LaunchReport ready;
    ready.step = kStepReady;
    if (::write(report_write, &ready, sizeof ready) != sizeof ready) ::_exit(127);
    char start = 0;
    ssize_t n;
    do {
      n = ::read(start_read, &start, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) ::_exit(127);  // the agent gave up on this container
  }
  int last_error = ENOENT;
  for (const auto& candidate : plan.exec_candidates) {
    ::execve(candidate.c_str(), plan.argv_ptrs.data(), plan.envp_ptrs.data());
    if (errno == EACCES) {
      last_error = EACCES;
    } else if (errno != ENOENT && errno != ENOTDIR) {
      Fail(report_write, kStepExec, errno);
    }
  }
  Fail(report_write, last_error == EACCES ? kStepExecDenied : kStepExecNotFound, last_error);
}

const char* StepName(int step) {
  switch (step) {
    case kStepSignals:
      return "reset signals";
    case kStepSetsid:
      return "setsid";
    case kStepStdio:
      return "set up stdio";
    case kStepTerminal:
      return "set the controlling terminal";
    case kStepJoinNamespaces:
      return "join namespaces";
    case kStepCgroupNamespace:
      return "create the cgroup namespace";
    case kStepHostname:
      return "set the hostname";
    case kStepRootfs:
      return "set up the root filesystem";
    case kStepSysctl:
      return "write sysctls";
    case kStepOomScoreAdj:
      return "set oom_score_adj";
    case kStepCwd:
      return "change to the working directory";
    case kStepSecurity:
      return "apply capabilities, user, rlimits and seccomp";
    case kStepWaitStart:
      return "wait for start";
    default:
      return "exec";
  }
}

}  // namespace

Result<LaunchPlan> PlanProcess(const oci::Process& process,
                               const std::optional<oci::Seccomp>& seccomp,
                               std::string description) {
  LaunchPlan plan;
  plan.description = std::move(description);
  if (process.args.empty())
    return MakeError(ErrorCode::kInvalidArgument, "process.args: must not be empty");
  plan.args = process.args;
  plan.env = process.env;
  plan.cwd = process.cwd.empty() ? "/" : process.cwd;
  plan.exec_name = process.args[0];
  plan.exec_candidates = ExecCandidates(process.args[0], process.env);
  if (process.oom_score_adj) plan.oom_score_adj = std::to_string(*process.oom_score_adj);
  HULL_TRY(SecurityPlan security, PlanProcessSecurity(process, seccomp), plan.description);
  plan.security = std::make_unique<SecurityPlan>(std::move(security));
  for (auto& arg : plan.args) plan.argv_ptrs.push_back(arg.data());
  plan.argv_ptrs.push_back(nullptr);
  for (auto& var : plan.env) plan.envp_ptrs.push_back(var.data());
  plan.envp_ptrs.push_back(nullptr);
  return plan;
}

Error DescribeLaunchFailure(const LaunchPlan& plan, const LaunchReport& report) {
  if (report.step == kStepExecNotFound) {
    std::string what = plan.exec_name.find('/') != std::string::npos
                           ? "no such file or directory"
                           : "executable file not found in $PATH";
    return Error(ErrorCode::kNotFound, "exec: \"" + plan.exec_name + "\": " + what)
        .Wrap(plan.description);
  }
  if (report.step == kStepExecDenied) {
    return Error(ErrorCode::kPermissionDenied,
                 "exec: \"" + plan.exec_name + "\": permission denied")
        .Wrap(plan.description);
  }
  if (report.step == kStepExec) {
    return Error::FromErrno(report.err, "exec: \"" + plan.exec_name + "\"").Wrap(plan.description);
  }
  if (report.step == kStepRootfs && plan.rootfs) {
    return RootfsFailureError(*plan.rootfs, report.rootfs).Wrap(plan.description);
  }
  return Error::FromErrno(report.err, StepName(report.step)).Wrap(plan.description);
}

Result<LaunchedChild> CloneChild(LaunchPlan& plan, const ChildStdio& stdio, bool wait_for_start,
                                 int enter_pid_namespace) {
  int go[2], report[2], start[2] = {-1, -1};
  if (::pipe2(go, O_CLOEXEC) < 0) return ErrnoError("pipe2");
  UniqueFd go_read(go[0]), go_write(go[1]);
  if (::pipe2(report, O_CLOEXEC) < 0) return ErrnoError("pipe2");
  UniqueFd report_read(report[0]), report_write(report[1]);
  UniqueFd start_read, start_write;
  if (wait_for_start) {
    if (::pipe2(start, O_CLOEXEC) < 0) return ErrnoError("pipe2");
    start_read.reset(start[0]);
    start_write.reset(start[1]);
  }

  pid_t pid = -1;
  int clone_errno = 0;
  auto do_clone = [&] {
    // A raw clone behaves like fork; the child runs only ChildMain's syscalls.
    pid = sys::CloneProcess(plan.clone_flags);
    if (pid == 0) ChildMain(plan, stdio, go_read.get(), report_write.get(), start_read.get());
    clone_errno = errno;
  };
  if (enter_pid_namespace >= 0) {
    // setns(CLONE_NEWPID) changes only this thread's future children, so do
    // it on a thread of its own that exists for this one clone.
    int setns_errno = 0;
    SpawnThread("pidns-clone", [&] {
      if (::setns(enter_pid_namespace, CLONE_NEWPID) < 0) {
        setns_errno = errno;
        return;
      }
      do_clone();
    }).join();
    if (setns_errno != 0) return ErrnoError("enter the container's pid namespace", setns_errno);
  } else {
    do_clone();
  }
  if (pid < 0) return ErrnoError("clone " + plan.description, clone_errno);
  LaunchedChild child;
  child.pid = pid;
  child.go_write = std::move(go_write);
  child.report_read = std::move(report_read);
  child.start_write = std::move(start_write);
  return child;
}

Status AwaitChild(LaunchedChild& child, const LaunchPlan& plan, bool wait_for_start) {
  char go = 1;
  if (::write(child.go_write.get(), &go, 1) != 1) return ErrnoError("release " + plan.description);
  child.go_write.reset();
  LaunchReport report;
  ssize_t n = RetryEintr([&] { return ::read(child.report_read.get(), &report, sizeof report); });
  if (n == 0) {
    if (wait_for_start) {
      return MakeError(ErrorCode::kInternal, plan.description + ": the process died during setup");
    }
    return Ok();  // exec happened: the pipe closed on execve
  }
  if (n != sizeof report) return ErrnoError("read the setup report of " + plan.description);
  if (report.step == kStepReady) return Ok();
  return Unexpected{DescribeLaunchFailure(plan, report)};
}

Status StartChild(LaunchedChild& child, const LaunchPlan& plan) {
  char start = 1;
  if (RetryEintr([&] { return ::write(child.start_write.get(), &start, 1); }) != 1) {
    return ErrnoError("start " + plan.description);
  }
  child.start_write.reset();
  LaunchReport report;
  ssize_t n = RetryEintr([&] { return ::read(child.report_read.get(), &report, sizeof report); });
  child.report_read.reset();
  if (n == 0) return Ok();
  if (n != sizeof report) return ErrnoError("read the start report of " + plan.description);
  return Unexpected{DescribeLaunchFailure(plan, report)};
}

}  // namespace hull::engine
