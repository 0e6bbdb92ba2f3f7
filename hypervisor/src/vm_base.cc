#include "src/vm_base.h"

#include "hull/core/log.h"
#include "hull/core/thread.h"

namespace hull {

using std::chrono::milliseconds;

void VmRunState::OnQemuEvent(std::string_view name, const nlohmann::json& data,
                             std::string_view agent_port_id) {
  if (!data.is_object()) return;
  std::lock_guard lock(mu);
  if (name == "VSERPORT_CHANGE") {
    auto id = data.find("id");
    auto open = data.find("open");
    if (id != data.end() && id->is_string() && *id == agent_port_id && open != data.end() &&
        open->is_boolean()) {
      agent_port.OnChange(open->get<bool>());
    }
  } else if (name == "SHUTDOWN") {
    auto reason = data.find("reason");
    if (reason != data.end() && reason->is_string()) shutdown_reason = reason->get<std::string>();
  }
  changed.notify_all();
}

void VmRunState::RecordExit(std::string_view id, VmExit end) {
  if (exit) return;
  if (!abort_reason.empty()) {
    end.reason = abort_reason;
    end.expected = false;
  }
  if (end.expected) {
    HULL_LOG_DEBUG("VM {} stopped: {}", id, end.reason);
  } else {
    HULL_LOG_WARN("VM {} stopped unexpectedly: {}", id, end.reason);
  }
  exit = std::move(end);
  agent_port.OnVmExit();
  changed.notify_all();
}

VmBase::VmBase(VmConfig config, std::string state_dir, std::string shared_dir,
               std::shared_ptr<VmRunState> run)
    : config_(std::move(config)),
      state_dir_(std::move(state_dir)),
      shared_dir_(std::move(shared_dir)),
      run_(std::move(run)) {}

void VmBase::Abort(const std::string& reason) {
  {
    std::lock_guard lock(run_->mu);
    if (run_->exit || !run_->abort_reason.empty()) return;
    run_->abort_reason = reason;
  }
  HULL_LOG_WARN("VM {}: {}: killing it", id(), reason);
  KillHypervisor();
}

Result<UniqueFd> VmBase::ConnectAgent(std::chrono::steady_clock::time_point deadline) {
  auto dead = [this]() -> std::optional<Unexpected> {
    if (!run_->exit) return std::nullopt;
    return DeadError();
  };
  return ConnectAgentWhenReady({config_.transport, state_dir_ + "/agent.sock", vsock_cid_},
                               run_->mu, run_->changed, run_->agent_port, dead, deadline);
}

bool VmBase::running() {
  std::lock_guard lock(run_->mu);
  return !run_->exit.has_value();
}

std::optional<VmExit> VmBase::exit() {
  std::lock_guard lock(run_->mu);
  return run_->exit;
}

Result<std::optional<VmExit>> VmBase::WaitForExit(milliseconds timeout) {
  std::unique_lock lock(run_->mu);
  run_->changed.wait_for(lock, timeout, [&] { return run_->exit.has_value(); });
  return run_->exit;
}

void VmBase::ExpectExit() {
  std::lock_guard lock(run_->mu);
  run_->stop_requested = true;
}

VmExit VmBase::Stop(milliseconds grace) {
  std::unique_lock stop_lock(stop_mu_);
  if (stopped_) return exit().value_or(VmExit{});
  {
    std::unique_lock lock(run_->mu);
    run_->stop_requested = true;
    run_->changed.wait_for(lock, grace, [&] { return run_->exit.has_value(); });
  }
  EndVm();
  RemoveVmStateDir(config_.id, state_dir_);
  stopped_ = true;
  return exit().value_or(VmExit{});
}

void VmBase::StopUnlessStopped() { (void)Stop(milliseconds(0)); }

void VmBase::StartMonitor(std::function<void()> loop) {
  monitor_ = SpawnThread("vm-monitor", std::move(loop));
}

bool VmBase::JoinMonitor() {
  if (!monitor_.joinable()) return false;
  monitor_.join();
  return true;
}

Unexpected VmBase::DeadError() const {
  return MakeError(ErrorCode::kUnavailable,
                   "VM `" + config_.id + "` is not running: " + run_->exit->reason);
}

}  // namespace hull
