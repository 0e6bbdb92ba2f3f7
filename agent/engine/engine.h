// The container engine: containers and their processes inside one sandbox.
//
// Threading: every method is thread-safe. Blocking calls (Wait, reading
// output) block only their caller. Child exits reach the engine through
// OnChildExit, called by whoever reaps (PID 1's reaper in the guest, a test
// harness on the host).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/cgroup.h"
#include "engine/launch.h"
#include "hull/core/error.h"
#include "hull/core/fd.h"
#include "hull/core/oci_spec.h"
#include "hull/core/process.h"

namespace hull::engine {

struct IoRequest {
  bool terminal = false;
  bool stdin = false;
  bool stdout = false;
  bool stderr = false;
  uint16_t rows = 0;
  uint16_t columns = 0;
};

struct WaitResult {
  ExitStatus status;
  bool oom_killed = false;
  uint64_t exited_at_ns = 0;  // CLOCK_REALTIME
};

enum class ContainerState { kCreated, kRunning, kPaused, kStopped };
std::string_view ContainerStateName(ContainerState state);

enum class OutputStream { kStdout, kStderr };

struct EngineOptions {
  std::string cgroup_root = "/sys/fs/cgroup";
  std::string cgroup_parent = "hull";  // containers go to <root>/<parent>/<container id>
  // After a process exits, how long its output may stay silent (pipe empty,
  // write end still held by a leftover child) before it counts as drained.
  std::chrono::milliseconds drain_quiet = std::chrono::milliseconds(500);
};

class Engine {
 public:
  explicit Engine(EngineOptions options);
  ~Engine();

  // runc create: namespaces, cgroup, rootfs and security set up; the init
  // process waits before execve until Start.
  Status Create(const std::string& id, const oci::Spec& spec, const std::string& rootfs,
                const IoRequest& io);
  // runc start: the init process execs. Fails (and the init exits 127/126)
  // when the command cannot be executed.
  Status Start(const std::string& id);
  // runc exec: a new process in a running container's namespaces and cgroup.
  Status Exec(const std::string& id, const std::string& exec_id, const oci::Process& process,
              const IoRequest& io);
  Status Signal(const std::string& id, const std::string& exec_id, int signal, bool all);
  // Blocks until the process exited and its captured output was drained.
  Result<WaitResult> Wait(const std::string& id, const std::string& exec_id);
  // Forgets an exited exec: its id may be used again, its pipes close once
  // no reader or waiter holds them. Refused while the process runs.
  Status RemoveExec(const std::string& id, const std::string& exec_id);
  Status Remove(const std::string& id, bool force, std::chrono::milliseconds timeout);
  Status Update(const std::string& id, const oci::Resources& resources);
  Result<CgroupStats> Stats(const std::string& id);
  Status Pause(const std::string& id);
  Status Resume(const std::string& id);
  Result<std::vector<pid_t>> Pids(const std::string& id);
  Result<ContainerState> State(const std::string& id);
  Result<pid_t> Pid(const std::string& id, const std::string& exec_id);
  std::vector<std::string> ContainerIds();

  // --- IO ---
  Status WriteStdin(const std::string& id, const std::string& exec_id, std::string_view data);
  Status CloseStdin(const std::string& id, const std::string& exec_id);
  Status ResizeTty(const std::string& id, const std::string& exec_id, uint16_t rows,
                   uint16_t columns);
  // Streams a process's output to `sink` as it is read, until EOF or until
  // the process has exited and the stream stayed quiet (see drain_quiet).
  // `sink` returning false (the reader went away) ends the stream early.
  // Only one reader per stream at a time.
  Status ReadOutput(const std::string& id, const std::string& exec_id, OutputStream stream,
                    const std::function<bool(std::string_view)>& sink);

  // A reaped child: records its exit. Unknown pids are ignored.
  void OnChildExit(pid_t pid, int wait_status);
  // OOM kills, by container id (from the cgroup's memory.events).
  void SetOomHandler(std::function<void(const std::string& id)> handler);

 private:
  struct Process;
  struct Container;

  Result<std::shared_ptr<Container>> Find(const std::string& id);
  Result<std::shared_ptr<Process>> FindProcess(const std::string& id, const std::string& exec_id);
  // `pty_from_pid`: a terminal comes from that process's /dev/pts when it can.
  Result<std::shared_ptr<Process>> MakeProcess(const std::string& exec_id, const IoRequest& io,
                                               ChildStdio* stdio, std::vector<UniqueFd>* child_ends,
                                               pid_t pty_from_pid = 0);
  void OnOom(const std::string& id);

  EngineOptions options_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::string, std::shared_ptr<Container>> containers_;
  std::map<pid_t, std::shared_ptr<Process>> by_pid_;
  std::map<pid_t, int> unclaimed_exits_;  // reaped before they were registered
  std::function<void(const std::string&)> oom_handler_;
  std::unique_ptr<OomWatcher> oom_watcher_;
};

}  // namespace hull::engine
