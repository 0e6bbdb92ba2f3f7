// The parent side of engine/rootfs.h: the spec turned into a RootfsPlan, and
// a child's failure turned back into text.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <string_view>
#include <tuple>
#include <utility>

#include "engine/rootfs.h"
#include "hull/core/mountinfo.h"
#include "hull/core/syscall.h"

namespace hull::engine {

namespace {

// runc's checkProcMount allow-list: files a container may mount over (lxcfs).
constexpr std::string_view kProcMountAllowList[] = {
    "/proc/cpuinfo", "/proc/diskstats",
    "/proc/meminfo", "/proc/stat",
    "/proc/swaps",   "/proc/uptime",
    "/proc/loadavg", "/proc/slabinfo",
    "/proc/net/dev", "/proc/sys/kernel/ns_last_pid",
};

struct DefaultDevice {
  const char* path;
  unsigned major;
  unsigned minor;
};

// The nodes runc creates in every container (mode 0666, root-owned).
constexpr DefaultDevice kDefaultDevices[] = {
    {"/dev/null", 1, 3},   {"/dev/zero", 1, 5},    {"/dev/full", 1, 7},
    {"/dev/random", 1, 8}, {"/dev/urandom", 1, 9}, {"/dev/tty", 5, 0},
};

std::vector<std::string> CleanComponents(std::string_view path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.emplace_back(part);
    }
    start = end + 1;
  }
  return parts;
}

// Cleans like filepath.Clean("/" + path): ".." cannot climb above the root.
ContainerPath MakeContainerPath(std::string_view path) {
  ContainerPath out;
  std::string prefix;
  for (auto& part : CleanComponents(path)) {
    if (!prefix.empty()) prefix += '/';
    prefix += part;
    out.prefixes.push_back(prefix);
    out.names.push_back(std::move(part));
  }
  out.path = "/" + prefix;
  return out;
}

bool IsUnder(std::string_view path, std::string_view dir) {
  if (dir == "/") return true;
  return path == dir ||
         (path.size() > dir.size() && path.substr(0, dir.size()) == dir && path[dir.size()] == '/');
}

// The mount a path lives on: the longest mount point above it, the last one
// listed if several are stacked.
const MountInfoEntry* MountHolding(const std::vector<MountInfoEntry>& mounts,
                                   const std::string& path) {
  const MountInfoEntry* best = nullptr;
  for (const auto& entry : mounts) {
    if (!IsUnder(path, entry.mount_point)) continue;
    if (best == nullptr || entry.mount_point.size() >= best->mount_point.size()) best = &entry;
  }
  return best;
}

bool HasStatfsType(const std::string& path, long type) {
  struct statfs fs {};
  return ::statfs(path.c_str(), &fs) == 0 && static_cast<long>(fs.f_type) == type;
}

Unexpected Invalid(std::string message) {
  return MakeError(ErrorCode::kInvalidArgument, std::move(message));
}

std::string PathError(std::string_view field, const std::string& raw) {
  if (raw.empty()) return std::string(field) + ": path is empty";
  if (raw.find('\0') != std::string::npos) return std::string(field) + ": path contains a NUL byte";
  return "";
}

struct PlanContext {
  const oci::Spec& spec;
  const RootfsOptions& options;
  RootfsPlan* plan;
  std::vector<RootfsStep> readonly_remounts;  // appended after /dev is populated
  bool setup_dev = true;
  bool proc_mounted = false;
};

