// The ttrpc server: one reader thread per connection, one thread per request.
//
// Lifetime rules that keep Shutdown-from-a-handler safe:
// - a connection's reader closes its fd only after every handler thread of
//   that connection has finished, so a handler can always write its reply;
// - handler threads are detached and touch only their Connection (held by
//   shared_ptr) after the handler returns, so Serve may return and the Server
//   go away as soon as the last of them has signalled it is done.
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <condition_variable>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>

#include "hull/core/syscall.h"
#include "hull/core/thread.h"
#include "ttrpc/ttrpc.h"
#include "ttrpc/ttrpc.pb.h"
#include "wire.h"

namespace hull::ttrpc {
namespace {

// Set on the threads a server runs code on (connection readers, handlers), so
// Shutdown called from there does not wait for itself.
thread_local const void* current_server = nullptr;

// A peer that stops reading cannot hold a reply (and Shutdown) forever.
constexpr auto kSendTimeout = std::chrono::seconds(30);
constexpr size_t kReadChunk = 64 << 10;

struct Connection {
  UniqueFd fd;
  std::shared_ptr<std::atomic<bool>> closed = std::make_shared<std::atomic<bool>>(false);
  std::mutex write_mutex;

  std::mutex mutex;
  std::condition_variable idle;
  size_t active_handlers = 0;

  std::atomic<bool> finished{false};
  std::thread reader;

  // Writes one whole Response frame; replies of concurrent handlers never
  // interleave. A frame cut off halfway breaks the stream, so the connection
  // is shut down then.
  void SendResponse(uint32_t stream_id, ::ttrpc::Response& response) {
    std::string data = response.SerializeAsString();
    if (data.size() > kMaxMessageSize) {
      response.clear_payload();
      response.mutable_status()->set_code(static_cast<int32_t>(ErrorCode::kResourceExhausted));
      response.mutable_status()->set_message(internal::OversizedMessage(data.size()));
      data = response.SerializeAsString();
    }
    std::string frame = internal::EncodeFrame(stream_id, MessageType::kResponse, data);
    std::lock_guard lock(write_mutex);
    size_t written = 0;
    auto sent = internal::SendAll(fd.get(), frame, std::chrono::steady_clock::now() + kSendTimeout,
                                  -1, written);
    if (!sent) ::shutdown(fd.get(), SHUT_RDWR);
  }

  void SendStatus(uint32_t stream_id, ErrorCode code, std::string message) {
    ::ttrpc::Response response;
    response.mutable_status()->set_code(static_cast<int32_t>(code));
    response.mutable_status()->set_message(std::move(message));
    SendResponse(stream_id, response);
  }
};

}  // namespace

struct Server::Impl {
  mutable std::mutex mutex;
  std::condition_variable serve_done;
  std::map<std::string, std::map<std::string, Handler, std::less<>>, std::less<>> services;
  std::function<void()> on_connection_closed;
  bool shutting_down = false;
  bool serving = false;
  std::vector<std::shared_ptr<Connection>> connections;
  std::atomic<size_t> open_connections{0};
  // Written once by Shutdown and never drained: every poll sees it from then on.
  UniqueFd wake{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};

  void Wake() {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake.get(), &one, sizeof one);
  }

  void ServeConnection(const std::shared_ptr<Connection>& connection);
  void HandleFrame(const std::shared_ptr<Connection>& connection, Frame frame);
  void ReapFinishedLocked();
};

namespace {

void RunHandler(const std::shared_ptr<Connection>& connection, const void* server, Handler& handler,
                const CallContext& context, const std::string& payload, uint32_t stream_id) {
  current_server = server;
  Result<std::string> result = [&]() -> Result<std::string> {
    try {
      return handler(context, payload);
    } catch (const std::exception& e) {
      return MakeError(ErrorCode::kInternal,
                       context.service + "/" + context.method + ": " + e.what());
    }
  }();
  // The handler's captures go before the connection is marked idle, after
  // which the server (and what the handler refers to) may be destroyed.
  handler = nullptr;
  ::ttrpc::Response response;
  auto* status = response.mutable_status();  // present even on success, like Go's `0a 00`
  if (result) {
    response.set_payload(std::move(*result));
  } else {
    ErrorCode code = result.error().code();
    // An "error" carrying OK would read as success with an empty reply.
    status->set_code(static_cast<int32_t>(code == ErrorCode::kOk ? ErrorCode::kUnknown : code));
    status->set_message(result.error().ToString());
  }
  connection->SendResponse(stream_id, response);
  current_server = nullptr;
}

}  // namespace

