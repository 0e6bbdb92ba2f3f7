// The OCI runtime spec (config.json) as plain C++ types.
//
// Parsed once at the edge (ParseOciSpec) and validated; the engine below
// works only with these types. Field names follow the spec
// (https://github.com/opencontainers/runtime-spec, config.md and
// config-linux.md); optional fields the spec marks optional are std::optional
// where "absent" differs from a zero value.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hull/core/error.h"

namespace hull::oci {

struct User {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::optional<uint32_t> umask;
  std::vector<uint32_t> additional_gids;
  bool operator==(const User&) const = default;
};

struct Capabilities {
  std::vector<std::string> bounding;  // "CAP_CHOWN", ... as in the spec
  std::vector<std::string> effective;
  std::vector<std::string> inheritable;
  std::vector<std::string> permitted;
  std::vector<std::string> ambient;
  bool operator==(const Capabilities&) const = default;
};

struct Rlimit {
  std::string type;  // "RLIMIT_NOFILE", ...
  uint64_t hard = 0;
  uint64_t soft = 0;
  bool operator==(const Rlimit&) const = default;
};

struct ConsoleSize {
  uint32_t height = 0;
  uint32_t width = 0;
  bool operator==(const ConsoleSize&) const = default;
};

struct Process {
  bool terminal = false;
  std::optional<ConsoleSize> console_size;
  User user;
  std::vector<std::string> args;
  std::vector<std::string> env;  // "KEY=value"
  std::string cwd = "/";
  std::optional<Capabilities> capabilities;  // absent: no capabilities at all
  std::vector<Rlimit> rlimits;
  bool no_new_privileges = false;
  std::optional<int> oom_score_adj;
  std::string apparmor_profile;  // accepted, not applied (the guest has no AppArmor)
  std::string selinux_label;     // accepted, not applied
  bool operator==(const Process&) const = default;
};

struct Root {
  std::string path;  // relative to the bundle, or absolute
  bool readonly = false;
  bool operator==(const Root&) const = default;
};

struct Mount {
  std::string destination;  // absolute path inside the container
  std::string type;         // "bind", "proc", "tmpfs", ... ("" with a bind option = bind)
  std::string source;
  std::vector<std::string> options;  // "ro", "nosuid", "rbind", "mode=755", ...
  bool operator==(const Mount&) const = default;
};

struct Namespace {
  std::string type;  // pid, network, mount, ipc, uts, user, cgroup, time
  std::string path;  // join this namespace instead of creating one
  bool operator==(const Namespace&) const = default;
};

struct IdMapping {
  uint32_t container_id = 0;
  uint32_t host_id = 0;
  uint32_t size = 0;
  bool operator==(const IdMapping&) const = default;
};

struct Device {
  std::string type;  // "c", "b", "u", "p"
  std::string path;
  int64_t major = 0;
  int64_t minor = 0;
  std::optional<uint32_t> file_mode;
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  bool operator==(const Device&) const = default;
};

struct DeviceCgroupRule {
  bool allow = false;
  std::string type;  // "a", "c", "b" ("" = all)
  std::optional<int64_t> major;
  std::optional<int64_t> minor;
  std::string access;  // "rwm"
  bool operator==(const DeviceCgroupRule&) const = default;
};

struct MemoryResources {
  std::optional<int64_t> limit;        // bytes; -1 = unlimited
  std::optional<int64_t> reservation;  // memory.low
  std::optional<int64_t> swap;         // memory+swap (v1 semantics, as runc)
  std::optional<int64_t> kernel;       // deprecated, ignored
  std::optional<uint64_t> swappiness;  // ignored on cgroup v2
  std::optional<bool> disable_oom_killer;
  bool operator==(const MemoryResources&) const = default;
};

struct CpuResources {
  std::optional<uint64_t> shares;
  std::optional<int64_t> quota;    // microseconds; -1 = unlimited
  std::optional<uint64_t> period;  // microseconds
  std::optional<int64_t> realtime_runtime;
  std::optional<uint64_t> realtime_period;
  std::string cpus;  // cpuset, e.g. "0-1"
  std::string mems;
  std::optional<int64_t> idle;
  bool operator==(const CpuResources&) const = default;
};

struct PidsResources {
  int64_t limit = 0;  // <= 0: unlimited
  bool operator==(const PidsResources&) const = default;
};

struct BlockIoDeviceWeight {
  int64_t major = 0;
  int64_t minor = 0;
  std::optional<uint16_t> weight;
  std::optional<uint16_t> leaf_weight;
  bool operator==(const BlockIoDeviceWeight&) const = default;
};

struct BlockIoDeviceRate {
  int64_t major = 0;
  int64_t minor = 0;
  uint64_t rate = 0;
  bool operator==(const BlockIoDeviceRate&) const = default;
};

struct BlockIoResources {
  std::optional<uint16_t> weight;
  std::optional<uint16_t> leaf_weight;
  std::vector<BlockIoDeviceWeight> weight_device;
  std::vector<BlockIoDeviceRate> throttle_read_bps_device;
  std::vector<BlockIoDeviceRate> throttle_write_bps_device;
  std::vector<BlockIoDeviceRate> throttle_read_iops_device;
  std::vector<BlockIoDeviceRate> throttle_write_iops_device;
  bool operator==(const BlockIoResources&) const = default;
};

struct Resources {
  std::vector<DeviceCgroupRule> devices;
  std::optional<MemoryResources> memory;
  std::optional<CpuResources> cpu;
  std::optional<PidsResources> pids;
  std::optional<BlockIoResources> block_io;
  std::map<std::string, std::string> unified;  // cgroup v2 files written as-is
  bool operator==(const Resources&) const = default;
};

struct SeccompArg {
  uint32_t index = 0;
  uint64_t value = 0;
  uint64_t value_two = 0;
  std::string op;  // SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_EQ, SCMP_CMP_GE, SCMP_CMP_GT,
                   // SCMP_CMP_MASKED_EQ
  bool operator==(const SeccompArg&) const = default;
};

struct SeccompSyscall {
  std::vector<std::string> names;
  std::string action;  // SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL, ...
  std::optional<uint32_t> errno_ret;
  std::vector<SeccompArg> args;
  bool operator==(const SeccompSyscall&) const = default;
};

struct Seccomp {
  std::string default_action;
  std::optional<uint32_t> default_errno_ret;
  std::vector<std::string> architectures;  // SCMP_ARCH_X86_64, ...
  std::vector<std::string> flags;          // SECCOMP_FILTER_FLAG_*
  std::vector<SeccompSyscall> syscalls;
  bool operator==(const Seccomp&) const = default;
};

struct Linux {
  std::vector<Namespace> namespaces;
  std::vector<IdMapping> uid_mappings;
  std::vector<IdMapping> gid_mappings;
  std::vector<Device> devices;
  std::string cgroups_path;
  std::optional<Resources> resources;
  std::optional<Seccomp> seccomp;
  std::string
      rootfs_propagation;  // "", "private", "rprivate", "slave", "rslave", "shared", "rshared"
  std::vector<std::string> masked_paths;
  std::vector<std::string> readonly_paths;
  std::map<std::string, std::string> sysctl;
  std::string mount_label;
  bool operator==(const Linux&) const = default;
};

struct Spec {
  std::string oci_version;
  std::optional<Process> process;
  Root root;
  std::string hostname;
  std::string domainname;
  std::vector<Mount> mounts;
  std::optional<Linux> linux;
  std::map<std::string, std::string> annotations;
  bool operator==(const Spec&) const = default;
};

// Parses and validates config.json. Errors are kInvalidArgument and name the
// field by its JSON path: "process.args: must not be empty",
// "mounts[2].destination: must be an absolute path", "ociVersion `2.0.0` is
// not supported (hull supports 1.0 to 1.2)". Unknown fields are ignored, as
// runc does; fields of the wrong type are errors, and so are integers that do
// not fit the field (a float, "1024", -1 for a uid). A JSON null counts as an
// absent field, as it does for runc (Go's encoding/json). Never throws.
Result<Spec> ParseOciSpec(std::string_view json_text);

// Parses a spec "process" object (ExecProcess passes one on its own), with the
// same checks; error paths still start with "process." ("process.cwd: ...").
Result<Process> ParseOciProcess(std::string_view json_text);

// Parses a "linux.resources" object (UpdateContainer), with the same checks;
// error paths start with "linux.resources.".
Result<Resources> ParseOciResources(std::string_view json_text);

// The default spec `runc spec` (1.1.5) writes (ociVersion "1.0.2-dev",
// readonly root at "rootfs", the default capabilities, RLIMIT_NOFILE 1024,
// mounts, deny-all device rule, masked and readonly paths, pid/network/ipc/uts/
// mount namespaces), with the given args (`sh` if empty) and terminal setting.
// The one difference: the hostname is "hull", not "runc".
Spec DefaultSpec(std::vector<std::string> args, bool terminal);

// Serialises a spec back to config.json form (for DefaultSpec users such as
// `hullctl run --rootfs`). Field names are the spec's; optional fields are
// written only when present and, like runc's Go types (omitempty), empty
// strings, empty lists and false flags are left out. ParseOciSpec of the
// result gives back an equal Spec.
std::string SerializeOciSpec(const Spec& spec);

// Serialises a spec "process" object on its own (what ExecProcess takes).
std::string SerializeOciProcess(const Process& process);

// The kernel's number of a spec capability name ("CAP_CHOWN" -> 0, ...,
// "CAP_CHECKPOINT_RESTORE" -> 40); nullopt for an unknown name. Case-sensitive.
// The highest capability number hull knows (CAP_CHECKPOINT_RESTORE).
inline constexpr int kLastKnownCapability = 40;

std::optional<int> CapabilityNumber(std::string_view name);

// The setrlimit resource of a spec rlimit type ("RLIMIT_NOFILE" ->
// RLIMIT_NOFILE); nullopt for an unknown type.
std::optional<int> RlimitResource(std::string_view name);

// The spec names back from numbers: "CAP_KILL", "RLIMIT_NOFILE"; "" when
// unknown. Static, NUL-terminated strings, safe to keep as `const char*`.
const char* CapabilityName(int number);
const char* RlimitName(int resource);

}  // namespace hull::oci
