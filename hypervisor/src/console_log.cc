#include "src/console_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>

namespace hull {

namespace {

Result<UniqueFd> CreateLog(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return ErrnoError("create the console log `" + path + "`");
  return fd;
}

}  // namespace

Result<ConsoleLog> ConsoleLog::Open(std::string path, uint64_t max_bytes) {
  if (max_bytes == 0) {
    return MakeError(ErrorCode::kInvalidArgument, "the console log's size limit is 0");
  }
  HULL_TRY(UniqueFd fd, CreateLog(path), "");
  return ConsoleLog(std::move(path), max_bytes, std::move(fd));
}

Status ConsoleLog::Rotate() {
  const std::string old = path_ + ".1";
  if (::rename(path_.c_str(), old.c_str()) < 0) {
    return ErrnoError("rotate the console log `" + path_ + "`");
  }
  HULL_TRY(fd_, CreateLog(path_), "");
  size_ = 0;
  return Ok();
}

Status ConsoleLog::Append(std::string_view data) {
  while (!data.empty()) {
    if (size_ >= max_bytes_) HULL_CHECK_OK(Rotate(), "");
    size_t n = static_cast<size_t>(std::min<uint64_t>(data.size(), max_bytes_ - size_));
    ssize_t written = RetryEintr([&] { return ::write(fd_.get(), data.data(), n); });
    if (written < 0) return ErrnoError("write the console log `" + path_ + "`");
    size_ += static_cast<uint64_t>(written);
    data.remove_prefix(static_cast<size_t>(written));
  }
  return Ok();
}

}  // namespace hull
