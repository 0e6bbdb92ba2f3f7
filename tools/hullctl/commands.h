// hullctl's commands, as functions main.cc calls after parsing flags.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "hull/core/config.h"

namespace hull::hullctl {

struct CheckOptions {
  std::string config_path;
};
// Prints one line per host capability; returns the process exit code
// (0: hull can run here, 1: it cannot).
int RunCheck(const CheckOptions& options);

struct PingOptions {
  std::string config_path;
  std::optional<std::string> transport;  // serial | vsock
  std::optional<std::string> accel;      // kvm | tcg | auto
  std::optional<uint64_t> memory_mib;
  std::optional<uint32_t> cpus;
  std::optional<std::string> kernel;
  std::optional<std::string> initrd;
  bool json = false;
  bool keep_console = false;  // print the console log when done
  // Do not contact the agent: time launch until the guest powers itself off.
  // With an initrd whose init powers off at once, this is the boot floor.
  bool until_poweroff = false;
};
// Boots a VM, asks the agent for its details, prints them and the time from
// QEMU launch to the agent's first answer, and shuts the VM down.
int RunVmPing(const PingOptions& options);

}  // namespace hull::hullctl
