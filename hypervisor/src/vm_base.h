// What the two Vm backends do alike: the accessors, the exit bookkeeping (who
// ended the VM and why, recorded once, waiters woken), QEMU's agent-port and
// shutdown events, connecting to the agent, the monitor thread, and the Stop
// sequence around each backend's own way of ending its hypervisor.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "hull/hypervisor/hypervisor.h"
#include "src/agent_port.h"

namespace hull {

// A VM's run state, shared with whatever reports on it from other threads
// (QMP's reader, libvirt's event loop, the monitor thread). Reference-counted:
// libvirt may still run a callback after the VM deregistered it. Every field
// is guarded by `mu`; `changed` is signalled whenever one changes.
struct VmRunState {
  std::mutex mu;
  std::condition_variable changed;
  AgentPortState agent_port;
  bool stop_requested = false;  // hull asked for the exit (Stop, ExpectExit)
  std::string shutdown_reason;  // from QEMU's SHUTDOWN event
  std::string abort_reason;     // why hull ended the VM (Abort); the exit's reason
  std::optional<VmExit> exit;

  // QEMU's VSERPORT_CHANGE (of the agent's port, `agent_port_id`) and
  // SHUTDOWN events, whichever way they arrive. Takes `mu`.
  void OnQemuEvent(std::string_view name, const nlohmann::json& data,
                   std::string_view agent_port_id);
  // Records the end of VM `id` -- the first report wins -- logs it (a warning
  // unless hull asked for it), and wakes every waiter. Called with `mu` held.
  void RecordExit(std::string_view id, VmExit end);
};

class VmBase : public Vm {
 public:
  const std::string& id() const final { return config_.id; }
  const std::string& state_dir() const final { return state_dir_; }
  std::string console_log_path() const final { return state_dir_ + "/console.log"; }
  const std::string& shared_dir() const final { return shared_dir_; }
  std::chrono::steady_clock::time_point launched_at() const final { return launched_at_; }

  Result<UniqueFd> ConnectAgent(std::chrono::steady_clock::time_point deadline) final;
  bool running() final;
  std::optional<VmExit> exit() final;
  Result<std::optional<VmExit>> WaitForExit(std::chrono::milliseconds timeout) final;
  void ExpectExit() final;
  void Abort(const std::string& reason) final;
  // Marks the exit as requested, waits up to `grace` for the VM to go by
  // itself, has the backend end it (EndVm), then removes the state directory.
  // Runs once; later calls return the same exit.
  VmExit Stop(std::chrono::milliseconds grace) final;

 protected:
  VmBase(VmConfig config, std::string state_dir, std::string shared_dir,
         std::shared_ptr<VmRunState> run);
  // Derived destructors call this first, while their parts still exist: a VM
  // is stopped (no grace) when its owner drops it.
  void StopUnlessStopped();

  // Called once by Stop, after the grace period: makes the hypervisor go
  // (asks, then forces), joins the monitor, makes sure an exit is recorded,
  // and releases what the backend holds.
  virtual void EndVm() = 0;
  // Kills the hypervisor now (Abort); its monitor records the exit.
  virtual void KillHypervisor() = 0;

  // Starts the thread that watches the VM; one per VM.
  void StartMonitor(std::function<void()> loop);
  // Joins it; false if it never started.
  bool JoinMonitor();

  // kUnavailable naming why the VM ended. Called with run_->mu held, once
  // run_->exit is set.
  Unexpected DeadError() const;

  const VmConfig config_;
  const std::string state_dir_;
  const std::string shared_dir_;
  const std::shared_ptr<VmRunState> run_;
  std::chrono::steady_clock::time_point launched_at_ = std::chrono::steady_clock::now();
  uint32_t vsock_cid_ = 0;  // the guest's CID on the vsock transport

 private:
  std::mutex stop_mu_;
  bool stopped_ = false;  // guarded by stop_mu_
  std::thread monitor_;
};

}  // namespace hull
