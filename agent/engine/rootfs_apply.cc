// The child side of engine/rootfs.h: ApplyRootfsPlan runs between clone(2)
// and execve(2), so everything here is system calls on prepared data. No
// allocation, no locks, no logging: async-signal-safe only.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstring>

#include "engine/rootfs.h"
#include "hull/core/fd.h"
#include "hull/core/sys.h"

namespace hull::engine {

namespace {

// ---------------------------------------------------------------------------
// Child side: system calls only.

// An O_PATH lookup inside the new root, with SafeOpen's confinement and
// retry rule (hull/core/sys.h); allocation-free.
int OpenInRoot(int root, const char* relative, int flags) {
  return sys::SafeOpenRaw(root, relative, O_PATH | flags, 0, {.scope = sys::Scope::kInRoot});
}

// "/proc/self/fd/N", formatted without allocating. Before the root switch
// this is the runtime's procfs, where the magic link leads to exactly the
// (mount, dentry) the O_PATH fd holds.
class ProcFdPath {
 public:
  explicit ProcFdPath(int fd) {
    static constexpr char kPrefix[] = "/proc/self/fd/";
    size_t pos = sizeof kPrefix - 1;
    std::memcpy(buf_, kPrefix, pos);
    char digits[12];
    int count = 0;
    unsigned value = static_cast<unsigned>(fd);
    do {
      digits[count++] = static_cast<char>('0' + value % 10);
      value /= 10;
    } while (value != 0);
    while (count > 0) buf_[pos++] = digits[--count];
    buf_[pos] = '\0';
  }
  const char* get() const { return buf_; }