Status PlanMount(PlanContext& ctx, size_t index, const oci::Mount& mount) {
  std::string field = "mounts[" + std::to_string(index) + "]";
  if (auto problem = PathError(field + " destination", mount.destination); !problem.empty()) {
    return Invalid(problem);
  }
  RootfsStep step;
  step.kind = RootfsStepKind::kMount;
  step.target = MakeContainerPath(mount.destination);
  const std::string& dest = step.target.path;
  const std::string what = field + " (" + dest + ")";
  if (step.target.prefixes.empty())
    return Invalid(what + ": cannot mount over the container's root directory");

  HULL_TRY(MountOptions options, ParseMountOptions(mount.options), what);
  step.propagation = std::move(options.propagation);
  step.recursive_set = options.recursive_set;
  step.recursive_clear = options.recursive_clear;

  bool in_proc = IsUnder(dest, "/proc");
  bool allow_listed = false;
  for (auto allowed : kProcMountAllowList) allow_listed |= dest == allowed;

  // runc treats a mount as a bind by its options; a "bind" type without
  // them would reach the kernel as a filesystem named "bind" (ENODEV), so
  // it means a bind here too.
  bool bind = (options.flags & MS_BIND) != 0 || mount.type == "bind";
  if (bind) {
    std::string source = mount.source;
    if (source.empty()) return Invalid(what + ": a bind mount needs a source");
    if (source.find('\0') != std::string::npos)
      return Invalid(what + ": source contains a NUL byte");
    if (source[0] != '/') {
      if (ctx.options.bundle_dir.empty()) {
        return Invalid(what + ": source `" + source +
                       "` is relative and there is no bundle directory");
      }
      source = ctx.options.bundle_dir + "/" + source;
    }
    struct stat st {};
    if (::stat(source.c_str(), &st) != 0) {
      if (errno == ENOENT || errno == ENOTDIR) {
        return MakeError(ErrorCode::kNotFound, what + ": source `" + source + "` does not exist");
      }
      return ErrnoError(what + ": source `" + source + "`");
    }
    step.source = source;
    step.target_is_file = !S_ISDIR(st.st_mode);
    step.flags = MS_BIND | (options.flags & MS_REC);
    // A bind ignores every other flag; runc applies them with a remount.
    if ((options.flags & ~(MS_BIND | MS_REC | MS_REMOUNT)) != 0) {
      step.remount_flags = options.flags | MS_BIND | MS_REMOUNT;
    }
    step.allow_on_procfs =
        allow_listed || (dest == "/proc" && HasStatfsType(source, PROC_SUPER_MAGIC));
    step.description = what + ": bind `" + source + "`";
    if (dest == "/dev") ctx.setup_dev = false;
  } else {
    std::string type = mount.type;
    if (type.empty()) return Invalid(what + ": no type, and the options have no bind or rbind");
    if (type == "cgroup") {
      // The guest runs cgroup v2 only; the container sees its own subtree
      // through its cgroup namespace, as with runc on a unified host.
      if (!HasStatfsType("/sys/fs/cgroup", CGROUP2_SUPER_MAGIC)) {
        return MakeError(
            ErrorCode::kUnimplemented,
            what + ": type `cgroup` needs cgroup v2 at /sys/fs/cgroup (this host has cgroup v1)");
      }
      type = "cgroup2";
    }
    step.fstype = type;
    step.source = mount.source.empty() ? type : mount.source;
    step.data = options.data;
    step.flags = options.flags;
    step.allow_on_procfs = allow_listed || (dest == "/proc" && type == "proc");
    step.description = what + ": mount " + type;
    // Like runc, /dev and tmpfs mounts stay writable until the device nodes
    // are in, and are remounted read-only at the end of the setup.
    if ((step.flags & MS_RDONLY) != 0 && (type == "tmpfs" || dest == "/dev")) {
      step.flags &= ~MS_RDONLY;
      RootfsStep remount;
      remount.kind = RootfsStepKind::kRemountReadonly;
      remount.target = step.target;
      remount.flags = options.flags | MS_REMOUNT | MS_RDONLY;
      remount.description = what + ": remount read-only";
      ctx.readonly_remounts.push_back(std::move(remount));
    }
    if (type == "proc" && dest == "/proc") ctx.proc_mounted = true;
  }
  if (in_proc && !step.allow_on_procfs) {
    return Invalid(
        what +
        ": cannot mount inside /proc (only procfs on /proc itself, and runc's allow-list "
        "such as /proc/cpuinfo)");
  }
  ctx.plan->steps.push_back(std::move(step));
  return Ok();
}

