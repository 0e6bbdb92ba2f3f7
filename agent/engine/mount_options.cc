#include "engine/mount_options.h"

#include <sys/mount.h>

namespace hull::engine {

namespace {

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

std::optional<unsigned long> PropagationFlags(std::string_view name) {
  for (const auto& option : kPropagationOptions) {
    if (option.name == name) return option.flags;
  }
  return std::nullopt;
}

}  // namespace hull::engine
