// QmpClient: one connection to QEMU's QMP socket, with a reader thread that
// completes commands by id and delivers events.

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include "hull/core/log.h"
#include "hull/core/syscall.h"
#include "hull/core/thread.h"
#include "hull/core/transport.h"
#include "qemu/qmp.h"

namespace hull::qemu {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How long to sleep between connection attempts while QEMU starts up.
constexpr milliseconds kConnectRetryInterval{10};

// Milliseconds left until `deadline` for poll(2), rounded up so that a
// sub-millisecond remainder still waits instead of spinning; 0 when past it.
int PollTimeout(Clock::time_point deadline) {
  auto left = deadline - Clock::now();
  if (left <= Clock::duration::zero()) return 0;
  auto ms = std::chrono::ceil<milliseconds>(left).count();
  return static_cast<int>(std::min<int64_t>(ms, std::numeric_limits<int>::max()));
}

std::string Millis(milliseconds timeout) { return std::to_string(timeout.count()) + " ms"; }

// A loggable excerpt of a line QEMU sent: bounded, printable ASCII only.
std::string Preview(std::string_view line) {
  constexpr size_t kMaxPreview = 200;
  std::string out;
  for (char c : line.substr(0, kMaxPreview)) {
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  if (line.size() > kMaxPreview) out += "...";
  return out;
}

Error ConnectionClosed(const std::string& reason) {
  return Error(ErrorCode::kUnavailable, "QMP connection closed (" + reason + ")");
}

}  // namespace

Result<std::unique_ptr<QmpClient>> QmpClient::Connect(const std::string& socket_path,
                                                      milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  const std::string context = "QMP connect `" + socket_path + "`";
  UniqueFd socket;
  while (true) {
    auto connected = ConnectUnix(socket_path);
    if (connected) {
      socket = std::move(*connected);
      break;
    }
    int err = connected.error().sys_errno();
    if (err != ENOENT && err != ECONNREFUSED) return std::move(connected).error().Wrap(context);
    if (Clock::now() >= deadline) {
      return MakeError(ErrorCode::kDeadlineExceeded,
                       context + ": QEMU was not listening within " + Millis(timeout) +
                           " (last attempt: " + connected.error().ToString() + ")");
    }
    std::this_thread::sleep_for(
        std::min<Clock::duration>(kConnectRetryInterval, deadline - Clock::now()));
  }

  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return Error::FromErrno(errno, "eventfd").Wrap(context);
  std::unique_ptr<QmpClient> client(new QmpClient(std::move(socket), std::move(wake)));

  HULL_CHECK_OK(client->WaitForGreeting(deadline), context);
  // Until capabilities are negotiated QEMU refuses every other command.
  bool sent = false;
  auto remaining = std::max(milliseconds::zero(),
                            std::chrono::duration_cast<milliseconds>(deadline - Clock::now()));
  HULL_CHECK_OK(client->ExecuteCommand("qmp_capabilities", nullptr, remaining, &sent), context);
  return client;
}

QmpClient::QmpClient(UniqueFd socket, UniqueFd wake)
    : socket_(std::move(socket)), wake_(std::move(wake)) {
  reader_ = SpawnThread("qmp-reader", [this] { ReaderLoop(); });
}

QmpClient::~QmpClient() {
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_.get(), &one, sizeof one);
  ::shutdown(socket_.get(), SHUT_RDWR);
  if (reader_.joinable()) reader_.join();
}

Result<QmpGreeting> QmpClient::WaitForGreeting(Clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  changed_.wait_until(lock, deadline, [&] { return greeting_.has_value() || closed_; });
  if (greeting_) return *greeting_;
  if (closed_) return ConnectionClosed(close_reason_).Wrap("wait for the QMP greeting");
  // QEMU serves one QMP client per socket; a second one waits in the backlog.
  return MakeError(ErrorCode::kDeadlineExceeded,
                   "no QMP greeting in time (is another client connected to this socket?)");
}

Result<nlohmann::json> QmpClient::Execute(std::string_view command, const nlohmann::json& arguments,
                                          milliseconds timeout) {
  bool sent = false;
  return ExecuteCommand(command, arguments, timeout, &sent);
}

