// containerd's mounts on the host: the rootfs list of CreateTaskRequest
// (overlay or bind from the snapshotter), mounted the way containerd's own
// mount package does it (mount/mount_linux.go), and unmounted again.
#pragma once

#include <string>
#include <vector>

#include "hull/core/error.h"

namespace hull::shim {

struct HostMount {
  std::string type;
  std::string source;
  std::vector<std::string> options;
};

struct MountOptions {
  unsigned long flags = 0;  // MS_* flags
  std::string data;         // everything that is not a flag, comma-joined
  bool loop = false;
};

// Splits options into flags and filesystem data, with containerd's flag table
// (`rw` clears MS_RDONLY, `rbind` is MS_BIND|MS_REC, ...).
MountOptions ParseMountOptions(const std::vector<std::string>& options);

// Whether a spec mount is a bind of a host path (type "bind" or a bind/rbind
// option).
bool IsBindMount(const std::string& type, const std::vector<std::string>& options);

// Mounts `mounts` one after another on `target` (an existing directory), as
// containerd does: a read-only bind gets a second, remounting call. On error
// what was mounted is unmounted again.
Status MountAll(const std::vector<HostMount>& mounts, const std::string& target);

// Unmounts everything stacked on `target` (lazily, MNT_DETACH). Not mounted
// is fine.
Status UnmountAll(const std::string& target);

// Whether something is mounted exactly at `path` (per /proc/self/mountinfo).
bool IsMountPoint(const std::string& path);

}  // namespace hull::shim
