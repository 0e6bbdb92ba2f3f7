// The sandbox: what one VM holds besides its containers (hostname, DNS,
// shared filesystems), and the conversions between the agent API and the
// engine.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "hull/agent/v1/agent.pb.h"
#include "hull/core/error.h"
#include "hull/core/guest_contract.h"

namespace hull::agent {

// Guest paths the host may ask the agent to mount on: under this prefix only.
inline constexpr std::string_view kStorageRoot = guest::kStoragePrefix;

// Validates and mounts one storage (virtiofs, tmpfs, bind). The mount point
// is created; it must be an absolute path under /run/hull/ without `..`.
Status MountStorage(const v1::Storage& storage);
Status UnmountStorage(const std::string& mount_point);

// Mixes host entropy into the guest's RNG and reseeds it at once, so a VM
// cloned from a template stops sharing the template's random state.
// `entropy` is empty (nothing to do) or kMin..kMaxEntropyBytes long.
inline constexpr size_t kMinEntropyBytes = 32;
inline constexpr size_t kMaxEntropyBytes = 512;
Status ReseedRandom(std::string_view entropy);
// Sets CLOCK_REALTIME (0 = leave it).
Status SetRealtimeClock(int64_t realtime_ns);

// Checks a guest path the host sent: absolute, normalised, under `root`.
Status ValidateGuestPath(std::string_view field, const std::string& path, std::string_view root);

}  // namespace hull::agent
