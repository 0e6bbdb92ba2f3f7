#include "guest_init.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <net/if.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <sstream>

#include "hull/core/fd.h"
#include "hull/core/log.h"
#include "hull/core/sys.h"
#include "hull/core/syscall.h"

namespace hull::agent {

uint64_t BootTimeMicros() {
  timespec ts{};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

namespace {

// What the agent's root may grow by after SwitchRootOffInitramfs: room for
// mount points and small files, not for anything that should be on /run or
// /tmp.
constexpr uint64_t kRootHeadroomBytes = 16ull << 20;

bool IsRamBacked(const struct statfs& fs) {
  return fs.f_type == RAMFS_MAGIC || fs.f_type == TMPFS_MAGIC;
}

Result<std::vector<std::string>> ListDirectory(int dir_fd) {
  int copy = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return ErrnoError("dup");
  DIR* dir = ::fdopendir(copy);
  if (dir == nullptr) {
    int err = errno;
    ::close(copy);
    return ErrnoError("fdopendir", err);
  }
  ::rewinddir(dir);  // the copy shares the offset with dir_fd
  std::vector<std::string> names;
  errno = 0;
  while (dirent* entry = ::readdir(dir)) {
    if (std::strcmp(entry->d_name, ".") != 0 && std::strcmp(entry->d_name, "..") != 0) {
      names.emplace_back(entry->d_name);
    }
  }
  int err = errno;
  ::closedir(dir);
  if (err != 0) return ErrnoError("readdir", err);
  return names;
}

UniqueFd OpenDirectoryAt(int dir_fd, const std::string& name) {
  return UniqueFd(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
}

Status CopyRegularFile(int from_dir, int to_dir, const std::string& name, const struct stat& st) {
  UniqueFd from(::openat(from_dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!from) return ErrnoError("open");
  UniqueFd to(
      ::openat(to_dir, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!to) return ErrnoError("create");
  off_t left = st.st_size;
  while (left > 0) {
    ssize_t sent = ::sendfile(to.get(), from.get(), nullptr, static_cast<size_t>(left));
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0) return ErrnoError("copy the data");
    if (sent == 0) return MakeError(ErrorCode::kInternal, "the file shrank while it was copied");
    left -= sent;
  }
  // chown clears setuid and setgid, so the mode goes last.
  if (::fchown(to.get(), st.st_uid, st.st_gid) < 0) return ErrnoError("chown");
  if (::fchmod(to.get(), st.st_mode & 07777) < 0) return ErrnoError("chmod");
  return Ok();
}

Status CopyDirectoryContents(int from_dir, int to_dir, dev_t dev);

Status CopyEntry(int from_dir, int to_dir, const std::string& name, dev_t dev) {
  struct stat st {};
  if (::fstatat(from_dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) return ErrnoError("stat");
  if (st.st_dev != dev) return Ok();  // a mount point: not part of the tree
  const mode_t permissions = st.st_mode & 07777;
  switch (st.st_mode & S_IFMT) {
    case S_IFDIR: {
      if (::mkdirat(to_dir, name.c_str(), 0700) < 0) return ErrnoError("mkdir");
      UniqueFd from = OpenDirectoryAt(from_dir, name);
      if (!from) return ErrnoError("open");
      UniqueFd to = OpenDirectoryAt(to_dir, name);
      if (!to) return ErrnoError("open the copy");
      if (Status copied = CopyDirectoryContents(from.get(), to.get(), dev); !copied) return copied;
      // Owner and mode once the contents are in: a read-only directory could
      // not be filled otherwise.
      if (::fchown(to.get(), st.st_uid, st.st_gid) < 0) return ErrnoError("chown");
      if (::fchmod(to.get(), permissions) < 0) return ErrnoError("chmod");
      break;
    }
    case S_IFREG:
      return CopyRegularFile(from_dir, to_dir, name, st);
    case S_IFLNK: {
      std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
      ssize_t length = ::readlinkat(from_dir, name.c_str(), target.data(), target.size());
      if (length < 0) return ErrnoError("readlink");
      target.resize(static_cast<size_t>(length));
      if (::symlinkat(target.c_str(), to_dir, name.c_str()) < 0) return ErrnoError("symlink");
      if (::fchownat(to_dir, name.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0) {
        return ErrnoError("chown");
      }
      break;
    }
    default:  // character and block devices, fifos, sockets
      if (::mknodat(to_dir, name.c_str(), st.st_mode, st.st_rdev) < 0) return ErrnoError("mknod");
      if (::fchownat(to_dir, name.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0) {
        return ErrnoError("chown");
      }
      if (::fchmodat(to_dir, name.c_str(), permissions, 0) < 0) return ErrnoError("chmod");
      break;
  }
  return Ok();
}

Status CopyDirectoryContents(int from_dir, int to_dir, dev_t dev) {
  HULL_TRY(auto names, ListDirectory(from_dir), "list");
  for (const auto& name : names) {
    HULL_CHECK_OK(CopyEntry(from_dir, to_dir, name, dev), "`" + name + "`");
  }
  return Ok();
}

Status DeleteDirectoryContents(int dir_fd, dev_t dev) {
  HULL_TRY(auto names, ListDirectory(dir_fd), "list");
  for (const auto& name : names) {
    struct stat st {};
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno == ENOENT) continue;
      return ErrnoError("stat `" + name + "`");
    }
    if (!S_ISDIR(st.st_mode)) {
      if (::unlinkat(dir_fd, name.c_str(), 0) < 0 && errno != ENOENT) {
        return ErrnoError("unlink `" + name + "`");
      }
      continue;
    }
    if (st.st_dev != dev) continue;  // a mount point
    UniqueFd child = OpenDirectoryAt(dir_fd, name);
    if (!child) return ErrnoError("open `" + name + "`");
    HULL_CHECK_OK(DeleteDirectoryContents(child.get(), dev), "`" + name + "`");
    // EBUSY: a mount point of the same filesystem (a bind mount).
    if (::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) < 0 && errno != ENOENT && errno != EBUSY) {
      return ErrnoError("rmdir `" + name + "`");
    }
  }
  return Ok();
}

}  // namespace

Result<bool> RootIsInitramfs() {
  ::mkdir("/proc", 0555);
  if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) < 0) {
    return ErrnoError("mount proc on /proc");
  }
  auto mountinfo = ReadFile("/proc/self/mountinfo", 1 << 20);
  if (::umount2("/proc", MNT_DETACH) < 0) return ErrnoError("unmount /proc");
  if (!mountinfo) return std::move(mountinfo).error().Wrap("read /proc/self/mountinfo");
  // "id parent major:minor root mount-point options [optional...] - type source ..."
  std::istringstream lines(*mountinfo);
  bool initramfs = false;
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    std::string id, parent, device, root, mount_point, field;
    fields >> id >> parent >> device >> root >> mount_point;
    if (mount_point != "/") continue;
    while (fields >> field && field != "-") {
    }
    std::string type;
    fields >> type;
    initramfs = id == parent || type == "rootfs";  // the last mount on "/" is the visible one
  }
  return initramfs;
}

Status CopyFilesystemTree(int from_fd, int to_fd) {
  struct stat st {};
  if (::fstat(from_fd, &st) < 0) return ErrnoError("stat the source");
  return CopyDirectoryContents(from_fd, to_fd, st.st_dev);
}

Status DeleteFilesystemContents(int dir_fd) {
  struct stat st {};
  if (::fstat(dir_fd, &st) < 0) return ErrnoError("stat the directory");
  return DeleteDirectoryContents(dir_fd, st.st_dev);
}

Status SwitchRootOffInitramfs(const std::string& staging_dir) {
  UniqueFd old_root(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!old_root) return ErrnoError("open /");
  struct statfs old_fs {};
  if (::fstatfs(old_root.get(), &old_fs) < 0) return ErrnoError("statfs /");
  // Everything on it is deleted below: never do that to a real filesystem.
  if (!IsRamBacked(old_fs)) {
    return MakeError(ErrorCode::kFailedPrecondition, "/ is not a ramfs or tmpfs");
  }
  if (::mkdir(staging_dir.c_str(), 0755) < 0 && errno != EEXIST) {
    return ErrnoError("mkdir `" + staging_dir + "`");
  }
  if (::mount("tmpfs", staging_dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0) {
    return ErrnoError("mount tmpfs on `" + staging_dir + "`");
  }
  UniqueFd new_root(::open(staging_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!new_root) return ErrnoError("open `" + staging_dir + "`");

  HULL_CHECK_OK(CopyFilesystemTree(old_root.get(), new_root.get()),
                "copy the initramfs into `" + staging_dir + "`");
  struct statfs new_fs {};
  if (::fstatfs(new_root.get(), &new_fs) < 0) return ErrnoError("statfs `" + staging_dir + "`");
  uint64_t used = static_cast<uint64_t>(new_fs.f_blocks - new_fs.f_bfree) * new_fs.f_bsize;
  std::string size = "size=" + std::to_string((used + kRootHeadroomBytes) / 1024) + "k";
  if (::mount(nullptr, staging_dir.c_str(), nullptr, MS_REMOUNT | MS_NOSUID | MS_NODEV,
              size.c_str()) < 0) {
    return ErrnoError("limit `" + staging_dir + "` to " + size);
  }

  // switch_root's sequence: the new root goes on top of the old one, which
  // stays mounted underneath (the rootfs cannot be unmounted) but empty.
  if (::fchdir(new_root.get()) < 0) return ErrnoError("chdir `" + staging_dir + "`");
  if (::mount(".", "/", nullptr, MS_MOVE, nullptr) < 0) {
    return ErrnoError("move `" + staging_dir + "` onto /");
  }
  if (::chroot(".") < 0) return ErrnoError("chroot into the new root");
  if (::chdir("/") < 0) return ErrnoError("chdir /");
  HULL_CHECK_OK(DeleteFilesystemContents(old_root.get()), "delete the initramfs's files");
  return Ok();
}

namespace {

struct BaseMount {
  const char* source;
  const char* target;
  const char* fstype;
  unsigned long flags;
  const char* data;
};

constexpr BaseMount kBaseMounts[] = {
    {"proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr},
    {"sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr},
    {"devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755"},
    {"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
     "newinstance,ptmxmode=0666,mode=0620,gid=5"},
    {"shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
    {"tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"},
    {"tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
    {"cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, "nsdelegate"},
};

}  // namespace

Status MountBaseFilesystems() {
  for (const auto& m : kBaseMounts) {
    ::mkdir(m.target, 0755);
    if (::mount(m.source, m.target, m.fstype, m.flags, m.data) < 0 && errno != EBUSY) {
      return ErrnoError(std::string("mount ") + m.fstype + " on " + m.target);
    }
  }
  ::symlink("/proc/self/fd", "/dev/fd");
  ::symlink("pts/ptmx", "/dev/ptmx");
  // The kernel opens /dev/console for init only if the node exists in the
  // initramfs; make sure stdio is the console either way.
  if (::fcntl(1, F_GETFD) < 0 || ::fcntl(2, F_GETFD) < 0) {
    int console = ::open("/dev/console", O_RDWR | O_NOCTTY);
    if (console >= 0) {
      ::dup2(console, 0);
      ::dup2(console, 1);
      ::dup2(console, 2);
      if (console > 2) ::close(console);
    }
  }
  return Ok();
}

Result<std::vector<std::string>> LoadModules(const std::string& list_path) {
  std::vector<std::string> loaded;
  auto list = ReadFile(list_path);
  if (!list) {
    if (list.error().sys_errno() == ENOENT) return loaded;  // an image without modules
    return std::move(list).error().Wrap("read module list");
  }
  std::istringstream lines(*list);
  std::string path;
  while (std::getline(lines, path)) {
    if (path.empty() || path[0] == '#') continue;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return ErrnoError("open module `" + path + "`");
    if (sys::FinitModule(fd.get(), "") < 0 && errno != EEXIST) {
      return ErrnoError("load module `" + path + "`");
    }
    std::string name = std::filesystem::path(path).stem().string();
    loaded.push_back(name);
  }
  return loaded;
}

Status SetLinkUp(const std::string& interface) {
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) return ErrnoError("socket(AF_INET)");
  ifreq req{};
  if (interface.size() >= sizeof(req.ifr_name)) {
    return MakeError(ErrorCode::kInvalidArgument, "interface name `" + interface + "` is too long");
  }
  std::memcpy(req.ifr_name, interface.c_str(), interface.size());
  if (::ioctl(sock.get(), SIOCGIFFLAGS, &req) < 0)
    return ErrnoError("get flags of `" + interface + "`");
  req.ifr_flags |= IFF_UP;
  if (::ioctl(sock.get(), SIOCSIFFLAGS, &req) < 0) return ErrnoError("set `" + interface + "` up");
  return Ok();
}

Status PowerOff() {
  ::sync();
  ::umount2("/sys/fs/cgroup", MNT_DETACH);
  if (::reboot(RB_POWER_OFF) < 0) return ErrnoError("reboot(RB_POWER_OFF)");
  return Ok();
}

void RunReaper(std::function<void(pid_t, int)> on_exit) {
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  while (true) {
    siginfo_t info;
    if (sigwaitinfo(&chld, &info) < 0 && errno != EINTR) {
      HULL_LOG_ERROR("sigwaitinfo: {}", strerror(errno));
      ::sleep(1);
    }
    // One SIGCHLD may stand for many exits: reap until none is left.
    while (true) {
      int status = 0;
      pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      if (on_exit) on_exit(pid, status);
    }
  }
}

}  // namespace hull::agent
