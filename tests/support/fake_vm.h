// A Hypervisor whose VMs are records in memory: a state directory with a
// shared directory and a console log, a running flag, an exit, and nothing
// else. For the host runtime's unit tests (no QEMU, no root).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "hull/hypervisor/hypervisor.h"
#include "hull/sandbox/shared_dir.h"

namespace hull::testing {

// What a FakeVm went through; shared with the test, outlives the VM.
struct FakeVmRecord {
  VmConfig config;
  std::atomic<bool> running{true};
  std::atomic<bool> stopped{false};  // Stop was called
  std::atomic<bool> exit_expected{false};
  std::atomic<int64_t> stop_grace_ms{-1};  // the grace of the first Stop
  std::atomic<bool> aborted{false};        // Abort was called
};

class FakeVm final : public Vm {
 public:
  FakeVm(VmConfig config, std::string state_dir, std::shared_ptr<FakeVmRecord> record);
  ~FakeVm() override;

  const std::string& id() const override { return config_.id; }
  const std::string& state_dir() const override { return state_dir_; }
  std::string console_log_path() const override { return state_dir_ + "/console.log"; }
  const std::string& shared_dir() const override { return shared_dir_; }
  pid_t pid() const override { return 0; }
  std::chrono::steady_clock::time_point launched_at() const override { return launched_at_; }
  Result<UniqueFd> ConnectAgent(std::chrono::steady_clock::time_point deadline) override;
  bool running() override { return record_->running; }
  std::optional<VmExit> exit() override;
  Result<std::optional<VmExit>> WaitForExit(std::chrono::milliseconds timeout) override;
  void ExpectExit() override { record_->exit_expected = true; }
  VmExit Stop(std::chrono::milliseconds grace) override;
  void Abort(const std::string& reason) override;

  // The hypervisor process died (a test's kill -9).
  void Crash(const std::string& reason = "killed by signal 9 (SIGKILL)");

 private:
  VmConfig config_;
  std::string state_dir_;
  std::string shared_dir_;
  std::chrono::steady_clock::time_point launched_at_;
  std::shared_ptr<FakeVmRecord> record_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::optional<VmExit> exit_;
};

class FakeHypervisor final : public Hypervisor {
 public:
  std::string_view name() const override { return "fake"; }
  TapHandover tap_handover() const override { return TapHandover::kFdInNetns; }
  Result<HypervisorProbe> Probe(const ProbeTarget&) override {
    return HypervisorProbe{.version = "fake 1.0"};
  }
  // Validates the id, creates <run_dir>/<id>/shared, and "boots".
  Result<std::unique_ptr<Vm>> Launch(const VmConfig& config) override;

  // Every VM launched so far, in order.
  std::vector<std::shared_ptr<FakeVmRecord>> launched();
  // The next Launch fails with `error`.
  void FailNextLaunch(Error error);

  // Templates: off unless a test turns them on. A saved template is a fake
  // VM launched (and handed to `ready`) plus two small files.
  bool supports_templates() const override { return templates_; }
  void EnableTemplates() { templates_ = true; }
  Status SaveTemplate(const VmConfig& config, const std::string& dir,
                      const std::function<Status(Vm&)>& ready) override;
  int saves();          // successful
  int save_attempts();  // all
  // The next SaveTemplate fails with `error`.
  void FailNextSave(Error error);
  // Every later Launch of a clone (VmConfig::clone_of) fails with `error`.
  void FailClones(Error error);

 private:
  std::mutex mu_;
  std::vector<std::shared_ptr<FakeVmRecord>> launched_;
  std::optional<Error> fail_next_;
  std::atomic<bool> templates_{false};
  int saves_ = 0;
  int save_attempts_ = 0;
  std::optional<Error> fail_next_save_;
  std::optional<Error> fail_clones_;
};

// What a RecordingShare holds: per owner, the host paths shared and where.
struct ShareRecord {
  std::mutex mu;
  std::map<std::string, std::vector<std::string>> shares;  // owner -> "host -> relative"
  int removals = 0;
};

// A HostShare that records instead of mounting (unit tests need no root).
class RecordingShare final : public sandbox::HostShare {
 public:
  explicit RecordingShare(std::shared_ptr<ShareRecord> record) : record_(std::move(record)) {}
  Status Add(const std::string& owner, const std::string& host_path, const std::string& relative,
             bool read_only) override;
  void Remove(const std::string& owner) override;

 private:
  std::shared_ptr<ShareRecord> record_;
};

}  // namespace hull::testing
