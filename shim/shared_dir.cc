#include "shared_dir.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace hull {

Result<UniqueFd> OpenBeneath(int dir_fd, const std::string& name, uint64_t flags, mode_t mode) {
  open_how how{};
  how.flags = flags | O_CLOEXEC | O_NOFOLLOW;
  how.mode = (flags & O_CREAT) != 0 ? mode : 0;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  UniqueFd fd(static_cast<int>(::syscall(SYS_openat2, dir_fd, name.c_str(), &how, sizeof how)));
  if (!fd) return ErrnoError("open `" + name + "` in the shared directory");
  return fd;
}

Result<UniqueFd> OpenDirBeneath(int root_fd, const std::string& relative, bool create) {
  HULL_TRY(UniqueFd dir, OpenBeneath(root_fd, ".", O_PATH | O_DIRECTORY), "");
  size_t begin = 0;
  while (begin < relative.size()) {
    size_t end = relative.find('/', begin);
    if (end == std::string::npos) end = relative.size();
    std::string name = relative.substr(begin, end - begin);
    begin = end + 1;
    if (name.empty()) continue;
    if (create && ::mkdirat(dir.get(), name.c_str(), 0755) < 0 && errno != EEXIST) {
      return ErrnoError("create `" + name + "` in the shared directory");
    }
    HULL_TRY(dir, OpenBeneath(dir.get(), name, O_PATH | O_DIRECTORY), "");
  }
  return dir;
}

std::string FdPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

Status BindOnto(const std::string& source, int target_fd, bool read_only) {
  UniqueFd tree(
      ::open_tree(AT_FDCWD, source.c_str(), OPEN_TREE_CLONE | AT_RECURSIVE | OPEN_TREE_CLOEXEC));
  if (tree) {
    if (read_only) {
      mount_attr attr{};
      attr.attr_set = MOUNT_ATTR_RDONLY;
      if (::mount_setattr(tree.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0) {
        return ErrnoError("make the bind of `" + source + "` read-only");
      }
    }
    if (::move_mount(tree.get(), "", target_fd, "",
                     MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) {
      return ErrnoError("bind mount `" + source + "`");
    }
    return Ok();
  }
  if (errno != ENOSYS) return ErrnoError("clone the mount tree of `" + source + "`");
  // Kernels before 5.12: a bind, then a read-only remount.
  std::string target = FdPath(target_fd);
  if (::mount(source.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) < 0) {
    return ErrnoError("bind mount `" + source + "`");
  }
  if (read_only &&
      ::mount(nullptr, target.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr) < 0) {
    auto error = ErrnoError("make the bind of `" + source + "` read-only");
    (void)::umount2(target.c_str(), MNT_DETACH);
    return error;
  }
  return Ok();
}

}  // namespace hull
