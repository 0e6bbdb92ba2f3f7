#include "sandbox.h"

#include <fcntl.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <time.h>

#include <cstring>
#include <thread>
#include <vector>

#include "hull/core/syscall.h"
#include "network.h"

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
  auto mount = [&] {
    return ::mount(source.c_str(), storage.mount_point().c_str(),
                   fstype.empty() ? nullptr : fstype.c_str(), flags,
                   data.empty() ? nullptr : data.c_str());
  };
  int mounted = mount();
  // A VM cloned from a template gets its virtio-fs device plugged in as it
  // resumes: until the kernel has probed it, the tag is unknown (EINVAL).
  for (auto give_up = std::chrono::steady_clock::now() + kHotplugWait;
       mounted < 0 && errno == EINVAL && fstype == "virtiofs" &&
       std::chrono::steady_clock::now() < give_up;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    mounted = mount();
  }
  if (mounted < 0) {
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

Status ReseedRandom(std::string_view entropy) {
  if (entropy.empty()) return Ok();
  if (entropy.size() < kMinEntropyBytes || entropy.size() > kMaxEntropyBytes) {
    return MakeError(ErrorCode::kInvalidArgument, "entropy: " + std::to_string(entropy.size()) +
                                                      " bytes, expected " +
                                                      std::to_string(kMinEntropyBytes) + ".." +
                                                      std::to_string(kMaxEntropyBytes));
  }
  UniqueFd random(::open("/dev/urandom", O_WRONLY | O_CLOEXEC));
  if (!random) return ErrnoError("open /dev/urandom");
  // struct rand_pool_info ends in a flexible array of the bytes.
  std::vector<uint32_t> buffer(2 + (entropy.size() + 3) / 4);
  auto* pool = reinterpret_cast<rand_pool_info*>(buffer.data());
  pool->entropy_count = static_cast<int>(entropy.size() * 8);
  pool->buf_size = static_cast<int>(entropy.size());
  std::memcpy(pool->buf, entropy.data(), entropy.size());
  if (::ioctl(random.get(), RNDADDENTROPY, pool) < 0) return ErrnoError("add host entropy");
  if (::ioctl(random.get(), RNDRESEEDCRNG) < 0) return ErrnoError("reseed the guest's RNG");
  return Ok();
}

Status SetRealtimeClock(int64_t realtime_ns) {
  if (realtime_ns == 0) return Ok();
  if (realtime_ns < 0) return MakeError(ErrorCode::kInvalidArgument, "realtime_ns is negative");
  timespec now{static_cast<time_t>(realtime_ns / 1000000000),
               static_cast<long>(realtime_ns % 1000000000)};
  if (::clock_settime(CLOCK_REALTIME, &now) < 0) return ErrnoError("set the guest's clock");
  return Ok();
}

Status UnmountStorage(const std::string& mount_point) {
  if (::umount2(mount_point.c_str(), MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT) {
    return ErrnoError("unmount " + mount_point);
  }
  return Ok();
}

}  // namespace hull::agent
