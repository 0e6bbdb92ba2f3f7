// The QEMU command line: a pure function of a launch plan, checked against
// golden files in tests/golden/.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "hull/core/transport.h"
#include "hull/hypervisor/accel.h"

namespace hull::qemu {

// Device and chardev ids hull relies on (QMP events name them).
inline constexpr char kAgentPortId[] = "agent-port";
// The vhost-user chardev to virtiofsd and the vhost-user-fs-pci device on it.
inline constexpr char kSharedFsChardevId[] = "virtiofs";
inline constexpr char kSharedFsDeviceId[] = "shared-fs";
inline constexpr char kPodNetDeviceId[] = "pod-net";
inline constexpr char kPodNetdevId[] = "pod-netdev";
// The PCIe root ports a template carries, empty, for the devices a clone gets
// after restore (vhost-user-fs cannot be migrated; the NIC is the pod's).
inline constexpr char kSharePortId[] = "hotplug-share";
inline constexpr char kNetPortId[] = "hotplug-net";
// The guest root's memory backend and its virtio-pmem device.
inline constexpr char kRootMemId[] = "guest-root-mem";
inline constexpr char kRootDeviceId[] = "guest-root";

// How a VM comes to life.
enum class VmStart {
  kBoot,      // a plain boot; guest RAM is an anonymous shared memfd
  kTemplate,  // a boot whose RAM is the file `memory_path`, to be saved as a template
  kClone,     // a restore: RAM is `memory_path` (a copy of a template's), device
              // state comes through QMP migrate-incoming; the shared-fs and NIC
              // backends are on the command line, their devices hot-plugged
};

struct QemuLaunchPlan {
  std::string qemu_path;
  std::string name;  // VM name shown by ps and QMP: "hull-<id>"
  std::string machine = "q35";
  Accel accel = Accel::kTcg;
  uint32_t vcpus = 1;
  uint64_t memory_mib = 512;
  VmStart start = VmStart::kBoot;
  // kTemplate, kClone: the file guest RAM is mapped from (shared), e.g.
  // "/proc/self/fd/9" for a clone's inherited copy.
  std::string memory_path;
  std::string kernel;
  std::string initrd;
  // The shared read-only guest root ("" = none) and its size in bytes, a
  // multiple of 2 MiB: a read-only virtio-pmem device mapping the file.
  std::string root_image;
  uint64_t root_image_bytes = 0;
  std::string kernel_cmdline;
  std::string qmp_socket;
  // The guest console (ttyS0): an inherited socket whose other end the host
  // reads into a capped log (the guest's to fill, so QEMU never writes a file).
  int console_fd = -1;
  TransportKind transport = TransportKind::kSerial;
  std::string agent_socket;     // serial: the unix socket QEMU listens on
  uint32_t vsock_cid = 0;       // vsock: the guest's context id
  std::optional<int> vhost_fd;  // vsock: an open /dev/vhost-vsock with the cid set
  bool seccomp_sandbox = true;
  bool free_page_reporting = true;  // a virtio-balloon with free page reporting
  uint32_t tcg_tb_size_mib = 0;     // TCG: tb-size, 0 = QEMU's default
  // virtio-fs: virtiofsd's vhost-user socket ("" = no shared directory) and
  // the tag the guest mounts it by.
  std::string virtiofs_socket;
  std::string virtiofs_tag;
  // The pod's NIC: an open tap QEMU inherits (-1 = none) and its MAC.
  int tap_fd = -1;
  std::string mac_address;
};

std::vector<std::string> BuildQemuArgv(const QemuLaunchPlan& plan);

// One -device, spelled once for the command line and for QMP device_add.
struct QemuDevice {
  std::string driver;
  std::vector<std::pair<std::string, std::string>> properties;  // in order
  std::string ToOption() const;                                 // "driver,key=value,..."
  nlohmann::json ToQmp() const;  // {"driver": ..., "key": "value", ...}
};

// The shared directory's vhost-user-fs device and the pod's NIC; `bus` = ""
// on the command line, a root port (kSharePortId, kNetPortId) in a clone.
QemuDevice SharedFsDevice(const std::string& tag, const std::string& bus = "");
QemuDevice PodNetDevice(const std::string& mac_address, const std::string& bus = "");

}  // namespace hull::qemu
