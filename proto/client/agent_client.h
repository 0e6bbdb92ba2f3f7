// The host's client of the hull agent API, over an fd that a transport
// connected (see Vm::ConnectAgent).
#pragma once

#include <grpcpp/channel.h>

#include <chrono>
#include <functional>
#include <memory>

#include "hull/agent/v1/agent.grpc.pb.h"
#include "hull/core/error.h"
#include "hull/core/fd.h"
#include "hull/proto/grpc_error.h"  // ErrorFromGrpc, for the agent client's users

namespace hull {

class AgentClient {
 public:
  using Clock = std::chrono::steady_clock;
  // Opens a fresh transport connection, waiting until the deadline.
  using Dialer = std::function<Result<UniqueFd>(Clock::time_point deadline)>;

  // Dials and waits until the agent answers Health.Check with SERVING. A
  // connection that fails or stays silent is dropped and dialled again until
  // `deadline`.
  static Result<std::unique_ptr<AgentClient>> Connect(const Dialer& dial,
                                                      Clock::time_point deadline);

  Result<agent::v1::CheckResponse> Check(std::chrono::milliseconds timeout);
  Result<agent::v1::VersionResponse> Version(std::chrono::milliseconds timeout);
  Result<agent::v1::GetGuestDetailsResponse> GetGuestDetails(std::chrono::milliseconds timeout);
  // Asks the agent to power the VM off. A connection that drops once the
  // request is out counts as success: the guest may go before it answers.
  Status Shutdown(bool force, std::chrono::milliseconds timeout);

  agent::v1::Agent::Stub& agent() { return *agent_; }

 private:
  explicit AgentClient(std::shared_ptr<grpc::Channel> channel);

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<agent::v1::Health::Stub> health_;
  std::unique_ptr<agent::v1::Agent::Stub> agent_;
};

}  // namespace hull
