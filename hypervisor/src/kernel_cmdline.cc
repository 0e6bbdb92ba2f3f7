#include "hull/hypervisor/kernel_cmdline.h"

#include "hull/core/guest_contract.h"

namespace hull {

std::string BuildKernelCmdline(const KernelCmdlineOptions& options) {
  std::string cmdline = "console=ttyS0";
  cmdline += options.agent_debug ? " debug" : " quiet";
  // panic=-1: reboot at once on panic, which -no-reboot turns into QEMU exiting.
  cmdline += " panic=-1";
  // No PS/2 controller probing: the VM has no keyboard or mouse.
  cmdline += " i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd";
  cmdline += " cryptomgr.notests net.ifnames=0 no_timer_check";
  // The root's device memory lies above 4 GiB, and a kernel that may see
  // memory there reserves (and zeroes) 64 MiB of DMA bounce buffers at boot,
  // which no virtio device uses: measured, 64 MiB less MemTotal and 64 MiB
  // more guest RAM touched in every VM.
  if (!options.root_device.empty()) cmdline += " swiotlb=noforce";
  auto word = [&cmdline](std::string_view key, std::string_view value) {
    cmdline += ' ';
    cmdline += key;
    cmdline += '=';
    cmdline += value;
  };
  word(guest::kCmdlineTransport, TransportName(options.transport));
  word(guest::kCmdlineLogLevel, options.agent_log_level);
  if (options.agent_debug) word(guest::kCmdlineDebug, "1");
  if (!options.root_device.empty()) word(guest::kCmdlineRoot, options.root_device);
  if (!options.extra.empty()) cmdline += " " + options.extra;
  return cmdline;
}

}  // namespace hull
