// The names the spec uses for capabilities and rlimits, and their numbers.
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <string_view>

#include "hull/core/oci_spec.h"

namespace hull::oci {
namespace {

constexpr std::array<std::string_view, kLastKnownCapability + 1> kCapabilities = {
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
};

struct NamedRlimit {
  std::string_view name;
  int resource;
};
constexpr std::array<NamedRlimit, 16> kRlimits = {{
    {"RLIMIT_AS", RLIMIT_AS},
    {"RLIMIT_CORE", RLIMIT_CORE},
    {"RLIMIT_CPU", RLIMIT_CPU},
    {"RLIMIT_DATA", RLIMIT_DATA},
    {"RLIMIT_FSIZE", RLIMIT_FSIZE},
    {"RLIMIT_LOCKS", RLIMIT_LOCKS},
    {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},
    {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE},
    {"RLIMIT_NICE", RLIMIT_NICE},
    {"RLIMIT_NOFILE", RLIMIT_NOFILE},
    {"RLIMIT_NPROC", RLIMIT_NPROC},
    {"RLIMIT_RSS", RLIMIT_RSS},
    {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},
    {"RLIMIT_RTTIME", RLIMIT_RTTIME},
    {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
    {"RLIMIT_STACK", RLIMIT_STACK},
}};

}  // namespace

std::optional<int> CapabilityNumber(std::string_view name) {
  auto it = std::find(kCapabilities.begin(), kCapabilities.end(), name);
  if (it == kCapabilities.end()) return std::nullopt;
  return static_cast<int>(it - kCapabilities.begin());
}

std::optional<int> RlimitResource(std::string_view name) {
  for (const NamedRlimit& rlimit : kRlimits) {
    if (rlimit.name == name) return rlimit.resource;
  }
  return std::nullopt;
}

const char* CapabilityName(int number) {
  if (number < 0 || number > kLastKnownCapability) return "";
  return kCapabilities[static_cast<size_t>(number)].data();  // a literal: NUL-terminated
}

const char* RlimitName(int resource) {
  for (const NamedRlimit& rlimit : kRlimits) {
    if (rlimit.resource == resource) return rlimit.name.data();  // a literal: NUL-terminated
  }
  return "";
}

}  // namespace hull::oci
