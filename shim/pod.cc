#include "pod.h"

#include <algorithm>
#include <cstdint>
#include <string_view>

namespace hull {

namespace {

// "/proc/<pid>/ns/<kind>" -> pid, kind; nullopt for anything else.
std::optional<std::pair<pid_t, std::string>> ParseProcNsPath(std::string_view path) {
  constexpr std::string_view kPrefix = "/proc/";
  if (!path.starts_with(kPrefix)) return std::nullopt;
  path.remove_prefix(kPrefix.size());
  size_t digits = 0;
  while (digits < path.size() && path[digits] >= '0' && path[digits] <= '9') ++digits;
  if (digits == 0 || digits > 9) return std::nullopt;
  pid_t pid = std::stoi(std::string(path.substr(0, digits)));
  path.remove_prefix(digits);
  constexpr std::string_view kNs = "/ns/";
  if (!path.starts_with(kNs)) return std::nullopt;
  path.remove_prefix(kNs.size());
  if (path.empty() || path.find('/') != std::string_view::npos) return std::nullopt;
  return std::make_pair(pid, std::string(path));
}

// What a spec's namespace type is called in /proc/<pid>/ns/.
std::string_view ProcNsName(std::string_view type) {
  if (type == "network") return "net";
  if (type == "mount") return "mnt";
  return type;
}

}  // namespace

PodRole PodRoleOf(const oci::Spec& spec) {
  auto it = spec.annotations.find(kContainerTypeAnnotation);
  if (it == spec.annotations.end()) return PodRole::kNone;
  if (it->second == "sandbox") return PodRole::kSandbox;
  return PodRole::kContainer;
}

Status AdaptPodNamespaces(oci::Spec& spec, const PodNamespaceContext& context) {
  if (!spec.linux) return Ok();
  const PodRole role = PodRoleOf(spec);
  auto& namespaces = spec.linux->namespaces;
  if (role == PodRole::kSandbox) {
    auto has = [&](std::string_view type) {
      for (const auto& ns : namespaces) {
        if (ns.type == type) return true;
      }
      return false;
    };
    for (auto [type, field] :
         {std::pair{"network", "hostNetwork"}, {"pid", "hostPID"}, {"ipc", "hostIPC"}}) {
      if (!has(type)) {
        return MakeError(
            ErrorCode::kInvalidArgument,
            std::string("the pod asks for the host's ") + type + " namespace (" + field +
                "): hull runs every pod in its own VM, which cannot share it; run this pod with "
                "another runtime class");
      }
    }
  }
  std::vector<oci::Namespace> adapted;
  for (auto& ns : namespaces) {
    if (ns.path.empty()) {
      adapted.push_back(ns);
      continue;
    }
    if (ns.type == "network" && role != PodRole::kNone)
      continue;  // the guest's own netns is the pod's
    auto parsed = ParseProcNsPath(ns.path);
    const bool pod_namespace = (ns.type == "ipc" || ns.type == "uts" || ns.type == "pid") &&
                               parsed && parsed->first == context.task_pid &&
                               parsed->second == ProcNsName(ns.type);
    if (!pod_namespace) {
      return MakeError(
          ErrorCode::kInvalidArgument,
          "linux.namespaces: the " + ns.type + " namespace `" + ns.path +
              "` is on the host; a container in a hull VM can join only its pod's namespaces");
    }
    if (context.sandbox_guest_pid == 0) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "linux.namespaces: the container joins its pod's " + ns.type +
                           " namespace, but the pod's sandbox container is not running in this VM");
    }
    ns.path = "/proc/" + std::to_string(context.sandbox_guest_pid) + "/ns/" +
              std::string(ProcNsName(ns.type));
    adapted.push_back(ns);
  }
  namespaces = std::move(adapted);
  return Ok();
}

namespace {

// A non-negative integer annotation; nullopt when absent or empty.
Result<std::optional<uint64_t>> NumberAnnotation(
    const std::map<std::string, std::string>& annotations, const char* key) {
  auto it = annotations.find(key);
  if (it == annotations.end() || it->second.empty()) return std::optional<uint64_t>();
  const std::string& text = it->second;
  uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9' || value > (UINT64_MAX - 9) / 10) {
      // CRI writes -1 for "no limit" in some versions: treat it as absent.
      if (text == "-1") return std::optional<uint64_t>();
      return MakeError(ErrorCode::kInvalidArgument, std::string("annotation ") + key + ": `" +
                                                        text + "` is not a non-negative integer");
    }
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  return std::optional<uint64_t>(value);
}

}  // namespace

Result<PodVmSize> SizePodVm(const std::map<std::string, std::string>& annotations,
                            uint64_t overhead_mib) {
  PodVmSize size;
  HULL_TRY(auto memory, NumberAnnotation(annotations, kSandboxMemoryAnnotation),
           "size the pod's VM");
  if (memory && *memory > 0) {
    constexpr uint64_t kMiB = 1 << 20;
    constexpr uint64_t kMaxMib = 1 << 20;  // 1 TiB, the VM's limit
    uint64_t mib = *memory / kMiB + (*memory % kMiB != 0 ? 1 : 0);
    size.memory_mib = std::min(kMaxMib, mib + overhead_mib);
  }
  HULL_TRY(auto quota, NumberAnnotation(annotations, kSandboxCpuQuotaAnnotation),
           "size the pod's VM");
  HULL_TRY(auto period, NumberAnnotation(annotations, kSandboxCpuPeriodAnnotation),
           "size the pod's VM");
  if (quota && period && *quota > 0 && *period > 0) {
    uint64_t vcpus = *quota / *period + (*quota % *period != 0 ? 1 : 0);
    size.vcpus = static_cast<uint32_t>(std::min<uint64_t>(255, std::max<uint64_t>(1, vcpus)));
  }
  return size;
}

}  // namespace hull
