#include "qemu/qemu_argv.h"

namespace hull::qemu {

std::vector<std::string> BuildQemuArgv(const QemuLaunchPlan& plan) {
  std::vector<std::string> argv;
  auto add = [&](std::initializer_list<std::string> words) { argv.insert(argv.end(), words); };
  const std::string memory = std::to_string(plan.memory_mib) + "M";

  add({plan.qemu_path});
  add({"-name", plan.name + ",debug-threads=on"});
  // Nothing we did not ask for: no default devices, no user config files.
  add({"-nodefaults", "-no-user-config", "-display", "none"});
  // A guest reboot or panic ends the VM; hull never reboots a sandbox.
  add({"-no-reboot"});
  // Guest RAM is shared memory: virtio-fs (vhost-user) needs to map it. A
  // template's RAM is a file its clones copy; a clone maps its own copy.
  add({"-machine", plan.machine + ",memory-backend=mem"});
  if (plan.start == VmStart::kBoot) {
    add({"-object", "memory-backend-memfd,id=mem,size=" + memory + ",share=on"});
  } else {
    add({"-object", "memory-backend-file,id=mem,size=" + memory + ",mem-path=" + plan.memory_path +
                        ",share=on"});
  }
  if (plan.root_image.empty()) {
    add({"-m", memory});
  } else {
    // The root is device memory: one slot, room for it above the RAM.
    const uint64_t root_mib = (plan.root_image_bytes + (1 << 20) - 1) >> 20;
    add({"-m", memory + ",slots=1,maxmem=" + std::to_string(plan.memory_mib + root_mib) + "M"});
  }
  if (plan.accel == Accel::kKvm) {
    add({"-accel", "kvm", "-cpu", "host"});
  } else {
    std::string tcg = plan.vcpus > 1 ? "tcg,thread=multi" : "tcg";
    if (plan.tcg_tb_size_mib != 0) tcg += ",tb-size=" + std::to_string(plan.tcg_tb_size_mib);
    add({"-accel", tcg, "-cpu", "max"});
  }
  add({"-smp", std::to_string(plan.vcpus)});
  if (plan.seccomp_sandbox) {
    add({"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"});
  }
  // A clone's kernel is already in its RAM: QEMU would only keep a copy of
  // the files for a reboot that -no-reboot rules out (14 MiB of heap per VM).
  if (plan.start != VmStart::kClone) {
    add({"-kernel", plan.kernel, "-initrd", plan.initrd, "-append", plan.kernel_cmdline});
  }
  // Control channel.
  add({"-chardev", "socket,id=qmp,path=" + plan.qmp_socket + ",server=on,wait=off"});
  add({"-mon", "chardev=qmp,mode=control"});
  // Guest console (ttyS0): a socket the host reads into a capped log.
  add({"-chardev", "socket,id=console,fd=" + std::to_string(plan.console_fd)});
  add({"-serial", "chardev:console"});
  // The agent channel.
  if (plan.transport == TransportKind::kSerial) {
    add({"-device", "virtio-serial-pci,id=virtio-serial0"});
    add({"-chardev", "socket,id=agent,path=" + plan.agent_socket + ",server=on,wait=off"});
    add({"-device", std::string("virtserialport,bus=virtio-serial0.0,chardev=agent,id=") +
                        kAgentPortId + ",name=" + std::string(kAgentSerialPortName)});
  } else {
    std::string vsock = "vhost-vsock-pci,id=vsock0,guest-cid=" + std::to_string(plan.vsock_cid);
    if (plan.vhost_fd) vsock += ",vhostfd=" + std::to_string(*plan.vhost_fd);
    add({"-device", vsock});
  }
  // The shared guest root: the host file mapped read-only and shared, so
  // every VM reads the same page cache (the guest mounts it with DAX) and a
  // guest's writes never reach it (QEMU maps it PROT_READ; KVM makes the slot
  // read-only). Shared memory is left out of a template's saved state
  // (x-ignore-shared): a clone maps the same file.
  if (!plan.root_image.empty()) {
    add({"-object",
         std::string("memory-backend-file,id=") + kRootMemId + ",mem-path=" + plan.root_image +
             ",size=" + std::to_string(plan.root_image_bytes) + ",share=on,readonly=on"});
    add({"-device", std::string("virtio-pmem-pci,memdev=") + kRootMemId + ",id=" + kRootDeviceId});
  }
  // Templates and clones: the empty slots a clone's devices are plugged into.
  // Same ids, order and chassis numbers in both, or the restore fails.
  if (plan.start != VmStart::kBoot) {
    add({"-device", std::string("pcie-root-port,id=") + kSharePortId + ",bus=pcie.0,chassis=1"});
    add({"-device", std::string("pcie-root-port,id=") + kNetPortId + ",bus=pcie.0,chassis=2"});
  }
  // A clone plugs these devices in through QMP (SharedFsDevice, PodNetDevice).
  const bool devices_on_command_line = plan.start == VmStart::kBoot;
  // The shared directory: QEMU connects to virtiofsd, which already listens.
  // Guest RAM is shared (memfd above) so virtiofsd can map the virtqueues.
  if (!plan.virtiofs_socket.empty()) {
    add({"-chardev",
         std::string("socket,id=") + kSharedFsChardevId + ",path=" + plan.virtiofs_socket});
    if (devices_on_command_line) add({"-device", SharedFsDevice(plan.virtiofs_tag).ToOption()});
  }
  // The pod's network: the tap hull created next to CNI's veth.
  if (plan.tap_fd >= 0) {
    add({"-netdev", std::string("tap,id=") + kPodNetdevId + ",fd=" + std::to_string(plan.tap_fd)});
    if (devices_on_command_line) add({"-device", PodNetDevice(plan.mac_address).ToOption()});
  }
  // The guest reports pages it freed; QEMU discards them (for the shared
  // memfd: a hole punched), so the host gets back what boot used once.
  if (plan.free_page_reporting)
    add({"-device", "virtio-balloon-pci,id=balloon0,free-page-reporting=on"});
  // Last: a clone waits for its device state (QMP migrate-incoming).
  if (plan.start == VmStart::kClone) add({"-incoming", "defer"});
  return argv;
}

std::string QemuDevice::ToOption() const {
  std::string option = driver;
  for (const auto& [key, value] : properties) option += "," + key + "=" + value;
  return option;
}

nlohmann::json QemuDevice::ToQmp() const {
  nlohmann::json arguments = {{"driver", driver}};
  for (const auto& [key, value] : properties) arguments[key] = value;
  return arguments;
}

QemuDevice SharedFsDevice(const std::string& tag, const std::string& bus) {
  QemuDevice device{"vhost-user-fs-pci", {}};
  if (!bus.empty()) device.properties.emplace_back("bus", bus);
  device.properties.emplace_back("id", kSharedFsDeviceId);
  device.properties.emplace_back("chardev", kSharedFsChardevId);
  device.properties.emplace_back("tag", tag);
  return device;
}

QemuDevice PodNetDevice(const std::string& mac_address, const std::string& bus) {
  QemuDevice device{"virtio-net-pci", {}};
  if (!bus.empty()) device.properties.emplace_back("bus", bus);
  device.properties.emplace_back("netdev", kPodNetdevId);
  device.properties.emplace_back("id", kPodNetDeviceId);
  device.properties.emplace_back("mac", mac_address);
  return device;
}

}  // namespace hull::qemu
