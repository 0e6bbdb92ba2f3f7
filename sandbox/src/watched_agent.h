// An AgentApi that reports every call that missed its deadline: a guest that
// stops answering is ended rather than waited on (Sandbox aborts its VM, and
// the runtime above learns from the VM's death that its processes are gone).
// The long-lived calls (WaitProcess and the streams) have no deadline and
// pass straight through; so does Shutdown, whose missing answer the caller
// handles itself (the guest is going anyway).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "hull/sandbox/agent_api.h"

namespace hull::sandbox {

class WatchedAgent final : public AgentApi {
 public:
  using OnMissed = std::function<void(const Error& error)>;
  // `inner` must outlive this.
  WatchedAgent(AgentApi& inner, OnMissed on_missed)
      : inner_(&inner), on_missed_(std::move(on_missed)) {}

  Result<bool> Check() override { return Watch(inner_->Check()); }
  Result<AgentVersion> Version() override { return Watch(inner_->Version()); }
  Result<GuestDetails> GetGuestDetails() override { return Watch(inner_->GetGuestDetails()); }
  Result<bool> Shutdown(bool force) override { return inner_->Shutdown(force); }

  Status CreateSandbox(const SandboxSetup& setup) override {
    return Watch(inner_->CreateSandbox(setup));
  }
  Status DestroySandbox(const std::string& sandbox_id, bool power_off) override {
    return Watch(inner_->DestroySandbox(sandbox_id, power_off));
  }

  Result<uint32_t> CreateContainer(const ContainerSetup& setup) override {
    return Watch(inner_->CreateContainer(setup));
  }
  Status StartContainer(const std::string& container_id) override {
    return Watch(inner_->StartContainer(container_id));
  }
  Status RemoveContainer(const std::string& container_id, bool force) override {
    return Watch(inner_->RemoveContainer(container_id, force));
  }
  Status UpdateContainer(const std::string& container_id,
                         const std::string& linux_resources_json) override {
    return Watch(inner_->UpdateContainer(container_id, linux_resources_json));
  }
  Result<ContainerStats> StatsContainer(const std::string& container_id) override {
    return Watch(inner_->StatsContainer(container_id));
  }
  Status PauseContainer(const std::string& container_id) override {
    return Watch(inner_->PauseContainer(container_id));
  }
  Status ResumeContainer(const std::string& container_id) override {
    return Watch(inner_->ResumeContainer(container_id));
  }
  Result<std::vector<uint32_t>> ListProcesses(const std::string& container_id) override {
    return Watch(inner_->ListProcesses(container_id));
  }

  Result<uint32_t> ExecProcess(const ExecSetup& setup) override {
    return Watch(inner_->ExecProcess(setup));
  }
  Status SignalProcess(const ProcessRef& process, uint32_t signal, bool all) override {
    return Watch(inner_->SignalProcess(process, signal, all));
  }
  Result<ProcessExit> WaitProcess(const ProcessRef& process, Cancellation& cancellation) override {
    return inner_->WaitProcess(process, cancellation);
  }
  Status RemoveProcess(const ProcessRef& process) override {
    return Watch(inner_->RemoveProcess(process));
  }
  Status ResizeTty(const ProcessRef& process, TtySize size) override {
    return Watch(inner_->ResizeTty(process, size));
  }

  std::unique_ptr<AgentStream<std::string>> ReadOutput(const ProcessRef& process,
                                                       OutputStream stream,
                                                       Cancellation& cancellation) override {
    return inner_->ReadOutput(process, stream, cancellation);
  }
  std::unique_ptr<StdinStream> WriteStdin(const ProcessRef& process,
                                          Cancellation& cancellation) override {
    return inner_->WriteStdin(process, cancellation);
  }
  std::unique_ptr<AgentStream<OomEvent>> OomEvents(Cancellation& cancellation) override {
    return inner_->OomEvents(cancellation);
  }

  Result<NetInterface> UpdateInterface(const NetInterface& interface) override {
    return Watch(inner_->UpdateInterface(interface));
  }
  Result<std::vector<Route>> UpdateRoutes(const std::vector<Route>& routes) override {
    return Watch(inner_->UpdateRoutes(routes));
  }
  Result<std::vector<NetInterface>> ListInterfaces() override {
    return Watch(inner_->ListInterfaces());
  }
  Result<std::vector<Route>> ListRoutes() override { return Watch(inner_->ListRoutes()); }

 private:
  template <typename T>
  Result<T> Watch(Result<T> result) {
    if (!result && result.error().code() == ErrorCode::kDeadlineExceeded)
      on_missed_(result.error());
    return result;
  }

  AgentApi* inner_;
  OnMissed on_missed_;
};

}  // namespace hull::sandbox
