#include "hull/hypervisor/hypervisor.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "hull/core/ids.h"
#include "hull/core/log.h"
#include "hull/core/process.h"
#include "hull/core/syscall.h"
#include "hull/hypervisor/kernel_cmdline.h"
#include "libvirt/libvirt_hypervisor.h"
#include "qemu/qemu_hypervisor.h"

namespace hull {

Status ValidateVmConfig(const VmConfig& config) {
  HULL_CHECK_OK(ValidateId("sandbox", config.id), "VM config");
  auto bad = [](std::string message) {
    return MakeError(ErrorCode::kInvalidArgument, std::move(message));
  };
  if (!IsExecutable(config.hypervisor_path)) {
    return MakeError(
        ErrorCode::kFailedPrecondition,
        "hypervisor binary `" + config.hypervisor_path + "` is missing or not executable");
  }
  if (config.kernel.empty() || !PathExists(config.kernel)) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "guest kernel `" + config.kernel + "` not found");
  }
  if (config.initrd.empty() || !PathExists(config.initrd)) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "guest initrd `" + config.initrd + "` not found");
  }
  if (config.vcpus < 1 || config.vcpus > 255) {
    return bad("vcpus must be between 1 and 255, got " + std::to_string(config.vcpus));
  }
  if (config.memory_mib < 64 || config.memory_mib > (1u << 20)) {
    return bad("memory must be between 64 MiB and 1 TiB, got " + std::to_string(config.memory_mib) +
               " MiB");
  }
  if (config.run_dir.empty() || config.run_dir[0] != '/')
    return bad("run dir must be an absolute path");
  if (config.share_dir && !config.shared_dir.empty()) {
    return bad("share_dir and shared_dir exclude each other (shared_dir is `" + config.shared_dir +
               "`)");
  }
  // QEMU's option syntax would split socket paths at a comma.
  if (config.run_dir.find(',') != std::string::npos)
    return bad("run dir `" + config.run_dir + "` contains a comma");
  for (const std::string* field :
       {&config.machine, &config.extra_kernel_params, &config.agent_log_level}) {
    for (char c : *field) {
      if (c == '\n' || c == '\0' || c == ',') {
        if (c == ',' && field == &config.extra_kernel_params) continue;
        return bad("VM setting `" + *field + "` contains a forbidden character");
      }
    }
  }
  return Ok();
}

Result<std::string> CreateVmStateDir(const VmConfig& config) {
  if (Status valid = ValidateVmConfig(config); !valid) return Unexpected{valid.error()};
  if (Status made = MakeDirs(config.run_dir, 0711); !made) return Unexpected{made.error()};
  std::string state_dir = config.run_dir + "/" + config.id;
  if (::mkdir(state_dir.c_str(), 0700) < 0) {
    if (errno == EEXIST) {
      return MakeError(ErrorCode::kAlreadyExists,
                       "state directory " + state_dir + " already exists");
    }
    return ErrnoError("create " + state_dir);
  }
  return state_dir;
}

void RemoveVmStateDir(const std::string& id, const std::string& state_dir) {
  // RemoveTree stops at mount points of other filesystems, but not at a
  // bind mount from the same one: never delete through a mount.
  if (auto mounts = MountPointsUnder(state_dir); !mounts.empty()) {
    HULL_LOG_WARN("VM {}: leaving {}: {} is still mounted there", id, state_dir, mounts.front());
  } else if (auto removed = RemoveTree(state_dir); !removed) {
    HULL_LOG_WARN("VM {}: {}", id, removed.error().ToString());
  }
}

Status Hypervisor::SaveTemplate(const VmConfig&, const std::string&,
                                const std::function<Status(Vm&)>&) {
  return MakeError(ErrorCode::kUnimplemented,
                   "the " + std::string(name()) + " backend does not save VM templates");
}