 private:
  char buf_[32];
};

struct Outcome {
  int err = 0;
  RootfsStage stage = RootfsStage::kMain;
};

Outcome Failed(RootfsStage stage, int err = errno) { return Outcome{err, stage}; }

const char* OrNull(const std::string& s) { return s.empty() ? nullptr : s.c_str(); }

struct ApplyState {
  UniqueFd root;      // the container's root: the rootfs bind mount, later "/"
  UniqueFd dev_null;  // the container's /dev/null, for masking files
};

// Opens the first `depth` components of `path` inside `root` (O_PATH). With
// `create`, missing components are made one at a time: each parent is itself
// resolved in the root, and mkdirat/mknodat never follow the final name.
Outcome Resolve(int root, const ContainerPath& path, size_t depth, bool create, bool last_is_file,
                UniqueFd* out) {
  if (depth == 0) {
    out->reset(::fcntl(root, F_DUPFD_CLOEXEC, 3));
    return out->valid() ? Outcome{} : Failed(RootfsStage::kResolve);
  }
  int fd = OpenInRoot(root, path.prefixes[depth - 1].c_str(), 0);
  if (fd >= 0) {
    out->reset(fd);
    return {};
  }
  if (errno != ENOENT || !create) return Failed(RootfsStage::kResolve);

  UniqueFd parent(::fcntl(root, F_DUPFD_CLOEXEC, 3));
  if (!parent) return Failed(RootfsStage::kResolve);
  for (size_t i = 0; i < depth; ++i) {
    bool as_file = last_is_file && i + 1 == depth;
    int open_flags = as_file ? 0 : O_DIRECTORY;
    int next = OpenInRoot(root, path.prefixes[i].c_str(), open_flags);
    if (next < 0) {
      if (errno != ENOENT) return Failed(RootfsStage::kResolve);
      const char* name = path.names[i].c_str();
      int rc = as_file ? ::mknodat(parent.get(), name, S_IFREG | 0755, 0)
                       : ::mkdirat(parent.get(), name, 0755);
      if (rc != 0 && errno != EEXIST) return Failed(RootfsStage::kCreate);
      // EEXIST with ENOENT before: a dangling symlink (or a race); the
      // reopen decides.
      next = OpenInRoot(root, path.prefixes[i].c_str(), open_flags);
      if (next < 0) return Failed(RootfsStage::kCreate);
    }
    parent.reset(next);
  }
  *out = std::move(parent);
  return {};
}

Outcome ApplyMount(ApplyState& state, const RootfsStep& step) {
  const ContainerPath& target = step.target;
  UniqueFd at;
  if (auto o =
          Resolve(state.root.get(), target, target.prefixes.size(), true, step.target_is_file, &at);
      o.err) {
    return o;
  }
  // runc's checkProcMount, on the resolved target: a symlink in the image
  // must not turn "/data" into a mount over /proc/sys.
  if (!step.allow_on_procfs) {
    struct statfs fs {};
    if (::fstatfs(at.get(), &fs) != 0) return Failed(RootfsStage::kStat);
    if (fs.f_type == PROC_SUPER_MAGIC) return Outcome{EPERM, RootfsStage::kCheckProcfs};
  }
  if (::mount(step.source.c_str(), ProcFdPath(at.get()).get(), OrNull(step.fstype), step.flags,
              OrNull(step.data)) != 0) {
    return Failed(RootfsStage::kMain);
  }
  if (step.remount_flags == 0 && step.propagation.empty() && step.recursive_set == 0 &&
      step.recursive_clear == 0) {
    return {};
  }
  // `at` still names the covered directory; the new mount's root needs a
  // fresh lookup.
  UniqueFd mounted(OpenInRoot(state.root.get(), target.prefixes.back().c_str(), 0));
  if (!mounted) return Failed(RootfsStage::kResolve);
  ProcFdPath mounted_path(mounted.get());
  if (step.remount_flags != 0 &&
      ::mount(nullptr, mounted_path.get(), nullptr, step.remount_flags, nullptr) != 0) {
    // As runc: a bind of a read-only mount cannot be remounted writable
    // where the source's flags are locked; retry read-only then.
    int err = errno;
    struct statfs fs {};
    if ((step.remount_flags & MS_RDONLY) != 0 || ::statfs(step.source.c_str(), &fs) != 0 ||
        (fs.f_flags & ST_RDONLY) == 0) {
      return Outcome{err, RootfsStage::kRemount};
    }
    if (::mount(nullptr, mounted_path.get(), nullptr, step.remount_flags | MS_RDONLY, nullptr) !=
        0) {
      return Failed(RootfsStage::kRemount);
    }
  }
  for (unsigned long propagation : step.propagation) {
    if (::mount(nullptr, mounted_path.get(), nullptr, propagation, nullptr) != 0) {
      return Failed(RootfsStage::kPropagation);
    }
  }
  if (step.recursive_set != 0 || step.recursive_clear != 0) {
    mount_attr attr{};
    attr.attr_set = step.recursive_set;
    attr.attr_clr = step.recursive_clear;
    if (::mount_setattr(mounted.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0) {
      return Failed(RootfsStage::kSetAttributes);
    }
  }
  return {};
}

Outcome ApplyDevice(ApplyState& state, const RootfsStep& step) {
  UniqueFd parent;
  size_t depth = step.target.prefixes.size() - 1;
  if (auto o = Resolve(state.root.get(), step.target, depth, true, false, &parent); o.err) return o;
  const char* name = step.target.names.back().c_str();
  mode_t old_umask = ::umask(0);
  int rc = ::mknodat(parent.get(), name, step.mode, step.device);
  int err = errno;
  ::umask(old_umask);
  if (rc != 0) return err == EEXIST ? Outcome{} : Outcome{err, RootfsStage::kMain};
  if (::fchownat(parent.get(), name, step.uid, step.gid, AT_SYMLINK_NOFOLLOW) != 0) {
    return Failed(RootfsStage::kChown);
  }
  return {};
}

Outcome ApplySymlink(ApplyState& state, const RootfsStep& step) {
  UniqueFd parent;
  size_t depth = step.target.prefixes.size() - 1;
  if (auto o = Resolve(state.root.get(), step.target, depth, true, false, &parent); o.err) return o;
  const char* name = step.target.names.back().c_str();
  if (step.replace && ::unlinkat(parent.get(), name, 0) != 0 && errno != ENOENT) {
    return Failed(RootfsStage::kRemoveExisting);
  }
  if (::symlinkat(step.source.c_str(), parent.get(), name) != 0 &&
      (errno != EEXIST || step.replace)) {
    return Failed(RootfsStage::kMain);
  }
  return {};
}

Outcome ApplyReadonlyRoot(ApplyState& state) {
  struct statfs fs {};
  if (::fstatfs(state.root.get(), &fs) != 0) return Failed(RootfsStage::kStat);
  // ST_* and MS_* agree for these bits. Keeping them is what runc does so
  // that a remount does not try to clear flags (which fails when locked).
  unsigned long keep =
      static_cast<unsigned long>(fs.f_flags) &
      (ST_NOSUID | ST_NODEV | ST_NOEXEC | ST_NOATIME | ST_NODIRATIME | ST_RELATIME);
  if (::mount(nullptr, ProcFdPath(state.root.get()).get(), nullptr,
              MS_BIND | MS_REMOUNT | MS_RDONLY | keep, nullptr) != 0) {
    return Failed(RootfsStage::kMain);
  }
  return {};
}

// runc's pivotRoot: pivot_root(".", ".") stacks the old root on top of the
// new one at "/", where it can be lazily unmounted without a directory for it.
Outcome ApplyPivotRoot(ApplyState& state) {
  UniqueFd old_root(::open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC));
  if (!old_root) return Failed(RootfsStage::kOpenRoot);
  if (::fchdir(state.root.get()) != 0) return Failed(RootfsStage::kChdir);
  if (sys::PivotRoot(".", ".") != 0) return Failed(RootfsStage::kMain);
  if (::fchdir(old_root.get()) != 0) return Failed(RootfsStage::kChdir);
  // rslave, not rprivate, as runc: the unmount must not propagate to the
  // runtime, but the runtime may still hold references to these mounts.
  if (::mount(nullptr, ".", nullptr, MS_SLAVE | MS_REC, nullptr) != 0)
    return Failed(RootfsStage::kPropagation);
  if (::umount2(".", MNT_DETACH) != 0) return Failed(RootfsStage::kUnmountOldRoot);
  if (::chdir("/") != 0) return Failed(RootfsStage::kChdir);
  return {};
}

// runc's msMoveRoot.
Outcome ApplyMoveRoot(ApplyState& state, const RootfsStep& step) {
  for (const auto& mount_point : step.hide_mounts) {
    const char* path = mount_point.c_str();
    if (::mount(nullptr, path, nullptr, MS_SLAVE | MS_REC, nullptr) != 0) {
      if (errno == ENOENT || errno == EINVAL) continue;  // already gone with an unmounted parent
      return Failed(RootfsStage::kHideHostMount);
    }
    if (::umount2(path, MNT_DETACH) != 0) {
      if (errno != EINVAL && errno != EPERM) return Failed(RootfsStage::kHideHostMount);
      if (::mount("tmpfs", path, "tmpfs", 0, nullptr) != 0)
        return Failed(RootfsStage::kHideHostMount);
    }
  }
  if (::fchdir(state.root.get()) != 0) return Failed(RootfsStage::kChdir);
  if (::mount(".", "/", nullptr, MS_MOVE, nullptr) != 0) return Failed(RootfsStage::kMain);
  if (::chroot(".") != 0) return Failed(RootfsStage::kChroot);
  if (::chdir("/") != 0) return Failed(RootfsStage::kChdir);
  return {};
}

// After the switch the runtime's procfs is gone, so these attach mounts by
// fd with the new mount API instead of /proc/self/fd paths.
Outcome ApplyReadonlyPath(ApplyState& state, const RootfsStep& step) {
  UniqueFd target(OpenInRoot(state.root.get(), step.target.prefixes.back().c_str(), 0));
  if (!target) return errno == ENOENT ? Outcome{} : Failed(RootfsStage::kResolve);
  UniqueFd tree(::open_tree(target.get(), "",
                            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE));
  if (!tree) return Failed(RootfsStage::kMain);
  // The clone keeps nosuid/nodev/noexec of what it copies, as runc's
  // statfs-and-remount does; read-only applies to the whole subtree.
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_RDONLY;
  if (::mount_setattr(tree.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0) {
    return Failed(RootfsStage::kSetAttributes);
  }
  if (::move_mount(tree.get(), "", target.get(), "",
                   MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0) {
    return Failed(RootfsStage::kAttach);
  }
  return {};
}

Outcome ApplyMaskPath(ApplyState& state, const RootfsStep& step) {
  UniqueFd target(OpenInRoot(state.root.get(), step.target.prefixes.back().c_str(), 0));
  if (!target) return errno == ENOENT ? Outcome{} : Failed(RootfsStage::kResolve);
  struct stat st {};
  if (::fstat(target.get(), &st) != 0) return Failed(RootfsStage::kStat);
  UniqueFd mount_fd;
  if (S_ISDIR(st.st_mode)) {
    UniqueFd context(::fsopen("tmpfs", FSOPEN_CLOEXEC));
    if (!context) return Failed(RootfsStage::kMain);
    if (::fsconfig(context.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0)
      return Failed(RootfsStage::kMain);
    mount_fd.reset(
        ::fsmount(context.get(), FSMOUNT_CLOEXEC,
                  MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
    if (!mount_fd) return Failed(RootfsStage::kMain);
  } else {
    // The container's /dev/null, checked: an image that put a regular file
    // there would otherwise "mask" with content of its choosing.
    if (!state.dev_null) {
      state.dev_null.reset(OpenInRoot(state.root.get(), "dev/null", 0));
      if (!state.dev_null) return Failed(RootfsStage::kCheckDevNull);
      struct stat null_st {};
      if (::fstat(state.dev_null.get(), &null_st) != 0) return Failed(RootfsStage::kCheckDevNull);
      if (!S_ISCHR(null_st.st_mode) || null_st.st_rdev != makedev(1, 3)) {
        state.dev_null.reset();
        return Outcome{ENODEV, RootfsStage::kCheckDevNull};
      }
    }
    mount_fd.reset(
        ::open_tree(state.dev_null.get(), "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH));
    if (!mount_fd) return Failed(RootfsStage::kMain);
  }
  if (::move_mount(mount_fd.get(), "", target.get(), "",
                   MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0) {
    return Failed(RootfsStage::kAttach);
  }
  return {};
}

Outcome ApplyStep(ApplyState& state, const RootfsPlan& plan, const RootfsStep& step) {
  // Steps inside the container need its root: the rootfs bind mount during
  // setup (opened by kBindRootfs), "/" after the switch.
  if (!state.root && step.kind != RootfsStepKind::kRootPropagation &&
      step.kind != RootfsStepKind::kMakePrivate && step.kind != RootfsStepKind::kBindRootfs &&
      step.kind != RootfsStepKind::kContainerRootPropagation) {
    if (step.phase != RootfsPhase::kProtectPaths) return Outcome{EBADF, RootfsStage::kOpenRoot};
    state.root.reset(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!state.root) return Failed(RootfsStage::kOpenRoot);
  }
  switch (step.kind) {
    case RootfsStepKind::kRootPropagation:
    case RootfsStepKind::kContainerRootPropagation:
      if (::mount(nullptr, "/", nullptr, step.flags, nullptr) != 0)
        return Failed(RootfsStage::kMain);
      return {};
    case RootfsStepKind::kMakePrivate:
      if (::mount(nullptr, step.source.c_str(), nullptr, MS_PRIVATE, nullptr) != 0)
        return Failed(RootfsStage::kMain);
      return {};
    case RootfsStepKind::kBindRootfs:
      if (::mount(plan.rootfs.c_str(), plan.rootfs.c_str(), nullptr, MS_BIND | MS_REC, nullptr) !=
          0) {
        return Failed(RootfsStage::kMain);
      }
      // Opened after the bind, so the fd is the new mount's root and every
      // later mount lands inside what pivot_root will make "/".
      state.root.reset(::open(plan.rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
      if (!state.root) return Failed(RootfsStage::kOpenRoot);
      return {};
    case RootfsStepKind::kMount:
      return ApplyMount(state, step);
    case RootfsStepKind::kDevice:
      return ApplyDevice(state, step);
    case RootfsStepKind::kSymlink:
      return ApplySymlink(state, step);
    case RootfsStepKind::kCreateDirectory: {
      UniqueFd dir;
      return Resolve(state.root.get(), step.target, step.target.prefixes.size(), true, false, &dir);
    }
    case RootfsStepKind::kRemountReadonly: {
      UniqueFd target(OpenInRoot(state.root.get(), step.target.prefixes.back().c_str(), 0));
      if (!target) return Failed(RootfsStage::kResolve);
      if (::mount(nullptr, ProcFdPath(target.get()).get(), nullptr, step.flags, nullptr) != 0) {
        return Failed(RootfsStage::kMain);
      }
      return {};
    }
    case RootfsStepKind::kReadonlyRoot:
      return ApplyReadonlyRoot(state);
    case RootfsStepKind::kPivotRoot:
      return ApplyPivotRoot(state);
    case RootfsStepKind::kMoveRoot:
      return ApplyMoveRoot(state, step);
    case RootfsStepKind::kReadonlyPath:
      return ApplyReadonlyPath(state, step);
    case RootfsStepKind::kMaskPath:
      return ApplyMaskPath(state, step);
  }
  return Outcome{EINVAL, RootfsStage::kMain};
}

}  // namespace

int ApplyRootfsPlan(const RootfsPlan& plan, RootfsPhase phase, RootfsFailure* failure) noexcept {
  ApplyState state;
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    const RootfsStep& step = plan.steps[i];
    if (step.phase != phase) continue;
    Outcome outcome = ApplyStep(state, plan, step);
    if (outcome.err != 0) {
      if (failure != nullptr) {
        failure->step = static_cast<uint32_t>(i);
        failure->err = outcome.err;
        failure->stage = outcome.stage;
        failure->what = step.description.c_str();
      }
      return outcome.err;
    }
  }
  return 0;
}

int ApplyRootfsPlan(const RootfsPlan& plan, RootfsFailure* failure) noexcept {
  if (int err = ApplyRootfsPlan(plan, RootfsPhase::kSetup, failure); err != 0) return err;
  return ApplyRootfsPlan(plan, RootfsPhase::kProtectPaths, failure);
}

}  // namespace hull::engine
