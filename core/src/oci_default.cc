// The spec `runc spec` writes (runc 1.1), as hull's default for `hullctl run`
// and the tests.
#include "hull/core/oci_spec.h"

namespace hull::oci {

Spec DefaultSpec(std::vector<std::string> args, bool terminal) {
  const std::vector<std::string> default_capabilities = {"CAP_AUDIT_WRITE", "CAP_KILL",
                                                         "CAP_NET_BIND_SERVICE"};
  Spec spec;
  spec.oci_version = "1.0.2-dev";

  Process& process = spec.process.emplace();
  process.terminal = terminal;
  process.args = args.empty() ? std::vector<std::string>{"sh"} : std::move(args);
  process.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"};
  process.cwd = "/";
  Capabilities& capabilities = process.capabilities.emplace();
  capabilities.bounding = default_capabilities;
  capabilities.effective = default_capabilities;
  capabilities.permitted = default_capabilities;
  capabilities.ambient = default_capabilities;
  process.rlimits = {Rlimit{.type = "RLIMIT_NOFILE", .hard = 1024, .soft = 1024}};
  process.no_new_privileges = true;

  spec.root = Root{.path = "rootfs", .readonly = true};
  spec.hostname = "hull";
  spec.mounts = {
      {.destination = "/proc", .type = "proc", .source = "proc", .options = {}},
      {.destination = "/dev",
       .type = "tmpfs",
       .source = "tmpfs",
       .options = {"nosuid", "strictatime", "mode=755", "size=65536k"}},
      {.destination = "/dev/pts",
       .type = "devpts",
       .source = "devpts",
       .options = {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
      {.destination = "/dev/shm",
       .type = "tmpfs",
       .source = "shm",
       .options = {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
      {.destination = "/dev/mqueue",
       .type = "mqueue",
       .source = "mqueue",
       .options = {"nosuid", "noexec", "nodev"}},
      {.destination = "/sys",
       .type = "sysfs",
       .source = "sysfs",
       .options = {"nosuid", "noexec", "nodev", "ro"}},
      {.destination = "/sys/fs/cgroup",
       .type = "cgroup",
       .source = "cgroup",
       .options = {"nosuid", "noexec", "nodev", "relatime", "ro"}},
  };

  Linux& linux = spec.linux.emplace();
  Resources& resources = linux.resources.emplace();
  resources.devices = {DeviceCgroupRule{.allow = false, .access = "rwm"}};
  for (const char* type : {"pid", "network", "ipc", "uts", "mount"}) {
    linux.namespaces.push_back(Namespace{.type = type, .path = {}});
  }
  linux.masked_paths = {"/proc/acpi",        "/proc/asound",        "/proc/kcore",
                        "/proc/keys",        "/proc/latency_stats", "/proc/timer_list",
                        "/proc/timer_stats", "/proc/sched_debug",   "/sys/firmware",
                        "/proc/scsi"};
  linux.readonly_paths = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};
  return spec;
}

}  // namespace hull::oci
