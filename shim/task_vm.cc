// The task service's VM: booting it on its own thread, stopping it when the
// last container goes, and the threads that learn of exits and OOM kills.
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
  // The guest decides how many there are: the log gets the 1st, 2nd, 4th,
  // 8th... of each container, and the publisher coalesces the events.
  std::map<std::string, uint64_t> counts;
  while (events->Next(&event)) {
    {
      // The guest names the container: only known ids are reported.
      std::lock_guard lock(mu_);
      if (containers_.count(event.container_id) == 0) continue;
    }
    uint64_t count = ++counts[event.container_id];
    if ((count & (count - 1)) == 0) {
      HULL_LOG_INFO("container {}: OOM kill in the guest ({} so far)", event.container_id, count);
    }
    events::TaskOOM oom;
    oom.set_container_id(event.container_id);
    events_.Publish(oom);
  }
  (void)events->Finish();
}

void TaskService::EndProcesses(const std::vector<std::shared_ptr<Process>>& processes) {
  {
    std::unique_lock lock(mu_);
    auto deadline = clock_.Now() + timeouts_.call;
    for (const auto& process : processes) {
      // A process never started has no waiter to report it (an exec).
      if (!process->waiter.joinable()) continue;
      if (!clock_.WaitUntil(exited_, lock, deadline,
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

}  // namespace hull::shim
