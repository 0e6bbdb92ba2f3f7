#include "hull/core/syscall.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "hull/core/mountinfo.h"

namespace hull {

Status SetNonBlocking(int fd, bool nonblocking) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return ErrnoError("fcntl(F_GETFL)");
  flags = nonblocking ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (fcntl(fd, F_SETFL, flags) < 0) return ErrnoError("fcntl(F_SETFL)");
  return Ok();
}

Status SetCloexec(int fd) {
  if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) return ErrnoError("fcntl(F_SETFD)");
  return Ok();
}

Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = RetryEintr([&] { return ::write(fd, data.data(), data.size()); });
    if (n < 0) {
      if (errno == EAGAIN) {
        pollfd p{fd, POLLOUT, 0};
        RetryEintr([&] { return ::poll(&p, 1, -1); });
        continue;
      }
      return ErrnoError("write");
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Ok();
}

Result<std::string> ReadAll(int fd, size_t max_bytes) {
  std::string out;
  char buf[16384];
  while (out.size() < max_bytes) {
    ssize_t n = RetryEintr([&] { return ::read(fd, buf, sizeof buf); });
    if (n < 0) return ErrnoError("read");
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  if (out.size() > max_bytes) out.resize(max_bytes);
  return out;
}

Result<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  UniqueFd fd(RetryEintr([&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); }));
  if (!fd) return ErrnoError("open `" + path + "`");
  auto data = ReadAll(fd.get(), max_bytes);
  if (!data) return std::move(data).error().Wrap("read `" + path + "`");
  return data;
}

Status WriteFile(const std::string& path, std::string_view data, mode_t mode) {
  UniqueFd fd(RetryEintr(
      [&] { return ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode); }));
  if (!fd) return ErrnoError("open `" + path + "` for writing");
  HULL_CHECK_OK(WriteAll(fd.get(), data), "write `" + path + "`");
  return Ok();
}

Status MakeDirs(const std::string& path, mode_t mode) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return Unexpected{Error::FromErrno(ec.value(), "create directory `" + path + "`")};
  ::chmod(path.c_str(), mode);
  return Ok();
}

namespace {

Status RemoveAt(int dirfd, const char* name, dev_t dev) {
  struct stat st;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno == ENOENT) return Ok();
    return ErrnoError(std::string("stat `") + name + "`");
  }
  if (S_ISDIR(st.st_mode)) {
    if (st.st_dev != dev) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       std::string("refusing to remove `") + name + "`: it is a mount point");
    }
    UniqueFd child(openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!child) return ErrnoError(std::string("open `") + name + "`");
    DIR* dir = fdopendir(dup(child.get()));
    if (dir == nullptr) return ErrnoError("fdopendir");
    std::vector<std::string> entries;
    while (dirent* e = readdir(dir)) {
      if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
        entries.emplace_back(e->d_name);
    }
    closedir(dir);
    for (const auto& entry : entries) {
      HULL_CHECK_OK(RemoveAt(child.get(), entry.c_str(), dev), name);
    }
    if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT) {
      return ErrnoError(std::string("rmdir `") + name + "`");
    }
    return Ok();
  }
  if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT) {
    return ErrnoError(std::string("unlink `") + name + "`");
  }
  return Ok();
}

}  // namespace

Status RemoveTree(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) < 0) {
    if (errno == ENOENT) return Ok();
    return ErrnoError("stat `" + path + "`");
  }
  return RemoveAt(AT_FDCWD, path.c_str(), st.st_dev);
}

bool PathExists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

bool IsExecutable(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

Result<bool> WaitReadable(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  int rc = RetryEintr([&] { return ::poll(&p, 1, static_cast<int>(timeout.count())); });
  if (rc < 0) return ErrnoError("poll");
  return rc > 0;
}

Result<std::string> ExecutableDir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return Unexpected{Error::FromErrno(ec.value(), "resolve /proc/self/exe")};
  return exe.parent_path().string();
}

std::string RandomHex(size_t bytes) {
  std::vector<unsigned char> buf(bytes);
  size_t got = 0;
  while (got < bytes) {
    ssize_t n = getrandom(buf.data() + got, bytes - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : buf) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

std::vector<std::string> MountPointsUnder(const std::string& dir) {
  std::vector<std::string> mounts;
  // mountinfo has canonical paths; `dir` may not be (e.g. "/tmp//x").
  char* resolved = ::realpath(dir.c_str(), nullptr);
  if (resolved == nullptr) return mounts;
  std::string root = resolved;
  std::free(resolved);
  auto table = ReadMountInfo();
  if (!table) return mounts;
  for (auto& entry : *table) {
    const std::string& path = entry.mount_point;
    if (path == root || path.starts_with(root + "/"))
      mounts.push_back(std::move(entry.mount_point));
  }
  return mounts;
}

}  // namespace hull
