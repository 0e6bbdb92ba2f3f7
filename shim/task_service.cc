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

TaskService::TaskService(TaskServiceOptions options, EventSink& events,
                         std::function<void()> request_shutdown)
    : options_(std::move(options)),
      events_(events),
      clock_(*options_.clock),
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
  std::unique_lock lock(mu_);
  // A container still being created is answered for once its Create ends:
  // a containerd restarted meanwhile asks about it (and deletes it) before
  // the Create it sent before its restart is over, and must not be told it
  // does not exist while the shim goes on to make it.
  auto settled = [&] {
    auto it = containers_.find(id);
    return it == containers_.end() || it->second->ready;
  };
  if (!clock_.WaitUntil(created_, lock, clock_.Now() + timeouts_.create, settled)) {
    return MakeError(ErrorCode::kUnavailable,
                     "container `" + id + "` is still being created; try again");
  }
  auto it = containers_.find(id);
  if (it == containers_.end()) {
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
  if (!containers_.empty()) {
    shutdown_deferred_ = true;
    return Empty();
  }
  ShutdownLocked();
  return Empty();
}

void TaskService::ShutdownLocked() {
  if (shutdown_requested_) return;
  shutdown_requested_ = true;
  HULL_LOG_INFO("sandbox {}: nothing left to serve, shutting down", options_.sandbox_id);
  request_shutdown_();
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
