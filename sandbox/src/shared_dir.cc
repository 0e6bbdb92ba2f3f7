#include "hull/sandbox/shared_dir.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hull/core/log.h"
#include "hull/core/sys.h"
#include "hull/core/syscall.h"

namespace hull::sandbox {

std::string FdPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

Status BindOnto(const std::string& source, int target_fd, bool read_only) {
  UniqueFd tree(
      ::open_tree(AT_FDCWD, source.c_str(), OPEN_TREE_CLONE | AT_RECURSIVE | OPEN_TREE_CLOEXEC));
  if (tree) {
    // Whatever the guest puts in a share -- a setuid file, a device node --
    // means nothing on the host: virtiofsd (root) never opens a device or
    // honours a setuid bit through it.
    mount_attr attr{};
    attr.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (read_only ? MOUNT_ATTR_RDONLY : 0);
    if (::mount_setattr(tree.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0) {
      return ErrnoError("make the bind of `" + source + "` nosuid,nodev" +
                        (read_only ? ",ro" : ""));
    }
    if (::move_mount(tree.get(), "", target_fd, "",
                     MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) {
      return ErrnoError("bind mount `" + source + "`");
    }
    return Ok();
  }
  if (errno != ENOSYS) return ErrnoError("clone the mount tree of `" + source + "`");
  // Kernels before 5.12: a bind, then a remount with the flags.
  std::string target = FdPath(target_fd);
  if (::mount(source.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) < 0) {
    return ErrnoError("bind mount `" + source + "`");
  }
  const unsigned long flags =
      MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | (read_only ? MS_RDONLY : 0);
  if (::mount(nullptr, target.c_str(), nullptr, flags, nullptr) < 0) {
    auto error =
        ErrnoError("make the bind of `" + source + "` nosuid,nodev" + (read_only ? ",ro" : ""));
    (void)::umount2(target.c_str(), MNT_DETACH);
    return error;
  }
  return Ok();
}

Status BindShare::Add(const std::string& owner, const std::string& host_path,
                      const std::string& relative, bool read_only) {
  struct stat st {};
  if (::stat(host_path.c_str(), &st) < 0) return ErrnoError("`" + host_path + "`");
  std::lock_guard lock(mu_);
  if (!shared_fd_) {
    shared_fd_.reset(::open(shared_dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!shared_fd_) return ErrnoError("open the shared directory `" + shared_dir_ + "`");
  }
  auto slash = relative.rfind('/');
  HULL_TRY(UniqueFd parent, sys::OpenDirBeneath(shared_fd_.get(), relative.substr(0, slash), true),
           "");
  std::string name = relative.substr(slash + 1);
  UniqueFd target;
  if (S_ISDIR(st.st_mode)) {
    if (::mkdirat(parent.get(), name.c_str(), 0755) < 0 && errno != EEXIST) {
      return ErrnoError("create the mount point `" + relative + "`");
    }
    HULL_TRY(target, sys::OpenBeneath(parent.get(), name, O_PATH | O_DIRECTORY), "");
  } else {
    HULL_TRY(target, sys::OpenBeneath(parent.get(), name, O_WRONLY | O_CREAT, 0644), "");
  }
  HULL_CHECK_OK(BindOnto(host_path, target.get(), read_only), "");
  mounts_[owner].push_back(relative);
  return Ok();
}

void BindShare::Remove(const std::string& owner) {
  std::lock_guard lock(mu_);
  bool clean = true;
  if (auto it = mounts_.find(owner); it != mounts_.end()) {
    for (auto mount = it->second.rbegin(); mount != it->second.rend(); ++mount) {
      // The mount point is found as it was made: component by component, so
      // a symlink the guest put in its way cannot aim the unmount elsewhere.
      auto slash = mount->rfind('/');
      auto parent = sys::OpenDirBeneath(shared_fd_.get(), mount->substr(0, slash), false);
      UniqueFd target;
      if (parent) {
        target.reset(::openat(parent->get(), mount->substr(slash + 1).c_str(),
                              O_PATH | O_NOFOLLOW | O_CLOEXEC));
      }
      if (!target || ::umount2(FdPath(target.get()).c_str(), MNT_DETACH) < 0) {
        HULL_LOG_WARN("unmount {}/{}: {}", shared_dir_, *mount, strerror(errno));
        clean = false;
      }
    }
    mounts_.erase(it);
  }
  if (shared_dir_.empty() || owner.empty()) return;
  std::string dir = shared_dir_ + "/" + owner;
  // Never delete through something still mounted (a bind of a host
  // directory on the same filesystem would not stop RemoveTree).
  if (clean && MountPointsUnder(dir).empty()) {
    (void)RemoveTree(dir);
  } else {
    HULL_LOG_WARN("{} still has mounts: left for the VM's teardown", dir);
  }
}

}  // namespace hull::sandbox
