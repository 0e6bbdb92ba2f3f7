// ttrpc framing: the 10-byte header and a byte-stream splitter. No I/O here,
// so the fuzzer and the tests drive it with plain strings.
#include <algorithm>
#include <cassert>

#include "ttrpc/ttrpc.h"

namespace hull::ttrpc {
namespace {

void PutBigEndian32(std::string& out, uint32_t value) {
  out.push_back(static_cast<char>((value >> 24) & 0xff));
  out.push_back(static_cast<char>((value >> 16) & 0xff));
  out.push_back(static_cast<char>((value >> 8) & 0xff));
  out.push_back(static_cast<char>(value & 0xff));
}

uint32_t GetBigEndian32(const char* bytes) {
  const auto* b = reinterpret_cast<const unsigned char*>(bytes);
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
}

// Compact the buffer once the consumed prefix is this large, so that many small
// frames in one read do not each move the rest of the buffer.
constexpr size_t kCompactThreshold = 64 << 10;

}  // namespace

std::string EncodeHeader(const FrameHeader& header) {
  std::string out;
  out.reserve(kHeaderSize);
  PutBigEndian32(out, header.length);
  PutBigEndian32(out, header.stream_id);
  out.push_back(static_cast<char>(header.type));
  out.push_back(static_cast<char>(header.flags));
  return out;
}

FrameHeader DecodeHeader(std::string_view bytes) {
  assert(bytes.size() >= kHeaderSize);
  FrameHeader header;
  header.length = GetBigEndian32(bytes.data());
  header.stream_id = GetBigEndian32(bytes.data() + 4);
  header.type = static_cast<uint8_t>(bytes[8]);
  header.flags = static_cast<uint8_t>(bytes[9]);
  return header;
}

void FrameDecoder::Feed(std::string_view bytes) {
  // The data of an oversized frame is dropped as it arrives, never buffered.
  if (skip_remaining_ > 0) {
    size_t skipped = static_cast<size_t>(std::min<uint64_t>(skip_remaining_, bytes.size()));
    skip_remaining_ -= skipped;
    bytes.remove_prefix(skipped);
  }
  if (bytes.empty()) return;
  if (read_offset_ > 0 && (read_offset_ >= kCompactThreshold || read_offset_ == buffer_.size())) {
    buffer_.erase(0, read_offset_);
    read_offset_ = 0;
  }
  buffer_.append(bytes);
}

std::optional<Frame> FrameDecoder::Next() {
  if (pending_) {
    // An oversized frame: reported once all of its data has gone by, so the
    // next frame starts where the sender's does.
    if (skip_remaining_ > 0) return std::nullopt;
    Frame frame;
    frame.header = *pending_;
    frame.oversized = true;
    pending_.reset();
    return frame;
  }
  std::string_view available(buffer_);
  available.remove_prefix(read_offset_);
  if (available.size() < kHeaderSize) return std::nullopt;
  FrameHeader header = DecodeHeader(available);
  if (header.length > kMaxMessageSize) {
    read_offset_ += kHeaderSize;
    available.remove_prefix(kHeaderSize);
    size_t skipped = static_cast<size_t>(std::min<uint64_t>(header.length, available.size()));
    read_offset_ += skipped;
    skip_remaining_ = header.length - skipped;
    pending_ = header;
    return Next();
  }
  if (available.size() - kHeaderSize < header.length) return std::nullopt;
  Frame frame;
  frame.header = header;
  frame.data.assign(available.substr(kHeaderSize, header.length));
  read_offset_ += kHeaderSize + header.length;
  if (read_offset_ == buffer_.size()) {
    buffer_.clear();
    read_offset_ = 0;
  }
  return frame;
}

}  // namespace hull::ttrpc
