// QMP (QEMU Machine Protocol): a pure parser/formatter for its wire messages
// and a client that drives one QEMU process over its QMP unix socket.
//
// The wire format, as QEMU 7.2 speaks it: one JSON object per line, each
// terminated by "\r\n". On connect QEMU sends a greeting
//   {"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7},
//            "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}
// and refuses every command (CommandNotFound) until the client has sent
// {"execute": "qmp_capabilities"}. Replies echo the command's "id"; events are
// interleaved with replies at any point (e.g. "STOP" arrives before the reply
// to "stop", "SHUTDOWN" before the reply to "quit").
//
// Everything QEMU sends is treated as untrusted: a compromised QEMU is one
// step away from a hostile guest, so the parser never throws or crashes on
// arbitrary bytes (it has a fuzz target, tests/fuzz/qmp_parser_fuzz.cc).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

#include "hull/core/error.h"
#include "hull/core/fd.h"

namespace hull::qemu {

// The longest line accepted from QEMU, without its "\r\n". The largest reply
// hull may ask for, query-qmp-schema, is about 200 KiB on QEMU 7.2; a line
// longer than this means QEMU is broken or hostile.
inline constexpr size_t kMaxQmpLineBytes = 1 << 20;

// --- messages ---------------------------------------------------------------

struct QmpVersion {
  int64_t major = 0;
  int64_t minor = 0;
  int64_t micro = 0;
};

// The first line QEMU sends on a new connection.
struct QmpGreeting {
  QmpVersion version;
  std::string package;                    // e.g. "Debian 1:7.2+dfsg-7+deb12u18+b3"
  std::vector<std::string> capabilities;  // e.g. {"oob"}
};

// A successful reply: {"return": <value>, "id": "..."}.
struct QmpReturn {
  std::optional<std::string> id;  // absent when the command had no id
  nlohmann::json value;           // often an empty object
};

// A failed reply: {"error": {"class": "...", "desc": "..."}, "id": "..."}.
// QEMU also sends these without an id when it cannot parse a command at all.
struct QmpErrorReply {
  std::optional<std::string> id;
  std::string error_class;  // GenericError, CommandNotFound, DeviceNotFound, ...
  std::string desc;         // human-readable; empty if QEMU sent none
};

// An asynchronous event: {"event": "SHUTDOWN", "data": {...},
// "timestamp": {"seconds": ..., "microseconds": ...}}.
struct QmpEvent {
  std::string name;
  nlohmann::json data = nlohmann::json::object();  // an empty object when QEMU sent none
  // Host wall-clock time at which QEMU emitted the event; 0/0 if absent.
  int64_t seconds = 0;
  int64_t microseconds = 0;
};

using QmpMessage = std::variant<QmpGreeting, QmpReturn, QmpErrorReply, QmpEvent>;

// Parses one line from QEMU. A trailing "\n", "\r\n" or "\r" is ignored.
// Errors (never exceptions):
//   kResourceExhausted  the line is longer than kMaxQmpLineBytes
//   kInvalidArgument    not JSON, not an object, not exactly one of
//                       QMP/return/error/event, or a member of the wrong type
//                       (e.g. "QMP: `return` reply has non-string id").
// hull only sends string ids, so a non-string id is an error, not a match.
Result<QmpMessage> ParseQmpMessage(std::string_view line);

// Formats one command as a single line of JSON followed by "\n":
//   {"execute": "<execute>", "arguments": <arguments>, "id": "<id>"}
// "arguments" is left out when `arguments` is null, "id" when `id` is empty.
// Never throws: invalid UTF-8 in any string is replaced by U+FFFD.
std::string FormatQmpCommand(std::string_view execute, const nlohmann::json& arguments,
                             std::string_view id);

// The hull error code for a QMP error class: CommandNotFound and
// DeviceNotFound -> kNotFound; GenericError and DeviceNotActive ->
// kFailedPrecondition; KVMMissingCap -> kUnimplemented; anything else -> kInternal.
ErrorCode QmpErrorCode(std::string_view error_class);

// --- client -----------------------------------------------------------------

// One QMP connection to one QEMU process.
//
// Threading: every public method is thread-safe. Commands may be issued
// concurrently from many threads; replies are matched to commands by id, so
// they may arrive in any order. One reader thread, owned by the client, reads
// the socket, completes waiting commands and delivers events; it is joined by
// the destructor.
//
// Errors: when the connection closes (QEMU exited, the socket failed, or QEMU
// sent a line longer than kMaxQmpLineBytes), every waiting and later command
// fails with kUnavailable "QMP connection closed". Lines QEMU sends that do
// not parse are logged and skipped.
class QmpClient {
 public:
  // Connects to QEMU's QMP socket at `socket_path`, reads the greeting and
  // negotiates capabilities, all within `timeout`. While the socket does not
  // exist yet or nobody listens on it (ENOENT, ECONNREFUSED), keeps retrying:
  // QEMU creates the socket shortly after it starts.
  // Errors: kDeadlineExceeded if QEMU did not answer in time; the connect or
  // negotiation error otherwise.
  static Result<std::unique_ptr<QmpClient>> Connect(const std::string& socket_path,
                                                    std::chrono::milliseconds timeout);