Status PlanDevices(PlanContext& ctx) {
  std::vector<const oci::Device*> spec_devices;
  if (ctx.spec.linux) {
    for (const auto& device : ctx.spec.linux->devices) spec_devices.push_back(&device);
  }
  std::vector<std::string> spec_paths;
  for (const auto* device : spec_devices)
    spec_paths.push_back(MakeContainerPath(device->path).path);

  // A spec device with a default's path replaces the default.
  for (const auto& device : kDefaultDevices) {
    bool replaced = false;
    for (const auto& path : spec_paths) replaced |= path == device.path;
    if (replaced) continue;
    RootfsStep step;
    step.kind = RootfsStepKind::kDevice;
    step.target = MakeContainerPath(device.path);
    step.mode = S_IFCHR | 0666;
    step.device = makedev(device.major, device.minor);
    step.description = std::string("create device ") + device.path;
    ctx.plan->steps.push_back(std::move(step));
  }

  for (size_t i = 0; i < spec_devices.size(); ++i) {
    const oci::Device& device = *spec_devices[i];
    std::string field = "linux.devices[" + std::to_string(i) + "]";
    if (auto problem = PathError(field + " path", device.path); !problem.empty())
      return Invalid(problem);
    RootfsStep step;
    step.kind = RootfsStepKind::kDevice;
    step.target = MakeContainerPath(device.path);
    std::string what = field + " (" + step.target.path + ")";
    if (step.target.prefixes.empty()) return Invalid(what + ": not a device path");
    mode_t type_bits;
    if (device.type == "c" || device.type == "u") {
      type_bits = S_IFCHR;
    } else if (device.type == "b") {
      type_bits = S_IFBLK;
    } else if (device.type == "p") {
      type_bits = S_IFIFO;
    } else {
      return Invalid(what + ": type `" + device.type + "` is not one of c, u, b, p");
    }
    if (type_bits != S_IFIFO) {
      if (device.major < 0 || device.major > UINT32_MAX || device.minor < 0 ||
          device.minor > UINT32_MAX) {
        return Invalid(what + ": major " + std::to_string(device.major) + ", minor " +
                       std::to_string(device.minor) + " out of range");
      }
      step.device =
          makedev(static_cast<unsigned>(device.major), static_cast<unsigned>(device.minor));
    }
    step.mode = type_bits | (device.file_mode.value_or(0666) & 07777);
    step.uid = device.uid.value_or(0);
    step.gid = device.gid.value_or(0);
    step.description = what + ": create device";
    ctx.plan->steps.push_back(std::move(step));
  }
  return Ok();
}

void PlanDevSymlinks(PlanContext& ctx) {
  auto add = [&](const char* link, const char* text, bool replace) {
    RootfsStep step;
    step.kind = RootfsStepKind::kSymlink;
    step.target = MakeContainerPath(link);
    step.source = text;
    step.replace = replace;
    step.description = std::string("create symlink ") + link + " -> " + text;
    ctx.plan->steps.push_back(std::move(step));
  };
  // runc's setupPtmx then setupDevSymlinks.
  add("/dev/ptmx", "pts/ptmx", true);
  add("/dev/fd", "/proc/self/fd", false);
  add("/dev/stdin", "/proc/self/fd/0", false);
  add("/dev/stdout", "/proc/self/fd/1", false);
  add("/dev/stderr", "/proc/self/fd/2", false);
  // CONFIG_PROC_KCORE is optional; runc links it only when it exists.
  if (ctx.proc_mounted && ::access("/proc/kcore", F_OK) == 0)
    add("/dev/core", "/proc/kcore", false);
}

Status PlanPathList(PlanContext& ctx, const std::vector<std::string>& paths, std::string_view list,
                    RootfsStepKind kind) {
  for (size_t i = 0; i < paths.size(); ++i) {
    std::string field = "linux." + std::string(list) + "[" + std::to_string(i) + "]";
    if (auto problem = PathError(field, paths[i]); !problem.empty()) return Invalid(problem);
    RootfsStep step;
    step.kind = kind;
    step.phase = RootfsPhase::kProtectPaths;
    step.target = MakeContainerPath(paths[i]);
    std::string what = field + " (" + step.target.path + ")";
    if (step.target.prefixes.empty()) {
      return Invalid(what + ": the root itself cannot be " +
                     (kind == RootfsStepKind::kMaskPath ? "masked" : "listed (use root.readonly)"));
    }
    step.description = what + (kind == RootfsStepKind::kMaskPath ? ": mask" : ": make read-only");
    ctx.plan->steps.push_back(std::move(step));
  }
  return Ok();
}

