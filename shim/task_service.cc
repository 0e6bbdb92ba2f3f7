#include "task_service.h"

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

namespace hull::shim {

namespace events = ::containerd::events;
using sandbox::Sandbox;
using std::chrono::seconds;

namespace {

constexpr char kSandboxIdAnnotation[] = "io.kubernetes.cri.sandbox-id";
uint32_t ShimPid() { return static_cast<uint32_t>(::getpid()); }

}  // namespace

TaskService::TaskService(TaskServiceOptions options, EventSink& events,
                         std::function<void()> request_shutdown)
    : options_(std::move(options)),
      events_(events),
      timeouts_(sandbox::AgentTimeoutsFromConfig(options_.config)),
      request_shutdown_(std::move(request_shutdown)) {
  vm_thread_ = SpawnThread("vm", [this] {
    std::unique_lock lock(vm_thread_mu_);
    while (true) {
      vm_thread_cv_.wait(lock, [&] { return vm_thread_stop_ || !vm_jobs_.empty(); });
      if (vm_jobs_.empty()) return;
      auto job = std::move(vm_jobs_.front());
      vm_jobs_.pop_front();
      lock.unlock();
      job();
      lock.lock();
    }
  });
}

TaskService::~TaskService() {
  std::vector<std::shared_ptr<Container>> containers;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, container] : containers_) containers.push_back(container);
    containers_.clear();
  }
  // The VM goes first: every agent call still in flight then fails, so the
  // waiter and IO threads end.
  {
    std::lock_guard lock(vm_mu_);
    if (session_) RunOnVmThread([this] { session_->Close(); });
    if (cancel_oom_) cancel_oom_->Cancel();
  }
  for (auto& container : containers) {
    std::vector<std::shared_ptr<Process>> processes{container->init};
    for (auto& [exec_id, process] : container->execs) processes.push_back(process);
    std::erase(processes, nullptr);
    // With the VM stopped nothing answers any more: nobody waits for it.
    for (auto& process : processes) process->cancel_wait.Cancel();
    EndProcesses(processes);
    if (!container->mounted_rootfs.empty()) (void)UnmountAll(container->mounted_rootfs);
  }
  if (oom_thread_.joinable()) oom_thread_.join();
  for (auto& thread : finished_threads_) thread.join();
  session_.reset();
  {
    std::lock_guard lock(vm_thread_mu_);
    vm_thread_stop_ = true;
  }
  vm_thread_cv_.notify_all();
  vm_thread_.join();
}

void TaskService::RunOnVmThread(std::function<void()> fn) {
  std::promise<void> done;
  auto future = done.get_future();
  {
    std::lock_guard lock(vm_thread_mu_);
    vm_jobs_.push_back([&] {
      fn();
      done.set_value();
    });
  }
  vm_thread_cv_.notify_all();
  future.wait();
}

size_t TaskService::container_count() {
  std::lock_guard lock(mu_);
  return containers_.size();
}

// --- lookups -------------------------------------------------------------------

uint32_t TaskService::SandboxGuestPid() {
  std::lock_guard lock(mu_);
  for (const auto& [id, container] : containers_) {
    if (container->pod_role == PodRole::kSandbox && container->guest_pid != 0)
      return container->guest_pid;
  }
  return 0;
}

Result<std::shared_ptr<TaskService::Container>> TaskService::FindContainer(const std::string& id) {
  std::lock_guard lock(mu_);
  auto it = containers_.find(id);
  if (it == containers_.end() || !it->second->ready) {
    return MakeError(ErrorCode::kNotFound, "container `" + id + "` not created");
  }
  return it->second;
}

Result<std::pair<std::shared_ptr<TaskService::Container>, std::shared_ptr<TaskService::Process>>>
TaskService::FindProcess(const std::string& id, const std::string& exec_id) {
  HULL_TRY(auto container, FindContainer(id), "");
  if (exec_id.empty()) return std::make_pair(container, container->init);
  std::lock_guard lock(mu_);
  auto it = container->execs.find(exec_id);
  if (it == container->execs.end()) {
    return MakeError(ErrorCode::kNotFound,
                     "process `" + exec_id + "` of container `" + id + "` does not exist");
  }
  return std::make_pair(container, it->second);
}

