// The task service's lifecycle RPCs: Create, Start, Kill, Delete.
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <future>

#include "containerd/events/task.pb.h"
#include "hull/core/ids.h"
#include "hull/core/log.h"
#include "hull/core/oci_spec.h"
#include "hull/core/syscall.h"
#include "hull/core/thread.h"
#include "mounts.h"
#include "task_service.h"

namespace hull::shim {

namespace events = ::containerd::events;
using sandbox::Sandbox;
using std::chrono::seconds;

namespace {

constexpr char kSandboxIdAnnotation[] = "io.kubernetes.cri.sandbox-id";

}  // namespace

// --- Create ------------------------------------------------------------------------

Status TaskService::CreateInGuest(const std::shared_ptr<Container>& container,
                                  const task::CreateTaskRequest& request) {
  const std::string& id = container->id;
  HULL_TRY(std::string spec_text, ReadFile(container->bundle + "/config.json", 16 << 20),
           "read the bundle");
  HULL_TRY(oci::Spec spec, oci::ParseOciSpec(spec_text), container->bundle + "/config.json");
  if (!spec.process)
    return MakeError(ErrorCode::kInvalidArgument, "config.json: the spec has no process");
  if (auto it = spec.annotations.find(kSandboxIdAnnotation);
      it != spec.annotations.end() && it->second != options_.sandbox_id) {
    return MakeError(ErrorCode::kInvalidArgument, "the container belongs to sandbox `" +
                                                      it->second + "`, this shim serves `" +
                                                      options_.sandbox_id + "`");
  }
  if (!request.checkpoint().empty()) {
    return MakeError(ErrorCode::kUnimplemented,
                     "restoring from a checkpoint is not supported by hull");
  }
  spec.process->terminal = request.terminal();

  // The root filesystem on the host: containerd's mounts on <bundle>/rootfs,
  // or the spec's root path (ctr run --rootfs).
  std::string host_rootfs;
  if (request.rootfs_size() > 0) {
    host_rootfs = container->bundle + "/rootfs";
    HULL_CHECK_OK(MakeDirs(host_rootfs, 0711), "create the rootfs mount point");
    HULL_CHECK_OK(MountAll(RootfsMounts(request), host_rootfs), "mount the root filesystem");
    container->mounted_rootfs = host_rootfs;
  } else {
    std::filesystem::path root = spec.root.path;
    if (root.empty())
      return MakeError(ErrorCode::kInvalidArgument, "config.json: root.path is empty");
    if (root.is_relative()) root = std::filesystem::path(container->bundle) / root;
    host_rootfs = root.string();
    if (!std::filesystem::is_directory(host_rootfs)) {
      return MakeError(ErrorCode::kNotFound,
                       "root filesystem `" + host_rootfs + "` is not a directory");
    }
  }

  HULL_TRY(auto io, ProcessIo::Open(container->init->stdio), "open the container's stdio");
  PodVmSize size;
  std::string netns_path;   // the CNI netns CRI made for the pod
  std::string host_cgroup;  // kubelet's cgroup for the pod, on the host
  if (PodRoleOf(spec) == PodRole::kSandbox) {
    HULL_TRY(size, SizePodVm(spec.annotations, options_.config.hypervisor.pod_memory_overhead_mib),
             "config.json");
    if (spec.linux) {
      for (const auto& ns : spec.linux->namespaces) {
        if (ns.type == "network") netns_path = ns.path;
      }
      host_cgroup = spec.linux->cgroups_path;
    }
  }
  HULL_TRY(auto session, EnsureSession(size, netns_path, host_cgroup), "");
  // On any error below, what was shared for the container goes again.
  ScopeExit unshare([&] { (void)session->RemoveContainer(id); });
  // Bind mounts from the spec reach the guest through the shared directory.
  for (auto& mount : spec.mounts) {
    if (!IsBindMount(mount.type, mount.options)) continue;
    bool read_only = false;
    for (const auto& option : mount.options) read_only = read_only || option == "ro";
    HULL_TRY(mount.source, session->SharePath(id, mount.source, read_only),
             "bind mount `" + mount.source + "` on `" + mount.destination + "`");
  }
  // A pod's containers join its sandbox's namespaces: in the guest, not on the host.
  PodNamespaceContext pod{.task_pid = static_cast<pid_t>(ShimPid()),
                          .sandbox_guest_pid = SandboxGuestPid()};
  HULL_CHECK_OK(AdaptPodNamespaces(spec, pod), "config.json");
  auto agent_io = io->AgentIo();
  HULL_TRY(uint32_t guest_pid,
           session->CreateContainer(id, oci::SerializeOciSpec(spec), host_rootfs, agent_io), "");
  {
    std::lock_guard lock(mu_);
    container->pod_role = PodRoleOf(spec);
    container->guest_pid = guest_pid;
  }
  unshare.Dismiss();
  container->init->io = std::move(io);
  container->init->io->Start(session->agent(), {id, ""});
  return Ok();
}

Result<task::CreateTaskResponse> TaskService::Create(const Context&,
                                                     const task::CreateTaskRequest& request) {
  const std::string& id = request.id();
  const std::string what = "create container `" + id + "`";
  HULL_CHECK_OK(ValidateId("container", id), what);
  if (request.bundle().empty() || request.bundle()[0] != '/') {
    return MakeError(ErrorCode::kInvalidArgument, what + ": the bundle path must be absolute");
  }
  auto container = std::make_shared<Container>();
  container->id = id;
  container->bundle = request.bundle();
  container->init = std::make_shared<Process>();
  container->init->stdio = StdioOf(request);
  {
    std::lock_guard lock(mu_);
    if (containers_.count(id) != 0)
      return MakeError(ErrorCode::kAlreadyExists, what + ": it already exists");
    containers_[id] = container;
  }
  if (auto created = CreateInGuest(container, request); !created) {
    {
      std::lock_guard lock(mu_);
      containers_.erase(id);
      created_.notify_all();
      if (shutdown_deferred_ && containers_.empty()) ShutdownLocked();
    }
    if (!container->mounted_rootfs.empty()) (void)UnmountAll(container->mounted_rootfs);
    CloseSessionIfIdle();
    HULL_LOG_ERROR("{}: {}", what, created.error().ToString());
    return std::move(created).error().Wrap(what);
  }
  events::TaskCreate event;
  event.set_container_id(id);
  event.set_bundle(request.bundle());
  for (const auto& mount : request.rootfs()) *event.add_rootfs() = mount;
  event.mutable_io()->set_stdin(request.stdin());
  event.mutable_io()->set_stdout(request.stdout());
  event.mutable_io()->set_stderr(request.stderr());
  event.mutable_io()->set_terminal(request.terminal());
  event.set_pid(ShimPid());
  events_.Publish(event);
  // Only now: a TaskExit must never come before the TaskCreate.
  if (auto session = EnsureSession(); session) {
    StartWaiter(*session, container, container->init);
  } else {
    // The VM died in between; the waiter reports the exit (255) right away.
    StartWaiter(nullptr, container, container->init);
  }
  {
    // Only now may other calls touch it (a Delete racing this Create waits).
    std::lock_guard lock(mu_);
    container->ready = true;
    created_.notify_all();
  }
  HULL_LOG_INFO("container {} created", id);
  task::CreateTaskResponse response;
  response.set_pid(ShimPid());
  return response;
}

// --- Start ---------------------------------------------------------------------------

Result<task::StartResponse> TaskService::Start(const Context&, const task::StartRequest& request) {
  const std::string what = "start " + ProcessLabel(request.id(), request.exec_id());
  HULL_TRY(auto found, FindProcess(request.id(), request.exec_id()), what);
  auto [container, process] = found;
  HULL_TRY(auto session, EnsureSession(), what);
  std::unique_lock start_lock(process->start_mu);
  {
    std::lock_guard lock(mu_);
    if (process->state != ProcessState::kCreated) {
      return MakeError(ErrorCode::kFailedPrecondition, what + ": it was already started");
    }
  }
  if (process->exec_id.empty()) {
    if (auto started = session->agent().StartContainer(container->id); !started) {
      // The guest's init is gone; its waiter records the exit. The caller
      // must see the task stopped when Start fails (`ctr run --rm` deletes
      // it next, and containerd refuses to delete a created task).
      start_lock.unlock();
      std::unique_lock lock(mu_);
      clock_.WaitUntil(exited_, lock, clock_.Now() + timeouts_.call,
                       [&] { return process->state == ProcessState::kStopped; });
      return std::move(started).error().Wrap(what);
    }
  } else {
    auto stdio = process->io->AgentIo();
    auto pid = session->agent().ExecProcess(
        {{container->id, process->exec_id}, process->process_json, stdio});
    if (!pid) {
      // The process never ran: its FIFOs end now (the client waits for
      // their EOF before it hears of the error), and it is done, with
      // runc's status for that.
      process->io->Stop();
      std::lock_guard lock(mu_);
      process->state = ProcessState::kStopped;
      process->exit_status = 255;
      process->exited_at = std::chrono::system_clock::now();
      exited_.notify_all();
      return std::move(pid).error().Wrap(what);
    }
    {
      std::lock_guard lock(mu_);
      process->guest_pid = *pid;
    }
    process->io->Start(session->agent(), {container->id, process->exec_id});
    StartWaiter(session, container, process);
  }
  {
    std::lock_guard lock(mu_);
    process->state = ProcessState::kRunning;
  }
  if (process->exec_id.empty()) {
    events::TaskStart event;
    event.set_container_id(container->id);
    event.set_pid(ShimPid());
    events_.Publish(event);
  } else {
    events::TaskExecStarted event;
    event.set_container_id(container->id);
    event.set_exec_id(process->exec_id);
    event.set_pid(ShimPid());
    events_.Publish(event);
  }
  task::StartResponse response;
  response.set_pid(ShimPid());
  return response;
}

// --- Kill, Delete --------------------------------------------------------------------

Result<Empty> TaskService::Kill(const Context&, const task::KillRequest& request) {
  const std::string what = "kill " + ProcessLabel(request.id(), request.exec_id());
  HULL_TRY(auto found, FindProcess(request.id(), request.exec_id()), what);
  auto [container, process] = found;
  HULL_CHECK_OK(ValidateSignal(request.signal()), what);
  {
    std::lock_guard lock(mu_);
    if (process->state == ProcessState::kStopped)
      return MakeError(ErrorCode::kNotFound, "process already finished");
    if (process->state == ProcessState::kCreated && !process->exec_id.empty()) {
      return MakeError(ErrorCode::kFailedPrecondition, what + ": the process was not started");
    }
  }
  auto session = EnsureSession();
  // With the VM gone every process is gone: containerd's exit handling
  // tolerates only NOT_FOUND here.
  if (!session)
    return MakeError(ErrorCode::kNotFound,
                     "process already finished (" + session.error().ToString() + ")");
  auto signalled =
      (*session)->agent().SignalProcess({container->id, process->exec_id}, request.signal(),
                                        request.all() && process->exec_id.empty());
  if (!signalled && (signalled.error().code() == ErrorCode::kNotFound ||
                     signalled.error().code() == ErrorCode::kFailedPrecondition)) {
    return MakeError(ErrorCode::kNotFound, "process already finished");
  }
  if (!signalled) return std::move(signalled).error().Wrap(what);
  if (request.signal() == SIGKILL) {
    std::lock_guard lock(mu_);
    if (process->io) process->io->DropWhenFull();
    // Init's death takes every process of the container with it.
    if (process->exec_id.empty()) {
      for (auto& [exec_id, exec] : container->execs) {
        if (exec->io) exec->io->DropWhenFull();
      }
    }
  }
  return Empty();
}

// The agent keeps an exited exec (its exit status for late waiters) until
// told: kubelet's exec probes would otherwise pile up in the guest.
Result<task::DeleteResponse> TaskService::Delete(const Context&,
                                                 const task::DeleteRequest& request) {
  const std::string what = "delete " + ProcessLabel(request.id(), request.exec_id());
  HULL_TRY(auto found, FindProcess(request.id(), request.exec_id()), what);
  auto [container, process] = found;
  {
    std::lock_guard lock(mu_);
    if (process->state == ProcessState::kRunning) {
      return MakeError(ErrorCode::kFailedPrecondition, what + ": cannot delete a running process");
    }
    if (process->exec_id.empty()) {
      for (const auto& [exec_id, exec] : container->execs) {
        if (exec->state == ProcessState::kRunning) {
          return MakeError(ErrorCode::kFailedPrecondition,
                           what + ": process `" + exec_id + "` still runs in it");
        }
      }
    }
  }
  task::DeleteResponse response;
  events::TaskDelete event;
  event.set_container_id(container->id);
  if (!process->exec_id.empty()) {
    {
      std::lock_guard lock(mu_);
      container->execs.erase(process->exec_id);
    }
    EndProcesses({process});
    ForgetExecInGuest(container->id, process->exec_id);
    event.set_id(process->exec_id);
  } else {
    // A created, never started container: the agent kills its init.
    {
      std::lock_guard lock(vm_mu_);
      if (session_) {
        if (auto removed = session_->RemoveContainer(container->id); !removed) {
          HULL_LOG_WARN("{}: {}", what, removed.error().ToString());
        }
      }
    }
    std::vector<std::shared_ptr<Process>> processes{container->init};
    {
      std::lock_guard lock(mu_);
      for (auto& [exec_id, exec] : container->execs) processes.push_back(exec);
    }
    EndProcesses(processes);
    if (!container->mounted_rootfs.empty()) {
      if (auto unmounted = UnmountAll(container->mounted_rootfs); !unmounted) {
        HULL_LOG_WARN("{}: {}", what, unmounted.error().ToString());
      }
    }
    {
      std::lock_guard lock(mu_);
      containers_.erase(container->id);
    }
    event.set_id(container->id);
  }
  {
    std::lock_guard lock(mu_);
    response.set_pid(ShimPid());
    response.set_exit_status(process->exit_status);
    SetTimestamp(response.mutable_exited_at(), process->state == ProcessState::kStopped
                                                   ? process->exited_at
                                                   : std::chrono::system_clock::now());
  }
  event.set_pid(response.pid());
  event.set_exit_status(response.exit_status());
  *event.mutable_exited_at() = response.exited_at();
  events_.Publish(event);
  HULL_LOG_INFO("{}: done", what);
  if (process->exec_id.empty()) CloseSessionIfIdle();
  return response;
}

}  // namespace hull::shim