Result<nlohmann::json> QmpClient::ExecuteCommand(std::string_view command,
                                                 const nlohmann::json& arguments,
                                                 milliseconds timeout, bool* sent) {
  *sent = false;
  const std::string context = "QMP `" + std::string(command) + "`";
  if (std::this_thread::get_id() == reader_.get_id()) {
    return MakeError(ErrorCode::kFailedPrecondition,
                     context + ": cannot run a command from the QMP event handler");
  }
  if (!arguments.is_null() && !arguments.is_object()) {
    return MakeError(ErrorCode::kInvalidArgument, context + ": arguments must be a JSON object");
  }
  const auto deadline = Clock::now() + timeout;

  auto pending = std::make_shared<PendingCommand>();
  std::string id;
  {
    std::lock_guard lock(mutex_);
    if (closed_) return ConnectionClosed(close_reason_).Wrap(context);
    id = "hull-" + std::to_string(next_id_++);
    // Registered before sending: the reply may arrive before we start waiting.
    pending_.emplace(id, pending);
  }

  if (Status status = Send(FormatQmpCommand(command, arguments, id), deadline); !status) {
    std::lock_guard lock(mutex_);
    pending_.erase(id);
    return std::move(status).error().Wrap(context);
  }
  *sent = true;

  std::unique_lock lock(mutex_);
  changed_.wait_until(lock, deadline, [&] { return pending->result.has_value(); });
  if (!pending->result) {
    pending_.erase(id);
    return MakeError(ErrorCode::kDeadlineExceeded,
                     context + ": no reply within " + Millis(timeout));
  }
  Result<nlohmann::json> result = std::move(*pending->result);
  if (!result) return std::move(result).error().Wrap(context);
  return result;
}

