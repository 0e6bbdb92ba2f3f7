// hull-agent's options, read from the guest kernel command line (`hull.*`).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "hull/core/error.h"
#include "hull/core/transport.h"

namespace hull::agent {

struct AgentOptions {
  TransportKind transport = TransportKind::kSerial;
  uint32_t vsock_port = kAgentVsockPort;
  std::string log_level = "info";
  bool debug = false;  // debug logging and a more talkative console
};

// Parses the `hull.*` words of a kernel command line; other words are
// ignored. Unknown `hull.*` keys and bad values are errors, so a typo on the
// host side fails loudly instead of being silently dropped.
//   hull.transport=serial|vsock  hull.vsock_port=N  hull.log=LEVEL  hull.debug=0|1
Result<AgentOptions> ParseKernelCmdline(std::string_view cmdline);

}  // namespace hull::agent