void Server::Impl::HandleFrame(const std::shared_ptr<Connection>& connection, Frame frame) {
  uint32_t stream_id = frame.header.stream_id;
  // The checks and their order follow ttrpc v1.1.1 server.go.
  if (frame.oversized) {
    connection->SendStatus(stream_id, ErrorCode::kResourceExhausted,
                           internal::OversizedMessage(frame.header.length));
    return;
  }
  if (frame.header.type != static_cast<uint8_t>(MessageType::kRequest)) return;  // future compat
  ::ttrpc::Request request;
  if (!request.ParseFromString(frame.data)) {
    connection->SendStatus(stream_id, ErrorCode::kInvalidArgument,
                           "unmarshal request error: the envelope does not parse");
    return;
  }
  if (stream_id % 2 != 1) {
    connection->SendStatus(stream_id, ErrorCode::kInvalidArgument,
                           "StreamID must be odd for client initiated streams");
    return;
  }

  Handler handler;
  std::string unimplemented;
  {
    std::lock_guard lock(mutex);
    auto service = services.find(request.service());
    if (service == services.end()) {
      unimplemented = "service " + request.service();
    } else if (auto method = service->second.find(request.method());
               method == service->second.end()) {
      unimplemented = "method " + request.method();
    } else {
      handler = method->second;
    }
  }
  // Replies go out without the server lock: a slow peer must not stall others.
  if (!unimplemented.empty()) {
    connection->SendStatus(stream_id, ErrorCode::kUnimplemented, std::move(unimplemented));
    return;
  }

  CallContext context;
  context.service = request.service();
  context.method = request.method();
  for (const auto& pair : request.metadata())
    context.metadata.emplace(internal::LowerCase(pair.key()), pair.value());
  if (request.timeout_nano() > 0) {
    context.deadline =
        std::chrono::steady_clock::now() + std::chrono::nanoseconds(request.timeout_nano());
  }
  context.connection_closed = connection->closed;

  {
    std::lock_guard lock(connection->mutex);
    ++connection->active_handlers;
  }
  try {
    SpawnThread("ttrpc-call", [connection, server = static_cast<const void*>(this),
                               handler = std::move(handler), context = std::move(context),
                               payload = std::move(*request.mutable_payload()),
                               stream_id]() mutable {
      RunHandler(connection, server, handler, context, payload, stream_id);
      std::lock_guard lock(connection->mutex);
      --connection->active_handlers;
      connection->idle.notify_all();
    }).detach();
  } catch (const std::system_error& e) {
    {
      std::lock_guard lock(connection->mutex);
      --connection->active_handlers;
    }
    connection->SendStatus(stream_id, ErrorCode::kResourceExhausted,
                           std::string("cannot start a handler thread: ") + e.what());
  }
}

void Server::Impl::ServeConnection(const std::shared_ptr<Connection>& connection) {
  current_server = this;
  FrameDecoder decoder;
  std::string buffer(kReadChunk, '\0');
  for (;;) {
    pollfd fds[2] = {{connection->fd.get(), POLLIN, 0}, {wake.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents & POLLIN) break;
    if (fds[0].revents == 0) continue;
    ssize_t n = ::read(connection->fd.get(), buffer.data(), buffer.size());
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      break;
    }
    decoder.Feed(std::string_view(buffer.data(), static_cast<size_t>(n)));
    while (auto frame = decoder.Next()) HandleFrame(connection, std::move(*frame));
  }

  // Handlers see the close; their replies may still go out (a Shutdown RPC's
  // does) until the last of them is done.
  connection->closed->store(true);
  {
    std::unique_lock lock(connection->mutex);
    connection->idle.wait(lock, [&] { return connection->active_handlers == 0; });
  }
  ::shutdown(connection->fd.get(), SHUT_RDWR);
  connection->fd.reset();
  open_connections.fetch_sub(1);
  std::function<void()> callback;
  {
    std::lock_guard lock(mutex);
    callback = on_connection_closed;
  }
  if (callback) callback();
  connection->finished.store(true);
  current_server = nullptr;
}