// --- the VM ----------------------------------------------------------------------

Result<std::shared_ptr<Sandbox>> TaskService::EnsureSession(const PodVmSize& size,
                                                            const std::string& netns_path,
                                                            const std::string& host_cgroup) {
  std::lock_guard lock(vm_mu_);
  if (session_) {
    if (session_->vm().running()) return session_;
    auto exit = session_->vm().exit();
    return MakeError(
        ErrorCode::kUnavailable,
        "the sandbox VM is gone (" + (exit ? exit->reason : std::string("stopped")) + ")");
  }
  sandbox::SandboxOptions sandbox_options{.vm_parent_dir = options_.state_dir,
                                          .vm_id = "vm",
                                          .vcpus = size.vcpus,
                                          .memory_mib = size.memory_mib,
                                          .netns_path = netns_path,
                                          .host_cgroup_path = host_cgroup};
  Result<std::unique_ptr<Sandbox>> opened = MakeError(ErrorCode::kInternal, "not run");
  RunOnVmThread([&] {
    opened =
        Sandbox::Open(options_.config, options_.sandbox_id, sandbox_options, options_.sandbox_deps);
  });
  if (!opened) return std::move(opened).error().Wrap("boot the sandbox VM");
  session_ = std::shared_ptr<Sandbox>(std::move(*opened));
  HULL_LOG_INFO("sandbox {}: VM up (pid {})", options_.sandbox_id, session_->vm().pid());
  if (oom_thread_.joinable()) oom_thread_.join();
  cancel_oom_ = std::make_unique<sandbox::Cancellation>();
  oom_thread_ = SpawnThread("oom-events", [this, session = session_] { WatchOom(session); });
  return session_;
}

void TaskService::WatchOom(std::shared_ptr<Sandbox> session) {
  auto events = session->agent().OomEvents(*cancel_oom_);
  sandbox::OomEvent event;
  while (events->Next(&event)) {
    {
      // The guest names the container: only known ids are reported.
      std::lock_guard lock(mu_);
      if (containers_.count(event.container_id) == 0) continue;
    }
    HULL_LOG_INFO("container {}: OOM kill in the guest", event.container_id);
    events::TaskOOM oom;
    oom.set_container_id(event.container_id);
    events_.Publish(oom);
  }
  (void)events->Finish();
}

void TaskService::EndProcesses(const std::vector<std::shared_ptr<Process>>& processes) {
  {
    std::unique_lock lock(mu_);
    auto deadline = std::chrono::steady_clock::now() + timeouts_.call;
    for (const auto& process : processes) {
      // A process never started has no waiter to report it (an exec).
      if (!process->waiter.joinable()) continue;
      if (!exited_.wait_until(lock, deadline,
                              [&] { return process->state == ProcessState::kStopped; })) {
        break;
      }
    }
  }
  for (const auto& process : processes) {
    process->cancel_wait.Cancel();
    if (process->waiter.joinable()) process->waiter.join();
    if (process->io) process->io->Stop();
  }
}

void TaskService::CloseSessionIfIdle() {
  {
    std::lock_guard lock(mu_);
    if (!containers_.empty()) return;
  }
  std::lock_guard lock(vm_mu_);
  if (!session_) return;
  {
    // A Create may have come in meanwhile.
    std::lock_guard containers_lock(mu_);
    if (!containers_.empty()) return;
  }
  HULL_LOG_INFO("sandbox {}: last container gone, stopping the VM", options_.sandbox_id);
  RunOnVmThread([this] { session_->Close(); });
  cancel_oom_->Cancel();
  if (oom_thread_.joinable()) oom_thread_.join();
  for (auto& thread : finished_threads_) thread.join();
  finished_threads_.clear();
  session_.reset();
}

// --- waiters ---------------------------------------------------------------------

