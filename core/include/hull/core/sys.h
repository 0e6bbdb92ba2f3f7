// hull::sys: the one place where hull makes raw system calls (syscall(2) for
// what glibc does not wrap, or wraps in a way the engine must avoid), and the
// one way hull resolves a path it does not trust (SafeOpen).
//
// The raw wrappers are async-signal-safe and allocation-free: the engine's
// child between clone(2) and execve(2) uses them. Each returns what the
// kernel returned (-1 with errno on failure) and states its EINTR/EAGAIN
// policy; "one call" means the wrapper never retries, because the call cannot
// sleep interruptibly or because the caller must see the interruption.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "hull/core/error.h"
#include "hull/core/fd.h"

struct sock_fprog;
struct __user_cap_header_struct;
struct __user_cap_data_struct;

namespace hull::sys {

// ---- processes ----------------------------------------------------------------

// clone(2) used like fork(2): no new stack, SIGCHLD to the parent, plus the
// namespace flags in `flags`. Returns 0 in the child, the pid in the parent.
// One call (clone does not sleep).
pid_t CloneProcess(unsigned long flags) noexcept;

// pidfd_open(2) with no flags. One call.
int PidfdOpen(pid_t pid) noexcept;

// pidfd_send_signal(2) with no siginfo and no flags. One call.
int PidfdSendSignal(int pidfd, int sig) noexcept;

// close_range(2): closes every fd in [first, last]. One call.
int CloseRange(unsigned int first, unsigned int last, unsigned int flags = 0) noexcept;

// ---- credentials and process attributes (raw: see below) ------------------------

// glibc's set*id wrappers signal every thread of a multithreaded process to
// keep credentials in step, and after clone(2) glibc's thread list is stale;
// the raw calls change exactly the calling process. One call each.
int SetGroups(size_t count, const gid_t* gids) noexcept;
int SetResGid(gid_t gid) noexcept;
int SetResUid(uid_t uid) noexcept;
// umask(2); cannot fail, returns the previous mask.
mode_t Umask(mode_t mask) noexcept;

// prctl(2) with the unused arguments zeroed, as the kernel insists for some
// options (PR_CAP_AMBIENT, PR_SET_NO_NEW_PRIVS). One call.
int Prctl(int option, unsigned long arg2, unsigned long arg3 = 0) noexcept;

// capset(2). One call.
int Capset(__user_cap_header_struct* header, const __user_cap_data_struct* data) noexcept;

// prlimit64(2) on the calling process, with 64-bit limits on every
// architecture. One call.
int SetRlimit(int resource, uint64_t soft, uint64_t hard) noexcept;

// seccomp(SECCOMP_SET_MODE_FILTER). One call.
int SeccompSetFilter(unsigned int flags, const sock_fprog* program) noexcept;

// ---- files, mounts, modules ---------------------------------------------------

// memfd_create(2). One call.
int MemfdCreate(const char* name, unsigned int flags) noexcept;

// pivot_root(2). One call.
int PivotRoot(const char* new_root, const char* put_old) noexcept;

// finit_module(2). Retries EINTR: loading waits, interruptibly, for a
// concurrent load of the same module to finish.
int FinitModule(int fd, const char* params, int flags = 0) noexcept;

// ---- SafeOpen: resolving a path that someone else controls ------------------------

// Where the lookup of a path is confined, relative to the directory fd it
// starts from. Magic links (/proc/<pid>/fd/...) are never followed.
enum class Scope {
  // RESOLVE_IN_ROOT: the directory is "/" for the lookup; an absolute
  // symlink or ".." that would leave it stays at it, as chroot(2) would.
  // For a container's rootfs or an image: the path means what it means
  // inside the container.
  kInRoot,
  // RESOLVE_BENEATH: any step that would leave the directory (an absolute
  // path or symlink, ".." above it) fails with EXDEV.
  kBeneath,
};

struct SafeOpenOptions {
  Scope scope = Scope::kInRoot;
  // RESOLVE_NO_SYMLINKS (and O_NOFOLLOW): no symlink anywhere on the way,
  // for trees that hold no legitimate symlink (the shim's shared dir).
  bool no_symlinks = false;
  // RESOLVE_NO_XDEV: never cross a mount point.
  bool no_xdev = false;
};

// openat2 retries when it fails with EAGAIN (the kernel saw a rename or mount
// race during the lookup and refuses to guess) or EINTR, at most this often;
// after that the EAGAIN is the caller's.
inline constexpr int kSafeOpenAttempts = 64;

// openat2(dir_fd, path, flags | O_CLOEXEC, mode) confined by `options`, with
// the retry rule above. Returns the fd, or -1 with errno (ENOENT for a
// missing component, EXDEV for an escape under kBeneath, ELOOP for a symlink
// under no_symlinks, ENOSYS before Linux 5.6). Async-signal-safe.
int SafeOpenRaw(int dir_fd, const char* path, int flags, mode_t mode,
                SafeOpenOptions options) noexcept;

// SafeOpenRaw as a Result: the error names the path.
Result<UniqueFd> SafeOpen(int dir_fd, const std::string& path, int flags,
                          SafeOpenOptions options = {}, mode_t mode = 0);

// One name (no "/") or "." beneath `dir_fd`: no symlinks, no magic links, no
// mount crossing. For directories hull made and a guest can write into.
Result<UniqueFd> OpenBeneath(int dir_fd, const std::string& name, int flags, mode_t mode = 0);

// An O_PATH fd of `relative` ("a/b/c") beneath `root_fd`, walked one name at
// a time with OpenBeneath; `create` makes missing directories (0755).
Result<UniqueFd> OpenDirBeneath(int root_fd, const std::string& relative, bool create);

}  // namespace hull::sys
