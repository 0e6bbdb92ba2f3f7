// The guest console's log on the host, capped: what the guest prints goes to
// `path` until it holds `max_bytes`, then `path` becomes `path`.1 (replacing
// the one before) and a new `path` starts. At most 2 x max_bytes on disk
// whatever the guest prints -- the console is the guest's to write, and it is
// untrusted. Not thread-safe: one reader of the console writes it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "hull/core/error.h"
#include "hull/core/syscall.h"

namespace hull {

class ConsoleLog {
 public:
  // Creates (truncates) `path`, mode 0600.
  static Result<ConsoleLog> Open(std::string path, uint64_t max_bytes);

  // Appends `data`, rotating first when it would not fit.
  Status Append(std::string_view data);

  const std::string& path() const { return path_; }

 private:
  ConsoleLog(std::string path, uint64_t max_bytes, UniqueFd fd)
      : path_(std::move(path)), max_bytes_(max_bytes), fd_(std::move(fd)) {}
  Status Rotate();

  std::string path_;
  uint64_t max_bytes_;
  UniqueFd fd_;
  uint64_t size_ = 0;
};

}  // namespace hull
