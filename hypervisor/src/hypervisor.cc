#include "hull/hypervisor/hypervisor.h"

#include <filesystem>

#include "hull/core/syscall.h"
#include "qemu/qemu_hypervisor.h"

namespace hull {

Result<std::unique_ptr<Hypervisor>> MakeHypervisor(std::string_view backend) {
  if (backend == "qemu") return qemu::MakeQemuHypervisor();
  return MakeError(ErrorCode::kInvalidArgument,
                   "unknown hypervisor backend `" + std::string(backend) + "` (expected qemu)");
}

std::string DefaultGuestDir() {
  // A build tree or an install prefix: <prefix>/bin/hullctl next to <prefix>/guest/.
  if (auto dir = ExecutableDir(); dir) {
    std::filesystem::path candidate = std::filesystem::path(*dir).parent_path() / "guest";
    if (PathExists((candidate / "vmlinuz").string())) return candidate.string();
    candidate = std::filesystem::path(*dir).parent_path() / "share" / "hull" / "guest";
    if (PathExists((candidate / "vmlinuz").string())) return candidate.string();
  }
  return "/usr/share/hull/guest";
}

Result<VmConfig> VmConfigFromConfig(const Config& config, std::string id) {
  VmConfig vm;
  vm.id = std::move(id);
  vm.run_dir = config.run_dir;
  vm.hypervisor_path = config.hypervisor.path;
  std::string guest_dir = DefaultGuestDir();
  vm.kernel = config.hypervisor.kernel.empty() ? guest_dir + "/vmlinuz" : config.hypervisor.kernel;
  vm.initrd = config.hypervisor.initrd.empty() ? guest_dir + "/initrd.img" : config.hypervisor.initrd;
  vm.machine = config.hypervisor.machine;
  HULL_TRY(AccelDecision accel, DecideAccel(config.hypervisor.accel, ProbeHostAccel()), "hypervisor.accel");
  vm.accel = accel.accel;
  vm.vcpus = config.hypervisor.vcpus;
  vm.memory_mib = config.hypervisor.memory_mib;
  if (config.agent.transport == "auto") {
    vm.transport = PathExists("/dev/vhost-vsock") ? TransportKind::kVsock : TransportKind::kSerial;
  } else {
    HULL_TRY(vm.transport, ParseTransport(config.agent.transport), "agent.transport");
  }
  vm.seccomp_sandbox = config.hypervisor.seccomp_sandbox;
  vm.agent_log_level = config.agent.log_level;
  vm.agent_debug = config.agent.debug;
  vm.extra_kernel_params = config.hypervisor.kernel_params;
  vm.virtiofsd_path = config.hypervisor.virtiofsd;
  HULL_TRY(vm.virtiofs_cache, ParseVirtiofsCache(config.hypervisor.virtiofs_cache), "hypervisor.virtiofs_cache");
  HULL_TRY(vm.virtiofsd_sandbox, ParseVirtiofsdSandbox(config.hypervisor.virtiofsd_sandbox),
           "hypervisor.virtiofsd_sandbox");
  vm.virtiofsd_args = config.hypervisor.virtiofsd_args;
  return vm;
}

}  // namespace hull
