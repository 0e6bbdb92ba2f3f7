// What the host and the guest agent agree on outside the gRPC API, spelled
// once: the `hull.*` words of the guest kernel command line (built by
// hypervisor/src/kernel_cmdline.cc, parsed by agent/options.cc) and the guest
// paths under /run/hull that the host names in requests.
#pragma once

#include <string_view>

namespace hull::guest {

// Every agent word on the kernel command line starts with this; the agent
// refuses unknown words with it, so a typo on the host fails loudly.
inline constexpr std::string_view kCmdlinePrefix = "hull.";
// hull.transport=serial|vsock (TransportName/ParseTransport in transport.h)
inline constexpr std::string_view kCmdlineTransport = "hull.transport";
// hull.vsock_port=N, N > 0 (default kAgentVsockPort in transport.h)
inline constexpr std::string_view kCmdlineVsockPort = "hull.vsock_port";
// hull.log=LEVEL (ParseLogLevel in log.h)
inline constexpr std::string_view kCmdlineLogLevel = "hull.log";
// hull.debug=0|1 (a bare hull.debug means 1)
inline constexpr std::string_view kCmdlineDebug = "hull.debug";
// hull.root=DEVICE: the guest root's device under /dev (pmem0: virtio-pmem,
// mounted with DAX; vda: virtio-blk). Read by hull-init, which mounts it and
// execs the agent on it; the agent accepts and ignores it.
inline constexpr std::string_view kCmdlineRoot = "hull.root";
inline constexpr std::string_view kRootDevicePmem = "pmem0";
inline constexpr std::string_view kRootDeviceBlk = "vda";

// The guest paths the host may name in requests (storage mount points,
// rootfs paths) must lie beneath this prefix; the trailing slash makes it a
// prefix of what is inside, not of "/run/hull-other".
inline constexpr std::string_view kStoragePrefix = "/run/hull/";
// Where the sandbox's shared directory (virtiofs) is mounted in the guest.
inline constexpr std::string_view kSharedDir = "/run/hull/shared";
static_assert(kSharedDir.starts_with(kStoragePrefix));

}  // namespace hull::guest
