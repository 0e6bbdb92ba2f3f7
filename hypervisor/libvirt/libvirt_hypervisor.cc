#include "libvirt/libvirt_hypervisor.h"

#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "hull/core/guest_contract.h"
#include "hull/core/log.h"
#include "hull/core/syscall.h"
#include "hull/hypervisor/kernel_cmdline.h"
#include "libvirt/domain_xml.h"
#include "libvirt/libvirt_connection.h"
#include "libvirt/libvirt_vm.h"

namespace hull::libvirt {

namespace {

// A random RFC 4122 version 4 UUID.
std::string NewUuid() {
  unsigned char bytes[16] = {};
  size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  char text[37];
  std::snprintf(text, sizeof text,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", bytes[0],
                bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7], bytes[8],
                bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]);
  return text;
}

class LibvirtHypervisor final : public Hypervisor {
 public:
  std::string_view name() const override { return "libvirt"; }
  // libvirtd opens a tap by name, in its own netns.
  TapHandover tap_handover() const override { return TapHandover::kNameInHostNetns; }

  Result<HypervisorProbe> Probe(const ProbeTarget& target) override {
    EnsureEventLoop();
    const std::string& uri = target.libvirt_uri;
    Connection conn(virConnectOpen(uri.c_str()));
    if (!conn) return LibvirtError("connect to libvirt at `" + uri + "`");
    unsigned long library = 0;
    unsigned long hypervisor = 0;
    if (virConnectGetLibVersion(conn.get(), &library) < 0)
      return LibvirtError("ask libvirt for its version");
    if (virConnectGetVersion(conn.get(), &hypervisor) < 0)
      return LibvirtError("ask libvirt for QEMU's version");
    return HypervisorProbe{"libvirt " + FormatVersion(library) + ", QEMU " +
                           FormatVersion(hypervisor) + " at " + uri};
  }

  Result<std::unique_ptr<Vm>> Launch(const VmConfig& config) override {
    const std::string context = "launch VM `" + config.id + "` through libvirt";
    if (!config.clone_of.empty()) {
      return MakeError(ErrorCode::kUnimplemented,
                       context + ": the libvirt backend does not start VMs from templates");
    }
    if (!config.virtiofsd_args.empty()) {
      return MakeError(
          ErrorCode::kInvalidArgument,
          context + ": virtiofsd_args are not supported (libvirt starts virtiofsd itself)");
    }
    const auto& tap = config.network.tap_name;
    if (!config.network.netns_path.empty() &&
        (tap.empty() || tap.size() >= 16 ||
         tap.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_-") != std::string::npos ||
         config.network.tap_fd >= 0 || config.network.mac_address.size() != 17)) {
      return MakeError(
          ErrorCode::kInvalidArgument,
          context +
              ": the pod network needs a MAC and a tap by name in the host's netns (tap_handover)");
    }
    if (!config.host_cgroup_dirs.empty()) {
      // libvirt puts its domains in cgroups of its own (its <resource> partition).
      HULL_LOG_WARN("VM {}: libvirt places QEMU in its own cgroup, not in {}", config.id,
                    config.host_cgroup_dirs.front());
    }
    HULL_TRY(std::string state_dir, CreateVmStateDir(config), context);
    ScopeExit remove_dir([&] { (void)RemoveTree(state_dir); });

    std::string shared_dir = config.shared_dir;
    if (config.share_dir) {
      shared_dir = state_dir + "/shared";
      if (::mkdir(shared_dir.c_str(), 0755) < 0)
        return ErrnoError("create " + shared_dir).error.Wrap(context);
    }
    std::optional<SharedMount> mount;
    if (!shared_dir.empty()) {
      struct stat st {};
      if (::stat(shared_dir.c_str(), &st) < 0 || !S_ISDIR(st.st_mode)) {
        return MakeError(ErrorCode::kFailedPrecondition,
                         context + ": shared directory `" + shared_dir + "` is not a directory");
      }
      if (!IsExecutable(config.virtiofsd_path)) {
        return MakeError(ErrorCode::kFailedPrecondition, context + ": virtiofsd binary `" +
                                                             config.virtiofsd_path +
                                                             "` is missing or not executable");
      }
      // As for the virtiofsd hull starts itself (see SharedMount), but
      // libvirtd starts this one, maybe in a mount namespace of its own.
      if (config.virtiofsd_sandbox == VirtiofsdSandbox::kNamespace || config.share_dir) {
        HULL_TRY(SharedMount bound,
                 SharedMount::Bind(shared_dir, SharedMount::Propagation::kInherit,
                                   config.share_dir ? kShareRootBytes : 0),
                 context);
        mount.emplace(std::move(bound));
      }
    }

    DomainPlan plan;
    plan.name = "hull-" + config.id;
    plan.uuid = NewUuid();
    plan.emulator = config.hypervisor_path;
    plan.machine = config.machine;
    plan.accel = config.accel;
    plan.vcpus = config.vcpus;
    plan.memory_mib = config.memory_mib;
    plan.kernel = config.kernel;
    plan.initrd = config.initrd;
    plan.kernel_cmdline = VmKernelCmdline(config, guest::kRootDeviceBlk);
    if (!config.root_image.empty()) {
      HULL_TRY(uint64_t bytes, RootImageBytes(config.root_image), "define VM `" + config.id + "`");
      (void)bytes;
      plan.root_image = config.root_image;
    }
    plan.console_log = state_dir + "/console.log";
    plan.transport = config.transport;
    plan.agent_socket = state_dir + "/agent.sock";
    plan.shared_dir = shared_dir;
    plan.shared_tag = shared_dir.empty() ? "" : kSharedFsTag;
    plan.virtiofsd_path = config.virtiofsd_path;
    plan.virtiofs_cache = config.virtiofs_cache;
    plan.virtiofsd_sandbox = config.virtiofsd_sandbox;
    plan.free_page_reporting = config.free_page_reporting;
    plan.tcg_tb_size_mib = config.tcg_tb_size_mib;
    if (!config.network.netns_path.empty()) {
      plan.tap_device = config.network.tap_name;
      plan.mac_address = config.network.mac_address;
    }
    plan.uid = ::getuid();
    plan.gid = ::getgid();
    const std::string xml = BuildDomainXml(plan);
    // Kept for operators: what hull asked libvirt for.
    HULL_CHECK_OK(WriteFile(state_dir + "/domain.xml", xml, 0600), context);

    remove_dir.Dismiss();  // CreateLibvirtVm takes the directory over
    return CreateLibvirtVm({.config = config,
                            .state_dir = state_dir,
                            .shared_dir = shared_dir,
                            .mount = std::move(mount),
                            .uuid = plan.uuid,
                            .console_log = plan.console_log,
                            .xml = xml});
  }
};

}  // namespace

std::unique_ptr<Hypervisor> MakeLibvirtHypervisor() {
  return std::make_unique<LibvirtHypervisor>();
}

}  // namespace hull::libvirt
