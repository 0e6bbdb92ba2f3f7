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
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "hull/core/error.h"
#include "hull/core/fd.h"

namespace hull::sandbox {

// Paths in it are opened with sys::OpenBeneath / sys::OpenDirBeneath
// (hull/core/sys.h): one name at a time, no symlinks, no magic links, no
// mount crossings.

// "/proc/self/fd/<fd>".
std::string FdPath(int fd);

// Binds `source` (recursively) onto the mount point `target_fd`; a read-only
// bind is read-only from the moment it appears (open_tree + mount_setattr +
// move_mount), so the guest never sees it writable.
Status BindOnto(const std::string& source, int target_fd, bool read_only);

// What a sandbox shares into its guest: host paths (root filesystems,
// volumes) bound beneath the VM's shared directory. An interface so that the
// sandbox's logic can be tested without mounting (tests/support/fake_vm.h).
// Threading: every method may be called from any thread.
class HostShare {
 public:
  virtual ~HostShare() = default;
  // Makes `host_path` (a directory or a file) appear at `relative` ("a/b")
  // beneath the shared directory, read-only if asked, on behalf of `owner`
  // (the first component of `relative`).
  virtual Status Add(const std::string& owner, const std::string& host_path,
                     const std::string& relative, bool read_only) = 0;
  // Undoes what was added for `owner`, last first, and removes its directory.
  virtual void Remove(const std::string& owner) = 0;
};

// The real one: bind mounts beneath `shared_dir`, made and undone through
// fds so a symlink the guest planted cannot aim them elsewhere.
class BindShare final : public HostShare {
 public:
  explicit BindShare(std::string shared_dir) : shared_dir_(std::move(shared_dir)) {}
  Status Add(const std::string& owner, const std::string& host_path, const std::string& relative,
             bool read_only) override;
  void Remove(const std::string& owner) override;

 private:
  std::string shared_dir_;
  std::mutex mu_;
  UniqueFd shared_fd_;  // O_PATH of the shared dir
  // Per owner: mount points relative to the shared dir, in mount order.
  std::map<std::string, std::vector<std::string>> mounts_;
};

}  // namespace hull::sandbox
