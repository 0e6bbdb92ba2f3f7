// The sandbox: what one VM holds besides its containers (hostname, DNS,
// shared filesystems), and the conversions between the agent API and the
// engine.
#pragma once

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

// Checks a guest path the host sent: absolute, normalised, under `root`.
Status ValidateGuestPath(std::string_view field, const std::string& path, std::string_view root);

}  // namespace hull::agent