void Server::Impl::ReapFinishedLocked() {
  std::erase_if(connections, [](const std::shared_ptr<Connection>& connection) {
    if (!connection->finished.load()) return false;
    if (connection->reader.joinable()) connection->reader.join();
    return true;
  });
}

Server::Server() : impl_(std::make_unique<Impl>()) {}

Server::~Server() { Shutdown(); }

void Server::Register(std::string service, std::string method, Handler handler) {
  std::lock_guard lock(impl_->mutex);
  impl_->services[std::move(service)][std::move(method)] = std::move(handler);
}

void Server::OnConnectionClosed(std::function<void()> callback) {
  std::lock_guard lock(impl_->mutex);
  impl_->on_connection_closed = std::move(callback);
}

Status Server::Serve(UniqueFd listen_fd) {
  Impl& impl = *impl_;
  if (!impl.wake) return ErrnoError("ttrpc serve: eventfd");
  {
    std::lock_guard lock(impl.mutex);
    if (impl.serving)
      return MakeError(ErrorCode::kFailedPrecondition, "ttrpc serve: already serving");
    if (impl.shutting_down) return Ok();
    impl.serving = true;
  }
  // accept() must not block after poll() said a connection was there: the
  // client may have gone already.
  Status result = SetNonBlocking(listen_fd.get());
  while (result) {
    pollfd fds[2] = {{listen_fd.get(), POLLIN, 0}, {impl.wake.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      result = ErrnoError("ttrpc serve: poll");
      break;
    }
    if (fds[1].revents & POLLIN) break;
    if (fds[0].revents & (POLLERR | POLLNVAL)) {
      result = MakeError(ErrorCode::kInternal, "ttrpc serve: the listening socket failed");
      break;
    }
    if ((fds[0].revents & POLLIN) == 0) continue;
    UniqueFd fd(::accept4(listen_fd.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd) {
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ECONNABORTED ||
          err == EPROTO)
        continue;
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        // Out of fds or memory: transient, as Go's server treats it.
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      result = ErrnoError("ttrpc serve: accept", err);
      break;
    }
    auto connection = std::make_shared<Connection>();
    connection->fd = std::move(fd);
    std::lock_guard lock(impl.mutex);
    impl.ReapFinishedLocked();
    if (impl.shutting_down) break;
    impl.open_connections.fetch_add(1);
    try {
      connection->reader =
          SpawnThread("ttrpc-conn", [&impl, connection] { impl.ServeConnection(connection); });
      impl.connections.push_back(std::move(connection));
    } catch (const std::system_error&) {
      impl.open_connections.fetch_sub(1);  // dropping `connection` closes it
    }
  }
  listen_fd.reset();

  // Stop every connection (also when accept failed) and wait for them.
  std::vector<std::shared_ptr<Connection>> connections;
  {
    std::lock_guard lock(impl.mutex);
    impl.shutting_down = true;
    connections = impl.connections;
  }
  impl.Wake();
  for (auto& connection : connections) {
    connection->closed->store(true);
    if (connection->reader.joinable()) connection->reader.join();
  }
  {
    std::lock_guard lock(impl.mutex);
    impl.connections.clear();
    impl.serving = false;
  }
  impl.serve_done.notify_all();
  return result;
}

void Server::Shutdown() {
  Impl& impl = *impl_;
  {
    std::lock_guard lock(impl.mutex);
    impl.shutting_down = true;
    for (auto& connection : impl.connections) connection->closed->store(true);
  }
  impl.Wake();
  if (current_server == &impl) return;  // Serve finishes once this thread is done
  std::unique_lock lock(impl.mutex);
  impl.serve_done.wait(lock, [&] { return !impl.serving; });
}

size_t Server::connection_count() const { return impl_->open_connections.load(); }

}  // namespace hull::ttrpc
