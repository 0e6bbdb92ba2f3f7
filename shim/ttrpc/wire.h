// Helpers shared by the ttrpc server and client; private to hull_ttrpc.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "hull/core/error.h"
#include "ttrpc/ttrpc.h"

namespace hull::ttrpc::internal {

// Header plus data, ready for one write.
std::string EncodeFrame(uint32_t stream_id, MessageType type, std::string_view data);

// Go ttrpc's wording, so containerd logs read the same as with a Go shim.
std::string OversizedMessage(uint64_t length);

// A google.rpc status code as an ErrorCode; unknown numbers become kUnknown.
ErrorCode ErrorCodeFromStatus(int32_t code);

std::string LowerCase(std::string_view text);

// Writes all of `data` to a socket (blocking or not) with MSG_NOSIGNAL, so a
// peer that went away is an EPIPE error, never a SIGPIPE. Gives up when
// `deadline` passes (kDeadlineExceeded) or `wake_fd` (if >= 0) becomes
// readable (kCancelled). `written` tells how much went out: a partial frame
// means the stream can no longer be trusted.
Status SendAll(int fd, std::string_view data, std::chrono::steady_clock::time_point deadline,
               int wake_fd, size_t& written);

}  // namespace hull::ttrpc::internal
