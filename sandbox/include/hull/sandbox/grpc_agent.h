// AgentApi over gRPC (hull.agent.v1), on an fd that a transport connected
// (see Vm::ConnectAgent). The only place on the host that speaks the agent's
// protobuf: it converts once, checks what the guest sends, and puts the
// deadline on every call.
#pragma once

#include <chrono>
#include <functional>
#include <memory>

#include "hull/core/error.h"
#include "hull/core/fd.h"
#include "hull/sandbox/agent_api.h"

namespace grpc {
class Channel;
}

namespace hull::sandbox {

class GrpcAgent final : public AgentApi {
 public:
  using Clock = std::chrono::steady_clock;
  // Opens a fresh transport connection, waiting until the deadline.
  using Dialer = std::function<Result<UniqueFd>(Clock::time_point deadline)>;

  // Dials and waits until the agent answers Health.Check with SERVING. A
  // connection that fails or stays silent is dropped and dialled again until
  // `deadline`.
  static Result<std::unique_ptr<GrpcAgent>> Connect(const Dialer& dial, Clock::time_point deadline,
                                                    AgentTimeouts timeouts = {});
  // Over an fd already connected to an agent (tests: an in-process server).
  static std::unique_ptr<GrpcAgent> FromFd(UniqueFd fd, AgentTimeouts timeouts = {});
  ~GrpcAgent() override;

  // The channel, for tests of the agent's wire contract itself.
  std::shared_ptr<grpc::Channel> channel() const;

  Result<bool> Check() override;
  Result<AgentVersion> Version() override;
  Result<GuestDetails> GetGuestDetails() override;
  Result<bool> Shutdown(bool force) override;
  Status CreateSandbox(const SandboxSetup& setup) override;
  Status DestroySandbox(const std::string& sandbox_id, bool power_off) override;
  Result<uint32_t> CreateContainer(const ContainerSetup& setup) override;
  Status StartContainer(const std::string& container_id) override;
  Status RemoveContainer(const std::string& container_id, bool force) override;
  Status UpdateContainer(const std::string& container_id,
                         const std::string& linux_resources_json) override;
  Result<ContainerStats> StatsContainer(const std::string& container_id) override;
  Status PauseContainer(const std::string& container_id) override;
  Status ResumeContainer(const std::string& container_id) override;
  Result<std::vector<uint32_t>> ListProcesses(const std::string& container_id) override;
  Result<uint32_t> ExecProcess(const ExecSetup& setup) override;
  Status SignalProcess(const ProcessRef& process, uint32_t signal, bool all) override;
  Result<ProcessExit> WaitProcess(const ProcessRef& process, Cancellation& cancellation) override;
  Status RemoveProcess(const ProcessRef& process) override;
  Status ResizeTty(const ProcessRef& process, TtySize size) override;
  std::unique_ptr<AgentStream<std::string>> ReadOutput(const ProcessRef& process,
                                                       OutputStream stream,
                                                       Cancellation& cancellation) override;
  std::unique_ptr<StdinStream> WriteStdin(const ProcessRef& process,
                                          Cancellation& cancellation) override;
  std::unique_ptr<AgentStream<OomEvent>> OomEvents(Cancellation& cancellation) override;
  Result<NetInterface> UpdateInterface(const NetInterface& interface) override;
  Result<std::vector<Route>> UpdateRoutes(const std::vector<Route>& routes) override;
  Result<std::vector<NetInterface>> ListInterfaces() override;
  Result<std::vector<Route>> ListRoutes() override;

 private:
  struct Stubs;
  GrpcAgent(std::shared_ptr<grpc::Channel> channel, AgentTimeouts timeouts);
  Result<bool> CheckWithin(std::chrono::milliseconds timeout);

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Stubs> stubs_;
  AgentTimeouts timeouts_;
};

}  // namespace hull::sandbox
