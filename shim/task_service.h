// containerd.task.v2.Task for one sandbox: the 17 RPCs with the runc shim's
// semantics (containerd 1.6), over one VM whose agent runs the containers.
//
// Model: the shim serves one sandbox (a pod, or one `ctr run` container).
// The first Create boots the VM; the last Delete stops it. The task pid
// containerd sees is the shim's own pid (guest pids mean nothing on the
// host). Each process has a waiter thread that learns its exit from the
// agent, closes its host stdio once the output is drained, then publishes
// TaskExit and wakes Wait callers; a Start's TaskStart is always published
// before that process's TaskExit.
//
// Threading: every handler may run concurrently with any other.
#pragma once

#include <google/protobuf/empty.pb.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "containerd/task/v2/shim.pb.h"
#include "events.h"
#include "hull/core/clock.h"
#include "hull/core/config.h"
#include "hull/core/error.h"
#include "hull/sandbox/sandbox.h"
#include "pod.h"
#include "process_io.h"
#include "task_convert.h"
#include "ttrpc/ttrpc.h"

namespace hull::shim {

namespace task = ::containerd::task::v2;
using Empty = ::google::protobuf::Empty;

inline constexpr char kTaskService[] = "containerd.task.v2.Task";

struct TaskServiceOptions {
  Config config;
  std::string sandbox_id;
  // <run_dir>/<sandbox id>: the shim's socket and the VM's state dir (vm/).
  std::string state_dir;
  // The sandbox's collaborators; empty = the real ones (tests: fakes).
  sandbox::SandboxDeps sandbox_deps;
  // What the service's own deadlines are measured by (tests: a FakeClock).
  Clock* clock = &Clock::Steady();
};

class TaskService {
 public:
  // `request_shutdown` is called (once) when a Shutdown RPC finds nothing
  // left to serve; the caller then stops the server.
  TaskService(TaskServiceOptions options, EventSink& events,
              std::function<void()> request_shutdown);
  // Removes what is left (containers, VM, mounts) without waiting for RPCs.
  ~TaskService();
  TaskService(const TaskService&) = delete;
  TaskService& operator=(const TaskService&) = delete;

  void Register(ttrpc::Server& server);

  using Context = ttrpc::CallContext;
  Result<task::StateResponse> State(const Context&, const task::StateRequest&);
  Result<task::CreateTaskResponse> Create(const Context&, const task::CreateTaskRequest&);
  Result<task::StartResponse> Start(const Context&, const task::StartRequest&);
  Result<task::DeleteResponse> Delete(const Context&, const task::DeleteRequest&);
  Result<task::PidsResponse> Pids(const Context&, const task::PidsRequest&);
  Result<Empty> Pause(const Context&, const task::PauseRequest&);
  Result<Empty> Resume(const Context&, const task::ResumeRequest&);
  Result<Empty> Checkpoint(const Context&, const task::CheckpointTaskRequest&);
  Result<Empty> Kill(const Context&, const task::KillRequest&);
  Result<Empty> Exec(const Context&, const task::ExecProcessRequest&);
  Result<Empty> ResizePty(const Context&, const task::ResizePtyRequest&);
  Result<Empty> CloseIO(const Context&, const task::CloseIORequest&);
  Result<Empty> Update(const Context&, const task::UpdateTaskRequest&);
  Result<task::WaitResponse> Wait(const Context&, const task::WaitRequest&);
  Result<task::StatsResponse> Stats(const Context&, const task::StatsRequest&);
  Result<task::ConnectResponse> Connect(const Context&, const task::ConnectRequest&);
  Result<Empty> Shutdown(const Context&, const task::ShutdownRequest&);

  // Containers currently known.
  size_t container_count();

