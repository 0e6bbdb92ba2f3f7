// Tests for the QMP parser, formatter and client: golden lines captured from
// Debian's QEMU 7.2, a scripted in-process QMP server, and one real QEMU.

#include "qemu/qmp.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "hull/core/fd.h"
#include "hull/core/process.h"
#include "hull/core/syscall.h"
#include "hull/core/transport.h"
#include "testlib.h"

namespace hull::qemu {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// Lines captured from `qemu-system-x86_64 -machine none -nodefaults -display none
// -qmp unix:...` (QEMU 7.2.22, Debian 1:7.2+dfsg-7+deb12u18+b3), terminators included.
constexpr std::string_view kRealGreeting =
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, "
    "\"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, \"capabilities\": [\"oob\"]}}\r\n";
constexpr std::string_view kRealCapabilitiesReturn = "{\"return\": {}}\r\n";
constexpr std::string_view kRealQueryStatusReturn =
    "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}, "
    "\"id\": \"1\"}\r\n";
constexpr std::string_view kRealHmpReturn =
    "{\"return\": \"7.2.22Debian 1:7.2+dfsg-7+deb12u18+b3\\r\\n\", \"id\": \"h\"}\r\n";
constexpr std::string_view kRealCommandNotFound =
    "{\"id\": \"2\", \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command "
    "no-such-command has not been found\"}}\r\n";
constexpr std::string_view kRealParseErrorWithoutId =
    "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, invalid keyword "
    "'garbage'\"}}\r\n";
constexpr std::string_view kRealNumericIdReturn =
    "{\"return\": {\"status\": \"running\", \"singlestep\": false, \"running\": true}, "
    "\"id\": 7}\r\n";
constexpr std::string_view kRealShutdownEvent =
    "{\"timestamp\": {\"seconds\": 1795291298, \"microseconds\": 455709}, \"event\": "
    "\"SHUTDOWN\", \"data\": {\"guest\": false, \"reason\": \"host-qmp-quit\"}}\r\n";
constexpr std::string_view kRealStopEvent =
    "{\"timestamp\": {\"seconds\": 1795291296, \"microseconds\": 637478}, \"event\": \"STOP\"}\r\n";

// --- parser -----------------------------------------------------------------

template <typename T>
T ParseAs(std::string_view line) {
  auto parsed = ParseQmpMessage(line);
  EXPECT_TRUE(parsed) << parsed.error().ToString();
  if (!parsed) return T{};
  EXPECT_TRUE(std::holds_alternative<T>(*parsed)) << "variant index " << parsed->index();
  if (!std::holds_alternative<T>(*parsed)) return T{};
  return std::get<T>(std::move(*parsed));
}

TEST(QmpParserTest, ParsesRealGreeting) {
  QmpGreeting greeting = ParseAs<QmpGreeting>(kRealGreeting);
  EXPECT_EQ(greeting.version.major, 7);
  EXPECT_EQ(greeting.version.minor, 2);
  EXPECT_EQ(greeting.version.micro, 22);
  EXPECT_EQ(greeting.package, "Debian 1:7.2+dfsg-7+deb12u18+b3");
  EXPECT_EQ(greeting.capabilities, std::vector<std::string>{"oob"});
}

TEST(QmpParserTest, ParsesGreetingWithoutPackageOrCapabilities) {
  QmpGreeting greeting = ParseAs<QmpGreeting>(
      R"({"QMP": {"version": {"qemu": {"micro": 0, "minor": 0, "major": 9}}}})");
  EXPECT_EQ(greeting.version.major, 9);
  EXPECT_EQ(greeting.package, "");
  EXPECT_TRUE(greeting.capabilities.empty());
}

TEST(QmpParserTest, ParsesReturnWithoutId) {
  QmpReturn reply = ParseAs<QmpReturn>(kRealCapabilitiesReturn);
  EXPECT_FALSE(reply.id.has_value());
  EXPECT_EQ(reply.value, json::object());
}

TEST(QmpParserTest, ParsesReturnWithId) {
  QmpReturn reply = ParseAs<QmpReturn>(kRealQueryStatusReturn);
  ASSERT_TRUE(reply.id.has_value());
  EXPECT_EQ(*reply.id, "1");
  EXPECT_EQ(reply.value["status"], "running");
  EXPECT_EQ(reply.value["running"], true);
}

TEST(QmpParserTest, ParsesNonObjectReturnValue) {
  QmpReturn reply = ParseAs<QmpReturn>(kRealHmpReturn);
  EXPECT_EQ(reply.id, std::optional<std::string>("h"));
  EXPECT_EQ(reply.value, "7.2.22Debian 1:7.2+dfsg-7+deb12u18+b3\r\n");
}

TEST(QmpParserTest, ParsesErrorReplyWithId) {
  QmpErrorReply reply = ParseAs<QmpErrorReply>(kRealCommandNotFound);
  EXPECT_EQ(reply.id, std::optional<std::string>("2"));
  EXPECT_EQ(reply.error_class, "CommandNotFound");
  EXPECT_EQ(reply.desc, "The command no-such-command has not been found");
}

TEST(QmpParserTest, ParsesErrorReplyWithoutId) {
  QmpErrorReply reply = ParseAs<QmpErrorReply>(kRealParseErrorWithoutId);
  EXPECT_FALSE(reply.id.has_value());
  EXPECT_EQ(reply.error_class, "GenericError");
  EXPECT_EQ(reply.desc, "JSON parse error, invalid keyword 'garbage'");
}

TEST(QmpParserTest, ParsesEventWithDataAndTimestamp) {
  QmpEvent event = ParseAs<QmpEvent>(kRealShutdownEvent);
  EXPECT_EQ(event.name, "SHUTDOWN");
  EXPECT_EQ(event.data, json({{"guest", false}, {"reason", "host-qmp-quit"}}));
  EXPECT_EQ(event.seconds, 1795291298);
  EXPECT_EQ(event.microseconds, 455709);
}

TEST(QmpParserTest, EventWithoutDataHasEmptyObject) {
  QmpEvent event = ParseAs<QmpEvent>(kRealStopEvent);
  EXPECT_EQ(event.name, "STOP");
  EXPECT_EQ(event.data, json::object());
  EXPECT_EQ(event.seconds, 1795291296);
  EXPECT_EQ(event.microseconds, 637478);
}

TEST(QmpParserTest, EventWithoutTimestampHasZeroTime) {
  QmpEvent event = ParseAs<QmpEvent>(R"({"event": "RESET"})");
  EXPECT_EQ(event.name, "RESET");
  EXPECT_EQ(event.seconds, 0);
  EXPECT_EQ(event.microseconds, 0);
}

TEST(QmpParserTest, AcceptsEveryLineTerminator) {
  for (std::string_view terminator : {"", "\n", "\r\n", "\r"}) {
    std::string line = std::string(R"({"return": {}, "id": "x"})") + std::string(terminator);
    QmpReturn reply = ParseAs<QmpReturn>(line);
    EXPECT_EQ(reply.id, std::optional<std::string>("x")) << "terminator size " << terminator.size();
  }
}

void ExpectInvalid(std::string_view line, std::string_view message_part,
                   ErrorCode code = ErrorCode::kInvalidArgument) {
  auto parsed = ParseQmpMessage(line);
  ASSERT_FALSE(parsed) << "parsed: " << line;
  EXPECT_EQ(parsed.error().code(), code) << parsed.error().ToString();
  EXPECT_NE(parsed.error().ToString().find(message_part), std::string::npos)
      << "`" << parsed.error().ToString() << "` lacks `" << message_part << "`";
}

TEST(QmpParserTest, RejectsInvalidJson) {
  ExpectInvalid("garbage\r\n", "not valid JSON");
  ExpectInvalid("{\"return\": {}", "not valid JSON");
  ExpectInvalid("{\"return\": {}} {\"return\": {}}", "not valid JSON");
  ExpectInvalid("{\"return\": \"\xff\xfe\"}", "not valid JSON");
  // nlohmann::json alone would stop at the NUL and accept the line.
  ExpectInvalid(std::string_view("{\"return\": {}}\0garbage", 22), "NUL byte");
  ExpectInvalid(std::string_view("\0", 1), "NUL byte");
}

TEST(QmpParserTest, RejectsEmptyLine) {
  ExpectInvalid("", "empty line");
  ExpectInvalid("\r\n", "empty line");
}

TEST(QmpParserTest, RejectsNonObjects) {
  for (std::string_view line : {"[]", "\"return\"", "1", "null", "true", "[{\"return\": {}}]"}) {
    ExpectInvalid(line, "not a JSON object");
  }
}

TEST(QmpParserTest, RejectsMessagesOfNoOrSeveralKinds) {
  ExpectInvalid("{}", "none of");
  ExpectInvalid(R"({"id": "1"})", "none of");
  ExpectInvalid(R"({"return": {}, "error": {"class": "GenericError", "desc": ""}, "id": "1"})",
                "more than one");
  ExpectInvalid(R"({"event": "STOP", "return": {}})", "more than one");
}

TEST(QmpParserTest, RejectsWrongTypes) {
  struct Case {
    std::string_view line;
    std::string_view message;
  };
  const Case cases[] = {
      {kRealNumericIdReturn, "QMP: `return` reply has non-string id"},
      {R"({"return": {}, "id": null})", "`return` reply has non-string id"},
      {R"({"error": {"class": "GenericError"}, "id": ["1"]})", "`error` reply has non-string id"},
      {R"({"error": "GenericError"})", "`error` reply has no error object"},
      {R"({"error": {"desc": "x"}})", "no string `class`"},
      {R"({"error": {"class": 1, "desc": "x"}})", "no string `class`"},
      {R"({"error": {"class": "GenericError", "desc": {}}})", "non-string `desc`"},
      {R"({"event": 1})", "event has non-string name"},
      {R"({"event": "STOP", "data": [1]})", "event `STOP` has non-object `data`"},
      {R"({"event": "STOP", "timestamp": 5})", "non-object `timestamp`"},
      {R"({"event": "STOP", "timestamp": {"seconds": 1}})", "timestamp has no `microseconds`"},
      {R"({"event": "STOP", "timestamp": {"seconds": 1.5, "microseconds": 0}})",
       "`seconds` is not an integer"},
      {R"({"event": "STOP", "timestamp": {"seconds": "1", "microseconds": 0}})",
       "`seconds` is not an integer"},
      {R"({"event": "STOP", "timestamp": {"seconds": 18446744073709551615, "microseconds": 0}})",
       "`seconds` is out of range"},
      {R"({"QMP": []})", "greeting `QMP` is not an object"},
      {R"({"QMP": {"capabilities": []}})", "greeting has no `version` object"},
      {R"({"QMP": {"version": {"package": ""}}})", "no `qemu` object"},
      {R"({"QMP": {"version": {"qemu": {"major": "7", "minor": 2, "micro": 0}}}})",
       "`major` is not an integer"},
      {R"({"QMP": {"version": {"qemu": {"major": 7, "minor": 2}}}})", "has no `micro`"},
      {R"({"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": 1}}})",
       "`package` is not a string"},
      {R"({"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}}, "capabilities": "oob"}})",
       "`capabilities` is not an array"},
      {R"({"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}}, "capabilities": [1]}})",
       "capability is not a string"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.line);
    ExpectInvalid(c.line, c.message);
  }
}

