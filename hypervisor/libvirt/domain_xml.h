// The libvirt domain XML: a pure function of a launch plan, checked against
// golden files in tests/golden/ (and, where virt-xml-validate is installed,
// against libvirt's own schema).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "hull/core/transport.h"
#include "hull/hypervisor/accel.h"
#include "hull/hypervisor/virtiofsd.h"

namespace hull::libvirt {

// The user alias of the agent's virtio-serial port. libvirt requires user
// aliases to start with "ua-"; QEMU reports it as the port's id in
// VSERPORT_CHANGE, which is how hull learns that the guest opened its end.
inline constexpr char kAgentChannelAlias[] = "ua-hull-agent";

struct DomainPlan {
  std::string name;  // "hull-<id>": what virsh and ps show
  std::string uuid;  // 36-character RFC 4122 text; hull finds QEMU's pid by it
  std::string emulator = "/usr/bin/qemu-system-x86_64";
  std::string machine = "q35";
  Accel accel = Accel::kTcg;  // kvm -> <domain type='kvm'>, tcg -> type='qemu'
  uint32_t vcpus = 1;
  uint64_t memory_mib = 512;
  std::string kernel;
  std::string initrd;
  // The shared guest root ("" = none): a read-only virtio-blk disk, the
  // guest's vda. (libvirt 9.0 cannot make a virtio-pmem device read-only.)
  std::string root_image;
  std::string kernel_cmdline;
  std::string console_log;  // the guest's ttyS0, to a file
  TransportKind transport = TransportKind::kSerial;
  std::string agent_socket;  // serial: the unix socket QEMU listens on
  // virtio-fs ("" = none): the host directory, the tag the guest mounts, and
  // the virtiofsd libvirt starts for it.
  std::string shared_dir;
  std::string shared_tag;
  std::string virtiofsd_path = kDefaultVirtiofsdPath;
  VirtiofsCache virtiofs_cache = VirtiofsCache::kAuto;
  VirtiofsdSandbox virtiofsd_sandbox = VirtiofsdSandbox::kNamespace;
  // Pod networking ("" = no network device): a tap hull created (libvirt
  // neither creates nor removes it), and the MAC the guest's eth0 gets.
  std::string tap_device;
  bool free_page_reporting = true;  // <memballoon model='virtio' freePageReporting='on'/>
  uint32_t tcg_tb_size_mib = 0;     // TCG: <features><tcg><tb-cache>, 0 = QEMU's default
  std::string mac_address;
  // The DAC identity QEMU runs as. hull's state directory is private to the
  // shim's user, so QEMU runs as that user and libvirt relabels nothing.
  uint32_t uid = 0;
  uint32_t gid = 0;
};

// Escapes &, <, >, ' and " for XML text and single-quoted attributes.
std::string XmlEscape(std::string_view text);

std::string BuildDomainXml(const DomainPlan& plan);

}  // namespace hull::libvirt
