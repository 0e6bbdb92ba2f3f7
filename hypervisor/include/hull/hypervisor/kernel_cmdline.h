// The guest kernel command line: a pure function of the VM's settings.
#pragma once

#include <string>

#include "hull/core/transport.h"

namespace hull {

struct KernelCmdlineOptions {
  TransportKind transport = TransportKind::kSerial;
  std::string agent_log_level = "info";
  bool agent_debug = false;
  std::string extra;  // operator's kernel_params, appended last
  // The guest root's device (guest::kRootDevicePmem or kRootDeviceBlk), ""
  // for an image with no root device (the whole guest in its initrd).
  std::string root_device;
};

// Console on ttyS0, quiet unless debugging, reboot on panic (QEMU runs with
// -no-reboot, so a panicking guest ends the VM instead of hanging), no probing
// of legacy devices a microVM does not have, then the agent's `hull.*` words.
std::string BuildKernelCmdline(const KernelCmdlineOptions& options);

}  // namespace hull