TEST(QmpParserTest, RejectsOversizedLine) {
  // Valid JSON padded with whitespace to exactly the limit still parses...
  std::string line = R"({"return": {}, "id": "big"})";
  line.append(kMaxQmpLineBytes - line.size(), ' ');
  EXPECT_EQ(ParseAs<QmpReturn>(line + "\r\n").id, std::optional<std::string>("big"));
  // ...one byte more does not, before any JSON is parsed.
  ExpectInvalid(line + " ", "exceeds the limit", ErrorCode::kResourceExhausted);
  ExpectInvalid(line + " \r\n", "exceeds the limit", ErrorCode::kResourceExhausted);
}

TEST(QmpParserTest, SurvivesDeepNesting) {
  // Deeply nested input must neither overflow the stack nor be rejected.
  constexpr int kDepth = 100000;
  std::string line = R"({"return": )" + std::string(kDepth, '[') + std::string(kDepth, ']') + "}";
  EXPECT_TRUE(ParseQmpMessage(line));
  ExpectInvalid(std::string(kDepth, '['), "not valid JSON");
}

TEST(QmpParserTest, MapsErrorClassesToCodes) {
  EXPECT_EQ(QmpErrorCode("CommandNotFound"), ErrorCode::kNotFound);
  EXPECT_EQ(QmpErrorCode("DeviceNotFound"), ErrorCode::kNotFound);
  EXPECT_EQ(QmpErrorCode("GenericError"), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(QmpErrorCode("DeviceNotActive"), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(QmpErrorCode("KVMMissingCap"), ErrorCode::kUnimplemented);
  EXPECT_EQ(QmpErrorCode("SomethingNew"), ErrorCode::kInternal);
}

// --- formatter --------------------------------------------------------------

TEST(QmpFormatTest, FormatsBareCommand) {
  EXPECT_EQ(FormatQmpCommand("qmp_capabilities", nullptr, ""),
            "{\"execute\":\"qmp_capabilities\"}\n");
}

TEST(QmpFormatTest, FormatsArgumentsAndId) {
  std::string line = FormatQmpCommand("device_del", json{{"id", "net0"}}, "hull-7");
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  json parsed = json::parse(line);
  EXPECT_EQ(parsed,
            json({{"execute", "device_del"}, {"arguments", {{"id", "net0"}}}, {"id", "hull-7"}}));
}

TEST(QmpFormatTest, StaysOnOneLine) {
  std::string line = FormatQmpCommand("human-monitor-command",
                                      json{{"command-line", "info\nversion\r\n"}}, "a\nb");
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  EXPECT_EQ(line.find('\r'), std::string::npos);
  EXPECT_EQ(json::parse(line)["arguments"]["command-line"], "info\nversion\r\n");
}

TEST(QmpFormatTest, ReplacesInvalidUtf8InsteadOfThrowing) {
  std::string line = FormatQmpCommand("x\xff", json{{"path", "/tmp/\xc3"}}, "id\xfe");
  json parsed = json::parse(line);
  EXPECT_EQ(parsed["execute"], "x\xef\xbf\xbd");
  EXPECT_EQ(parsed["id"], "id\xef\xbf\xbd");
}

// --- a scripted QMP server --------------------------------------------------

using testlib::TempDir;

// The server's end of one QMP connection, driven by a test script.
class FakeConnection {
 public:
  explicit FakeConnection(UniqueFd fd) : fd_(std::move(fd)) {}

  void SendRaw(std::string_view bytes) {
    while (!bytes.empty()) {
      pollfd p{fd_.get(), POLLOUT, 0};
      if (::poll(&p, 1, 5000) <= 0) {
        ADD_FAILURE() << "fake QMP server: client does not read";
        return;
      }
      ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        ADD_FAILURE() << "fake QMP server: send: " << std::strerror(errno);
        return;
      }
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  }
  // Sends one message the way QEMU does, with "\r\n".
  void Send(const json& message) { SendRaw(message.dump() + "\r\n"); }
  void Reply(const json& command, const json& value) {
    Send({{"return", value}, {"id", command["id"]}});
  }

  // The next command from the client, or null on EOF/timeout.
  json ReadCommand(std::chrono::milliseconds timeout = 5s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      if (size_t newline = buffer_.find('\n'); newline != std::string::npos) {
        std::string line = buffer_.substr(0, newline);
        buffer_.erase(0, newline + 1);
        json command = json::parse(line, nullptr, false);
        EXPECT_FALSE(command.is_discarded()) << "client sent invalid JSON: " << line;
        return command;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{fd_.get(), POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return nullptr;
      char chunk[4096];
      ssize_t n = ::read(fd_.get(), chunk, sizeof chunk);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) return nullptr;
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }

  // Reads a command and checks its name; returns it.
  json ExpectCommand(std::string_view name) {
    json command = ReadCommand();
    EXPECT_TRUE(command.is_object()) << "expected `" << name << "`, got " << command.dump();
    if (!command.is_object()) return json::object();
    EXPECT_EQ(command.value("execute", ""), name);
    EXPECT_TRUE(command.contains("id") && command["id"].is_string()) << command.dump();
    return command;
  }

  // What QEMU does on a new connection: greeting, then capabilities negotiation.
  void Handshake() {
    SendRaw(kRealGreeting);
    json command = ExpectCommand("qmp_capabilities");
    EXPECT_FALSE(command.contains("arguments"));
    Reply(command, json::object());
  }

  // True once the client has closed its end.
  bool WaitForClientClose(std::chrono::milliseconds timeout = 5s) {
    return ReadCommand(timeout).is_null();
  }

  void Close() { fd_.reset(); }

 private:
  UniqueFd fd_;
  std::string buffer_;
};

// Listens on a unix socket in a temp dir and runs `script` on the first
// connection, on its own thread. Joined (and the listener closed) on destruction.
class FakeQmpServer {
 public:
  using Script = std::function<void(FakeConnection&)>;

  explicit FakeQmpServer(std::string path) : path_(std::move(path)) {}
  ~FakeQmpServer() { Join(); }

  // Starts listening now, or after `delay` (to test connect retries).
  void Start(Script script, std::chrono::milliseconds delay = 0ms) {
    if (delay == 0ms) Listen();
    thread_ = std::thread([this, script = std::move(script), delay] {
      if (delay > 0ms) {
        std::this_thread::sleep_for(delay);
        Listen();
      }
      if (!listener_) return;
      pollfd p{listener_.get(), POLLIN, 0};
      if (::poll(&p, 1, 10000) <= 0) {
        ADD_FAILURE() << "fake QMP server: nobody connected";
        return;
      }
      auto accepted = AcceptConnection(listener_.get());
      if (!accepted) {
        ADD_FAILURE() << accepted.error().ToString();
        return;
      }
      FakeConnection connection(std::move(*accepted));
      script(connection);
    });
  }

  void Join() {
    if (thread_.joinable()) thread_.join();
  }

  const std::string& path() const { return path_; }

 private:
  void Listen() {
    auto listener = ListenUnix(path_);
    if (!listener) {
      ADD_FAILURE() << listener.error().ToString();
      return;
    }
    listener_ = std::move(*listener);
  }

  std::string path_;
  UniqueFd listener_;
  std::thread thread_;
};

// A one-shot flag a test thread can wait on.
class Notification {
 public:
  void Notify() {
    std::lock_guard lock(mutex_);
    notified_ = true;
    cv_.notify_all();
  }
  bool WaitFor(std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] { return notified_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool notified_ = false;
};

class QmpClientTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()) << "mkdtemp failed"; }

  std::unique_ptr<QmpClient> ConnectOrDie(std::chrono::milliseconds timeout = 5s) {
    auto client = QmpClient::Connect(server_.path(), timeout);
    EXPECT_TRUE(client) << client.error().ToString();
    return client ? std::move(*client) : nullptr;
  }

  TempDir dir_;
  // For a test body to release its server script. A member, not a local, so
  // that it outlives the script's thread even when an assertion returns early.
  Notification step_;
  FakeQmpServer server_{dir_.path() + "/qmp.sock"};
};

TEST_F(QmpClientTest, ConnectReadsGreetingAndNegotiatesCapabilities) {
  server_.Start([](FakeConnection& qemu) {
    qemu.Handshake();
    qemu.WaitForClientClose();
  });
  auto client = ConnectOrDie();
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(client->connected());
  auto greeting = client->greeting();
  ASSERT_TRUE(greeting.has_value());
  EXPECT_EQ(greeting->version.major, 7);
  EXPECT_EQ(greeting->package, "Debian 1:7.2+dfsg-7+deb12u18+b3");
  client.reset();  // lets the server see EOF
}

TEST_F(QmpClientTest, RepliesOutOfOrderReachTheirCommandsAndCloseFailsWaiters) {
  server_.Start([&](FakeConnection& qemu) {
    qemu.Handshake();
    json first = qemu.ReadCommand();
    json second = qemu.ReadCommand();
    ASSERT_TRUE(first.is_object() && second.is_object());
    EXPECT_NE(first["id"], second["id"]);
    // Answer in the opposite order, each with its own command's name.
    for (const json& command : {second, first}) {
      qemu.Reply(command, {{"answer-to", command["execute"]}});
    }
    qemu.SendRaw(kRealShutdownEvent);
    ASSERT_TRUE(step_.WaitFor());
    json third = qemu.ExpectCommand("query-status");
    (void)third;
    qemu.Close();  // QEMU exits without answering
  });
  auto client = ConnectOrDie();
  ASSERT_NE(client, nullptr);

  auto run = [&](std::string name) {
    return std::async(std::launch::async, [&client, name] { return client->Execute(name); });
  };
  auto a = run("query-a");
  auto b = run("query-b");
  auto reply_a = a.get();
  auto reply_b = b.get();
  ASSERT_TRUE(reply_a) << reply_a.error().ToString();
  ASSERT_TRUE(reply_b) << reply_b.error().ToString();
  EXPECT_EQ((*reply_a)["answer-to"], "query-a");
  EXPECT_EQ((*reply_b)["answer-to"], "query-b");

  auto event = client->WaitForEvent("SHUTDOWN", 5s);
  ASSERT_TRUE(event) << event.error().ToString();
  EXPECT_EQ(event->data["reason"], "host-qmp-quit");
  step_.Notify();

  auto status = client->QueryStatus();
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(status.error().ToString().find("QMP connection closed"), std::string::npos)
      << status.error().ToString();
  EXPECT_FALSE(client->connected());

  // Later commands fail at once.
  auto later = client->Execute("query-status");
  ASSERT_FALSE(later);
  EXPECT_EQ(later.error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(later.error().ToString().rfind("QMP `query-status`: QMP connection closed", 0), 0u)
      << later.error().ToString();
}

TEST_F(QmpClientTest, ErrorRepliesBecomeErrors) {
  server_.Start([](FakeConnection& qemu) {
    qemu.Handshake();
    json command = qemu.ExpectCommand("no-such-command");
    qemu.Send({{"id", command["id"]},
               {"error",
                {{"class", "CommandNotFound"},
                 {"desc", "The command no-such-command has not been found"}}}});
    command = qemu.ExpectCommand("query-status");
    EXPECT_EQ(command["arguments"], json({{"bogus", 1}}));
    qemu.Send(
        {{"id", command["id"]},
         {"error", {{"class", "GenericError"}, {"desc", "Parameter 'bogus' is unexpected"}}}});
    qemu.WaitForClientClose();
  });
  auto client = ConnectOrDie();
  ASSERT_NE(client, nullptr);

  auto missing = client->Execute("no-such-command");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(
      missing.error().ToString(),
      "QMP `no-such-command`: CommandNotFound: The command no-such-command has not been found");

  auto generic = client->Execute("query-status", {{"bogus", 1}});
  ASSERT_FALSE(generic);
  EXPECT_EQ(generic.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(generic.error().ToString(),
            "QMP `query-status`: GenericError: Parameter 'bogus' is unexpected");
  EXPECT_TRUE(client->connected());
}

TEST_F(QmpClientTest, RejectsNonObjectArguments) {
  server_.Start([](FakeConnection& qemu) {
    qemu.Handshake();
    qemu.WaitForClientClose();
  });
  auto client = ConnectOrDie();
  ASSERT_NE(client, nullptr);
  auto reply = client->Execute("device_del", json::array({"net0"}));
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(QmpClientTest, SkipsMalformedLines) {
  server_.Start([](FakeConnection& qemu) {
    qemu.Handshake();
    json command = qemu.ExpectCommand("query-status");
    qemu.SendRaw("garbage\r\n");
    qemu.SendRaw("\r\n");
    qemu.SendRaw("[1, 2]\r\n");
    qemu.SendRaw("{\"return\": {}, \"id\": 5}\r\n");
    qemu.SendRaw("{\"return\": {\"status\": \"wrong\"}, \"id\": \"not-ours\"}\r\n");
    qemu.SendRaw(kRealParseErrorWithoutId);
    qemu.SendRaw(kRealGreeting);  // a second greeting is ignored
    qemu.SendRaw("{\"return\": \"\xff\"}\r\n");
    // A reply split across writes still arrives whole.
    std::string reply =
        json({{"return", {{"status", "paused"}}}, {"id", command["id"]}}).dump() + "\r\n";
    qemu.SendRaw(reply.substr(0, 7));
    std::this_thread::sleep_for(20ms);
    qemu.SendRaw(reply.substr(7));
    qemu.WaitForClientClose();
  });
  auto client = ConnectOrDie();
  ASSERT_NE(client, nullptr);
  auto status = client->QueryStatus();
  ASSERT_TRUE(status) << status.error().ToString();
  EXPECT_EQ(*status, "paused");
  EXPECT_TRUE(client->connected());
}

TEST_F(QmpClientTest, QueryStatusWithoutStatusIsAnError) {
  server_.Start([](FakeConnection& qemu) {
    qemu.Handshake();
    qemu.Reply(qemu.ExpectCommand("query-status"), {{"running", true}});
    qemu.WaitForClientClose();
  });
  auto client = ConnectOrDie();
  ASSERT_NE(client, nullptr);
  auto status = client->QueryStatus();
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code(), ErrorCode::kInternal);
}

TEST_F(QmpClientTest, OversizedLineClosesTheConnection) {
  server_.Start([](FakeConnection& qemu) {
    qemu.Handshake();
    qemu.ExpectCommand("query-status");
    // No newline ever: the client must give up rather than buffer forever.
    qemu.SendRaw(std::string(kMaxQmpLineBytes + 2, ' '));
    qemu.WaitForClientClose();
  });
  auto client = ConnectOrDie();
  ASSERT_NE(client, nullptr);
  auto status = client->Execute("query-status");
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code(), ErrorCode::kUnavailable);
  EXPECT_NE(status.error().ToString().find("longer than"), std::string::npos)
      << status.error().ToString();
  EXPECT_FALSE(client->connected());
}

TEST_F(QmpClientTest, EventsAreQueuedAndHandedToTheHandler) {
  std::mutex mutex;
  std::vector<std::string> handled;
  Notification two_handled;
  server_.Start([](FakeConnection& qemu) {
    qemu.Handshake();
    qemu.Reply(qemu.ExpectCommand("stop"), json::object());
    qemu.SendRaw(kRealStopEvent);
    qemu.Send({{"event", "RESUME"}, {"timestamp", {{"seconds", 3}, {"microseconds", 4}}}});
    qemu.WaitForClientClose();
  });
  auto client = ConnectOrDie();
  ASSERT_NE(client, nullptr);
  client->SetEventHandler([&](const QmpEvent& event) {
    std::lock_guard lock(mutex);
    handled.push_back(event.name);
    if (handled.size() == 2) two_handled.Notify();
  });
  ASSERT_TRUE(client->Execute("stop"));

  // RESUME is found although STOP came first; STOP stays queued.
  auto resume = client->WaitForEvent("RESUME", 5s);
  ASSERT_TRUE(resume) << resume.error().ToString();
  EXPECT_EQ(resume->seconds, 3);
  EXPECT_EQ(resume->microseconds, 4);
  auto stop = client->WaitForEvent("STOP", 0ms);
  ASSERT_TRUE(stop) << stop.error().ToString();
  EXPECT_EQ(stop->seconds, 1795291296);

  // Consumed events are gone.
  auto again = client->WaitForEvent("STOP", 50ms);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::kDeadlineExceeded);

  ASSERT_TRUE(two_handled.WaitFor());
  client->SetEventHandler(nullptr);
  std::lock_guard lock(mutex);
  EXPECT_EQ(handled, (std::vector<std::string>{"STOP", "RESUME"}));
}

TEST_F(QmpClientTest, QueuedEventsOutliveTheConnection) {
  server_.Start([](FakeConnection& qemu) {
    qemu.Handshake();
    qemu.SendRaw(kRealShutdownEvent);
    qemu.Close();
  });
  auto client = ConnectOrDie();
  ASSERT_NE(client, nullptr);
  auto shutdown = client->WaitForEvent("SHUTDOWN", 5s);
  ASSERT_TRUE(shutdown) << shutdown.error().ToString();
  auto other = client->WaitForEvent("RESET", 5s);
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code(), ErrorCode::kUnavailable);
}

