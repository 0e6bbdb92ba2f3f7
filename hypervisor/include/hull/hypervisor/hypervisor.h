// The hypervisor seam: everything above it (hullctl, the shim) boots and
// drives VMs through these interfaces, whichever backend runs them.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hull/core/config.h"
#include "hull/core/error.h"
#include "hull/core/fd.h"
#include "hull/core/process.h"
#include "hull/core/transport.h"
#include "hull/hypervisor/accel.h"
#include "hull/hypervisor/virtiofsd.h"

namespace hull {

// The virtio-fs tag of the VM's shared directory. The guest mounts it with
//   mount("hull-shared", <target>, "virtiofs", 0, nullptr)
// (the virtiofs module must be loaded first).
inline constexpr char kSharedFsTag[] = "hull-shared";

// Everything needed to boot one VM. Built from the configuration plus the
// caller's overrides; validated by the backend before anything is created.
struct VmConfig {
  std::string id;       // sandbox id: validated, names /run/hull/<id>
  std::string run_dir;  // parent of the VM's state directory, e.g. /run/hull
  std::string hypervisor_path;
  // The libvirt backend's connection URI (ignored by the QEMU backend).
  std::string libvirt_uri = "qemu:///system";
  std::string kernel;
  std::string initrd;
  // The shared read-only guest root (root.erofs), "" = none: the initrd is
  // the whole guest. QEMU maps it into every VM as a read-only virtio-pmem
  // device (the guest reads the host's page cache, DAX); libvirt attaches it
  // as a read-only virtio-blk disk.
  std::string root_image;
  std::string machine = "q35";
  Accel accel = Accel::kTcg;
  uint32_t vcpus = 1;
  uint64_t memory_mib = 512;
  TransportKind transport = TransportKind::kSerial;
  bool seccomp_sandbox = true;
  // A virtio-balloon whose guest reports freed memory, which the host then
  // releases: an idle guest gives back what it used once.
  bool free_page_reporting = true;
  // TCG only: the translation cache's size in MiB (QEMU's tb-size), 0 =
  // QEMU's default. What the guest's code fills of it is host memory.
  uint32_t tcg_tb_size_mib = 0;
  // The guest console's log (console.log in the state directory) is rotated
  // at this size, once: at most twice this on disk (QEMU backend).
  uint64_t console_log_max_bytes = 1 << 20;
  std::string agent_log_level = "info";
  bool agent_debug = false;
  std::string extra_kernel_params;

  // A host directory shared into the guest with virtio-fs under kSharedFsTag,
  // served by a virtiofsd the VM owns; empty = no virtio-fs device. Must be an
  // absolute path to an existing directory: the only host path the guest can
  // reach. The caller owns it: the VM never removes it.
  std::string shared_dir;
  // Instead of naming one: hull creates <state_dir>/shared (0755) and shares
  // it; it goes with the state directory. Excludes `shared_dir`.
  bool share_dir = false;
  std::string virtiofsd_path = kDefaultVirtiofsdPath;
  VirtiofsCache virtiofs_cache = VirtiofsCache::kAuto;
  VirtiofsdSandbox virtiofsd_sandbox = VirtiofsdSandbox::kNamespace;
  std::vector<std::string> virtiofsd_args;

  // A pod's network, a virtio-net NIC with MAC `mac_address` on a tap the
  // caller made, handed over as the backend's tap_handover() asks:
  //  kFdInNetns: QEMU runs in `netns_path` on the open tap `tap_fd` (the
  //    caller's; QEMU gets a copy).
  //  kNameInHostNetns: the hypervisor opens the persistent tap `tap_name`
  //    in the host's netns; the caller moves it into the pod's afterwards.
  // netns_path empty = no network device, the guest has loopback only.
  struct Network {
    std::string netns_path;
    int tap_fd = -1;
    std::string tap_name;
    std::string mac_address;
  };
  Network network;

  // Host cgroup directories (one per hierarchy) the hypervisor process
  // starts in: a pod's cgroup. The QEMU backend starts QEMU there; libvirt
  // keeps its domains in its own cgroups and says so.
  std::vector<std::string> host_cgroup_dirs;

