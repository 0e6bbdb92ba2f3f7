// Host-side operations inside a VM's shared directory.
//
// The guest can write the shared directory (virtiofsd exports it
// read-write), so it can plant symlinks in it. Every host operation there
// goes through fds opened one component at a time, refusing symlinks, magic
// links and mount crossings; mounts land on /proc/self/fd/<fd>, never on a
// path the kernel would resolve again.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "hull/core/error.h"
#include "hull/core/fd.h"

namespace hull {

// openat2 of one name beneath `dir_fd`: no symlinks, no magic links, no
// mount crossings (O_NOFOLLOW, O_CLOEXEC added).
Result<UniqueFd> OpenBeneath(int dir_fd, const std::string& name, uint64_t flags, mode_t mode = 0);

// The directory `relative` ("a/b/c") beneath `root_fd` as an O_PATH fd,
// created (0755) as needed when `create`.
Result<UniqueFd> OpenDirBeneath(int root_fd, const std::string& relative, bool create);

// "/proc/self/fd/<fd>".
std::string FdPath(int fd);

// Binds `source` (recursively) onto the mount point `target_fd`; a read-only
// bind is read-only from the moment it appears (open_tree + mount_setattr +
// move_mount), so the guest never sees it writable.
Status BindOnto(const std::string& source, int target_fd, bool read_only);

}  // namespace hull