TEST_F(QmpClientTest, EventHandlerCannotRunCommands) {
  std::promise<Result<json>> from_handler;
  std::atomic<int> calls{0};
  server_.Start([](FakeConnection& qemu) {
    qemu.Handshake();
    qemu.Reply(qemu.ExpectCommand("stop"), json::object());
    qemu.SendRaw(kRealStopEvent);
    qemu.SendRaw(kRealStopEvent);
    qemu.WaitForClientClose();
  });
  auto client = ConnectOrDie();
  ASSERT_NE(client, nullptr);
  QmpClient* raw = client.get();
  client->SetEventHandler([&, raw](const QmpEvent&) {
    ++calls;
    from_handler.set_value(raw->Execute("query-status"));
    raw->SetEventHandler(nullptr);  // replacing itself must not deadlock
  });
  ASSERT_TRUE(client->Execute("stop"));  // the events follow the handler
  auto future = from_handler.get_future();
  ASSERT_EQ(future.wait_for(5s), std::future_status::ready);
  auto reply = future.get();
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code(), ErrorCode::kFailedPrecondition);
  // The second STOP reaches the queue but not the removed handler.
  ASSERT_TRUE(client->WaitForEvent("STOP", 5s));
  ASSERT_TRUE(client->WaitForEvent("STOP", 5s));
  EXPECT_EQ(calls.load(), 1);
}

