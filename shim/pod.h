// Kubernetes pods in one VM: what the shim changes in a CRI container's spec
// so that it means the same inside the guest. See docs/kubernetes.md.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>

#include "hull/core/error.h"
#include "hull/core/oci_spec.h"

namespace hull {

inline constexpr char kContainerTypeAnnotation[] = "io.kubernetes.cri.container-type";

enum class PodRole {
  kNone,       // not from CRI (ctr, a plain bundle)
  kSandbox,    // the pod's pause container: the first in the VM
  kContainer,  // one of the pod's containers
};
PodRole PodRoleOf(const oci::Spec& spec);

struct PodNamespaceContext {
  // The task pid the shim reports (its own): CRI points containers at
  // /proc/<it>/ns/{ipc,uts,pid} of the sandbox.
  pid_t task_pid = 0;
  // The sandbox container's init in the guest (0: no sandbox yet).
  uint32_t sandbox_guest_pid = 0;
};

// Rewrites spec.linux.namespaces for the guest:
//  - network with a path: a CRI sandbox's CNI netns, or a container joining
//    the sandbox's: the entry goes, so the container shares the guest's own
//    network namespace, where the pod's interface is (the VM is the pod's
//    network boundary). Outside CRI, a path to a host netns is an error.
//  - ipc, uts, pid at /proc/<task_pid>/ns/<kind>: the sandbox's namespaces,
//    i.e. /proc/<sandbox_guest_pid>/ns/<kind> in the guest.
//  - any other path names a host namespace a VM cannot enter: an error.
// A sandbox that asks for the host's network, pid or ipc namespace (the
// entry is missing: hostNetwork, hostPID, hostIPC) is refused with a message
// that says so: the VM cannot share them.
Status AdaptPodNamespaces(oci::Spec& spec, const PodNamespaceContext& context);

// CRI's pod-level resources on the sandbox spec (kubelet's sum of the
// containers' limits, when it passes them).
inline constexpr char kSandboxMemoryAnnotation[] = "io.kubernetes.cri.sandbox-memory";
inline constexpr char kSandboxCpuQuotaAnnotation[] = "io.kubernetes.cri.sandbox-cpu-quota";
inline constexpr char kSandboxCpuPeriodAnnotation[] = "io.kubernetes.cri.sandbox-cpu-period";

struct PodVmSize {
  uint32_t vcpus = 0;       // 0: the configured default
  uint64_t memory_mib = 0;  // 0: the configured default
};

// The VM a pod gets: memory = the pod's memory limit (rounded up to MiB) plus
// `overhead_mib` for the guest kernel and agent; vCPUs = the pod's CPU limit
// (quota / period, rounded up). Either falls back to the configured default
// when the pod has no such limit. A malformed annotation is an error naming
// it.
Result<PodVmSize> SizePodVm(const std::map<std::string, std::string>& annotations,
                            uint64_t overhead_mib);

}  // namespace hull
