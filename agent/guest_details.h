// What the agent reports about itself and its guest (GetGuestDetails).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "hull/agent/v1/agent.pb.h"

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

// Kernel, CPUs, memory (/proc/meminfo), cgroup mode, the agent's transport,
// modules and boot timings. Never fails: what cannot be read is left unset.
void FillGuestDetails(const AgentState& state, v1::GetGuestDetailsResponse* response);

}  // namespace hull::agent