TEST_F(QmpClientTest, TimedOutCommandDropsItsLateReply) {
  server_.Start([&](FakeConnection& qemu) {
    qemu.Handshake();
    json slow = qemu.ExpectCommand("slow");
    ASSERT_TRUE(step_.WaitFor());
    qemu.Reply(slow, "late");
    json fast = qemu.ExpectCommand("fast");
    qemu.Reply(fast, "on time");
    qemu.WaitForClientClose();
  });
  auto client = ConnectOrDie();
  ASSERT_NE(client, nullptr);
  auto start = std::chrono::steady_clock::now();
  auto slow = client->Execute("slow", nullptr, 100ms);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 100ms);
  ASSERT_FALSE(slow);
  EXPECT_EQ(slow.error().code(), ErrorCode::kDeadlineExceeded);
  step_.Notify();
  auto fast = client->Execute("fast");
  ASSERT_TRUE(fast) << fast.error().ToString();
  EXPECT_EQ(*fast, "on time");
  client.reset();
}

TEST_F(QmpClientTest, QuitSucceedsWhenQemuClosesBeforeReplying) {
  server_.Start([](FakeConnection& qemu) {
    qemu.Handshake();
    qemu.ExpectCommand("quit");
    qemu.SendRaw(kRealShutdownEvent);
    qemu.Close();
  });
  auto client = ConnectOrDie();
  ASSERT_NE(client, nullptr);
  auto quit = client->Quit();
  EXPECT_TRUE(quit) << quit.error().ToString();
  EXPECT_TRUE(client->WaitForEvent("SHUTDOWN", 5s));
}

