// A scripted AgentApi: an in-memory guest with containers and processes that
// behaves as hull-agent does (agent.proto's contract), and that a test can
// make fail, hang past its deadline, answer late or die at any call, or have
// say what no honest guest would (OOM kills of containers that do not exist).
// Lies about the wire itself (out-of-range values, endless lists) are
// GrpcAgent's to catch: sandbox_test.cc drives it with a hostile gRPC agent.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "hull/core/clock.h"
#include "hull/sandbox/agent_api.h"

namespace hull::testing {

class FakeAgent final : public sandbox::AgentApi {
 public:
  // Deadlines of hung calls pass by `clock` (a FakeClock: at its Advance).
  explicit FakeAgent(sandbox::AgentTimeouts timeouts = {}, Clock& clock = Clock::Steady())
      : timeouts_(timeouts), clock_(clock) {}
  ~FakeAgent() override;

  // --- scripting ------------------------------------------------------------
  // The next calls of `call` ("StartContainer", "WaitProcess", ...) fail
  // with `error` (all of them until Heal, or only the next `times`).
  void Fail(const std::string& call, Error error, int times = -1);
  // The next calls of `call` never answer: they end as a real agent's would
  // when its deadline passes by the agent's clock (kDeadlineExceeded, naming
  // the call), or with kCancelled for the long-lived ones.
  void Hang(const std::string& call);
  // The next calls of `call` answer only after `delay`.
  void Delay(const std::string& call, std::chrono::milliseconds delay);
  void Heal(const std::string& call);

  // --- the guest --------------------------------------------------------------
  // `process` exits with `status` (its output streams end first).
  void Exit(const sandbox::ProcessRef& process, uint32_t status);
  // What the process writes on `stream`.
  void Write(const sandbox::ProcessRef& process, sandbox::OutputStream stream,
             const std::string& data);
  // What reached the process's stdin, and whether it was closed.
  std::string StdinOf(const sandbox::ProcessRef& process);
  bool StdinClosed(const sandbox::ProcessRef& process);
  void EmitOom(const std::string& container_id);
  // The connection drops (the guest died): every call in flight and every
  // later one fails with kUnavailable; streams end with it.
  void Die();

  // --- what happened ------------------------------------------------------------
  std::vector<std::string> calls();
  int CallCount(const std::string& call);
  std::set<std::string> containers();
  // What every CreateSandbox asked for, in order.
  std::vector<sandbox::SandboxSetup> sandbox_setups();
  // Waits (up to `timeout`) until `call` was made `count` times.
  bool WaitForCall(const std::string& call, int count, std::chrono::milliseconds timeout);

  // --- AgentApi ---------------------------------------------------------------
  Result<bool> Check() override;
  Result<sandbox::AgentVersion> Version() override;
  Result<sandbox::GuestDetails> GetGuestDetails() override;
  Result<bool> Shutdown(bool force) override;
  Status CreateSandbox(const sandbox::SandboxSetup& setup) override;
  Status DestroySandbox(const std::string& sandbox_id, bool power_off) override;
  Result<uint32_t> CreateContainer(const sandbox::ContainerSetup& setup) override;
  Status StartContainer(const std::string& container_id) override;
  Status RemoveContainer(const std::string& container_id, bool force) override;
  Status UpdateContainer(const std::string& container_id,
                         const std::string& linux_resources_json) override;
  Result<sandbox::ContainerStats> StatsContainer(const std::string& container_id) override;
  Status PauseContainer(const std::string& container_id) override;
  Status ResumeContainer(const std::string& container_id) override;
  Result<std::vector<uint32_t>> ListProcesses(const std::string& container_id) override;
  Result<uint32_t> ExecProcess(const sandbox::ExecSetup& setup) override;
  Status SignalProcess(const sandbox::ProcessRef& process, uint32_t signal, bool all) override;
  Result<sandbox::ProcessExit> WaitProcess(const sandbox::ProcessRef& process,
                                           sandbox::Cancellation& cancellation) override;
  Status RemoveProcess(const sandbox::ProcessRef& process) override;
  Status ResizeTty(const sandbox::ProcessRef& process, sandbox::TtySize size) override;
  std::unique_ptr<sandbox::AgentStream<std::string>> ReadOutput(
      const sandbox::ProcessRef& process, sandbox::OutputStream stream,
      sandbox::Cancellation& cancellation) override;
  std::unique_ptr<sandbox::StdinStream> WriteStdin(const sandbox::ProcessRef& process,
                                                   sandbox::Cancellation& cancellation) override;
  std::unique_ptr<sandbox::AgentStream<sandbox::OomEvent>> OomEvents(
      sandbox::Cancellation& cancellation) override;
  Result<sandbox::NetInterface> UpdateInterface(const sandbox::NetInterface& interface) override;
  Result<std::vector<sandbox::Route>> UpdateRoutes(
      const std::vector<sandbox::Route>& routes) override;
  Result<std::vector<sandbox::NetInterface>> ListInterfaces() override;
  Result<std::vector<sandbox::Route>> ListRoutes() override;

 private:
  friend class FakeOutput;
  friend class FakeOom;
  friend class FakeStdin;
  struct Process {
    bool started = false;
    std::optional<uint32_t> exit_status;
    uint32_t pid = 0;
    std::string output[2];
    std::string stdin_data;
    bool stdin_closed = false;
  };
  struct Container {
    std::map<std::string, Process> processes;  // "" = init
    bool paused = false;
  };
  struct Script {
    std::optional<Error> error;
    int times = -1;
    bool hang = false;
    std::chrono::milliseconds delay{0};
  };

