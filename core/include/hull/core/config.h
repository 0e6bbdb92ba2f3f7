// Host configuration: /etc/hull/config.toml, $HULL_CONFIG, or an explicit path.
// Every key is documented in docs/configuration.md with its default.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hull/core/error.h"

namespace hull {

struct HypervisorConfig {
  std::string backend = "qemu";                      // [hypervisor] backend: qemu | libvirt
  std::string libvirt_uri = "qemu:///system";        // [hypervisor] libvirt_uri
  std::string path = "/usr/bin/qemu-system-x86_64";  // [hypervisor] path
  std::string kernel;                                // [hypervisor] kernel ("" = built-in search)
  std::string initrd;                                // [hypervisor] initrd
  std::string root_image;  // [hypervisor] root_image ("" = root.erofs beside the initrd, "none")
  std::string machine = "q35";             // [hypervisor] machine
  std::string accel = "auto";              // [hypervisor] accel: auto | kvm | tcg
  uint32_t vcpus = 1;                      // [hypervisor] vcpus
  uint64_t memory_mib = 512;               // [hypervisor] memory_mib
  uint64_t pod_memory_overhead_mib = 160;  // [hypervisor] pod_memory_overhead_mib
  bool seccomp_sandbox = true;             // [hypervisor] seccomp_sandbox
  bool free_page_reporting = true;         // [hypervisor] free_page_reporting
  uint32_t tcg_tb_size_mib = 0;            // [hypervisor] tcg_tb_size_mib: 0 = QEMU's default
  std::string kernel_params;               // [hypervisor] kernel_params
  uint32_t stop_grace_seconds = 5;         // [hypervisor] stop_grace_seconds
  uint32_t console_log_max_kib = 1024;     // [hypervisor] console_log_max_kib (two files kept)
  std::string virtiofsd = "/usr/lib/qemu/virtiofsd";  // [hypervisor] virtiofsd
  std::string virtiofs_cache = "auto";  // [hypervisor] virtiofs_cache: auto | always | none
  std::string virtiofsd_sandbox =
      "namespace";                          // [hypervisor] virtiofsd_sandbox: namespace | chroot
  std::vector<std::string> virtiofsd_args;  // [hypervisor] virtiofsd_args
  // Start VMs as clones of a pre-booted template (docs/design/templates.md).
  bool template_enabled = true;  // [hypervisor] template
  std::string template_dir;      // [hypervisor] template_dir: "" = <run_dir>/.templates
};

struct AgentConfig {
  std::string transport = "auto";      // [agent] transport: auto | serial | vsock
  std::string log_level = "info";      // [agent] log_level
  bool debug = false;                  // [agent] debug
  uint32_t boot_timeout_seconds = 60;  // [agent] boot_timeout_seconds
  // Deadline of one agent call (everything but waits and streams).
  uint32_t call_timeout_seconds = 30;  // [agent] call_timeout_seconds
  // Deadline of CreateContainer: the guest mounts and sets up the container.
  uint32_t create_timeout_seconds = 120;  // [agent] create_timeout_seconds
};

struct Config {
  std::string run_dir = "/run/hull";  // [runtime] run_dir
  std::string log_level = "info";     // [runtime] log_level
  // Every sandbox's QEMU and virtiofsd run in a host cgroup with memory and
  // pids limits: a pod's own (kubelet's cgroupsPath), else
  // <host_cgroup_parent>/<sandbox id> (ctr, hullctl).
  std::string host_cgroup_parent = "/hull";  // [runtime] host_cgroup_parent
  // What QEMU and virtiofsd may use above the guest's RAM (translation cache,
  // device state, page cache of the shared files).
  uint64_t host_memory_overhead_mib = 384;  // [runtime] host_memory_overhead_mib
  uint32_t host_pids_max = 1024;            // [runtime] host_pids_max
  // false: a sandbox whose limits cannot be set runs without them (warned).
  bool host_cgroup_required = true;  // [runtime] host_cgroup_required
  HypervisorConfig hypervisor;
  AgentConfig agent;
  std::string source;  // where it was loaded from ("" = built-in defaults)
};

inline constexpr std::string_view kDefaultConfigPath = "/etc/hull/config.toml";

// Parses a TOML document. Unknown keys, wrong types and out-of-range values
// are errors that name the key (e.g. "hypervisor.memory_mib: expected ...").
Result<Config> ParseConfig(std::string_view toml_text, std::string_view source_name);

// Loads the configuration: `explicit_path` if given, else $HULL_CONFIG, else
// /etc/hull/config.toml if it exists, else the defaults.
Result<Config> LoadConfig(const std::string& explicit_path = {});

}  // namespace hull