  // Start as a clone of the template in this directory (see template.h)
  // instead of booting: its RAM is copied, its device state restored, and
  // the shared directory's device and the NIC are plugged in before the
  // guest resumes. "" = boot. The template must have been saved from a
  // VmConfig with the same TemplateKey.
  std::string clone_of;
};

// Why a VM is no longer running.
struct VmExit {
  ExitStatus process;     // how the hypervisor process ended
  std::string reason;     // e.g. "guest powered off", "killed by signal 9 (SIGKILL)"
  bool expected = false;  // true when hull asked for it (Stop, agent Shutdown)
};

// One running VM. Not copyable; destroying it stops the VM (no grace), its
// virtiofsd, and removes its state directory, so a VM never outlives its owner
// by accident. Methods are safe to call from any thread.
//
// A VM with a shared_dir owns the virtiofsd serving it. If virtiofsd dies while
// the VM runs, the VM is stopped with it (the guest's shared directory, and
// with it every container's root filesystem, would hang whatever touches it):
// the exit reason names virtiofsd's death.
class Vm {
 public:
  virtual ~Vm() = default;

  virtual const std::string& id() const = 0;
  // The VM's state directory, /run/hull/<id>: QMP, agent and virtiofsd
  // sockets, console, QEMU and virtiofsd logs.
  virtual const std::string& state_dir() const = 0;
  virtual std::string console_log_path() const = 0;
  // The host directory shared with the guest (tag kSharedFsTag), "" if none.
  virtual const std::string& shared_dir() const = 0;
  virtual pid_t pid() const = 0;
  // When the hypervisor process was started.
  virtual std::chrono::steady_clock::time_point launched_at() const = 0;

  // Opens a new connection to the agent's transport, waiting until `deadline`
  // for the guest side to be ready. Returns a non-blocking fd for gRPC.
  // Fails with kUnavailable (and the VM's exit reason) if the VM has died.
  virtual Result<UniqueFd> ConnectAgent(std::chrono::steady_clock::time_point deadline) = 0;

  // Whether the VM is running; once false, exit() says why.
  virtual bool running() = 0;
  virtual std::optional<VmExit> exit() = 0;
  // Waits up to `timeout` for the VM to stop on its own.
  virtual Result<std::optional<VmExit>> WaitForExit(std::chrono::milliseconds timeout) = 0;

  // Tells the VM that its guest was asked to power off, so the exit that
  // follows is expected (reported as such, not warned about).
  virtual void ExpectExit() = 0;

  // Ends the VM at once, without asking its guest: for a guest that stopped
  // answering (an agent call past its deadline) or a VM that lost a part it
  // cannot run without (its virtiofsd). The hypervisor is killed and the exit
  // recorded, not expected, with `reason`. Stop still cleans up afterwards.
  // Does nothing once the VM has ended.
  virtual void Abort(const std::string& reason) = 0;

  // Stops the VM: waits up to `grace` for it to stop by itself (callers ask
  // the agent to power off first), then asks the hypervisor to quit, then
  // kills it. Always reaps the process; then stops the VM's virtiofsd, if it
  // has one (detaching the shared directory's bind mount, and with it what
  // was mounted through it), and removes the state directory -- unless
  // something is still mounted under it: then it is left, with a warning,
  // rather than deleted through the mount. Callers unmount what they mounted
  // before Stop.
  virtual VmExit Stop(std::chrono::milliseconds grace) = 0;
};

// How a backend takes a pod's tap (see VmConfig::Network).
enum class TapHandover { kFdInNetns, kNameInHostNetns };

// Where a backend looks for what it drives, for Hypervisor::Probe.
struct ProbeTarget {
  std::string hypervisor_path;                 // the QEMU binary
  std::string libvirt_uri = "qemu:///system";  // the libvirt backend's connection
};

// What answered a probe, in one line for an operator: "QEMU emulator version
// 7.2.0 (...)" or "libvirt 9.0.0, QEMU 7.2.0 at qemu:///system".
struct HypervisorProbe {
  std::string version;
};

class Hypervisor {
 public:
  virtual ~Hypervisor() = default;
  virtual std::string_view name() const = 0;
  virtual TapHandover tap_handover() const = 0;
  // Whether this backend can run VMs here: asks what it drives (the QEMU
  // binary, the libvirt daemon) for its version. Creates nothing; may block
  // for as long as that takes (a daemon that does not answer: its timeout).
  // Errors say why not, e.g. kFailedPrecondition "`/usr/bin/qemu-system-x86_64
  // --version` failed" or kUnavailable with libvirt's own message.
  virtual Result<HypervisorProbe> Probe(const ProbeTarget& target) = 0;
  // Validates `config`, creates the state directory, starts virtiofsd (when
  // config.shared_dir or share_dir is set) and then the VM. On any error nothing is left
  // behind (no virtiofsd or hypervisor process, socket or directory).
  virtual Result<std::unique_ptr<Vm>> Launch(const VmConfig& config) = 0;

