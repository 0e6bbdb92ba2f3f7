// The QEMU command line: a pure function of a launch plan, checked against
// golden files in tests/golden/.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
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

struct QemuLaunchPlan {
  std::string qemu_path;
  std::string name;  // VM name shown by ps and QMP: "hull-<id>"
  std::string machine = "q35";
  Accel accel = Accel::kTcg;
  uint32_t vcpus = 1;
  uint64_t memory_mib = 512;
  std::string kernel;
  std::string initrd;
  std::string kernel_cmdline;
  std::string qmp_socket;
  std::string console_log;
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

}  // namespace hull::qemu
