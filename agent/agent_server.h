// The agent's gRPC server: services, and the loop that feeds it connections.
#pragma once

#include <grpcpp/server.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "guest_details.h"
#include "hull/agent/v1/agent.grpc.pb.h"
#include "hull/core/error.h"
#include "hull/core/transport.h"

namespace hull::agent {

class AgentServer {
 public:
  // `on_shutdown` runs (on its own thread) after a Shutdown RPC has been
  // answered; in the guest it powers the VM off.
  AgentServer(AgentState* state, engine::EngineOptions engine_options,
              std::function<void()> on_shutdown);
  ~AgentServer();

  Status Start();
  // Hands one connected, non-blocking fd to the gRPC server.
  void AddConnection(UniqueFd fd);
  // Accepts connections from `listener` until it fails for good (Interrupt).
  void Serve(AgentListener& listener);
  void Stop();

  // Child exits reaped by the process's reaper go here.
  engine::Engine& engine() { return *engine_; }

 private:
  class HealthService;
  class AgentService;

  AgentState* state_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<HealthService> health_;
  std::unique_ptr<AgentService> agent_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace hull::agent
