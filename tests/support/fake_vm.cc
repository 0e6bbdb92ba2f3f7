#include "fake_vm.h"

#include "hull/core/ids.h"
#include "hull/core/syscall.h"

namespace hull::testing {

FakeVm::FakeVm(VmConfig config, std::string state_dir, std::shared_ptr<FakeVmRecord> record)
    : config_(std::move(config)),
      state_dir_(std::move(state_dir)),
      shared_dir_(state_dir_ + "/shared"),
      launched_at_(std::chrono::steady_clock::now()),
      record_(std::move(record)) {}

FakeVm::~FakeVm() { Stop(std::chrono::milliseconds(0)); }

Result<UniqueFd> FakeVm::ConnectAgent(std::chrono::steady_clock::time_point) {
  return MakeError(ErrorCode::kUnimplemented, "a fake VM has no transport");
}

std::optional<VmExit> FakeVm::exit() {
  std::lock_guard lock(mu_);
  return exit_;
}

Result<std::optional<VmExit>> FakeVm::WaitForExit(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  changed_.wait_for(lock, timeout, [&] { return exit_.has_value(); });
  return exit_;
}

void FakeVm::Abort(const std::string& reason) {
  record_->aborted = true;
  Crash(reason);
}

void FakeVm::Crash(const std::string& reason) {
  {
    std::lock_guard lock(mu_);
    if (exit_) return;
    exit_ = VmExit{.reason = reason, .expected = false};
    record_->running = false;
  }
  changed_.notify_all();
}

VmExit FakeVm::Stop(std::chrono::milliseconds grace) {
  int64_t unset = -1;
  record_->stop_grace_ms.compare_exchange_strong(unset, grace.count());
  VmExit exit;
  {
    std::lock_guard lock(mu_);
    if (!exit_) {
      exit_ = VmExit{.reason = record_->exit_expected ? "the guest powered off" : "stopped",
                     .expected = true};
    }
    record_->running = false;
    exit = *exit_;
  }
  changed_.notify_all();
  if (!record_->stopped.exchange(true)) RemoveVmStateDir(config_.id, state_dir_);
  return exit;
}

Result<std::unique_ptr<Vm>> FakeHypervisor::Launch(const VmConfig& config) {
  {
    std::lock_guard lock(mu_);
    if (fail_next_) {
      Error error = std::move(*fail_next_);
      fail_next_.reset();
      return Unexpected{std::move(error)};
    }
  }
  if (!config.clone_of.empty()) {
    std::lock_guard lock(mu_);
    if (fail_clones_) return Unexpected{*fail_clones_};
  }
  HULL_CHECK_OK(ValidateId("sandbox", config.id), "launch");
  std::string state_dir = config.run_dir + "/" + config.id;
  if (PathExists(state_dir)) {
    return MakeError(ErrorCode::kAlreadyExists, "launch: `" + state_dir + "` exists");
  }
  HULL_CHECK_OK(MakeDirs(state_dir + "/shared", 0755), "launch");
  HULL_CHECK_OK(WriteFile(state_dir + "/console.log", "fake guest\n"), "launch");
  auto record = std::make_shared<FakeVmRecord>();
  record->config = config;
  {
    std::lock_guard lock(mu_);
    launched_.push_back(record);
  }
  return std::unique_ptr<Vm>(new FakeVm(config, state_dir, record));
}

std::vector<std::shared_ptr<FakeVmRecord>> FakeHypervisor::launched() {
  std::lock_guard lock(mu_);
  return launched_;
}

Status FakeHypervisor::SaveTemplate(const VmConfig& config, const std::string& dir,
                                    const std::function<Status(Vm&)>& ready) {
  {
    std::lock_guard lock(mu_);
    ++save_attempts_;
    if (fail_next_save_) {
      Error error = std::move(*fail_next_save_);
      fail_next_save_.reset();
      return Unexpected{std::move(error)};
    }
  }
  HULL_TRY(auto vm, Launch(config), "save template");
  HULL_CHECK_OK(ready(*vm), "save template");
  vm->Stop(std::chrono::milliseconds(0));
  HULL_CHECK_OK(WriteFile(dir + "/memory", "fake ram"), "save template");
  HULL_CHECK_OK(WriteFile(dir + "/state", "fake state"), "save template");
  std::lock_guard lock(mu_);
  ++saves_;
  return Ok();
}

int FakeHypervisor::save_attempts() {
  std::lock_guard lock(mu_);
  return save_attempts_;
}

void FakeHypervisor::FailNextSave(Error error) {
  std::lock_guard lock(mu_);
  fail_next_save_ = std::move(error);
}

int FakeHypervisor::saves() {
  std::lock_guard lock(mu_);
  return saves_;
}

void FakeHypervisor::FailClones(Error error) {
  std::lock_guard lock(mu_);
  fail_clones_ = std::move(error);
}

void FakeHypervisor::FailNextLaunch(Error error) {
  std::lock_guard lock(mu_);
  fail_next_ = std::move(error);
}

Status RecordingShare::Add(const std::string& owner, const std::string& host_path,
                           const std::string& relative, bool read_only) {
  if (!PathExists(host_path)) return MakeError(ErrorCode::kNotFound, "`" + host_path + "`");
  std::lock_guard lock(record_->mu);
  record_->shares[owner].push_back(host_path + " -> " + relative + (read_only ? " (ro)" : ""));
  return Ok();
}

void RecordingShare::Remove(const std::string& owner) {
  std::lock_guard lock(record_->mu);
  record_->shares.erase(owner);
  ++record_->removals;
}

}  // namespace hull::testing