TEST_F(QmpClientTest, QuitSucceedsWithAReply) {
  server_.Start([](FakeConnection& qemu) {
    qemu.Handshake();
    qemu.Reply(qemu.ExpectCommand("quit"), json::object());
    qemu.Close();
  });
  auto client = ConnectOrDie();
  ASSERT_NE(client, nullptr);
  auto quit = client->Quit();
  EXPECT_TRUE(quit) << quit.error().ToString();
}

TEST_F(QmpClientTest, QuitFailsWhenTheConnectionWasAlreadyClosed) {
  server_.Start([](FakeConnection& qemu) {
    qemu.Handshake();
    qemu.Close();
  });
  auto client = ConnectOrDie();
  ASSERT_NE(client, nullptr);
  server_.Join();
  for (int i = 0; i < 500 && client->connected(); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_FALSE(client->connected());
  auto quit = client->Quit();
  ASSERT_FALSE(quit);
  EXPECT_EQ(quit.error().code(), ErrorCode::kUnavailable);
}

TEST_F(QmpClientTest, ConnectRetriesUntilTheSocketAppears) {
  server_.Start(
      [](FakeConnection& qemu) {
        qemu.Handshake();
        qemu.WaitForClientClose();
      },
      /*delay=*/200ms);
  auto client = ConnectOrDie(10s);
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(client->greeting().has_value());
}

TEST_F(QmpClientTest, ConnectTimesOutWhenNobodyListens) {
  auto start = std::chrono::steady_clock::now();
  auto client = QmpClient::Connect(dir_.path() + "/absent.sock", 100ms);
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code(), ErrorCode::kDeadlineExceeded);
  EXPECT_NE(client.error().ToString().find("ENOENT"), std::string::npos)
      << client.error().ToString();
  // It waited out its timeout; no upper bound, which load would stretch.
  EXPECT_GE(elapsed, 100ms);
}