  // Whether SaveTemplate and VmConfig::clone_of work with this backend.
  virtual bool supports_templates() const { return false; }
  // Boots `config` (a TemplateVmConfig) as a template and saves it into
  // `dir`: the RAM file `memory` and the device state `state`. `ready` runs
  // once the VM is up: it must reach the agent and close every connection
  // to it again (a clone must not inherit one). The template VM is gone
  // when this returns, whatever happened. The default: kUnimplemented.
  virtual Status SaveTemplate(const VmConfig& config, const std::string& dir,
                              const std::function<Status(Vm& vm)>& ready);
};

// The backend named by `backend` ("qemu" or "libvirt").
Result<std::unique_ptr<Hypervisor>> MakeHypervisor(std::string_view backend);

// What every backend checks before it creates anything: the id, the binary
// and guest assets, vcpus and memory in range, no characters QEMU's option
// syntax would split on.
Status ValidateVmConfig(const VmConfig& config);

// Removes a stopped VM's state directory -- unless something is still
// mounted under it: then it is left, with a warning, rather than deleted
// through the mount.
void RemoveVmStateDir(const std::string& id, const std::string& state_dir);

// Validates `config` and creates its state directory <run_dir>/<id> (0700);
// kAlreadyExists if it is there already. The caller removes it on failure.
Result<std::string> CreateVmStateDir(const VmConfig& config);

// Builds a VmConfig from the configuration: resolves the accelerator, the
// transport ("auto": vsock where /dev/vhost-vsock exists, else serial) and
// the guest assets ("" = next to the binary: <bin>/../guest/, then
// /usr/share/hull/guest/), and the virtiofsd settings. shared_dir stays empty:
// what to share is the caller's decision, per VM.
Result<VmConfig> VmConfigFromConfig(const Config& config, std::string id);

// The guest kernel command line of `config`'s VM, whose root image (if any)
// the guest sees as /dev/<root_device> (guest::kRootDevicePmem or
// kRootDeviceBlk, by backend).
std::string VmKernelCmdline(const VmConfig& config, std::string_view root_device);

// The size of a root image, checked: an absolute path without commas
// (kInvalidArgument: it goes into a QEMU option), a regular file, not empty,
// a multiple of 2 MiB (how build-guest-image pads it; virtio-pmem maps whole
// 2 MiB units; kFailedPrecondition otherwise, naming the file).
Result<uint64_t> RootImageBytes(const std::string& path);

// Where the guest assets are when the configuration does not say.
std::string DefaultGuestDir();

// The guest root image for `[hypervisor] root_image`: "none" = no root device
// (""), "" = root.erofs in the initrd's directory if it is there (an image
// built by guest-image/build-guest-image always has one), else none; any
// other value as given (the VM refuses to start if it is not a file).
std::string ResolveRootImage(const std::string& configured, const std::string& initrd);

// The first line of `<binary> --version` (QEMU, virtiofsd), or why that
// failed: kFailedPrecondition when it ran and failed.
Result<std::string> ProgramVersion(const std::string& binary);

}  // namespace hull