 private:
  struct Process {
    std::string exec_id;  // "" = init
    StdioPaths stdio;
    std::string process_json;  // exec only: the OCI process
    ProcessState state = ProcessState::kCreated;
    uint32_t guest_pid = 0;
    uint32_t exit_status = 0;
    std::chrono::system_clock::time_point exited_at{};
    std::unique_ptr<ProcessIo> io;
    std::thread waiter;
    sandbox::Cancellation cancel_wait;  // ends the waiter's WaitProcess
    std::mutex start_mu;  // held across Start + TaskStart; the waiter takes it before TaskExit
  };
  struct Container {
    std::string id;
    std::string bundle;
    std::string mounted_rootfs;  // <bundle>/rootfs when the shim mounted it
    bool paused = false;
    bool ready = false;  // Create finished
    PodRole pod_role = PodRole::kNone;
    uint32_t guest_pid = 0;  // its init in the guest (for the pod's namespaces)
    std::shared_ptr<Process> init;
    std::map<std::string, std::shared_ptr<Process>> execs;
  };

  // The container `id`; one still being created is waited for (up to the
  // create deadline): kNotFound if its Create fails.
  Result<std::shared_ptr<Container>> FindContainer(const std::string& id);
  // Asks the server to stop, once. Requires mu_.
  void ShutdownLocked();
  // The pod's sandbox container's init pid in the guest; 0 if none.
  uint32_t SandboxGuestPid();
  Result<std::pair<std::shared_ptr<Container>, std::shared_ptr<Process>>> FindProcess(
      const std::string& id, const std::string& exec_id);
  // Boots the sandbox VM if it is not running. vm_mu_ serialises it.
  // `size`, `netns_path` and `host_cgroup`: a pod sandbox's VM size, CNI
  // netns and host cgroup (only used when this boots the VM).
  Result<std::shared_ptr<sandbox::Sandbox>> EnsureSession(const PodVmSize& size = {},
                                                          const std::string& netns_path = "",
                                                          const std::string& host_cgroup = "");
  // Stops the VM once no container is left.
  void CloseSessionIfIdle();
  void ForgetExecInGuest(const std::string& container_id, const std::string& exec_id);
  // `session` null: the VM is gone, and the exit is reported at once.
  void StartWaiter(const std::shared_ptr<sandbox::Sandbox>& session,
                   const std::shared_ptr<Container>& container,
                   const std::shared_ptr<Process>& process);
  void WatchOom(std::shared_ptr<sandbox::Sandbox> session);
  // Waits (up to the agent's call deadline) for the processes to be
  // reported stopped, then gives up on the agent's answer and joins their
  // waiters and IO: a guest that never answers cannot hold a Delete.
  void EndProcesses(const std::vector<std::shared_ptr<Process>>& processes);
  Status CreateInGuest(const std::shared_ptr<Container>& container,
                       const task::CreateTaskRequest& request);
  // Runs `fn` on the VM thread: the hypervisor's children die with the thread
  // that forked them, so they must come from one that lives as long as the shim.
  void RunOnVmThread(std::function<void()> fn);

  TaskServiceOptions options_;
  EventSink& events_;
  Clock& clock_;
  sandbox::AgentTimeouts timeouts_;
  std::function<void()> request_shutdown_;
  std::mutex mu_;
  std::condition_variable exited_;
  std::condition_variable created_;  // a Create ended (ready, or removed)
  std::map<std::string, std::shared_ptr<Container>> containers_;
  bool shutdown_requested_ = false;
  // A Shutdown came while containers were left. containerd asks again after
  // each Delete; but a Create that fails after it is never deleted, so the
  // shim goes when that leaves it empty.
  bool shutdown_deferred_ = false;

  std::mutex vm_mu_;
  // Shared with calls in flight, so a Delete that stops the VM never frees
  // it under them.
  std::shared_ptr<sandbox::Sandbox> session_;
  std::thread oom_thread_;
  std::unique_ptr<sandbox::Cancellation> cancel_oom_;
  // Threads of containers already deleted, joined at teardown.
  std::vector<std::thread> finished_threads_;

  // The VM thread.
  std::mutex vm_thread_mu_;
  std::condition_variable vm_thread_cv_;
  std::deque<std::function<void()>> vm_jobs_;
  bool vm_thread_stop_ = false;
  std::thread vm_thread_;
};

}  // namespace hull::shim
