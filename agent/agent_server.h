// The agent's gRPC server: services, and the loop that feeds it connections.
#pragma once

#include <grpcpp/server.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "hull/agent/v1/agent.grpc.pb.h"
#include "hull/core/error.h"
#include "hull/core/transport.h"

namespace hull::agent {

inline constexpr std::string_view kAgentVersion = "0.1.0";
inline constexpr uint32_t kApiVersion = 1;

// What the agent knows about itself, reported by GetGuestDetails.
struct AgentState {
  std::string transport = "serial";
  std::vector<std::string> loaded_modules;
  uint64_t agent_start_us = 0;
  uint64_t mounts_done_us = 0;
  uint64_t modules_done_us = 0;
  uint64_t network_done_us = 0;
  uint64_t listening_us = 0;
  std::atomic<uint64_t> first_request_us{0};
};

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
