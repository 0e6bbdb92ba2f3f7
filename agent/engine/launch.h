// Starting a process inside a container: a plan computed in the agent, then
// carried out by the child between clone and execve with syscalls only.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/rootfs.h"
#include "engine/security.h"
#include "hull/core/error.h"
#include "hull/core/fd.h"
#include "hull/core/oci_spec.h"

namespace hull::engine {

// What the child reports through its pipe: where it failed and why, or that
// it reached the point where it waits for StartContainer.
struct LaunchReport {
  int step = 0;  // a LaunchStep
  int err = 0;   // errno
  RootfsFailure rootfs{};
};

enum LaunchStep : int {
  kStepReady = 0,  // not a failure: created and waiting for start
  kStepSignals,
  kStepSetsid,
  kStepStdio,
  kStepTerminal,
  kStepJoinNamespaces,
  kStepCgroupNamespace,
  kStepHostname,
  kStepRootfs,
  kStepSysctl,
  kStepOomScoreAdj,
  kStepCwd,
  kStepSecurity,
  kStepWaitStart,
  kStepExecNotFound,
  kStepExecDenied,
  kStepExec,
};

// The standard streams of a process, as the child sees them (-1: /dev/null).
struct ChildStdio {
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  int pty_slave = -1;  // with a terminal: all three are the pty slave
};

// Everything the child needs, prepared in the parent. Strings are owned here;
// the child only reads the prepared pointers.
struct LaunchPlan {
  std::string description;            // "container `web`" / "exec `e1` in `web`", for errors
  int clone_flags = 0;                // CLONE_NEW* created at clone time
  bool new_cgroup_namespace = false;  // unshared after the cgroup join
  std::vector<std::pair<UniqueFd, int>>
      join_namespaces;  // (ns fd, CLONE_NEW*) to setns in the child
  std::optional<std::string> hostname;
  std::optional<std::string> domainname;
  std::unique_ptr<RootfsPlan> rootfs;  // null for exec (the container's mount namespace is joined)
  std::vector<std::pair<std::string, std::string>> sysctls;  // (/proc/sys/... path, value)
  std::optional<std::string> oom_score_adj;
  std::string cwd;
  std::unique_ptr<SecurityPlan> security;
  std::string exec_name;                     // args[0], for messages
  std::vector<std::string> exec_candidates;  // paths to try, in order (PATH lookup)
  std::vector<std::string> args;
  std::vector<std::string> env;
  // Derived pointer arrays (filled by FinishLaunchPlan).
  std::vector<char*> argv_ptrs;
  std::vector<char*> envp_ptrs;
};

// Builds the plan for a process of a container. `rootfs` is set for a
// container's init (create), null for exec.
Result<LaunchPlan> PlanProcess(const oci::Process& process,
                               const std::optional<oci::Seccomp>& seccomp, std::string description);

// Turns a failure report into an error a user can act on, e.g.
// `exec: "nope": executable file not found in $PATH`.
Error DescribeLaunchFailure(const LaunchPlan& plan, const LaunchReport& report);

// A launched child. The caller adds it to its cgroup, then calls Proceed.
struct LaunchedChild {
  pid_t pid = -1;
  UniqueFd go_write;     // one byte: continue after the cgroup join
  UniqueFd report_read;  // LaunchReport records; EOF after a successful exec
  UniqueFd start_write;  // one byte: exec now (create/start split); invalid for exec
};

// Clones the child. With `wait_for_start` the child stops before execve
// until a byte arrives on start_write (runc's create/start split).
// `enter_pid_namespace`: an fd of a pid namespace the child must be born in
// (exec into a container); the clone then happens on a helper thread that
// joined it, since setns(CLONE_NEWPID) only affects later children.
Result<LaunchedChild> CloneChild(LaunchPlan& plan, const ChildStdio& stdio, bool wait_for_start,
                                 int enter_pid_namespace = -1);

// Lets the child continue past the cgroup join and waits for its report:
// kStepReady (create) or EOF (exec succeeded). On failure the child exits.
Status AwaitChild(LaunchedChild& child, const LaunchPlan& plan, bool wait_for_start);

// Releases a created child into execve and waits until the exec happened.
Status StartChild(LaunchedChild& child, const LaunchPlan& plan);

}  // namespace hull::engine
