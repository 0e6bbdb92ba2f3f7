#include "guest_init.h"

#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <sstream>

#include "hull/core/fd.h"
#include "hull/core/log.h"
#include "hull/core/syscall.h"

namespace hull::agent {

uint64_t BootTimeMicros() {
  timespec ts{};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
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
    {"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
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
    if (::syscall(SYS_finit_module, fd.get(), "", 0) < 0 && errno != EEXIST) {
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
  if (::ioctl(sock.get(), SIOCGIFFLAGS, &req) < 0) return ErrnoError("get flags of `" + interface + "`");
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