std::string_view StageName(RootfsStage stage) {
  switch (stage) {
    case RootfsStage::kMain:
      return "";
    case RootfsStage::kResolve:
      return "resolve the path inside the container";
    case RootfsStage::kCreate:
      return "create the path inside the container";
    case RootfsStage::kCheckProcfs:
      return "the target resolves into procfs (refused, as runc does)";
    case RootfsStage::kCheckDevNull:
      return "the container's /dev/null is not the null device";
    case RootfsStage::kRemount:
      return "remount with the mount options";
    case RootfsStage::kPropagation:
      return "set propagation";
    case RootfsStage::kSetAttributes:
      return "set mount attributes";
    case RootfsStage::kChown:
      return "chown";
    case RootfsStage::kRemoveExisting:
      return "remove the existing entry";
    case RootfsStage::kStat:
      return "stat";
    case RootfsStage::kOpenRoot:
      return "open the root";
    case RootfsStage::kChdir:
      return "chdir";
    case RootfsStage::kHideHostMount:
      return "unmount the runtime's proc and sysfs mounts";
    case RootfsStage::kUnmountOldRoot:
      return "unmount the old root";
    case RootfsStage::kChroot:
      return "chroot";
    case RootfsStage::kAttach:
      return "attach the mount";
  }
  return "";
}

}  // namespace

