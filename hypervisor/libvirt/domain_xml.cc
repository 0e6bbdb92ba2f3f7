#include "libvirt/domain_xml.h"

#include <string>

namespace hull::libvirt {

std::string XmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '\'':
        out += "&apos;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string BuildDomainXml(const DomainPlan& plan) {
  std::string xml;
  auto line = [&](int depth, std::string_view text) {
    xml.append(static_cast<size_t>(depth) * 2, ' ');
    xml += text;
    xml += '\n';
  };
  auto e = [](std::string_view text) { return XmlEscape(text); };

  line(0, std::string("<domain type='") + (plan.accel == Accel::kKvm ? "kvm" : "qemu") + "'>");
  line(1, "<name>" + e(plan.name) + "</name>");
  line(1, "<uuid>" + e(plan.uuid) + "</uuid>");
  line(1, "<memory unit='MiB'>" + std::to_string(plan.memory_mib) + "</memory>");
  // Guest RAM is a shared memfd: virtio-fs (vhost-user) needs to map it.
  line(1, "<memoryBacking>");
  line(2, "<source type='memfd'/>");
  line(2, "<access mode='shared'/>");
  line(1, "</memoryBacking>");
  line(1, "<vcpu>" + std::to_string(plan.vcpus) + "</vcpu>");
  line(1, "<os>");
  line(2, "<type arch='x86_64' machine='" + e(plan.machine) + "'>hvm</type>");
  line(2, "<kernel>" + e(plan.kernel) + "</kernel>");
  line(2, "<initrd>" + e(plan.initrd) + "</initrd>");
  line(2, "<cmdline>" + e(plan.kernel_cmdline) + "</cmdline>");
  line(1, "</os>");
  // ACPI: the agent powers the guest off, which on x86 goes through it.
  line(1, "<features>");
  line(2, "<acpi/>");
  if (plan.accel == Accel::kTcg && plan.tcg_tb_size_mib != 0) {
    line(2, "<tcg>");
    line(3, "<tb-cache unit='MiB'>" + std::to_string(plan.tcg_tb_size_mib) + "</tb-cache>");
    line(2, "</tcg>");
  }
  line(1, "</features>");
  // As with QEMU directly: the host CPU under KVM, everything TCG can
  // emulate otherwise.
  line(1, plan.accel == Accel::kKvm ? "<cpu mode='host-passthrough'/>" : "<cpu mode='maximum'/>");
  line(1, "<clock offset='utc'/>");
  // A sandbox never reboots: a guest reboot, panic or power-off ends it.
  line(1, "<on_poweroff>destroy</on_poweroff>");
  line(1, "<on_reboot>destroy</on_reboot>");
  line(1, "<on_crash>destroy</on_crash>");
  line(1, "<devices>");
  line(2, "<emulator>" + e(plan.emulator) + "</emulator>");
  // Nothing we did not ask for: libvirt adds a USB controller and a balloon
  // unless told not to. The balloon, if any, only reports free pages.
  line(2, "<controller type='usb' model='none'/>");
  line(2, plan.free_page_reporting ? "<memballoon model='virtio' freePageReporting='on'/>"
                                   : "<memballoon model='none'/>");
  if (!plan.root_image.empty()) {
    line(2, "<disk type='file' device='disk'>");
    line(3, "<driver name='qemu' type='raw'/>");
    line(3, "<source file='" + e(plan.root_image) + "'/>");
    line(3, "<target dev='vda' bus='virtio'/>");
    line(3, "<readonly/>");
    line(2, "</disk>");
  }
  line(2, "<serial type='file'>");
  line(3, "<source path='" + e(plan.console_log) + "'/>");
  line(3, "<target port='0'/>");
  line(2, "</serial>");
  if (plan.transport == TransportKind::kSerial) {
    line(2, "<channel type='unix'>");
    line(3, "<source mode='bind' path='" + e(plan.agent_socket) + "'/>");
    line(3, "<target type='virtio' name='" + std::string(kAgentSerialPortName) + "'/>");
    line(3, std::string("<alias name='") + kAgentChannelAlias + "'/>");
    line(2, "</channel>");
  } else {
    // libvirt picks a free CID; hull reads it back from the live XML.
    line(2, "<vsock model='virtio'>");
    line(3, "<cid auto='yes'/>");
    line(2, "</vsock>");
  }
  if (!plan.shared_dir.empty()) {
    line(2, "<filesystem type='mount' accessmode='passthrough'>");
    line(3, "<driver type='virtiofs'/>");
    line(3, "<binary path='" + e(plan.virtiofsd_path) + "'>");
    // virtiofsd's own default is "auto"; libvirt can only name the others.
    if (plan.virtiofs_cache != VirtiofsCache::kAuto) {
      line(4, "<cache mode='" + std::string(VirtiofsCacheName(plan.virtiofs_cache)) + "'/>");
    }
    line(4, "<sandbox mode='" + std::string(VirtiofsdSandboxName(plan.virtiofsd_sandbox)) + "'/>");
    line(3, "</binary>");
    line(3, "<source dir='" + e(plan.shared_dir) + "'/>");
    line(3, "<target dir='" + e(plan.shared_tag) + "'/>");
    line(2, "</filesystem>");
  }
  if (!plan.tap_device.empty()) {
    line(2, "<interface type='ethernet'>");
    if (!plan.mac_address.empty()) line(3, "<mac address='" + e(plan.mac_address) + "'/>");
    line(3, "<target dev='" + e(plan.tap_device) + "' managed='no'/>");
    line(3, "<model type='virtio'/>");
    line(2, "</interface>");
  }
  line(1, "</devices>");
  line(1, "<seclabel type='static' model='dac' relabel='no'>");
  line(2, "<label>+" + std::to_string(plan.uid) + ":+" + std::to_string(plan.gid) + "</label>");
  line(1, "</seclabel>");
  line(0, "</domain>");
  return xml;
}

}  // namespace hull::libvirt
