// The container's filesystem: everything runc does between "new mount
// namespace" and execve (prepareRoot, mountToRootfs, createDevices,
// pivotRoot, finalizeRootfs, readonlyPath, maskPath).
//
// Split per STYLE rule 6:
//   PlanRootfs (parent side) validates the spec and turns it into a
//   RootfsPlan: an ordered list of steps with every string, flag and mode
//   computed. Anything wrong with the spec is reported here, naming the field.
//   ApplyRootfsPlan (child side, after clone(CLONE_NEWNS) or unshare) runs
//   the steps with system calls only: no allocation, async-signal-safe.
//   A failure is a step index, an errno and a stage; DescribeFailure turns
//   that into text back in the parent.
//
// Paths inside the container are never walked by the kernel from the host's
// root: each is resolved with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
// against an O_PATH fd of the rootfs (missing directories are created one
// component at a time, each resolved the same way), and the mount goes onto
// /proc/self/fd/N of the resolved fd. A symlink in the image such as
// /etc -> / therefore cannot move a mount onto the host (STYLE rule 5).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/mount_options.h"
#include "hull/core/error.h"
#include "hull/core/oci_spec.h"

namespace hull::engine {

// How the child leaves the runtime's root for the container's.
enum class RootSwitch : uint8_t {
  // pivot_root, unless the runtime's root is the initial ramfs, where
  // pivot_root(2) always fails with EINVAL: then kMoveRoot. hull-agent moves
  // its root off the initramfs at boot (guest_init.h), so in the guest this
  // is pivot_root; the fallback serves other runtimes' roots.
  kAuto,
  kPivotRoot,  // pivot_root(".", ".") and a lazy unmount of the old root (runc)
  // MS_MOVE of the rootfs onto / and chroot (runc --no-pivot). The runtime's
  // full proc and sysfs mounts are unmounted first, as runc does, but the old
  // root stays underneath: weaker than pivot_root against a process that
  // keeps CAP_SYS_CHROOT.
  kMoveRoot,
};

struct RootfsOptions {
  // Relative bind-mount sources are relative to the bundle; empty: they are
  // an error.
  std::string bundle_dir;
  RootSwitch root_switch = RootSwitch::kAuto;
};

// A path inside the container, split so the child can resolve (and create)
// it one component at a time without allocating.
struct ContainerPath {
  std::string path;                   // cleaned absolute path, "/dev/pts" (for messages)
  std::vector<std::string> prefixes;  // "dev", "dev/pts": relative to the container's root
  std::vector<std::string> names;     // "dev", "pts"
};

enum class RootfsStepKind : uint8_t {
  kRootPropagation,  // mount(NULL, "/", flags): the whole tree, before anything else
  kMakePrivate,      // MS_PRIVATE on the mount holding the rootfs (runc's rootfsParentMountPrivate)
  kBindRootfs,  // bind the rootfs onto itself: a mount point for pivot_root, the root for the rest
  kMount,       // a spec mount, or the console bind
  kDevice,      // mknod + chown (default devices and linux.devices)
  kSymlink,     // /dev/fd, /dev/ptmx, ... (replace: remove what is there first)
  kCreateDirectory,  // process.cwd
  kRemountReadonly,  // a read-only tmpfs or /dev, mounted writable until /dev was populated
  kReadonlyRoot,     // root.readonly
  kPivotRoot,
  kMoveRoot,
  kContainerRootPropagation,  // linux.rootfsPropagation on the container's / after the switch
  kReadonlyPath,              // linux.readonlyPaths[i]
  kMaskPath,                  // linux.maskedPaths[i]
};

// When ApplyRootfsPlan runs a step. runc writes sysctls between the two
// (into /proc/sys, which the default spec makes read-only), so a caller with
// sysctls runs kSetup, writes them, then runs kProtectPaths.
enum class RootfsPhase : uint8_t {
  kSetup,         // up to and including the switch into the container's root
  kProtectPaths,  // readonly and masked paths, inside the container's root
};

struct RootfsStep {
  RootfsStepKind kind = RootfsStepKind::kMount;
  RootfsPhase phase = RootfsPhase::kSetup;
  // What the step does, naming the spec field: "mounts[1] (/dev): mount tmpfs".
  std::string description;
  // kMount, kRemountReadonly, kCreateDirectory, kReadonlyPath, kMaskPath: the
  // target. kDevice, kSymlink: the entry to create (its parent directories
  // are created as needed).
  ContainerPath target;
  bool target_is_file = false;   // kMount: create the target as an empty file (bind of a file)
  bool allow_on_procfs = false;  // kMount: the target may resolve into procfs (runc's allow-list)
  std::string source;  // kMount: mount(2) source; kSymlink: link text; kMakePrivate: mount point
  std::string fstype;  // kMount: "" for bind mounts
  std::string data;    // kMount: the data string ("" = NULL)
  unsigned long flags = 0;          // mount(2) flags of the main call
  unsigned long remount_flags = 0;  // kMount: a second, MS_REMOUNT call (bind options); 0 = none
  std::vector<unsigned long> propagation;
  uint64_t recursive_set = 0;  // kMount: mount_setattr(AT_RECURSIVE)
  uint64_t recursive_clear = 0;
  bool replace = false;  // kSymlink: remove an existing entry first (/dev/ptmx)
  mode_t mode = 0;       // kDevice: S_IFCHR/S_IFBLK/S_IFIFO | permissions
  dev_t device = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  // kMoveRoot: the runtime's proc and sysfs mounts to unmount first.
  std::vector<std::string> hide_mounts;
};

struct RootfsPlan {
  std::string rootfs;  // canonical absolute path in the runtime's mount namespace
  std::vector<RootfsStep> steps;
};

// Where inside a step a failure happened.
enum class RootfsStage : uint8_t {
  kMain,           // the step's own system call (the mount, mknod, pivot_root, ...)
  kResolve,        // resolving the path inside the container
  kCreate,         // creating a missing directory or mount-point file
  kCheckProcfs,    // the target resolved into procfs (EPERM)
  kCheckDevNull,   // the container's /dev/null is not the null device (ENODEV)
  kRemount,        // the MS_REMOUNT after a bind
  kPropagation,    // a propagation change
  kSetAttributes,  // mount_setattr
  kChown,
  kRemoveExisting,
  kStat,
  kOpenRoot,
  kChdir,
  kHideHostMount,  // kMoveRoot: unmounting the runtime's proc/sysfs
  kUnmountOldRoot,
  kChroot,
  kAttach,  // move_mount of a prepared mount
};

// Plain data, so it can be written through a pipe as-is. `what` points into
// the plan (the step's description) and is only meaningful in the process
// that ran ApplyRootfsPlan; DescribeFailure does not use it.
struct RootfsFailure {
  uint32_t step = 0;
  int err = 0;
  RootfsStage stage = RootfsStage::kMain;
  const char* what = nullptr;
};

// Parent side. `rootfs_dir` is the container's root directory in the
// runtime's mount namespace. `console_path` is the pty slave (in the
// runtime's namespace, e.g. /dev/pts/3) bound onto the container's
// /dev/console for a terminal process. Reads /proc/self/mountinfo and stats
// the bind sources; errors name the spec field:
// "mounts[3] (/data): source `/srv/x` does not exist".
Result<RootfsPlan> PlanRootfs(const oci::Spec& spec, const std::string& rootfs_dir,
                              std::optional<std::string> console_path = std::nullopt,
                              const RootfsOptions& options = {});

// Child side, in a new mount namespace (the mounts must not reach the
// runtime's), as root. Runs the steps of `phase`; the form without a phase
// runs both. Returns 0, or the errno after filling `failure`. Leaves
// the cwd at the container's "/". No allocation, async-signal-safe.
int ApplyRootfsPlan(const RootfsPlan& plan, RootfsPhase phase, RootfsFailure* failure) noexcept;
int ApplyRootfsPlan(const RootfsPlan& plan, RootfsFailure* failure) noexcept;

// Parent side: what failed, without the errno (callers add it with
// Error::FromErrno): "mounts[3] (/data): bind `/srv/x`" or, when a
// preparatory call failed, "mounts[3] (/data): bind `/srv/x`: create the path
// inside the container".
std::string DescribeFailure(const RootfsPlan& plan, const RootfsFailure& failure);

// The whole error: "mounts[1] (/dev): mount tmpfs: EPERM (Operation not permitted)".
Error RootfsFailureError(const RootfsPlan& plan, const RootfsFailure& failure);

}  // namespace hull::engine
