#include "mounts.h"

#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "hull/core/syscall.h"

namespace hull::shim {

namespace {

struct FlagRule {
  bool clear;
  unsigned long flag;
};

const std::map<std::string, FlagRule>& FlagTable() {
  static const auto* table = new std::map<std::string, FlagRule>{
      {"async", {true, MS_SYNCHRONOUS}},
      {"atime", {true, MS_NOATIME}},
      {"bind", {false, MS_BIND}},
      {"defaults", {false, 0}},
      {"dev", {true, MS_NODEV}},
      {"diratime", {true, MS_NODIRATIME}},
      {"dirsync", {false, MS_DIRSYNC}},
      {"exec", {true, MS_NOEXEC}},
      {"mand", {false, MS_MANDLOCK}},
      {"noatime", {false, MS_NOATIME}},
      {"nodev", {false, MS_NODEV}},
      {"nodiratime", {false, MS_NODIRATIME}},
      {"noexec", {false, MS_NOEXEC}},
      {"nomand", {true, MS_MANDLOCK}},
      {"norelatime", {true, MS_RELATIME}},
      {"nostrictatime", {true, MS_STRICTATIME}},
      {"nosuid", {false, MS_NOSUID}},
      {"rbind", {false, MS_BIND | MS_REC}},
      {"relatime", {false, MS_RELATIME}},
      {"remount", {false, MS_REMOUNT}},
      {"ro", {false, MS_RDONLY}},
      {"rw", {true, MS_RDONLY}},
      {"strictatime", {false, MS_STRICTATIME}},
      {"suid", {true, MS_NOSUID}},
      {"sync", {false, MS_SYNCHRONOUS}},
  };
  return *table;
}

}  // namespace

MountOptions ParseMountOptions(const std::vector<std::string>& options) {
  MountOptions out;
  const auto& table = FlagTable();
  for (const std::string& option : options) {
    if (option == "loop") {
      out.loop = true;
      continue;
    }
    auto rule = table.find(option);
    if (rule == table.end()) {
      if (!out.data.empty()) out.data += ",";
      out.data += option;
    } else if (rule->second.clear) {
      out.flags &= ~rule->second.flag;
    } else {
      out.flags |= rule->second.flag;
    }
  }
  return out;
}

bool IsBindMount(const std::string& type, const std::vector<std::string>& options) {
  if (type == "bind" || type == "rbind") return true;
  for (const std::string& option : options) {
    if (option == "bind" || option == "rbind") return true;
  }
  return false;
}

Status MountAll(const std::vector<HostMount>& mounts, const std::string& target) {
  size_t done = 0;
  auto undo = [&] {
    for (size_t i = 0; i < done; ++i) (void)::umount2(target.c_str(), MNT_DETACH);
  };
  for (const HostMount& mount : mounts) {
    const std::string what = "mount " + mount.type + " `" + mount.source + "` on `" + target + "`";
    MountOptions options = ParseMountOptions(mount.options);
    if (options.loop) {
      undo();
      return MakeError(ErrorCode::kUnimplemented, what + ": loop mounts are not supported");
    }
    // The kernel takes one page of mount data; containerd shortens long
    // overlay lowerdir lists by chdir-ing, which a threaded shim cannot do.
    if (options.data.size() >= static_cast<size_t>(::getpagesize())) {
      undo();
      return MakeError(ErrorCode::kInvalidArgument,
                       what + ": mount options are " + std::to_string(options.data.size()) +
                           " bytes, more than a page (too many image layers)");
    }
    constexpr unsigned long kPropagation = MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE;
    unsigned long flags = options.flags & ~kPropagation;
    const char* type = mount.type == "bind" || mount.type == "rbind" ? nullptr : mount.type.c_str();
    if ((flags & MS_REMOUNT) == 0 || !options.data.empty()) {
      if (::mount(mount.source.c_str(), target.c_str(), type, flags,
                  options.data.empty() ? nullptr : options.data.c_str()) < 0) {
        auto error = ErrnoError(what + (options.data.empty() ? "" : " (" + options.data + ")"));
        undo();
        return error;
      }
      ++done;
    }
    if ((options.flags & kPropagation) != 0 &&
        ::mount(nullptr, target.c_str(), nullptr, options.flags & (kPropagation | MS_REC),
                nullptr) < 0) {
      auto error = ErrnoError(what + ": set propagation");
      undo();
      return error;
    }
    if ((flags & (MS_BIND | MS_RDONLY)) == (MS_BIND | MS_RDONLY) &&
        ::mount(nullptr, target.c_str(), nullptr, flags | MS_REMOUNT, nullptr) < 0) {
      auto error = ErrnoError(what + ": remount read-only");
      undo();
      return error;
    }
  }
  return Ok();
}

bool IsMountPoint(const std::string& path) {
  std::error_code ec;
  std::string canonical = std::filesystem::canonical(path, ec).string();
  if (ec) return false;
  auto mounts = MountPointsUnder(canonical);
  return std::find(mounts.begin(), mounts.end(), canonical) != mounts.end();
}

Status UnmountAll(const std::string& target) {
  for (int i = 0; i < 64 && IsMountPoint(target); ++i) {
    if (::umount2(target.c_str(), MNT_DETACH) < 0) {
      if (errno == EINVAL || errno == ENOENT) return Ok();
      return ErrnoError("unmount `" + target + "`");
    }
  }
  return Ok();
}

}  // namespace hull::shim
