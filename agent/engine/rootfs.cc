#include "engine/rootfs.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <tuple>
#include <utility>

#include "hull/core/fd.h"
#include "hull/core/sys.h"
#include "hull/core/syscall.h"

namespace hull::engine {

namespace {

// ---------------------------------------------------------------------------
// Parent side: the spec's vocabulary.

struct FlagOption {
  std::string_view name;
  bool clear;
  unsigned long flag;
};

// runc's table (libcontainer/specconv), plus nosymfollow.
constexpr FlagOption kFlagOptions[] = {
    {"acl", false, MS_POSIXACL},
    {"async", true, MS_SYNCHRONOUS},
    {"atime", true, MS_NOATIME},
    {"bind", false, MS_BIND},
    {"defaults", false, 0},
    {"dev", true, MS_NODEV},
    {"diratime", true, MS_NODIRATIME},
    {"dirsync", false, MS_DIRSYNC},
    {"exec", true, MS_NOEXEC},
    {"iversion", false, MS_I_VERSION},
    {"lazytime", false, MS_LAZYTIME},
    {"loud", true, MS_SILENT},
    {"mand", false, MS_MANDLOCK},
    {"noacl", true, MS_POSIXACL},
    {"noatime", false, MS_NOATIME},
    {"nodev", false, MS_NODEV},
    {"nodiratime", false, MS_NODIRATIME},
    {"noexec", false, MS_NOEXEC},
    {"noiversion", true, MS_I_VERSION},
    {"nolazytime", true, MS_LAZYTIME},
    {"nomand", true, MS_MANDLOCK},
    {"norelatime", true, MS_RELATIME},
    {"nostrictatime", true, MS_STRICTATIME},
    {"nosuid", false, MS_NOSUID},
    {"nosymfollow", false, MS_NOSYMFOLLOW},
    {"rbind", false, MS_BIND | MS_REC},
    {"relatime", false, MS_RELATIME},
    {"remount", false, MS_REMOUNT},
    {"ro", false, MS_RDONLY},
    {"rw", true, MS_RDONLY},
    {"silent", false, MS_SILENT},
    {"strictatime", false, MS_STRICTATIME},
    {"suid", true, MS_NOSUID},
    {"symfollow", true, MS_NOSYMFOLLOW},
    {"sync", false, MS_SYNCHRONOUS},
};

struct PropagationOption {
  std::string_view name;
  unsigned long flags;
};

constexpr PropagationOption kPropagationOptions[] = {
    {"private", MS_PRIVATE},       {"rprivate", MS_PRIVATE | MS_REC},
    {"shared", MS_SHARED},         {"rshared", MS_SHARED | MS_REC},
    {"slave", MS_SLAVE},           {"rslave", MS_SLAVE | MS_REC},
    {"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE | MS_REC},
};

struct RecursiveOption {
  std::string_view name;
  bool clear;
  uint64_t attr;
};

// The mount_setattr(2) options runc 1.1 accepts. The atime modes are a field
// (MOUNT_ATTR__ATIME), not bits, so only "set this mode" is expressible; the
// "r"-prefixed negations of atime modes are not recognised and end up in data.
constexpr RecursiveOption kRecursiveOptions[] = {
    {"rro", false, MOUNT_ATTR_RDONLY},
    {"rrw", true, MOUNT_ATTR_RDONLY},
    {"rnosuid", false, MOUNT_ATTR_NOSUID},
    {"rsuid", true, MOUNT_ATTR_NOSUID},
    {"rnodev", false, MOUNT_ATTR_NODEV},
    {"rdev", true, MOUNT_ATTR_NODEV},
    {"rnoexec", false, MOUNT_ATTR_NOEXEC},
    {"rexec", true, MOUNT_ATTR_NOEXEC},
    {"rnodiratime", false, MOUNT_ATTR_NODIRATIME},
    {"rdiratime", true, MOUNT_ATTR_NODIRATIME},
    {"rnosymfollow", false, MOUNT_ATTR_NOSYMFOLLOW},
    {"rsymfollow", true, MOUNT_ATTR_NOSYMFOLLOW},
};

struct AtimeOption {
  std::string_view name;
  uint64_t mode;
};

constexpr AtimeOption kRecursiveAtimeOptions[] = {
    {"rrelatime", MOUNT_ATTR_RELATIME},
    {"rnoatime", MOUNT_ATTR_NOATIME},
    {"rstrictatime", MOUNT_ATTR_STRICTATIME},
};

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

struct MountEntry {
  int id = 0;
  int parent = 0;
  std::string root;
  std::string mount_point;
  std::string fstype;
  bool shared = false;
};

std::string UnescapeMountInfo(std::string_view field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && field[i + 1] >= '0' && field[i + 1] <= '3') {
      out += static_cast<char>(((field[i + 1] - '0') << 6) | ((field[i + 2] - '0') << 3) |
                               (field[i + 3] - '0'));
      i += 3;
    } else {
      out += field[i];
    }
  }
  return out;
}

Result<std::vector<MountEntry>> ReadMountInfo() {
  HULL_TRY(std::string text, ReadFile("/proc/self/mountinfo"), "read /proc/self/mountinfo");
  std::vector<MountEntry> entries;
  size_t line_start = 0;
  while (line_start < text.size()) {
    size_t line_end = text.find('\n', line_start);
    if (line_end == std::string::npos) line_end = text.size();
    std::string_view line(text.data() + line_start, line_end - line_start);
    line_start = line_end + 1;
    std::vector<std::string_view> fields;
    size_t pos = 0;
    while (pos < line.size()) {
      size_t space = line.find(' ', pos);
      if (space == std::string_view::npos) space = line.size();
      fields.push_back(line.substr(pos, space - pos));
      pos = space + 1;
    }
    size_t separator = 6;
    while (separator < fields.size() && fields[separator] != "-") ++separator;
    if (fields.size() < 7 || separator + 1 >= fields.size()) continue;
    MountEntry entry;
    entry.id = std::atoi(std::string(fields[0]).c_str());
    entry.parent = std::atoi(std::string(fields[1]).c_str());
    entry.root = UnescapeMountInfo(fields[3]);
    entry.mount_point = UnescapeMountInfo(fields[4]);
    for (size_t i = 6; i < separator; ++i) {
      if (fields[i].starts_with("shared:")) entry.shared = true;
    }
    entry.fstype = std::string(fields[separator + 1]);
    entries.push_back(std::move(entry));
  }
  return entries;
}

// The mount a path lives on: the longest mount point above it, the last one
// listed if several are stacked.
const MountEntry* MountHolding(const std::vector<MountEntry>& mounts, const std::string& path) {
  const MountEntry* best = nullptr;
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

Result<MountOptions> ParseMountOptions(const std::vector<std::string>& options) {
  MountOptions out;
  for (const auto& option : options) {
    if (option == "tmpcopyup") {
      return MakeError(ErrorCode::kUnimplemented,
                       "option `tmpcopyup` (runc's copy-up into a tmpfs) is not supported");
    }
    if (option == "idmap" || option == "ridmap") {
      return MakeError(ErrorCode::kUnimplemented,
                       "option `" + option + "`: id-mapped mounts are not supported");
    }
    bool known = false;
    for (const auto& flag : kFlagOptions) {
      if (option != flag.name) continue;
      if (flag.clear) {
        out.flags &= ~flag.flag;
      } else {
        out.flags |= flag.flag;
      }
      known = true;
      break;
    }
    for (const auto& propagation : kPropagationOptions) {
      if (known || option != propagation.name) continue;
      out.propagation.push_back(propagation.flags);
      known = true;
    }
    for (const auto& recursive : kRecursiveOptions) {
      if (known || option != recursive.name) continue;
      if (recursive.clear) {
        out.recursive_clear |= recursive.attr;
        out.recursive_set &= ~recursive.attr;
      } else {
        out.recursive_set |= recursive.attr;
        out.recursive_clear &= ~recursive.attr;
      }
      known = true;
    }
    for (const auto& atime : kRecursiveAtimeOptions) {
      if (known || option != atime.name) continue;
      out.recursive_clear |= MOUNT_ATTR__ATIME;
      out.recursive_set =
          (out.recursive_set & ~static_cast<uint64_t>(MOUNT_ATTR__ATIME)) | atime.mode;
      known = true;
    }
    if (known || option.empty()) continue;
    if (!out.data.empty()) out.data += ',';
    out.data += option;
  }
  return out;
}

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

  HULL_TRY(std::vector<MountEntry> mounts, ReadMountInfo(), "plan the root filesystem");
  PlanContext ctx{spec, options, &plan, {}, true, false};

  // 1. Propagation of the whole tree. runc: rslave unless the spec says, so
  // nothing the container mounts reaches the runtime.
  std::string propagation_name = spec.linux ? spec.linux->rootfs_propagation : "";
  unsigned long propagation = MS_SLAVE | MS_REC;
  if (!propagation_name.empty()) {
    bool found = false;
    for (const auto& option : kPropagationOptions) {
      if (option.name != propagation_name) continue;
      propagation = option.flags;
      found = true;
    }
    if (!found) {
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
  const MountEntry* holder = MountHolding(mounts, plan.rootfs);
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
    const MountEntry* root = nullptr;
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