Status QmpClient::Send(std::string_view line, Clock::time_point deadline) {
  // A writer stuck behind a QEMU that does not read may hold this past another
  // caller's deadline; commands are small, so that only happens when QEMU hangs.
  std::lock_guard lock(write_mutex_);
  const size_t total = line.size();
  while (!line.empty()) {
    // MSG_NOSIGNAL: QEMU exiting must give EPIPE, not kill us with SIGPIPE.
    ssize_t n =
        RetryEintr([&] { return ::send(socket_.get(), line.data(), line.size(), MSG_NOSIGNAL); });
    if (n >= 0) {
      line.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (errno != EAGAIN) return ErrnoError("send to QEMU");
    pollfd p{socket_.get(), POLLOUT, 0};
    int rc = RetryEintr([&] { return ::poll(&p, 1, PollTimeout(deadline)); });
    if (rc < 0) return ErrnoError("poll QMP socket");
    if (rc == 0) {
      if (line.size() != total) {
        // Half a command is on the wire; nothing sent after it would parse.
        ::shutdown(socket_.get(), SHUT_RDWR);
      }
      return MakeError(ErrorCode::kDeadlineExceeded, "QEMU is not reading its QMP socket");
    }
  }
  return Ok();
}

void QmpClient::ReaderLoop() {
  ::pthread_setname_np(::pthread_self(), "hull-qmp-read");
  std::string buffer;
  size_t scanned = 0;  // bytes of `buffer` known to hold no newline
  std::vector<char> chunk(64 * 1024);
  while (true) {
    pollfd fds[2] = {{socket_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    if (RetryEintr([&] { return ::poll(fds, 2, -1); }) < 0) {
      CloseConnection(std::string("poll failed: ") + std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) {
      CloseConnection("client shut down");
      return;
    }
    ssize_t n = RetryEintr([&] { return ::read(socket_.get(), chunk.data(), chunk.size()); });
    if (n < 0) {
      if (errno == EAGAIN) continue;
      CloseConnection(std::string("read failed: ") + std::strerror(errno));
      return;
    }
    if (n == 0) {
      CloseConnection("QEMU closed the connection");
      return;
    }
    buffer.append(chunk.data(), static_cast<size_t>(n));

    size_t start = 0;
    for (size_t newline; (newline = buffer.find('\n', scanned)) != std::string::npos;) {
      std::string_view line(buffer.data() + start, newline - start);
      // +1 for the '\r' that precedes every '\n' on the wire.
      if (line.size() > kMaxQmpLineBytes + 1) {
        CloseConnection("QEMU sent a line longer than " + std::to_string(kMaxQmpLineBytes) +
                        " bytes");
        return;
      }
      HandleLine(line);
      start = scanned = newline + 1;
    }
    buffer.erase(0, start);
    scanned = buffer.size();
    // Without this, a QEMU that never sends '\n' would grow the buffer forever.
    if (buffer.size() > kMaxQmpLineBytes + 1) {
      CloseConnection("QEMU sent a line longer than " + std::to_string(kMaxQmpLineBytes) +
                      " bytes");
      return;
    }
  }
}

void QmpClient::HandleLine(std::string_view line) {
  if (line == "\r" || line.empty()) return;
  auto parsed = ParseQmpMessage(line);
  if (!parsed) {
    HULL_LOG_WARN("QMP: skipping a malformed line from QEMU ({}): {}", parsed.error().ToString(),
                  Preview(line));
    return;
  }
  QmpMessage& message = *parsed;

  if (auto* greeting = std::get_if<QmpGreeting>(&message)) {
    std::lock_guard lock(mutex_);
    if (greeting_) {
      HULL_LOG_WARN("QMP: ignoring a second greeting from QEMU");
      return;
    }
    greeting_ = std::move(*greeting);
    changed_.notify_all();
    return;
  }
  if (auto* event = std::get_if<QmpEvent>(&message)) {
    DeliverEvent(std::move(*event));
    return;
  }

  std::optional<std::string> id;
  Result<nlohmann::json> result = nlohmann::json();
  if (auto* reply = std::get_if<QmpReturn>(&message)) {
    id = std::move(reply->id);
    result = std::move(reply->value);
  } else {
    auto& error = std::get<QmpErrorReply>(message);
    id = std::move(error.id);
    result = Error(QmpErrorCode(error.error_class), error.error_class + ": " + error.desc);
  }
  if (!id) {
    // QEMU answers without an id only when it could not parse a command.
    HULL_LOG_WARN("QMP: reply without an id: {}", Preview(line));
    return;
  }
  std::lock_guard lock(mutex_);
  auto it = pending_.find(*id);
  if (it == pending_.end()) {
    HULL_LOG_DEBUG("QMP: dropping a reply for `{}`, which nobody waits for", Preview(*id));
    return;
  }
  it->second->result = std::move(result);
  pending_.erase(it);
  changed_.notify_all();
}

void QmpClient::DeliverEvent(QmpEvent event) {
  HULL_LOG_DEBUG("QMP event {}", Preview(event.name));
  {
    std::lock_guard lock(mutex_);
    if (events_.size() >= kMaxQueuedEvents) {
      HULL_LOG_DEBUG("QMP: event queue full, dropping unconsumed event {}",
                     Preview(events_.front().name));
      events_.pop_front();
    }
    events_.push_back(event);
    changed_.notify_all();
  }
  std::lock_guard lock(handler_mutex_);
  if (handler_) handler_(event);
  if (replacement_handler_) {
    handler_ = std::move(*replacement_handler_);
    replacement_handler_.reset();
  }
}

void QmpClient::SetEventHandler(std::function<void(const QmpEvent&)> handler) {
  if (std::this_thread::get_id() == reader_.get_id()) {
    // Called from the handler: handler_mutex_ is ours already, and the running
    // handler must not be destroyed under itself. DeliverEvent installs it.
    replacement_handler_ = std::move(handler);
    return;
  }
  std::lock_guard lock(handler_mutex_);
  handler_ = std::move(handler);
}

Result<QmpEvent> QmpClient::WaitForEvent(std::string_view name, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::unique_lock lock(mutex_);
  while (true) {
    auto it = std::find_if(events_.begin(), events_.end(),
                           [&](const QmpEvent& event) { return event.name == name; });
    if (it != events_.end()) {
      QmpEvent event = std::move(*it);
      events_.erase(it);
      return event;
    }
    if (closed_) {
      return ConnectionClosed(close_reason_).Wrap("wait for QMP event `" + std::string(name) + "`");
    }
    if (Clock::now() >= deadline) {
      return MakeError(ErrorCode::kDeadlineExceeded,
                       "no QMP event `" + std::string(name) + "` within " + Millis(timeout));
    }
    changed_.wait_until(lock, deadline);
  }
}

void QmpClient::CloseConnection(const std::string& why) {
  std::lock_guard lock(mutex_);
  if (closed_) return;
  closed_ = true;
  close_reason_ = why;
  for (auto& [id, pending] : pending_) pending->result = ConnectionClosed(why);
  pending_.clear();
  changed_.notify_all();
  HULL_LOG_DEBUG("QMP connection closed: {}", why);
}

bool QmpClient::connected() const {
  std::lock_guard lock(mutex_);
  return !closed_;
}

std::optional<QmpGreeting> QmpClient::greeting() const {
  std::lock_guard lock(mutex_);
  return greeting_;
}

Result<std::string> QmpClient::QueryStatus(milliseconds timeout) {
  auto reply = Execute("query-status", nullptr, timeout);
  if (!reply) return std::move(reply).error();
  if (reply->is_object()) {
    auto status = reply->find("status");
    if (status != reply->end() && status->is_string()) return status->get<std::string>();
  }
  return MakeError(ErrorCode::kInternal, "QMP `query-status`: reply has no string `status`");
}

Status QmpClient::Quit(milliseconds timeout) {
  bool sent = false;
  auto reply = ExecuteCommand("quit", nullptr, timeout, &sent);
  if (reply) return Ok();
  // QEMU may exit before its reply reaches us; once "quit" is on the wire, a
  // closed connection is the outcome we asked for.
  if (sent && reply.error().code() == ErrorCode::kUnavailable) return Ok();
  return std::move(reply).error();
}

}  // namespace hull::qemu