  // Records the call and plays its script; lock held. An error ends the call.
  Status Enter(std::unique_lock<std::mutex>& lock, const std::string& call,
               std::chrono::milliseconds deadline, sandbox::Cancellation* cancellation = nullptr);
  Process* Find(const sandbox::ProcessRef& process);
  void ExitLocked(Process& process, uint32_t status);
  // Waits on changed_ until `done`, the cancellation, or death; lock held.
  Status WaitLocked(std::unique_lock<std::mutex>& lock, sandbox::Cancellation& cancellation,
                    const std::function<bool()>& done, const std::string& call);

  sandbox::AgentTimeouts timeouts_;
  Clock& clock_;
  std::vector<sandbox::SandboxSetup> sandbox_setups_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<std::string> calls_;
  std::map<std::string, Script> scripts_;
  std::map<std::string, Container> containers_;
  std::deque<std::string> ooms_;
  uint64_t oom_count_ = 0;
  uint32_t next_pid_ = 100;
  bool dead_ = false;
  int active_calls_ = 0;
};

// An AgentApi that a Sandbox can own while the test keeps the FakeAgent.
class SharedFakeAgent final : public sandbox::AgentApi {
 public:
  explicit SharedFakeAgent(std::shared_ptr<FakeAgent> agent) : agent_(std::move(agent)) {}
  Result<bool> Check() override { return agent_->Check(); }
  Result<sandbox::AgentVersion> Version() override { return agent_->Version(); }
  Result<sandbox::GuestDetails> GetGuestDetails() override { return agent_->GetGuestDetails(); }
  Result<bool> Shutdown(bool force) override { return agent_->Shutdown(force); }
  Status CreateSandbox(const sandbox::SandboxSetup& setup) override {
    return agent_->CreateSandbox(setup);
  }
  Status DestroySandbox(const std::string& sandbox_id, bool power_off) override {
    return agent_->DestroySandbox(sandbox_id, power_off);
  }
  Result<uint32_t> CreateContainer(const sandbox::ContainerSetup& setup) override {
    return agent_->CreateContainer(setup);
  }
  Status StartContainer(const std::string& container_id) override {
    return agent_->StartContainer(container_id);
  }
  Status RemoveContainer(const std::string& container_id, bool force) override {
    return agent_->RemoveContainer(container_id, force);
  }
  Status UpdateContainer(const std::string& container_id,
                         const std::string& linux_resources_json) override {
    return agent_->UpdateContainer(container_id, linux_resources_json);
  }
  Result<sandbox::ContainerStats> StatsContainer(const std::string& container_id) override {
    return agent_->StatsContainer(container_id);
  }
  Status PauseContainer(const std::string& container_id) override {
    return agent_->PauseContainer(container_id);
  }
  Status ResumeContainer(const std::string& container_id) override {
    return agent_->ResumeContainer(container_id);
  }
  Result<std::vector<uint32_t>> ListProcesses(const std::string& container_id) override {
    return agent_->ListProcesses(container_id);
  }
  Result<uint32_t> ExecProcess(const sandbox::ExecSetup& setup) override {
    return agent_->ExecProcess(setup);
  }
  Status SignalProcess(const sandbox::ProcessRef& process, uint32_t signal, bool all) override {
    return agent_->SignalProcess(process, signal, all);
  }
  Result<sandbox::ProcessExit> WaitProcess(const sandbox::ProcessRef& process,
                                           sandbox::Cancellation& cancellation) override {
    return agent_->WaitProcess(process, cancellation);
  }
  Status RemoveProcess(const sandbox::ProcessRef& process) override {
    return agent_->RemoveProcess(process);
  }
  Status ResizeTty(const sandbox::ProcessRef& process, sandbox::TtySize size) override {
    return agent_->ResizeTty(process, size);
  }
  std::unique_ptr<sandbox::AgentStream<std::string>> ReadOutput(
      const sandbox::ProcessRef& process, sandbox::OutputStream stream,
      sandbox::Cancellation& cancellation) override {
    return agent_->ReadOutput(process, stream, cancellation);
  }
  std::unique_ptr<sandbox::StdinStream> WriteStdin(const sandbox::ProcessRef& process,
                                                   sandbox::Cancellation& cancellation) override {
    return agent_->WriteStdin(process, cancellation);
  }
  std::unique_ptr<sandbox::AgentStream<sandbox::OomEvent>> OomEvents(
      sandbox::Cancellation& cancellation) override {
    return agent_->OomEvents(cancellation);
  }
  Result<sandbox::NetInterface> UpdateInterface(const sandbox::NetInterface& interface) override {
    return agent_->UpdateInterface(interface);
  }
  Result<std::vector<sandbox::Route>> UpdateRoutes(
      const std::vector<sandbox::Route>& routes) override {
    return agent_->UpdateRoutes(routes);
  }
  Result<std::vector<sandbox::NetInterface>> ListInterfaces() override {
    return agent_->ListInterfaces();
  }
  Result<std::vector<sandbox::Route>> ListRoutes() override { return agent_->ListRoutes(); }

 private:
  std::shared_ptr<FakeAgent> agent_;
};

}  // namespace hull::testing