  // Shuts the socket down and joins the reader thread. No command may be in
  // flight on another thread when the client is destroyed, and the event
  // handler must not destroy the client (its thread cannot join itself).
  ~QmpClient();

  QmpClient(const QmpClient&) = delete;
  QmpClient& operator=(const QmpClient&) = delete;

  // Runs `command` with `arguments` (an object, or null for none) and returns
  // the value of its "return" member.
  // Errors: an error reply becomes an Error with the code from QmpErrorCode()
  // that prints as "QMP `<command>`: <class>: <desc>"; kDeadlineExceeded if no
  // reply came within `timeout` (a late reply is dropped); kUnavailable if the
  // connection is or becomes closed; kFailedPrecondition if called from the
  // event handler (it would wait for a reply that only its own thread can read).
  Result<nlohmann::json> Execute(std::string_view command,
                                 const nlohmann::json& arguments = nullptr,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(5));

  // Sets the function called for every event, or clears it with nullptr.
  // The handler runs on the reader thread, and no replies are read while it
  // runs: it must return quickly, must not throw, and must not call Execute()
  // (which fails there rather than deadlock). Once SetEventHandler returns, the
  // previous handler is not running and will not be called again (unless the
  // caller is that handler, replacing itself). Events are also queued for
  // WaitForEvent() whether or not a handler is set.
  void SetEventHandler(std::function<void(const QmpEvent&)> handler);

  // Returns the oldest received, not yet consumed event called `name`,
  // waiting up to `timeout` for one to arrive, and consumes it. Events that
  // arrived before the call count. The queue keeps the latest
  // kMaxQueuedEvents events; older unconsumed ones are dropped.
  // Errors: kDeadlineExceeded; kUnavailable when the connection has closed and
  // no such event is queued.
  Result<QmpEvent> WaitForEvent(std::string_view name, std::chrono::milliseconds timeout);
  static constexpr size_t kMaxQueuedEvents = 256;

  // False once the connection has closed.
  bool connected() const;
  // The greeting QEMU sent; always set on a client returned by Connect().
  std::optional<QmpGreeting> greeting() const;

  // The run state from query-status: "running", "paused", "shutdown",
  // "prelaunch", "inmigrate", "internal-error", ...
  Result<std::string> QueryStatus(std::chrono::milliseconds timeout = std::chrono::seconds(5));

  // Asks QEMU to exit. QEMU may close the connection before or right after
  // it replies, so a connection that closes after "quit" was sent counts as
  // success. Does not wait for the process to exit; reap it separately.
  Status Quit(std::chrono::milliseconds timeout = std::chrono::seconds(5));

 private:
  struct PendingCommand {
    std::optional<Result<nlohmann::json>> result;
  };

  QmpClient(UniqueFd socket, UniqueFd wake);

  // Execute(), reporting in `*sent` whether the whole command reached the socket.
  Result<nlohmann::json> ExecuteCommand(std::string_view command, const nlohmann::json& arguments,
                                        std::chrono::milliseconds timeout, bool* sent);
  Status Send(std::string_view line, std::chrono::steady_clock::time_point deadline);
  Result<QmpGreeting> WaitForGreeting(std::chrono::steady_clock::time_point deadline);

  void ReaderLoop();
  void HandleLine(std::string_view line);
  void DeliverEvent(QmpEvent event);
  // Marks the connection closed and fails every waiting command.
  void CloseConnection(const std::string& why);

  UniqueFd socket_;
  UniqueFd wake_;  // eventfd: written by the destructor to stop the reader

  // Serializes writers so that concurrent commands never interleave bytes.
  std::mutex write_mutex_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;  // a reply, an event, the greeting, or close
  bool closed_ = false;
  std::string close_reason_;
  std::optional<QmpGreeting> greeting_;
  uint64_t next_id_ = 1;
  std::map<std::string, std::shared_ptr<PendingCommand>, std::less<>> pending_;
  std::deque<QmpEvent> events_;

  // Held while the handler runs, so SetEventHandler can wait it out.
  std::mutex handler_mutex_;
  std::function<void(const QmpEvent&)> handler_;
  // A handler set by the handler itself, installed once it returns.
  std::optional<std::function<void(const QmpEvent&)>> replacement_handler_;

  std::thread reader_;  // last: started after every other member exists
};

}  // namespace hull::qemu
