#include "engine/engine.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <sstream>
#include <thread>

#include "engine/engine_internal.h"
#include "hull/core/ids.h"
#include "hull/core/log.h"
#include "hull/core/sys.h"
#include "hull/core/syscall.h"

namespace hull::engine {

using std::chrono::milliseconds;

std::string_view ContainerStateName(ContainerState state) {
  switch (state) {
    case ContainerState::kCreated:
      return "created";
    case ContainerState::kRunning:
      return "running";
    case ContainerState::kPaused:
      return "paused";
    case ContainerState::kStopped:
      return "stopped";
  }
  return "unknown";
}

namespace {

uint64_t RealtimeNs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

Status CheckExecId(const std::string& exec_id) {
  if (exec_id.empty()) return Ok();
  return ValidateId("exec", exec_id);
}

struct NamespaceKind {
  const char* type;
  int flag;
  const char* proc_name;
};

constexpr NamespaceKind kNamespaces[] = {
    {"pid", CLONE_NEWPID, "pid"},    {"network", CLONE_NEWNET, "net"},
    {"mount", CLONE_NEWNS, "mnt"},   {"ipc", CLONE_NEWIPC, "ipc"},
    {"uts", CLONE_NEWUTS, "uts"},    {"cgroup", CLONE_NEWCGROUP, "cgroup"},
    {"time", CLONE_NEWTIME, "time"}, {"user", CLONE_NEWUSER, "user"},
};

const NamespaceKind* FindNamespace(std::string_view type) {
  for (const auto& kind : kNamespaces) {
    if (type == kind.type) return &kind;
  }
  return nullptr;
}

// runc sets HOME when the spec does not: the user's home from the
// container's /etc/passwd, else "/". The file is read inside the rootfs
// (RESOLVE_IN_ROOT), so a symlink in the container cannot point outside.
std::string HomeFor(const std::string& rootfs, uint32_t uid) {
  UniqueFd root(::open(rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) return "/";
  auto passwd = sys::SafeOpen(root.get(), "etc/passwd", O_RDONLY);
  if (!passwd) return "/";
  auto text = ReadAll(passwd->get(), 1 << 20);
  if (!text) return "/";
  std::istringstream lines(*text);
  std::string line;
  while (std::getline(lines, line)) {
    // name:password:uid:gid:gecos:home:shell
    std::vector<std::string> fields;
    std::istringstream parts(line);
    std::string field;
    while (std::getline(parts, field, ':')) fields.push_back(field);
    if (fields.size() >= 6 && fields[2] == std::to_string(uid))
      return fields[5].empty() ? "/" : fields[5];
  }
  return "/";
}

oci::Process WithHome(oci::Process process, const std::string& rootfs) {
  for (const auto& var : process.env) {
    if (var.starts_with("HOME=")) return process;
  }
  process.env.push_back("HOME=" + HomeFor(rootfs, process.user.uid));
  return process;
}

}  // namespace

Engine::Engine(EngineOptions options) : options_(std::move(options)) {
  auto watcher = OomWatcher::Create([this](const std::string& id, uint64_t) { OnOom(id); });
  if (watcher) {
    oom_watcher_ = std::move(*watcher);
  } else {
    HULL_LOG_WARN("OOM events unavailable: {}", watcher.error().ToString());
  }
}

Engine::~Engine() {
  std::vector<std::string> ids = ContainerIds();
  for (const auto& id : ids) (void)Remove(id, true, milliseconds(2000));
  oom_watcher_.reset();
}

void Engine::SetOomHandler(std::function<void(const std::string&)> handler) {
  std::lock_guard lock(mu_);
  oom_handler_ = std::move(handler);
}

void Engine::OnOom(const std::string& id) {
  std::function<void(const std::string&)> handler;
  {
    std::lock_guard lock(mu_);
    auto it = containers_.find(id);
    if (it != containers_.end()) it->second->oom_killed = true;
    handler = oom_handler_;
  }
  HULL_LOG_INFO("container {}: OOM kill", id);
  if (handler) handler(id);
}

std::vector<std::string> Engine::ContainerIds() {
  std::lock_guard lock(mu_);
  std::vector<std::string> ids;
  for (const auto& [id, _] : containers_) ids.push_back(id);
  return ids;
}

Result<std::shared_ptr<Engine::Container>> Engine::Find(const std::string& id) {
  HULL_CHECK_OK(ValidateId("container", id), "find container");
  std::lock_guard lock(mu_);
  auto it = containers_.find(id);
  if (it == containers_.end())
    return MakeError(ErrorCode::kNotFound, "container `" + id + "` does not exist");
  return it->second;
}

Result<std::shared_ptr<Engine::Process>> Engine::FindProcess(const std::string& id,
                                                             const std::string& exec_id) {
  HULL_CHECK_OK(CheckExecId(exec_id), "find process");
  HULL_TRY(auto container, Find(id), "find process");
  std::lock_guard lock(mu_);
  if (exec_id.empty()) return container->init;
  auto it = container->execs.find(exec_id);
  if (it == container->execs.end()) {
    return MakeError(ErrorCode::kNotFound,
                     "exec `" + exec_id + "` does not exist in container `" + id + "`");
  }
  return it->second;
}

Status Engine::Create(const std::string& id, const oci::Spec& spec, const std::string& rootfs,
                      const IoRequest& io) {
  const std::string what = "create container `" + id + "`";
  HULL_CHECK_OK(ValidateId("container", id), what);
  {
    std::lock_guard lock(mu_);
    if (containers_.count(id) != 0)
      return MakeError(ErrorCode::kAlreadyExists, what + ": it already exists");
  }
  if (!spec.process)
    return MakeError(ErrorCode::kInvalidArgument, what + ": the spec has no process");
  const std::optional<oci::Seccomp> seccomp = spec.linux ? spec.linux->seccomp : std::nullopt;
  HULL_TRY(LaunchPlan plan,
           PlanProcess(WithHome(*spec.process, rootfs), seccomp, "container `" + id + "`"), what);

  bool has_mount_ns = false, has_uts_ns = false;
  int enter_pid_ns = -1;
  UniqueFd pid_ns_fd;
  if (spec.linux) {
    for (const auto& ns : spec.linux->namespaces) {
      const NamespaceKind* kind = FindNamespace(ns.type);
      if (kind == nullptr)
        return MakeError(ErrorCode::kInvalidArgument,
                         what + ": unknown namespace `" + ns.type + "`");
      if (kind->flag == CLONE_NEWUSER) {
        return MakeError(ErrorCode::kUnimplemented, what + ": user namespaces are not supported");
      }
      if (kind->flag == CLONE_NEWNS) has_mount_ns = true;
      if (kind->flag == CLONE_NEWUTS && ns.path.empty()) has_uts_ns = true;
      if (ns.path.empty()) {
        if (kind->flag == CLONE_NEWCGROUP) {
          plan.new_cgroup_namespace = true;
        } else {
          plan.clone_flags |= kind->flag;
        }
        continue;
      }
      UniqueFd fd(::open(ns.path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd) return ErrnoError(what + ": open " + ns.type + " namespace `" + ns.path + "`");
      if (kind->flag == CLONE_NEWPID) {
        pid_ns_fd = std::move(fd);
        enter_pid_ns = pid_ns_fd.get();
      } else {
        plan.join_namespaces.emplace_back(std::move(fd), kind->flag);
      }
    }
  }
  if (!has_mount_ns) {
    return MakeError(ErrorCode::kInvalidArgument,
                     what + ": linux.namespaces must include a mount namespace");
  }
  if (has_uts_ns && !spec.hostname.empty()) plan.hostname = spec.hostname;
  if (has_uts_ns && !spec.domainname.empty()) plan.domainname = spec.domainname;
  if (spec.linux) {
    for (const auto& [key, value] : spec.linux->sysctl) {
      if (key.find("..") != std::string::npos || key.find('/') != std::string::npos) {
        return MakeError(ErrorCode::kInvalidArgument, what + ": bad sysctl name `" + key + "`");
      }
      std::string path = "/proc/sys/" + key;
      std::replace(path.begin() + 10, path.end(), '.', '/');
      plan.sysctls.emplace_back(path, value);
    }
  }

  ChildStdio stdio;
  std::vector<UniqueFd> child_ends;
  HULL_TRY(auto process, MakeProcess("", io, &stdio, &child_ends), what);
  process->container_id = id;
  process->description = "container `" + id + "`";

  std::optional<std::string> console;
  if (io.terminal) {
    char name[64];
    if (::ptsname_r(process->pty_master.get(), name, sizeof name) != 0)
      return ErrnoError(what + ": ptsname");
    console = name;
  }
  HULL_TRY(RootfsPlan rootfs_plan, PlanRootfs(spec, rootfs, console), what);
  plan.rootfs = std::make_unique<RootfsPlan>(std::move(rootfs_plan));

  HULL_TRY(Cgroup cgroup, Cgroup::Create(options_.cgroup_root, options_.cgroup_parent + "/" + id),
           what);
  ScopeExit destroy_cgroup([&] { (void)cgroup.Destroy(milliseconds(2000)); });
  if (spec.linux && spec.linux->resources)
    HULL_CHECK_OK(cgroup.Apply(*spec.linux->resources), what);

  auto container = std::make_shared<Container>();
  container->id = id;
  container->spec = spec;
  container->init = process;
  container->rootfs = rootfs;

  HULL_TRY(LaunchedChild child, CloneChild(plan, stdio, /*wait_for_start=*/true, enter_pid_ns),
           what);
  child_ends.clear();  // the child has its copies
  process->pid = child.pid;
  {
    std::lock_guard lock(mu_);
    by_pid_[child.pid] = process;
    if (auto early = unclaimed_exits_.find(child.pid); early != unclaimed_exits_.end()) {
      unclaimed_exits_.erase(early);
    }
  }
  auto abandon = [&](Error error) -> Status {
    ::kill(child.pid, SIGKILL);
    return Unexpected{std::move(error).Wrap(what)};
  };
  if (auto added = cgroup.AddProcess(child.pid); !added) return abandon(std::move(added).error());
  if (auto ready = AwaitChild(child, plan, true); !ready) return abandon(std::move(ready).error());

  process->plan = std::make_unique<LaunchPlan>(std::move(plan));
  process->child = std::make_unique<LaunchedChild>(std::move(child));
  destroy_cgroup.Dismiss();
  container->cgroup.emplace(std::move(cgroup));
  {
    std::lock_guard lock(mu_);
    containers_[id] = container;
  }
  if (auto watched = oom_watcher_ ? oom_watcher_->Watch(id, *container->cgroup) : Status(Ok());
      !watched) {
    HULL_LOG_WARN("container {}: OOM events unavailable: {}", id, watched.error().ToString());
  }
  HULL_LOG_INFO("container {} created, init pid {}", id, process->pid);
  return Ok();
}

Status Engine::Start(const std::string& id) {
  const std::string what = "start container `" + id + "`";
  HULL_TRY(auto container, Find(id), what);
  std::shared_ptr<Process> init;
  {
    std::lock_guard lock(mu_);
    if (container->state != ContainerState::kCreated) {
      return MakeError(
          ErrorCode::kFailedPrecondition,
          what + ": it is " + std::string(ContainerStateName(container->state)) + ", not created");
    }
    init = container->init;
    if (!init->child)
      return MakeError(ErrorCode::kFailedPrecondition, what + ": it is being started");
  }
  auto child = std::move(init->child);
  auto plan = std::move(init->plan);
  Status started = StartChild(*child, *plan);
  std::lock_guard lock(mu_);
  if (!started) {
    container->state = ContainerState::kStopped;
    return Unexpected{std::move(started).error().Wrap(what)};
  }
  if (container->state == ContainerState::kCreated) {
    container->state = init->exit ? ContainerState::kStopped : ContainerState::kRunning;
  }
  changed_.notify_all();
  return Ok();
}

Status Engine::Exec(const std::string& id, const std::string& exec_id,
                    const oci::Process& process_spec, const IoRequest& io) {
  const std::string what = "exec `" + exec_id + "` in container `" + id + "`";
  HULL_CHECK_OK(ValidateId("exec", exec_id), what);
  HULL_TRY(auto container, Find(id), what);
  pid_t init_pid;
  {
    std::lock_guard lock(mu_);
    if (container->state != ContainerState::kRunning) {
      return MakeError(
          ErrorCode::kFailedPrecondition,
          what + ": the container is " + std::string(ContainerStateName(container->state)));
    }
    if (container->execs.count(exec_id) != 0) {
      return MakeError(ErrorCode::kAlreadyExists, what + ": the exec id is taken");
    }
    init_pid = container->init->pid;
  }
  const std::optional<oci::Seccomp> seccomp =
      container->spec.linux ? container->spec.linux->seccomp : std::nullopt;
  HULL_TRY(LaunchPlan plan,
           PlanProcess(WithHome(process_spec, container->rootfs), seccomp,
                       "exec `" + exec_id + "` in `" + id + "`"),
           what);
  UniqueFd pid_ns;
  // Join every namespace of the init process; the mount namespace last so
  // the others are opened through the agent's /proc.
  for (const char* ns : {"ipc", "uts", "net", "cgroup", "mnt"}) {
    std::string path = "/proc/" + std::to_string(init_pid) + "/ns/" + ns;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return ErrnoError(what + ": open " + path);
    plan.join_namespaces.emplace_back(std::move(fd), 0);
  }
  pid_ns.reset(
      ::open(("/proc/" + std::to_string(init_pid) + "/ns/pid").c_str(), O_RDONLY | O_CLOEXEC));
  if (!pid_ns) return ErrnoError(what + ": open the pid namespace");

  ChildStdio stdio;
  std::vector<UniqueFd> child_ends;
  HULL_TRY(auto process, MakeProcess(exec_id, io, &stdio, &child_ends, init_pid), what);
  process->container_id = id;
  process->description = "exec `" + exec_id + "` in `" + id + "`";
  {
    std::lock_guard lock(mu_);
    container->execs[exec_id] = process;  // reserve the id
  }
  auto unreserve = [&](Error error) -> Status {
    std::lock_guard lock(mu_);
    container->execs.erase(exec_id);
    return Unexpected{std::move(error).Wrap(what)};
  };
  auto child = CloneChild(plan, stdio, /*wait_for_start=*/false, pid_ns.get());
  if (!child) return unreserve(std::move(child).error());
  child_ends.clear();
  process->pid = child->pid;
  {
    std::lock_guard lock(mu_);
    by_pid_[child->pid] = process;
  }
  if (container->cgroup) {
    if (auto added = container->cgroup->AddProcess(child->pid); !added) {
      ::kill(child->pid, SIGKILL);
      return unreserve(std::move(added).error());
    }
  }
  if (auto ran = AwaitChild(*child, plan, false); !ran) {
    // The child exits by itself after reporting; keep the record so Wait
    // sees its 126/127, as runc's exec does.
    return Unexpected{std::move(ran).error().Wrap(what)};
  }
  HULL_LOG_DEBUG("{}: pid {}", what, process->pid);
  return Ok();
}

Status Engine::Signal(const std::string& id, const std::string& exec_id, int signal, bool all) {
  const std::string what = "signal " + std::to_string(signal) + " to container `" + id + "`";
  if (signal <= 0 || signal >= NSIG)
    return MakeError(ErrorCode::kInvalidArgument, what + ": no such signal");
  HULL_TRY(auto container, Find(id), what);
  if (all && exec_id.empty()) {
    if (!container->cgroup) return MakeError(ErrorCode::kFailedPrecondition, what + ": no cgroup");
    HULL_TRY(auto pids, container->cgroup->Pids(), what);
    for (pid_t pid : pids) ::kill(pid, signal);
    if (signal == SIGKILL && container->state == ContainerState::kPaused)
      (void)container->cgroup->Thaw(milliseconds(2000));
    return Ok();
  }
  HULL_TRY(auto process, FindProcess(id, exec_id), what);
  {
    std::lock_guard lock(mu_);
    if (process->exit || process->pid <= 0) {
      return MakeError(ErrorCode::kNotFound, what + ": the process has already exited");
    }
  }
  if (::kill(process->pid, signal) < 0) return ErrnoError(what);
  return Ok();
}

Result<WaitResult> Engine::Wait(const std::string& id, const std::string& exec_id) {
  const std::string what =
      "wait for " + (exec_id.empty() ? "container `" + id + "`" : "exec `" + exec_id + "`");
  HULL_TRY(auto process, FindProcess(id, exec_id), what);
  HULL_TRY(auto container, Find(id), what);
  std::unique_lock lock(mu_);
  while (true) {
    if (process->exit) {
      bool done = true;
      for (int s = 0; s < 2; ++s) {
        if (process->drained[s]) continue;
        // Nobody reads this stream: drained once the pipe is empty.
        int fd = process->OutputFd(s == 0 ? OutputStream::kStdout : OutputStream::kStderr);
        if (!process->reading[s] && PipeEmpty(fd) &&
            Clock::now() - process->exited_at > options_.drain_quiet) {
          process->drained[s] = true;
          continue;
        }
        done = false;
      }
      if (done) break;
    }
    changed_.wait_for(lock, milliseconds(100));
  }
  WaitResult result;
  result.status = *process->exit;
  result.exited_at_ns = process->exited_at_ns;
  bool killed = exec_id.empty() && process->exit->signal == SIGKILL;
  result.oom_killed = killed && container->oom_killed;
  lock.unlock();
  // The OOM watcher may not have seen memory.events yet; the kernel counts
  // the kill before it delivers SIGKILL, so the file itself is the truth.
  if (killed && !result.oom_killed && container->cgroup) {
    if (auto stats = container->cgroup->Stats(); stats && stats->memory.oom_kill > 0)
      result.oom_killed = true;
  }
  return result;
}

Status Engine::RemoveExec(const std::string& id, const std::string& exec_id) {
  const std::string what = "remove exec `" + exec_id + "` of container `" + id + "`";
  if (exec_id.empty()) {
    return MakeError(ErrorCode::kInvalidArgument,
                     what + ": the init process goes with its container");
  }
  HULL_TRY(auto process, FindProcess(id, exec_id), what);
  HULL_TRY(auto container, Find(id), what);
  std::lock_guard lock(mu_);
  if (!process->exit)
    return MakeError(ErrorCode::kFailedPrecondition, what + ": it has not exited");
  auto it = container->execs.find(exec_id);
  if (it != container->execs.end() && it->second == process) container->execs.erase(it);
  changed_.notify_all();
  return Ok();
}

void Engine::OnChildExit(pid_t pid, int wait_status) {
  std::lock_guard lock(mu_);
  auto it = by_pid_.find(pid);
  if (it == by_pid_.end()) {
    if (unclaimed_exits_.size() < 1024) unclaimed_exits_[pid] = wait_status;
    return;
  }
  auto process = it->second;
  by_pid_.erase(it);
  process->exit = ExitStatus::FromWaitStatus(wait_status);
  process->exited_at = Clock::now();
  process->exited_at_ns = RealtimeNs();
  if (process->exec_id.empty()) {
    // The id may name a newer container by now (removed, then created again).
    auto container = containers_.find(process->container_id);
    if (container != containers_.end() && container->second->init == process) {
      container->second->state = ContainerState::kStopped;
    }
  }
  HULL_LOG_DEBUG("{} {}", process->description, process->exit->ToString());
  changed_.notify_all();
}

Status Engine::Remove(const std::string& id, bool force, milliseconds timeout) {
  const std::string what = "remove container `" + id + "`";
  HULL_TRY(auto container, Find(id), what);
  {
    std::lock_guard lock(mu_);
    bool live =
        container->state == ContainerState::kRunning || container->state == ContainerState::kPaused;
    if (live && !force) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       what + ": it is " + std::string(ContainerStateName(container->state)) +
                           " (stop it first, or force)");
    }
  }
  if (container->cgroup) {
    (void)container->cgroup->Thaw(milliseconds(1000));
    (void)container->cgroup->KillAll();
  }
  if (container->init->pid > 0) ::kill(container->init->pid, SIGKILL);
  {
    std::unique_lock lock(mu_);
    changed_.wait_for(lock, timeout, [&] {
      return container->init->exit.has_value() || container->init->pid <= 0;
    });
    // The container's other processes stay in the pid table: they were
    // killed with it but may be reaped after init (nothing orders their
    // exits without a pid namespace of its own), and a WaitProcess for one
    // of them ends only when its exit is recorded.
    containers_.erase(id);
    changed_.notify_all();
  }
  if (oom_watcher_) oom_watcher_->Unwatch(id);
  if (container->cgroup) HULL_CHECK_OK(container->cgroup->Destroy(timeout), what);
  HULL_LOG_INFO("container {} removed", id);
  return Ok();
}

Status Engine::Update(const std::string& id, const oci::Resources& resources) {
  HULL_TRY(auto container, Find(id), "update container `" + id + "`");
  if (!container->cgroup)
    return MakeError(ErrorCode::kFailedPrecondition, "container `" + id + "` has no cgroup");
  HULL_CHECK_OK(container->cgroup->Apply(resources), "update container `" + id + "`");
  return Ok();
}

Result<CgroupStats> Engine::Stats(const std::string& id) {
  HULL_TRY(auto container, Find(id), "stats of container `" + id + "`");
  if (!container->cgroup)
    return MakeError(ErrorCode::kFailedPrecondition, "container `" + id + "` has no cgroup");
  return container->cgroup->Stats();
}

Status Engine::Pause(const std::string& id) {
  const std::string what = "pause container `" + id + "`";
  HULL_TRY(auto container, Find(id), what);
  {
    std::lock_guard lock(mu_);
    if (container->state != ContainerState::kRunning) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       what + ": it is " + std::string(ContainerStateName(container->state)));
    }
  }
  HULL_CHECK_OK(container->cgroup->Freeze(milliseconds(5000)), what);
  std::lock_guard lock(mu_);
  if (container->state == ContainerState::kRunning) container->state = ContainerState::kPaused;
  return Ok();
}

Status Engine::Resume(const std::string& id) {
  const std::string what = "resume container `" + id + "`";
  HULL_TRY(auto container, Find(id), what);
  {
    std::lock_guard lock(mu_);
    if (container->state != ContainerState::kPaused) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       what + ": it is " + std::string(ContainerStateName(container->state)));
    }
  }
  HULL_CHECK_OK(container->cgroup->Thaw(milliseconds(5000)), what);
  std::lock_guard lock(mu_);
  if (container->state == ContainerState::kPaused) container->state = ContainerState::kRunning;
  return Ok();
}

Result<std::vector<pid_t>> Engine::Pids(const std::string& id) {
  HULL_TRY(auto container, Find(id), "list processes of `" + id + "`");
  if (!container->cgroup) return std::vector<pid_t>{};
  return container->cgroup->Pids();
}

Result<ContainerState> Engine::State(const std::string& id) {
  HULL_TRY(auto container, Find(id), "state of `" + id + "`");
  std::lock_guard lock(mu_);
  return container->state;
}

Result<pid_t> Engine::Pid(const std::string& id, const std::string& exec_id) {
  HULL_TRY(auto process, FindProcess(id, exec_id), "pid");
  return process->pid;
}

}  // namespace hull::engine