void TaskService::StartWaiter(const std::shared_ptr<Sandbox>& session,
                              const std::shared_ptr<Container>& container,
                              const std::shared_ptr<Process>& process) {
  process->waiter = SpawnThread("wait-" + container->id, [this, session, container, process] {
    Result<sandbox::ProcessExit> waited =
        session
            ? session->agent().WaitProcess({container->id, process->exec_id}, process->cancel_wait)
            : MakeError(ErrorCode::kUnavailable, "the sandbox VM is gone");
    uint32_t exit_status = 255;
    if (waited) {
      exit_status = waited->exit_status;  // 0..255: the agent API checked it
    } else {
      HULL_LOG_WARN("container {} {}: wait: {} (reporting exit status 255)", container->id,
                    process->exec_id, waited.error().ToString());
    }
    // Everything the process wrote reaches the FIFOs before anyone hears of its exit.
    if (process->io) process->io->WaitOutput();
    std::lock_guard start_lock(process->start_mu);
    {
      std::lock_guard lock(mu_);
      process->state = ProcessState::kStopped;
      process->exit_status = exit_status;
      process->exited_at = std::chrono::system_clock::now();
    }
    exited_.notify_all();
    events::TaskExit exit;
    exit.set_container_id(container->id);
    exit.set_id(process->exec_id.empty() ? container->id : process->exec_id);
    exit.set_pid(ShimPid());
    exit.set_exit_status(exit_status);
    SetTimestamp(exit.mutable_exited_at(), process->exited_at);
    events_.Publish(exit);
    HULL_LOG_INFO("container {} {}: exited with status {}", container->id,
                  process->exec_id.empty() ? "init" : process->exec_id, exit_status);
  });
}

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
    }
    if (!container->mounted_rootfs.empty()) (void)UnmountAll(container->mounted_rootfs);
    CloseSessionIfIdle();
    HULL_LOG_ERROR("{}: {}", what, created.error().ToString());
    return std::move(created).error().Wrap(what);
  }
  {
    std::lock_guard lock(mu_);
    container->ready = true;
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
      exited_.wait_for(lock, timeouts_.call,
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

// --- State, Wait, Connect -------------------------------------------------------------

Result<task::StateResponse> TaskService::State(const Context&, const task::StateRequest& request) {
  HULL_TRY(auto found, FindProcess(request.id(), request.exec_id()), "state");
  auto [container, process] = found;
  std::lock_guard lock(mu_);
  task::StateResponse response;
  response.set_id(request.exec_id().empty() ? container->id : process->exec_id);
  response.set_exec_id(process->exec_id);
  response.set_bundle(container->bundle);
  response.set_pid(ShimPid());
  response.set_status(TaskStatus(process->state, container->paused));
  response.set_stdin(process->stdio.stdin);
  response.set_stdout(process->stdio.stdout);
  response.set_stderr(process->stdio.stderr);
  response.set_terminal(process->stdio.terminal);
  if (process->state == ProcessState::kStopped) {
    response.set_exit_status(process->exit_status);
    SetTimestamp(response.mutable_exited_at(), process->exited_at);
  } else {
    SetZeroTime(response.mutable_exited_at());
  }
  return response;
}

Result<task::WaitResponse> TaskService::Wait(const Context& context,
                                             const task::WaitRequest& request) {
  HULL_TRY(auto found, FindProcess(request.id(), request.exec_id()), "wait");
  auto process = found.second;
  std::unique_lock lock(mu_);
  while (process->state != ProcessState::kStopped) {
    if (context.Cancelled())
      return MakeError(ErrorCode::kCancelled, "wait: the call was cancelled");
    exited_.wait_for(lock, std::chrono::milliseconds(500));
  }
  task::WaitResponse response;
  response.set_exit_status(process->exit_status);
  SetTimestamp(response.mutable_exited_at(), process->exited_at);
  return response;
}

Result<task::ConnectResponse> TaskService::Connect(const Context&,
                                                   const task::ConnectRequest& request) {
  task::ConnectResponse response;
  response.set_shim_pid(ShimPid());
  std::lock_guard lock(mu_);
  auto it = containers_.find(request.id());
  response.set_task_pid(it != containers_.end() && it->second->ready ? ShimPid() : 0);
  response.set_version(PROJECT_VERSION_STRING);
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
void TaskService::ForgetExecInGuest(const std::string& container_id, const std::string& exec_id) {
  std::shared_ptr<Sandbox> session;
  {
    std::lock_guard lock(vm_mu_);
    if (!session_ || !session_->vm().running()) return;  // nothing left to forget
    session = session_;
  }
  auto removed = session->agent().RemoveProcess({container_id, exec_id});
  // NOT_FOUND: it never ran there (a failed ExecProcess).
  if (!removed && removed.error().code() != ErrorCode::kNotFound) {
    HULL_LOG_WARN("container {}: remove exec {} in the guest: {}", container_id, exec_id,
                  removed.error().ToString());
  }
}

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

// --- Exec, IO ----------------------------------------------------------------------------

Result<Empty> TaskService::Exec(const Context&, const task::ExecProcessRequest& request) {
  const std::string what = "exec `" + request.exec_id() + "` in container `" + request.id() + "`";
  HULL_CHECK_OK(ValidateId("exec", request.exec_id()), what);
  HULL_TRY(auto container, FindContainer(request.id()), what);
  HULL_TRY(std::string process_json, ExecProcessJson(request.spec()), what);
  HULL_TRY(oci::Process process_spec, oci::ParseOciProcess(process_json), what + ": process spec");
  process_spec.terminal = request.terminal();
  auto process = std::make_shared<Process>();
  process->exec_id = request.exec_id();
  process->stdio = StdioOf(request);
  process->process_json = oci::SerializeOciProcess(process_spec);
  {
    std::lock_guard lock(mu_);
    if (container->init->state != ProcessState::kRunning) {
      return MakeError(ErrorCode::kFailedPrecondition, what + ": the container is not running");
    }
    if (container->execs.count(request.exec_id()) != 0) {
      return MakeError(ErrorCode::kAlreadyExists,
                       what + ": id " + request.exec_id() + " already exists");
    }
  }
  HULL_TRY(process->io, ProcessIo::Open(process->stdio), what);
  {
    std::lock_guard lock(mu_);
    if (!container->execs.emplace(request.exec_id(), process).second) {
      return MakeError(ErrorCode::kAlreadyExists,
                       what + ": id " + request.exec_id() + " already exists");
    }
  }
  events::TaskExecAdded event;
  event.set_container_id(container->id);
  event.set_exec_id(request.exec_id());
  events_.Publish(event);
  return Empty();
}

Result<Empty> TaskService::ResizePty(const Context&, const task::ResizePtyRequest& request) {
  HULL_TRY(auto found, FindProcess(request.id(), request.exec_id()), "resize pty");
  if (!found.second->stdio.terminal) {
    return MakeError(ErrorCode::kFailedPrecondition, "resize pty: the process has no terminal");
  }
  HULL_TRY(auto session, EnsureSession(), "resize pty");
  HULL_CHECK_OK(session->agent().ResizeTty({request.id(), request.exec_id()},
                                           {request.height(), request.width()}),
                "resize pty");
  return Empty();
}

Result<Empty> TaskService::CloseIO(const Context&, const task::CloseIORequest& request) {
  HULL_TRY(auto found, FindProcess(request.id(), request.exec_id()), "close IO");
  if (request.stdin() && found.second->io) found.second->io->CloseStdin();
  return Empty();
}

// --- Pids, Pause, Resume, Update, Stats ------------------------------------------------------

Result<task::PidsResponse> TaskService::Pids(const Context&, const task::PidsRequest& request) {
  HULL_TRY(auto container, FindContainer(request.id()), "pids");
  HULL_TRY(auto session, EnsureSession(), "pids");
  HULL_TRY(auto pids, session->agent().ListProcesses(request.id()), "pids");
  std::map<uint32_t, std::string> exec_ids;
  {
    std::lock_guard lock(mu_);
    for (const auto& [exec_id, exec] : container->execs) {
      if (exec->guest_pid != 0) exec_ids[exec->guest_pid] = exec_id;
    }
  }
  return ToPidsResponse(pids, exec_ids);
}

Result<Empty> TaskService::Pause(const Context&, const task::PauseRequest& request) {
  const std::string what = "pause `" + request.id() + "`";
  HULL_TRY(auto container, FindContainer(request.id()), what);
  HULL_TRY(auto session, EnsureSession(), what);
  HULL_CHECK_OK(session->agent().PauseContainer(request.id()), what);
  {
    std::lock_guard lock(mu_);
    container->paused = true;
  }
  events::TaskPaused event;
  event.set_container_id(request.id());
  events_.Publish(event);
  return Empty();
}

Result<Empty> TaskService::Resume(const Context&, const task::ResumeRequest& request) {
  const std::string what = "resume `" + request.id() + "`";
  HULL_TRY(auto container, FindContainer(request.id()), what);
  HULL_TRY(auto session, EnsureSession(), what);
  HULL_CHECK_OK(session->agent().ResumeContainer(request.id()), what);
  {
    std::lock_guard lock(mu_);
    container->paused = false;
  }
  events::TaskResumed event;
  event.set_container_id(request.id());
  events_.Publish(event);
  return Empty();
}

Result<Empty> TaskService::Checkpoint(const Context&, const task::CheckpointTaskRequest& request) {
  return MakeError(ErrorCode::kUnimplemented,
                   "checkpoint `" + request.id() +
                       "`: not supported: hull runs each sandbox in a VM and does not offer VM "
                       "checkpoints");
}

Result<Empty> TaskService::Update(const Context&, const task::UpdateTaskRequest& request) {
  const std::string what = "update `" + request.id() + "`";
  HULL_TRY(auto container, FindContainer(request.id()), what);
  HULL_TRY(std::string resources, ResourcesJson(request.resources()), what);
  HULL_TRY(auto session, EnsureSession(), what);
  HULL_CHECK_OK(session->agent().UpdateContainer(request.id(), resources), what);
  return Empty();
}

Result<task::StatsResponse> TaskService::Stats(const Context&, const task::StatsRequest& request) {
  HULL_TRY(auto container, FindContainer(request.id()), "stats");
  HULL_TRY(auto session, EnsureSession(), "stats");
  HULL_TRY(auto stats, session->agent().StatsContainer(request.id()), "stats");
  return ToStatsResponse(stats);
}

// --- Shutdown ------------------------------------------------------------------------------

Result<Empty> TaskService::Shutdown(const Context&, const task::ShutdownRequest&) {
  std::lock_guard lock(mu_);
  // One shim serves the whole sandbox: it stays while any container is left.
  if (!containers_.empty() || shutdown_requested_) return Empty();
  shutdown_requested_ = true;
  HULL_LOG_INFO("sandbox {}: nothing left to serve, shutting down", options_.sandbox_id);
  request_shutdown_();
  return Empty();
}

void TaskService::Register(ttrpc::Server& server) {
#define HULL_TASK_METHOD(Name, Request, Response)                                             \
  ttrpc::RegisterMethod<Request, Response>(                                                   \
      server, kTaskService, #Name,                                                            \
      [this](const ttrpc::CallContext& context, const Request& request) -> Result<Response> { \
        auto result = Name(context, request);                                                 \
        if (!result) HULL_LOG_DEBUG(#Name " failed: {}", result.error().ToString());          \
        return result;                                                                        \
      })
  HULL_TASK_METHOD(State, task::StateRequest, task::StateResponse);
  HULL_TASK_METHOD(Create, task::CreateTaskRequest, task::CreateTaskResponse);
  HULL_TASK_METHOD(Start, task::StartRequest, task::StartResponse);
  HULL_TASK_METHOD(Delete, task::DeleteRequest, task::DeleteResponse);
  HULL_TASK_METHOD(Pids, task::PidsRequest, task::PidsResponse);
  HULL_TASK_METHOD(Pause, task::PauseRequest, Empty);
  HULL_TASK_METHOD(Resume, task::ResumeRequest, Empty);
  HULL_TASK_METHOD(Checkpoint, task::CheckpointTaskRequest, Empty);
  HULL_TASK_METHOD(Kill, task::KillRequest, Empty);
  HULL_TASK_METHOD(Exec, task::ExecProcessRequest, Empty);
  HULL_TASK_METHOD(ResizePty, task::ResizePtyRequest, Empty);
  HULL_TASK_METHOD(CloseIO, task::CloseIORequest, Empty);
  HULL_TASK_METHOD(Update, task::UpdateTaskRequest, Empty);
  HULL_TASK_METHOD(Wait, task::WaitRequest, task::WaitResponse);
  HULL_TASK_METHOD(Stats, task::StatsRequest, task::StatsResponse);
  HULL_TASK_METHOD(Connect, task::ConnectRequest, task::ConnectResponse);
  HULL_TASK_METHOD(Shutdown, task::ShutdownRequest, Empty);
#undef HULL_TASK_METHOD
}

}  // namespace hull::shim
