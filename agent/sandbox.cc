#include "sandbox.h"

#include <sys/mount.h>

#include "hull/core/syscall.h"

namespace hull::agent {

Status ValidateGuestPath(std::string_view field, const std::string& path, std::string_view root) {
  auto bad = [&](std::string why) {
    return MakeError(ErrorCode::kInvalidArgument, std::string(field) + ": `" + path + "` " + why);
  };
  if (path.empty() || path[0] != '/') return bad("is not an absolute path");
  if (path.size() > 4096) return bad("is too long");
  if (!path.starts_with(root)) return bad("is not under " + std::string(root));
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    std::string_view part(path.data() + start, end - start);
    if (part == ".." || part == ".") return bad("contains `" + std::string(part) + "`");
    if (part.empty() && start != 0 && end != path.size()) return bad("contains `//`");
    start = end + 1;
  }
  if (path.find('\0') != std::string::npos) return bad("contains a NUL byte");
  return Ok();
}

Status MountStorage(const v1::Storage& storage) {
  HULL_CHECK_OK(ValidateGuestPath("storage.mount_point", storage.mount_point(), kStorageRoot),
                "mount storage");
  unsigned long flags = 0;
  std::string data;
  for (const auto& option : storage.options()) {
    if (option == "ro") {
      flags |= MS_RDONLY;
    } else if (option == "nosuid") {
      flags |= MS_NOSUID;
    } else if (option == "nodev") {
      flags |= MS_NODEV;
    } else if (option == "noexec") {
      flags |= MS_NOEXEC;
    } else if (option.find(',') != std::string::npos) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "storage option `" + option + "` contains a comma");
    } else {
      data += (data.empty() ? "" : ",") + option;
    }
  }
  std::string fstype;
  std::string source = storage.source();
  if (storage.driver() == "virtiofs") {
    fstype = "virtiofs";
    if (source.empty() || source.size() > 36) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "storage.source: bad virtio-fs tag `" + source + "`");
    }
  } else if (storage.driver() == "tmpfs") {
    fstype = "tmpfs";
    source = "tmpfs";
  } else if (storage.driver() == "bind") {
    HULL_CHECK_OK(ValidateGuestPath("storage.source", source, kStorageRoot), "mount storage");
    flags |= MS_BIND | MS_REC;
  } else {
    return MakeError(ErrorCode::kInvalidArgument, "storage.driver: unknown driver `" +
                                                      storage.driver() +
                                                      "` (expected virtiofs, tmpfs or bind)");
  }
  HULL_CHECK_OK(MakeDirs(storage.mount_point(), 0755), "mount storage");
  if (::mount(source.c_str(), storage.mount_point().c_str(),
              fstype.empty() ? nullptr : fstype.c_str(), flags,
              data.empty() ? nullptr : data.c_str()) < 0) {
    return ErrnoError("mount " + storage.driver() + " `" + source + "` on " +
                      storage.mount_point());
  }
  if ((flags & MS_BIND) && (flags & MS_RDONLY)) {
    if (::mount(nullptr, storage.mount_point().c_str(), nullptr,
                MS_REMOUNT | MS_BIND | MS_RDONLY | MS_REC, nullptr) < 0) {
      return ErrnoError("remount " + storage.mount_point() + " read-only");
    }
  }
  return Ok();
}

Status UnmountStorage(const std::string& mount_point) {
  if (::umount2(mount_point.c_str(), MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT) {
    return ErrnoError("unmount " + mount_point);
  }
  return Ok();
}

}  // namespace hull::agent
