#include "wire.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>

namespace hull::ttrpc::internal {

std::string EncodeFrame(uint32_t stream_id, MessageType type, std::string_view data) {
  FrameHeader header;
  header.length = static_cast<uint32_t>(data.size());
  header.stream_id = stream_id;
  header.type = static_cast<uint8_t>(type);
  std::string frame = EncodeHeader(header);
  frame.append(data);
  return frame;
}

std::string OversizedMessage(uint64_t length) {
  return "message length " + std::to_string(length) + " exceed maximum message size of " +
         std::to_string(kMaxMessageSize);
}

ErrorCode ErrorCodeFromStatus(int32_t code) {
  if (code < 0 || code > static_cast<int32_t>(ErrorCode::kUnauthenticated))
    return ErrorCode::kUnknown;
  return static_cast<ErrorCode>(code);
}

std::string LowerCase(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) {
    return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  });
  return out;
}

Status SendAll(int fd, std::string_view data, std::chrono::steady_clock::time_point deadline,
               int wake_fd, size_t& written) {
  written = 0;
  while (written < data.size()) {
    ssize_t n =
        ::send(fd, data.data() + written, data.size() - written, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      written += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return ErrnoError("send ttrpc frame");
    // The socket buffer is full: wait for room, the deadline or the wake fd.
    int timeout_ms = -1;
    if (deadline != std::chrono::steady_clock::time_point::max()) {
      auto left =
          std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        return MakeError(ErrorCode::kDeadlineExceeded, "send ttrpc frame: timed out");
      timeout_ms = static_cast<int>(std::min<int64_t>(left.count(), INT_MAX));
    }
    pollfd fds[2] = {{fd, POLLOUT, 0}, {wake_fd, POLLIN, 0}};
    int rc = ::poll(fds, wake_fd >= 0 ? 2 : 1, timeout_ms);
    if (rc < 0 && errno != EINTR) return ErrnoError("poll ttrpc socket");
    if (wake_fd >= 0 && (fds[1].revents & POLLIN)) {
      return MakeError(ErrorCode::kCancelled, "send ttrpc frame: connection closing");
    }
  }
  return Ok();
}

}  // namespace hull::ttrpc::internal
