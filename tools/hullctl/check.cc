#include <sys/statfs.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "hull/core/syscall.h"
#include "hull/hypervisor/accel.h"
#include "hull/hypervisor/hypervisor.h"
#include "hull/sandbox/host_cgroup.h"

namespace hull::hullctl {

namespace {

enum class Verdict { kOk, kWarn, kFail };

struct Report {
  int failures = 0;
  void Line(Verdict verdict, std::string_view what, std::string_view detail) {
    const char* tag = verdict == Verdict::kOk     ? "ok  "
                      : verdict == Verdict::kWarn ? "warn"
                                                  : "FAIL";
    if (verdict == Verdict::kFail) ++failures;
    std::printf("%s  %-14s %.*s\n", tag, std::string(what).c_str(), static_cast<int>(detail.size()),
                detail.data());
  }
};

// Asks backend `name` whether it can run VMs here.
Result<HypervisorProbe> ProbeBackend(std::string_view name, const ProbeTarget& target) {
  auto hypervisor = MakeHypervisor(name);
  if (!hypervisor) return std::move(hypervisor).error();
  return (*hypervisor)->Probe(target);
}

}  // namespace

int RunCheck(const CheckOptions& options) {
  Report report;
  auto config = LoadConfig(options.config_path);
  if (!config) {
    report.Line(Verdict::kFail, "config", config.error().ToString());
    return 1;
  }
  report.Line(
      Verdict::kOk, "config",
      config->source.empty() ? "built-in defaults (no /etc/hull/config.toml)" : config->source);

  auto accel = DecideAccel(config->hypervisor.accel, ProbeHostAccel());
  if (accel) {
    report.Line(Verdict::kOk, "accelerator", accel->reason);
  } else {
    report.Line(Verdict::kFail, "accelerator", accel.error().ToString());
  }

  bool vhost_vsock = PathExists("/dev/vhost-vsock");
  report.Line(Verdict::kOk, "vhost-vsock",
              vhost_vsock ? "/dev/vhost-vsock present: transport auto = vsock"
                          : "/dev/vhost-vsock missing: transport auto = serial (virtio-serial)");
  if (config->agent.transport == "vsock" && !vhost_vsock) {
    report.Line(Verdict::kFail, "transport",
                "agent.transport = vsock but /dev/vhost-vsock is missing");
  }

  const ProbeTarget target{config->hypervisor.path, config->hypervisor.libvirt_uri};
  if (auto qemu = ProbeBackend("qemu", target); qemu) {
    report.Line(Verdict::kOk, "qemu", target.hypervisor_path + ": " + qemu->version);
  } else {
    report.Line(Verdict::kFail, "qemu", qemu.error().ToString());
  }

  // libvirt: required when it is the backend, reported either way.
  auto libvirt = ProbeBackend("libvirt", target);
  if (config->hypervisor.backend == "libvirt") {
    report.Line(
        libvirt ? Verdict::kOk : Verdict::kFail, "libvirt",
        libvirt ? libvirt->version : libvirt.error().ToString() + " (backend = libvirt needs it)");
  } else {
    report.Line(
        Verdict::kOk, "libvirt",
        "not used (backend = qemu); " + (libvirt ? libvirt->version : libvirt.error().ToString()));
  }

  const std::string& virtiofsd = config->hypervisor.virtiofsd;
  if (!IsExecutable(virtiofsd)) {
    report.Line(Verdict::kWarn, "virtiofsd",
                virtiofsd +
                    " is missing (needed to share container root filesystems; "
                    "apt-get install qemu-system-common, or set [hypervisor] virtiofsd)");
  } else if (auto version = ProgramVersion(virtiofsd); version) {
    report.Line(Verdict::kOk, "virtiofsd", virtiofsd + ": " + *version);
  } else {
    report.Line(Verdict::kWarn, "virtiofsd", version.error().ToString());
  }

  auto vm = VmConfigFromConfig(*config, "check");
  if (vm) {
    for (const auto& [what, path] :
         {std::pair{"guest kernel", vm->kernel}, {"guest initrd", vm->initrd}}) {
      if (PathExists(path)) {
        report.Line(Verdict::kOk, what,
                    path + " (" + std::to_string(std::filesystem::file_size(path) >> 10) + " KiB)");
      } else {
        report.Line(Verdict::kFail, what,
                    path + " not found (build it: cmake --build build --target guest-image)");
      }
    }
    if (vm->root_image.empty()) {
      report.Line(Verdict::kWarn, "guest root",
                  "none (no root.erofs beside the initrd, or root_image = \"none\"): the initrd "
                  "must hold the whole guest");
    } else if (auto bytes = RootImageBytes(vm->root_image); bytes) {
      report.Line(Verdict::kOk, "guest root",
                  vm->root_image + " (" + std::to_string(*bytes >> 20) +
                      " MiB, read-only, shared by every VM)");
    } else {
      report.Line(Verdict::kFail, "guest root", bytes.error().ToString());
    }
    std::string manifest_path = std::filesystem::path(vm->initrd).parent_path() / "manifest.json";
    if (auto manifest = ReadFile(manifest_path, 1 << 20); manifest) {
      auto json = nlohmann::json::parse(*manifest, nullptr, false);
      if (json.is_object() && json.contains("kernel") && json["kernel"].is_object()) {
        report.Line(Verdict::kOk, "guest image",
                    "kernel " + json["kernel"].value("release", std::string("?")) + " from " +
                        json["kernel"].value("package", std::string("?")) + " " +
                        json["kernel"].value("version", std::string("?")));
      }
    }
  } else {
    report.Line(Verdict::kFail, "guest assets", vm.error().ToString());
  }

  struct statfs fs {};
  const bool v2 = ::statfs("/sys/fs/cgroup", &fs) == 0 && fs.f_type == 0x63677270;
  // What every sandbox start does: a cgroup under host_cgroup_parent with
  // memory and pids limits (then removed again).
  const std::string probe =
      config->host_cgroup_parent + "/hullctl-check-" + std::to_string(::getpid());
  auto cgroup = sandbox::HostCgroup::Create(probe);
  Status limited = cgroup ? cgroup->SetLimits(64 << 20, 64) : Status(Unexpected{cgroup.error()});
  if (cgroup) cgroup->Remove();
  if (limited) {
    report.Line(Verdict::kOk, "host limits",
                std::string("memory and pids limits under ") + config->host_cgroup_parent + " (" +
                    (v2 ? "cgroup v2" : "cgroup v1") + ")");
  } else {
    report.Line(config->host_cgroup_required ? Verdict::kFail : Verdict::kWarn, "host limits",
                limited.error().ToString() + (config->host_cgroup_required
                                                  ? ""
                                                  : " (sandboxes run without them: "
                                                    "runtime.host_cgroup_required = false)"));
  }

  if (report.failures > 0) {
    std::printf("\nhull cannot run here: %d problem%s above.\n", report.failures,
                report.failures == 1 ? "" : "s");
    return 1;
  }
  std::printf("\nhull can run here.\n");
  return 0;
}

}  // namespace hull::hullctl