TEST_F(QmpClientTest, ConnectFailsFastOnAnUnusablePath) {
  auto client = QmpClient::Connect(dir_.path() + "/" + std::string(200, 'x'), 5s);
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code(), ErrorCode::kInvalidArgument);
}

TEST_F(QmpClientTest, ConnectTimesOutWithoutGreeting) {
  server_.Start([](FakeConnection& qemu) { qemu.WaitForClientClose(); });
  auto client = QmpClient::Connect(server_.path(), 200ms);
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code(), ErrorCode::kDeadlineExceeded);
}

TEST_F(QmpClientTest, ConnectFailsWhenQemuHangsUpBeforeGreeting) {
  server_.Start([](FakeConnection& qemu) { qemu.Close(); });
  auto client = QmpClient::Connect(server_.path(), 5s);
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code(), ErrorCode::kUnavailable);
}

TEST_F(QmpClientTest, ConnectFailsWhenCapabilitiesAreRefused) {
  server_.Start([](FakeConnection& qemu) {
    qemu.SendRaw(kRealGreeting);
    json command = qemu.ExpectCommand("qmp_capabilities");
    qemu.Send({{"id", command["id"]},
               {"error",
                {{"class", "CommandNotFound"},
                 {"desc", "Capabilities negotiation is already complete, command ignored"}}}});
    qemu.WaitForClientClose();
  });
  auto client = QmpClient::Connect(server_.path(), 5s);
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(client.error().ToString().find("qmp_capabilities"), std::string::npos);
}

