#include "hull/hypervisor/kernel_cmdline.h"

namespace hull {

std::string BuildKernelCmdline(const KernelCmdlineOptions& options) {
  std::string cmdline = "console=ttyS0";
  cmdline += options.agent_debug ? " debug" : " quiet";
  // panic=-1: reboot at once on panic, which -no-reboot turns into QEMU exiting.
  cmdline += " panic=-1";
  // No PS/2 controller probing: the VM has no keyboard or mouse.
  cmdline += " i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd";
  cmdline += " cryptomgr.notests net.ifnames=0 no_timer_check";
  cmdline += " hull.transport=" + std::string(TransportName(options.transport));
  cmdline += " hull.log=" + options.agent_log_level;
  if (options.agent_debug) cmdline += " hull.debug=1";
  if (!options.extra.empty()) cmdline += " " + options.extra;
  return cmdline;
}

}  // namespace hull
