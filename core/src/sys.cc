#include "hull/core/sys.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace hull::sys {
namespace {

int AsInt(long rc) noexcept { return static_cast<int>(rc); }

}  // namespace

pid_t CloneProcess(unsigned long flags) noexcept {
  return static_cast<pid_t>(
      ::syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, nullptr));
}

int PidfdOpen(pid_t pid) noexcept { return AsInt(::syscall(SYS_pidfd_open, pid, 0)); }

int PidfdSendSignal(int pidfd, int sig) noexcept {
  return AsInt(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

int CloseRange(unsigned int first, unsigned int last, unsigned int flags) noexcept {
  return AsInt(::syscall(SYS_close_range, first, last, flags));
}

int SetGroups(size_t count, const gid_t* gids) noexcept {
  return AsInt(::syscall(SYS_setgroups, count, gids));
}

int SetResGid(gid_t gid) noexcept { return AsInt(::syscall(SYS_setresgid, gid, gid, gid)); }

int SetResUid(uid_t uid) noexcept { return AsInt(::syscall(SYS_setresuid, uid, uid, uid)); }

mode_t Umask(mode_t mask) noexcept { return static_cast<mode_t>(::syscall(SYS_umask, mask)); }

int Prctl(int option, unsigned long arg2, unsigned long arg3) noexcept {
  return AsInt(::syscall(SYS_prctl, option, arg2, arg3, 0UL, 0UL));
}

int Capset(__user_cap_header_struct* header, const __user_cap_data_struct* data) noexcept {
  return AsInt(::syscall(SYS_capset, header, data));
}

int SetRlimit(int resource, uint64_t soft, uint64_t hard) noexcept {
  struct {
    uint64_t cur;
    uint64_t max;
  } limit{soft, hard};
  return AsInt(::syscall(SYS_prlimit64, 0, resource, &limit, nullptr));
}

int SeccompSetFilter(unsigned int flags, const sock_fprog* program) noexcept {
  return AsInt(::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, program));
}

int MemfdCreate(const char* name, unsigned int flags) noexcept {
  return AsInt(::syscall(SYS_memfd_create, name, flags));
}

int PivotRoot(const char* new_root, const char* put_old) noexcept {
  return AsInt(::syscall(SYS_pivot_root, new_root, put_old));
}

int FinitModule(int fd, const char* params, int flags) noexcept {
  long rc;
  do {
    rc = ::syscall(SYS_finit_module, fd, params, flags);
  } while (rc < 0 && errno == EINTR);
  return AsInt(rc);
}

int SafeOpenRaw(int dir_fd, const char* path, int flags, mode_t mode,
                SafeOpenOptions options) noexcept {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC | (options.no_symlinks ? O_NOFOLLOW : 0));
  // openat2 rejects a mode without O_CREAT or O_TMPFILE (whose bits include
  // O_DIRECTORY, hence the full comparison).
  const bool creates = (flags & O_CREAT) != 0 || (flags & O_TMPFILE) == O_TMPFILE;
  how.mode = creates ? mode : 0;
  how.resolve = RESOLVE_NO_MAGICLINKS;
  how.resolve |= options.scope == Scope::kInRoot ? RESOLVE_IN_ROOT : RESOLVE_BENEATH;
  if (options.no_symlinks) how.resolve |= RESOLVE_NO_SYMLINKS;
  if (options.no_xdev) how.resolve |= RESOLVE_NO_XDEV;
  for (int attempt = 1;; ++attempt) {
    long fd = ::syscall(SYS_openat2, dir_fd, path, &how, sizeof how);
    if (fd >= 0) return static_cast<int>(fd);
    if ((errno != EAGAIN && errno != EINTR) || attempt == kSafeOpenAttempts) return -1;
  }
}

Result<UniqueFd> SafeOpen(int dir_fd, const std::string& path, int flags, SafeOpenOptions options,
                          mode_t mode) {
  UniqueFd fd(SafeOpenRaw(dir_fd, path.c_str(), flags, mode, options));
  if (!fd) return ErrnoError("open `" + path + "`");
  return fd;
}

Result<UniqueFd> OpenBeneath(int dir_fd, const std::string& name, int flags, mode_t mode) {
  return SafeOpen(dir_fd, name, flags,
                  {.scope = Scope::kBeneath, .no_symlinks = true, .no_xdev = true}, mode);
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
      return ErrnoError("create `" + name + "`");
    }
    HULL_TRY(dir, OpenBeneath(dir.get(), name, O_PATH | O_DIRECTORY), "");
  }
  return dir;
}

}  // namespace hull::sys
