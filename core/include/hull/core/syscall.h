// Thin, error-returning wrappers over the system calls hull uses in many places.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hull/core/error.h"
#include "hull/core/fd.h"

namespace hull {

// Retries a syscall-like expression while it fails with EINTR.
template <typename F>
auto RetryEintr(F fn) {
  decltype(fn()) rc;
  do {
    rc = fn();
  } while (rc == -1 && errno == EINTR);
  return rc;
}

Status SetNonBlocking(int fd, bool nonblocking = true);
Status SetCloexec(int fd);

// Writes the whole buffer (blocking fds; retries short writes and EINTR).
Status WriteAll(int fd, std::string_view data);
// Reads until EOF or until max_bytes have been read.
Result<std::string> ReadAll(int fd, size_t max_bytes = 64 << 20);

Result<std::string> ReadFile(const std::string& path, size_t max_bytes = 64 << 20);
Status WriteFile(const std::string& path, std::string_view data, mode_t mode = 0644);

// mkdir -p; existing directories are fine.
Status MakeDirs(const std::string& path, mode_t mode = 0755);
// rm -rf of a directory tree that hull created; does not cross mount points.
Status RemoveTree(const std::string& path);

// Mount points at or below `dir` (canonicalised), from /proc/self/mountinfo,
// in mountinfo order (parents before what is mounted on them).
std::vector<std::string> MountPointsUnder(const std::string& dir);

bool PathExists(const std::string& path);
bool IsExecutable(const std::string& path);

// Waits until fd is readable (or hung up). Returns false on timeout.
Result<bool> WaitReadable(int fd, std::chrono::milliseconds timeout);

// The directory holding the running executable (/proc/self/exe resolved).
Result<std::string> ExecutableDir();

// Random bytes from getrandom(2), as lowercase hex.
std::string RandomHex(size_t bytes);

}  // namespace hull
