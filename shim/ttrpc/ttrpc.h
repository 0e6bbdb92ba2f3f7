// ttrpc 1.1 in C++: the RPC protocol containerd speaks to its shims over a
// unix socket (framing, envelopes, status codes, metadata, timeouts).
//
// Wire facts (containerd/ttrpc v1.1.1, what containerd 1.6 links):
// - every message is a 10-byte header (length u32 BE, stream id u32 BE,
//   type u8, flags u8) and `length` bytes of protobuf;
// - type 1 = Request (ttrpc.Request envelope), 2 = Response (ttrpc.Response);
//   a server ignores other types, a client treats them as an error;
// - the client picks odd stream ids (1, 3, 5, ...); the server answers on the
//   same id, in any order, so one slow call (Wait) never blocks the others;
// - at most 4 MiB of data per message: a larger request is skipped and
//   answered with RESOURCE_EXHAUSTED on its stream id.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hull/core/error.h"
#include "hull/core/fd.h"

namespace hull::ttrpc {

inline constexpr size_t kHeaderSize = 10;
inline constexpr uint32_t kMaxMessageSize = 4u << 20;

enum class MessageType : uint8_t { kRequest = 1, kResponse = 2, kData = 3 };

struct FrameHeader {
  uint32_t length = 0;
  uint32_t stream_id = 0;
  uint8_t type = 0;
  uint8_t flags = 0;
};

// The 10 header bytes for `header`.
std::string EncodeHeader(const FrameHeader& header);
// Reads a header from exactly kHeaderSize bytes.
FrameHeader DecodeHeader(std::string_view bytes);

// One decoded message: header plus data. `oversized` frames carry no data:
// their bytes were skipped, and the receiver answers RESOURCE_EXHAUSTED.
struct Frame {
  FrameHeader header;
  std::string data;
  bool oversized = false;
};

// Splits a byte stream into frames. Pure (no I/O): feed it what read()
// returned, then take frames until it has none. Data of an oversized frame is
// discarded as it arrives, so memory stays bounded by kMaxMessageSize.
class FrameDecoder {
 public:
  void Feed(std::string_view bytes);
  // The next complete frame, or nullopt when more bytes are needed.
  std::optional<Frame> Next();

 private:
  std::string buffer_;
  // Bytes of buffer_ already handed out as frames (compacted lazily).
  size_t read_offset_ = 0;
  uint64_t skip_remaining_ = 0;
  std::optional<FrameHeader> pending_;
};

// Metadata as ttrpc carries it: keys (lower-cased) to values, in order.
using Metadata = std::multimap<std::string, std::string>;

inline constexpr std::string_view kNamespaceKey = "containerd-namespace-ttrpc";

// What a handler knows about the call it serves.
struct CallContext {
  std::string service;
  std::string method;
  Metadata metadata;
  // From the request's timeout_nano; nullopt when the client set none.
  std::optional<std::chrono::steady_clock::time_point> deadline;
  // Becomes true when the client's connection closes (or the server shuts
  // down): a long-running handler (Wait) should give up then.
  std::shared_ptr<const std::atomic<bool>> connection_closed;

  // The containerd namespace of the call ("" if the client sent none).
  std::string Namespace() const;
  // Whether the connection closed or the deadline passed.
  bool Cancelled() const;
};

// A handler gets the serialized request and returns the serialized response,
// or an error whose code becomes the response status (messages are kept).
using Handler = std::function<Result<std::string>(const CallContext&, std::string_view payload)>;

// Serves ttrpc on unix-socket connections. Every request runs on its own
// thread, so handlers may block (Wait) while other calls on the same
// connection go on; responses are written whole, one at a time.
//
// Errors the server produces itself: unknown service or method ->
// UNIMPLEMENTED ("service X" / "method Y"); an envelope that does not parse ->
// INVALID_ARGUMENT; an even stream id -> INVALID_ARGUMENT; a request over
// 4 MiB -> RESOURCE_EXHAUSTED. A connection whose framing is broken (it
// cannot be resynchronised) is closed.
class Server {
 public:
  Server();
  ~Server();  // Shutdown()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Registers before Serve; a second handler for the same name replaces the first.
  void Register(std::string service, std::string method, Handler handler);

  // Called (from the connection's thread) when a connection closes.
  void OnConnectionClosed(std::function<void()> callback);

  // Accepts and serves connections on a listening unix socket (blocking or
  // not) until Shutdown(). Returns once every connection and handler thread
  // has finished.
  Status Serve(UniqueFd listen_fd);

  // Makes Serve return: stops accepting, closes every connection (their
  // handlers see connection_closed) and waits for handler threads. Safe to
  // call from a handler thread: then it does not wait for that thread.
  void Shutdown();

  // Connections open right now.
  size_t connection_count() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A ttrpc client on one connection; calls from many threads at once are
// multiplexed (odd stream ids), and replies are matched by id.
class Client {
 public:
  // Connects to a unix socket path.
  static Result<std::unique_ptr<Client>> Connect(const std::string& socket_path);
  // Takes over an already connected socket.
  static std::unique_ptr<Client> FromFd(UniqueFd fd);
  ~Client();  // Close()
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // One unary call. `timeout` is sent as timeout_nano and also bounds the
  // wait here (DEADLINE_EXCEEDED). A response status != OK comes back as an
  // Error with that code and message. A closed connection -> UNAVAILABLE.
  Result<std::string> Call(std::string_view service, std::string_view method,
                           std::string_view payload, std::chrono::milliseconds timeout,
                           const Metadata& metadata = {});

  // Closes the connection; pending calls fail with UNAVAILABLE.
  void Close();
  bool closed() const;

 private:
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Typed helpers over protobuf messages (any type with SerializeAsString and
// ParseFromArray).
template <typename Request, typename Response>
void RegisterMethod(Server& server, std::string service, std::string method,
                    std::function<Result<Response>(const CallContext&, const Request&)> handler) {
  server.Register(std::move(service), std::move(method),
                  [handler = std::move(handler)](const CallContext& context,
                                                 std::string_view payload) -> Result<std::string> {
                    Request request;
                    if (!request.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
                      // Go ttrpc answers a payload that does not unmarshal with Internal.
                      return MakeError(
                          ErrorCode::kInternal,
                          context.service + "/" + context.method + ": the request does not parse");
                    }
                    auto response = handler(context, request);
                    if (!response) return std::move(response).error();
                    return response->SerializeAsString();
                  });
}

template <typename Response, typename Request>
Result<Response> CallMethod(Client& client, std::string_view service, std::string_view method,
                            const Request& request, std::chrono::milliseconds timeout,
                            const Metadata& metadata = {}) {
  auto payload = client.Call(service, method, request.SerializeAsString(), timeout, metadata);
  if (!payload) return std::move(payload).error();
  Response response;
  if (!response.ParseFromArray(payload->data(), static_cast<int>(payload->size()))) {
    return MakeError(ErrorCode::kInternal, std::string(service) + "/" + std::string(method) +
                                               ": the response does not parse");
  }
  return response;
}

}  // namespace hull::ttrpc
