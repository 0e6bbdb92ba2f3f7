// The ttrpc client: callers write their Request frames under one lock and wait
// on their own slot; a reader thread matches Responses to slots by stream id.
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <condition_variable>
#include <mutex>
#include <system_error>
#include <thread>

#include "hull/core/syscall.h"
#include "hull/core/thread.h"
#include "hull/core/transport.h"
#include "ttrpc/ttrpc.h"
#include "ttrpc/ttrpc.pb.h"
#include "wire.h"

namespace hull::ttrpc {
namespace {

constexpr size_t kReadChunk = 64 << 10;
// Go's ttrpc.ErrClosed says this; containerd matches on the code, not the text.
constexpr std::string_view kClosedMessage = "ttrpc: closed";

struct PendingCall {
  bool done = false;
  Result<std::string> result{std::string()};
};

}  // namespace

struct Client::Impl {
  UniqueFd fd;
  UniqueFd wake{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
  std::mutex write_mutex;

  std::mutex mutex;
  std::condition_variable completed;
  std::map<uint32_t, std::shared_ptr<PendingCall>> pending;
  uint32_t next_stream_id = 1;
  bool closed = false;
  std::string close_reason;
  std::atomic<bool> closed_flag{false};

  std::mutex close_mutex;
  std::thread reader;

  void ReadLoop();
  void Complete(uint32_t stream_id, Result<std::string> result);
  // Marks the connection closed and fails every pending call.
  void FailAll(const std::string& reason);
  void Close();
};

void Client::Impl::Complete(uint32_t stream_id, Result<std::string> result) {
  std::lock_guard lock(mutex);
  auto it = pending.find(stream_id);
  if (it == pending.end()) return;  // the caller gave up (timeout) already
  it->second->result = std::move(result);
  it->second->done = true;
  pending.erase(it);
  completed.notify_all();
}

void Client::Impl::FailAll(const std::string& reason) {
  std::lock_guard lock(mutex);
  if (!closed) {
    closed = true;
    close_reason = reason;
  }
  closed_flag.store(true);
  for (auto& [id, call] : pending) {
    call->result =
        MakeError(ErrorCode::kUnavailable, std::string(kClosedMessage) + ": " + close_reason);
    call->done = true;
  }
  pending.clear();
  completed.notify_all();
}

void Client::Impl::ReadLoop() {
  FrameDecoder decoder;
  std::string buffer(kReadChunk, '\0');
  std::string reason = "connection closed by the server";
  for (;;) {
    pollfd fds[2] = {{fd.get(), POLLIN, 0}, {wake.get(), POLLIN, 0}};
    if (::poll(fds, wake ? 2 : 1, -1) < 0) {
      if (errno == EINTR) continue;
      reason = "poll failed";
      break;
    }
    if (wake && (fds[1].revents & POLLIN)) {
      reason = "the client closed the connection";
      break;
    }
    if (fds[0].revents == 0) continue;
    ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      reason = Error::FromErrno(errno, "read").ToString();
      break;
    }
    decoder.Feed(std::string_view(buffer.data(), static_cast<size_t>(n)));
    while (auto frame = decoder.Next()) {
      uint32_t stream_id = frame->header.stream_id;
      if (frame->oversized) {
        Complete(stream_id, MakeError(ErrorCode::kResourceExhausted,
                                      internal::OversizedMessage(frame->header.length)));
        continue;
      }
      if (frame->header.type != static_cast<uint8_t>(MessageType::kResponse)) {
        Complete(stream_id, MakeError(ErrorCode::kInternal, "ttrpc: unknown message type " +
                                                                std::to_string(frame->header.type) +
                                                                " received"));
        continue;
      }
      ::ttrpc::Response response;
      if (!response.ParseFromString(frame->data)) {
        Complete(stream_id,
                 MakeError(ErrorCode::kInternal, "ttrpc: the response envelope does not parse"));
        continue;
      }
      if (response.has_status() && response.status().code() != 0) {
        Complete(stream_id, Error(internal::ErrorCodeFromStatus(response.status().code()),
                                  response.status().message()));
        continue;
      }
      Complete(stream_id, std::move(*response.mutable_payload()));
    }
  }
  FailAll(reason);
}

void Client::Impl::Close() {
  std::lock_guard close_lock(close_mutex);
  closed_flag.store(true);
  {
    std::lock_guard lock(mutex);
    closed = true;
    if (close_reason.empty()) close_reason = "the client closed the connection";
  }
  if (wake) {
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake.get(), &one, sizeof one);
  }
  // Also wakes the reader when there is no eventfd, and a writer stuck on a
  // full socket buffer.
  if (fd) ::shutdown(fd.get(), SHUT_RDWR);
  if (reader.joinable() && reader.get_id() != std::this_thread::get_id()) reader.join();
  FailAll(close_reason);
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Client::~Client() { Close(); }

Result<std::unique_ptr<Client>> Client::Connect(const std::string& socket_path) {
  HULL_TRY(UniqueFd fd, ConnectUnix(socket_path), "ttrpc connect");
  return FromFd(std::move(fd));
}

std::unique_ptr<Client> Client::FromFd(UniqueFd fd) {
  auto impl = std::make_unique<Impl>();
  impl->fd = std::move(fd);
  Impl& state = *impl;
  std::unique_ptr<Client> client(new Client(std::move(impl)));
  // Calls wait with deadlines in poll(), never in a blocking write.
  if (!state.fd || !SetNonBlocking(state.fd.get())) {
    state.FailAll("not a usable socket");
    return client;
  }
  try {
    state.reader = SpawnThread("ttrpc-reader", [&state] { state.ReadLoop(); });
  } catch (const std::system_error& e) {
    state.FailAll(std::string("cannot start the reader thread: ") + e.what());
  }
  return client;
}

Result<std::string> Client::Call(std::string_view service, std::string_view method,
                                 std::string_view payload, std::chrono::milliseconds timeout,
                                 const Metadata& metadata) {
  Impl& impl = *impl_;
  std::string what = "ttrpc call `" + std::string(service) + "/" + std::string(method) + "`";
  using Clock = std::chrono::steady_clock;
  Clock::time_point deadline =
      timeout.count() > 0 ? Clock::now() + timeout : Clock::time_point::max();

  ::ttrpc::Request request;
  request.set_service(std::string(service));
  request.set_method(std::string(method));
  request.set_payload(std::string(payload));
  if (timeout.count() > 0) request.set_timeout_nano(std::chrono::nanoseconds(timeout).count());
  for (const auto& [key, value] : metadata) {
    auto* pair = request.add_metadata();
    pair->set_key(internal::LowerCase(key));
    pair->set_value(value);
  }
  std::string data = request.SerializeAsString();
  // ttrpc >= 1.2 refuses to send what the server would refuse to read.
  if (data.size() > kMaxMessageSize) {
    return Unexpected{
        Error(ErrorCode::kResourceExhausted, internal::OversizedMessage(data.size())).Wrap(what)};
  }

  auto call = std::make_shared<PendingCall>();
  uint32_t stream_id = 0;
  {
    std::lock_guard lock(impl.mutex);
    if (impl.closed) {
      return Unexpected{
          Error(ErrorCode::kUnavailable, std::string(kClosedMessage) + ": " + impl.close_reason)
              .Wrap(what)};
    }
    stream_id = impl.next_stream_id;
    // Odd ids only; after 2^31 calls wrap to 1 (ids of finished calls are free).
    impl.next_stream_id = stream_id >= 0xfffffffdu ? 1 : stream_id + 2;
    impl.pending[stream_id] = call;
  }

  std::string frame = internal::EncodeFrame(stream_id, MessageType::kRequest, data);
  Status sent;
  size_t written = 0;
  {
    std::lock_guard lock(impl.write_mutex);
    sent = internal::SendAll(impl.fd.get(), frame, deadline, impl.wake.get(), written);
  }
  if (!sent) {
    {
      std::lock_guard lock(impl.mutex);
      impl.pending.erase(stream_id);
    }
    // Half a frame on the wire: the server can no longer find the next one.
    if (written > 0) impl.Close();
    ErrorCode code = sent.error().code() == ErrorCode::kDeadlineExceeded
                         ? ErrorCode::kDeadlineExceeded
                         : ErrorCode::kUnavailable;
    return Unexpected{Error(code, sent.error().ToString()).Wrap(what)};
  }

  std::unique_lock lock(impl.mutex);
  if (deadline == Clock::time_point::max()) {
    impl.completed.wait(lock, [&] { return call->done; });
  } else if (!impl.completed.wait_until(lock, deadline, [&] { return call->done; })) {
    impl.pending.erase(stream_id);
    return Unexpected{Error(ErrorCode::kDeadlineExceeded,
                            "deadline exceeded after " + std::to_string(timeout.count()) + " ms")
                          .Wrap(what)};
  }
  if (!call->result) return Unexpected{std::move(call->result).error()};
  return std::move(call->result).value();
}

void Client::Close() { impl_->Close(); }

bool Client::closed() const { return impl_->closed_flag.load(); }

}  // namespace hull::ttrpc