TEST_F(QmpClientTest, DestructorReturnsWhileQemuKeepsTheConnectionOpen) {
  server_.Start([&](FakeConnection& qemu) {
    qemu.Handshake();
    EXPECT_TRUE(step_.WaitFor(10s));
    EXPECT_TRUE(qemu.WaitForClientClose());
  });
  auto client = ConnectOrDie();
  ASSERT_NE(client, nullptr);
  // The fake keeps the connection open until step_ is notified, which happens
  // only after reset() returns: a destructor that waited for QEMU to close
  // would hold the fake in step_.WaitFor until it fails. No clock needed.
  client.reset();
  step_.Notify();
}

// --- the real QEMU ----------------------------------------------------------

std::string FindInPath(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  size_t begin = 0;
  while (begin <= dirs.size()) {
    size_t end = dirs.find(':', begin);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = dirs.substr(begin, end - begin) + "/" + program;
    if (end > begin && IsExecutable(candidate)) return candidate;
    begin = end + 1;
  }
  return "";
}

TEST(QmpRealQemuTest, TalksToQemu) {
  const std::string qemu = FindInPath("qemu-system-x86_64");
  if (qemu.empty()) GTEST_SKIP() << "qemu-system-x86_64 is not installed (not in PATH)";
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string socket_path = dir.path() + "/qmp.sock";

  SpawnOptions options;
  options.argv = {qemu,
                  "-machine",
                  "none",
                  "-nodefaults",
                  "-no-user-config",
                  "-display",
                  "none",
                  "-qmp",
                  "unix:" + socket_path + ",server=on,wait=off"};
  options.stderr_path = dir.path() + "/qemu.log";
  auto child = Child::Spawn(options);
  ASSERT_TRUE(child) << child.error().ToString();
  // The Child is destroyed before `dir`: it kills and reaps QEMU on any early return.

  auto connected = QmpClient::Connect(socket_path, 10s);
  ASSERT_TRUE(connected) << connected.error().ToString();
  QmpClient& client = **connected;
  auto greeting = client.greeting();
  ASSERT_TRUE(greeting.has_value());
  EXPECT_GE(greeting->version.major, 1);
  EXPECT_FALSE(greeting->package.empty());

  auto status = client.QueryStatus();
  ASSERT_TRUE(status) << status.error().ToString();
  EXPECT_EQ(*status, "running");

  ASSERT_TRUE(client.Execute("stop"));
  EXPECT_TRUE(client.WaitForEvent("STOP", 5s));
  status = client.QueryStatus();
  ASSERT_TRUE(status) << status.error().ToString();
  EXPECT_EQ(*status, "paused");
  ASSERT_TRUE(client.Execute("cont"));
  EXPECT_TRUE(client.WaitForEvent("RESUME", 5s));

  auto missing = client.Execute("no-such-command");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(missing.error().ToString().find("CommandNotFound"), std::string::npos)
      << missing.error().ToString();

  auto no_device = client.Execute("device_del", {{"id", "nope"}});
  ASSERT_FALSE(no_device);
  EXPECT_EQ(no_device.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(no_device.error().ToString().find("DeviceNotFound"), std::string::npos);

  auto bad_argument = client.Execute("query-status", {{"bogus", 1}});
  ASSERT_FALSE(bad_argument);
  EXPECT_EQ(bad_argument.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(bad_argument.error().ToString().find("GenericError"), std::string::npos);

  auto quit = client.Quit();
  ASSERT_TRUE(quit) << quit.error().ToString();
  auto shutdown = client.WaitForEvent("SHUTDOWN", 5s);
  ASSERT_TRUE(shutdown) << shutdown.error().ToString();
  EXPECT_EQ(shutdown->data["reason"], "host-qmp-quit");

  auto exited = child->WaitFor(10s);
  ASSERT_TRUE(exited) << exited.error().ToString();
  ASSERT_TRUE(exited->has_value()) << "QEMU did not exit after quit";
  EXPECT_TRUE((*exited)->success()) << (*exited)->ToString();

  for (int i = 0; i < 500 && client.connected(); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_FALSE(client.connected());
  auto after = client.Execute("query-status");
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error().code(), ErrorCode::kUnavailable);
}

}  // namespace
}  // namespace hull::qemu