Result<RootfsPlan> PlanRootfs(const oci::Spec& spec, const std::string& rootfs_dir,
                              std::optional<std::string> console_path,
                              const RootfsOptions& options) {
  RootfsPlan plan;
  {
    char* real = ::realpath(rootfs_dir.c_str(), nullptr);
    if (real == nullptr) return ErrnoError("root.path `" + rootfs_dir + "`");
    plan.rootfs = real;
    ::free(real);
  }
  struct stat root_st {};
  if (::stat(plan.rootfs.c_str(), &root_st) != 0)
    return ErrnoError("root.path `" + rootfs_dir + "`");
  if (!S_ISDIR(root_st.st_mode))
    return Invalid("root.path `" + rootfs_dir + "` is not a directory");
  if (plan.rootfs == "/")
    return Invalid("root.path `" + rootfs_dir + "` is the runtime's own root");

  HULL_TRY(std::vector<MountInfoEntry> mounts, ReadMountInfo(), "plan the root filesystem");
  PlanContext ctx{spec, options, &plan, {}, true, false};

  // 1. Propagation of the whole tree. runc: rslave unless the spec says, so
  // nothing the container mounts reaches the runtime.
  std::string propagation_name = spec.linux ? spec.linux->rootfs_propagation : "";
  unsigned long propagation = MS_SLAVE | MS_REC;
  if (!propagation_name.empty()) {
    std::optional<unsigned long> flags = PropagationFlags(propagation_name);
    if (flags) propagation = *flags;
    if (!flags) {
      return Invalid("linux.rootfsPropagation `" + propagation_name +
                     "` is not one of private, rprivate, slave, rslave, shared, rshared, "
                     "unbindable, runbindable");
    }
  }
  {
    RootfsStep step;
    step.kind = RootfsStepKind::kRootPropagation;
    step.flags = propagation;
    step.description = "set the propagation of / to " +
                       (propagation_name.empty() ? std::string("rslave") : propagation_name);
    plan.steps.push_back(std::move(step));
  }

  // 2. runc's rootfsParentMountPrivate: pivot_root refuses a new root whose
  // parent mount is shared, and a bind under a shared mount would show up in
  // the runtime's namespace.
  const MountInfoEntry* holder = MountHolding(mounts, plan.rootfs);
  if (holder == nullptr)
    return MakeError(ErrorCode::kInternal, "no mount holds `" + plan.rootfs + "`");
  bool holder_shared =
      (propagation & MS_SHARED) != 0 ||
      ((propagation & MS_REC) == 0 && holder->shared && holder->mount_point != "/");
  if (holder_shared) {
    RootfsStep step;
    step.kind = RootfsStepKind::kMakePrivate;
    step.source = holder->mount_point;
    step.description = "make the mount `" + holder->mount_point + "` holding the rootfs private";
    plan.steps.push_back(std::move(step));
  }

  // 3. The rootfs bind.
  {
    RootfsStep step;
    step.kind = RootfsStepKind::kBindRootfs;
    step.source = plan.rootfs;
    step.description = "bind the rootfs `" + plan.rootfs + "` onto itself";
    plan.steps.push_back(std::move(step));
  }

  // 4. The spec's mounts, in order.
  for (size_t i = 0; i < spec.mounts.size(); ++i) {
    if (Status status = PlanMount(ctx, i, spec.mounts[i]); !status)
      return std::move(status).error();
  }

  // 5. /dev, unless the spec binds one in (runc's needsSetupDev).
  if (ctx.setup_dev) {
    if (Status status = PlanDevices(ctx); !status) return std::move(status).error();
    PlanDevSymlinks(ctx);
  }

  // 6. The console: the pty slave lives in the runtime's devpts, so it is
  // bound before the root switch.
  if (console_path) {
    if (auto problem = PathError("console", *console_path); !problem.empty())
      return Invalid(problem);
    struct stat st {};
    if (::stat(console_path->c_str(), &st) != 0)
      return ErrnoError("console `" + *console_path + "`");
    RootfsStep step;
    step.kind = RootfsStepKind::kMount;
    step.target = MakeContainerPath("/dev/console");
    step.target_is_file = true;
    step.source = *console_path;
    step.flags = MS_BIND;
    step.description = "bind the console `" + *console_path + "` onto /dev/console";
    plan.steps.push_back(std::move(step));
  }

  // 7. process.cwd, which runc creates while it can still write.
  if (spec.process) {
    if (auto problem = PathError("process.cwd", spec.process->cwd); !problem.empty())
      return Invalid(problem);
    RootfsStep step;
    step.kind = RootfsStepKind::kCreateDirectory;
    step.target = MakeContainerPath(spec.process->cwd);
    step.description = "process.cwd (" + step.target.path + "): create";
    if (!step.target.prefixes.empty()) plan.steps.push_back(std::move(step));
  }

  // 8. runc's finalizeRootfs: deferred read-only remounts, then the root.
  for (auto& step : ctx.readonly_remounts) plan.steps.push_back(std::move(step));
  if (spec.root.readonly) {
    RootfsStep step;
    step.kind = RootfsStepKind::kReadonlyRoot;
    step.description = "root.readonly: remount / read-only";
    plan.steps.push_back(std::move(step));
  }

  // 9. The switch.
  RootSwitch root_switch = options.root_switch;
  if (root_switch == RootSwitch::kAuto) {
    // A namespace's root mount is its own parent in mountinfo; when that is
    // the runtime's "/" (the initial ramfs), pivot_root cannot work.
    const MountInfoEntry* root = nullptr;
    for (const auto& entry : mounts) {
      if (entry.mount_point == "/") root = &entry;
    }
    bool initramfs = root != nullptr && (root->id == root->parent || root->fstype == "rootfs");
    root_switch = initramfs ? RootSwitch::kMoveRoot : RootSwitch::kPivotRoot;
  }
  {
    RootfsStep step;
    if (root_switch == RootSwitch::kPivotRoot) {
      step.kind = RootfsStepKind::kPivotRoot;
      step.description = "pivot_root into `" + plan.rootfs + "`";
    } else {
      step.kind = RootfsStepKind::kMoveRoot;
      step.description = "move `" + plan.rootfs + "` onto / and chroot";
      for (const auto& entry : mounts) {
        if ((entry.fstype == "proc" || entry.fstype == "sysfs") && entry.root == "/" &&
            !IsUnder(entry.mount_point, plan.rootfs)) {
          step.hide_mounts.push_back(entry.mount_point);
        }
      }
    }
    plan.steps.push_back(std::move(step));
  }
  if (!propagation_name.empty()) {
    RootfsStep step;
    step.kind = RootfsStepKind::kContainerRootPropagation;
    step.flags = propagation;
    step.description =
        "linux.rootfsPropagation: set the propagation of the container's / to " + propagation_name;
    plan.steps.push_back(std::move(step));
  }

  // 10. Inside the container: readonly then masked paths (runc's order).
  if (spec.linux) {
    for (auto [paths, list, kind] : {
             std::tuple{&spec.linux->readonly_paths, "readonlyPaths",
                        RootfsStepKind::kReadonlyPath},
             std::tuple{&spec.linux->masked_paths, "maskedPaths", RootfsStepKind::kMaskPath},
         }) {
      if (Status status = PlanPathList(ctx, *paths, list, kind); !status)
        return std::move(status).error();
    }
  }
  return plan;
}

std::string DescribeFailure(const RootfsPlan& plan, const RootfsFailure& failure) {
  std::string out = failure.step < plan.steps.size()
                        ? plan.steps[failure.step].description
                        : "root filesystem step " + std::to_string(failure.step);
  std::string_view stage = StageName(failure.stage);
  if (!stage.empty()) {
    out += ": ";
    out += stage;
  }
  return out;
}

Error RootfsFailureError(const RootfsPlan& plan, const RootfsFailure& failure) {
  return Error::FromErrno(failure.err, DescribeFailure(plan, failure));
}

}  // namespace hull::engine
