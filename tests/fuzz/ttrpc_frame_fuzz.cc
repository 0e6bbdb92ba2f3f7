// libFuzzer target for the ttrpc frame decoder and envelope parsing: whatever
// a peer writes to a shim's socket must come out as frames (or be skipped)
// without a crash, a hang or unbounded memory, and parse as a Request or
// Response or fail cleanly.
//
// The first input byte picks a chunk size, so the same stream is decoded both
// whole and in pieces; both must yield the same frames.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ttrpc/ttrpc.h"
#include "ttrpc/ttrpc.pb.h"

namespace {

using hull::ttrpc::Frame;
using hull::ttrpc::FrameDecoder;

std::vector<Frame> DecodeInChunks(std::string_view stream, size_t chunk) {
  FrameDecoder decoder;
  std::vector<Frame> frames;
  while (true) {
    size_t take = std::min(chunk, stream.size());
    decoder.Feed(stream.substr(0, take));
    stream.remove_prefix(take);
    while (auto frame = decoder.Next()) frames.push_back(std::move(*frame));
    if (stream.empty()) break;
  }
  return frames;
}

void CheckFrame(const Frame& frame) {
  if (frame.oversized) {
    if (frame.header.length <= hull::ttrpc::kMaxMessageSize || !frame.data.empty())
      __builtin_trap();
    return;
  }
  if (frame.data.size() != frame.header.length) __builtin_trap();
  if (frame.header.length > hull::ttrpc::kMaxMessageSize) __builtin_trap();
  // Round-trip the header bytes.
  auto encoded = hull::ttrpc::EncodeHeader(frame.header);
  auto decoded = hull::ttrpc::DecodeHeader(encoded);
  if (decoded.length != frame.header.length || decoded.stream_id != frame.header.stream_id ||
      decoded.type != frame.header.type || decoded.flags != frame.header.flags) {
    __builtin_trap();
  }
  if (frame.header.type == static_cast<uint8_t>(hull::ttrpc::MessageType::kRequest)) {
    ::ttrpc::Request request;
    if (request.ParseFromString(frame.data)) {
      // What the server reads from a request before dispatching it.
      size_t total = request.service().size() + request.method().size() + request.payload().size();
      for (const auto& pair : request.metadata()) total += pair.key().size() + pair.value().size();
      if (total > frame.data.size()) __builtin_trap();
      (void)request.timeout_nano();
    }
  } else if (frame.header.type == static_cast<uint8_t>(hull::ttrpc::MessageType::kResponse)) {
    ::ttrpc::Response response;
    if (response.ParseFromString(frame.data)) {
      (void)response.status().code();
      (void)response.status().message().size();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  size_t chunk = static_cast<size_t>(data[0] % 61) + 1;
  std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);

  std::vector<Frame> whole = DecodeInChunks(stream, stream.size() + 1);
  std::vector<Frame> pieces = DecodeInChunks(stream, chunk);
  if (whole.size() != pieces.size()) __builtin_trap();
  for (size_t i = 0; i < whole.size(); ++i) {
    if (whole[i].oversized != pieces[i].oversized || whole[i].data != pieces[i].data ||
        whole[i].header.stream_id != pieces[i].header.stream_id ||
        whole[i].header.length != pieces[i].header.length) {
      __builtin_trap();
    }
    CheckFrame(whole[i]);
  }
  return 0;
}