Result<std::unique_ptr<Hypervisor>> MakeHypervisor(std::string_view backend) {
  if (backend == "qemu") return qemu::MakeQemuHypervisor();
  if (backend == "libvirt") return libvirt::MakeLibvirtHypervisor();
  return MakeError(
      ErrorCode::kInvalidArgument,
      "unknown hypervisor backend `" + std::string(backend) + "` (expected qemu or libvirt)");
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

std::string VmKernelCmdline(const VmConfig& config, std::string_view root_device) {
  return BuildKernelCmdline({config.transport, config.agent_log_level, config.agent_debug,
                             config.extra_kernel_params,
                             config.root_image.empty() ? std::string() : std::string(root_device)});
}

Result<uint64_t> RootImageBytes(const std::string& path) {
  // It goes into a QEMU option, where a comma starts the next one.
  if (path.empty() || path[0] != '/' || path.find(',') != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "guest root image `" + path + "`: must be an absolute path without commas");
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) < 0) return ErrnoError("guest root image `" + path + "`");
  constexpr uint64_t kAlign = 2 << 20;
  const auto bytes = static_cast<uint64_t>(st.st_size);
  if (!S_ISREG(st.st_mode) || bytes == 0 || bytes % kAlign != 0) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     "guest root image `" + path +
                         "` is not a non-empty file padded to 2 MiB (build it with "
                         "guest-image/build-guest-image, or set [hypervisor] root_image = \"none\" "
                         "for an initrd that holds the whole guest)");
  }
  return bytes;
}

std::string ResolveRootImage(const std::string& configured, const std::string& initrd) {
  if (configured == "none") return "";
  if (!configured.empty()) return configured;
  std::string beside = (std::filesystem::path(initrd).parent_path() / "root.erofs").string();
  return PathExists(beside) ? beside : "";
}

Result<VmConfig> VmConfigFromConfig(const Config& config, std::string id) {
  VmConfig vm;
  vm.id = std::move(id);
  vm.run_dir = config.run_dir;
  vm.hypervisor_path = config.hypervisor.path;
  vm.libvirt_uri = config.hypervisor.libvirt_uri;
  std::string guest_dir = DefaultGuestDir();
  vm.kernel = config.hypervisor.kernel.empty() ? guest_dir + "/vmlinuz" : config.hypervisor.kernel;
  vm.initrd =
      config.hypervisor.initrd.empty() ? guest_dir + "/initrd.img" : config.hypervisor.initrd;
  vm.root_image = ResolveRootImage(config.hypervisor.root_image, vm.initrd);
  vm.machine = config.hypervisor.machine;
  HULL_TRY(AccelDecision accel, DecideAccel(config.hypervisor.accel, ProbeHostAccel()),
           "hypervisor.accel");
  vm.accel = accel.accel;
  vm.vcpus = config.hypervisor.vcpus;
  vm.memory_mib = config.hypervisor.memory_mib;
  if (config.agent.transport == "auto") {
    vm.transport = PathExists("/dev/vhost-vsock") ? TransportKind::kVsock : TransportKind::kSerial;
  } else {
    HULL_TRY(vm.transport, ParseTransport(config.agent.transport), "agent.transport");
  }
  vm.seccomp_sandbox = config.hypervisor.seccomp_sandbox;
  vm.free_page_reporting = config.hypervisor.free_page_reporting;
  vm.tcg_tb_size_mib = config.hypervisor.tcg_tb_size_mib;
  vm.console_log_max_bytes = uint64_t{config.hypervisor.console_log_max_kib} << 10;
  vm.agent_log_level = config.agent.log_level;
  vm.agent_debug = config.agent.debug;
  vm.extra_kernel_params = config.hypervisor.kernel_params;
  vm.virtiofsd_path = config.hypervisor.virtiofsd;
  HULL_TRY(vm.virtiofs_cache, ParseVirtiofsCache(config.hypervisor.virtiofs_cache),
           "hypervisor.virtiofs_cache");
  HULL_TRY(vm.virtiofsd_sandbox, ParseVirtiofsdSandbox(config.hypervisor.virtiofsd_sandbox),
           "hypervisor.virtiofsd_sandbox");
  vm.virtiofsd_args = config.hypervisor.virtiofsd_args;
  return vm;
}

Result<std::string> ProgramVersion(const std::string& binary) {
  // Child::Spawn writes to files only; a private temp file holds the output.
  std::string out = "/tmp/hull-version-" + RandomHex(6);
  ScopeExit remove_out([&] { ::unlink(out.c_str()); });
  SpawnOptions spawn;
  spawn.argv = {binary, "--version"};
  spawn.stdout_path = out;
  spawn.stderr_path = out;
  HULL_TRY(Child child, Child::Spawn(spawn), "run `" + binary + " --version`");
  auto status = child.Wait();
  auto text = ReadFile(out, 1 << 16);
  if (!status || !status->success()) {
    return MakeError(ErrorCode::kFailedPrecondition, "`" + binary + " --version` failed" +
                                                         (status ? ": " + status->ToString() : ""));
  }
  if (!text) return std::move(text).error();
  return text->substr(0, text->find('\n'));
}

}  // namespace hull
