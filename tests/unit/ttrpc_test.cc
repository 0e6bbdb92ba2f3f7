// Tests for hull's ttrpc: the framing against the reference bytes, the frame
// decoder, and a real server and client talking over unix sockets in a temp
// dir. Wire-level checks use a raw socket, so what is asserted is exactly
// what containerd would see.

#include "ttrpc/ttrpc.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "containerd/task/v2/shim.pb.h"
#include "hull/core/fd.h"
#include "hull/core/syscall.h"
#include "hull/core/transport.h"
#include "ttrpc/ttrpc.pb.h"

namespace hull::ttrpc {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kTask = "containerd.task.v2.Task";

std::string Bytes(std::initializer_list<int> values) {
  std::string out;
  for (int v : values) out.push_back(static_cast<char>(v));
  return out;
}

std::string MakeFrame(uint32_t stream_id, uint8_t type, std::string_view data) {
  FrameHeader header;
  header.length = static_cast<uint32_t>(data.size());
  header.stream_id = stream_id;
  header.type = type;
  return EncodeHeader(header) + std::string(data);
}

std::string RequestData(std::string_view service, std::string_view method, std::string_view payload,
                        int64_t timeout_nano = 0) {
  ::ttrpc::Request request;
  request.set_service(std::string(service));
  request.set_method(std::string(method));
  request.set_payload(std::string(payload));
  request.set_timeout_nano(timeout_nano);
  return request.SerializeAsString();
}

// A one-shot gate a handler waits on; opening it twice is fine, and a test
// opens it on every exit path so no handler outlives a failed assertion.
class Gate {
 public:
  void Open() {
    std::lock_guard lock(mutex_);
    open_ = true;
    opened_.notify_all();
  }
  void Wait() {
    std::unique_lock lock(mutex_);
    opened_.wait(lock, [&] { return open_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable opened_;
  bool open_ = false;
};

// --- framing ----------------------------------------------------------------

TEST(TtrpcFrameTest, HeaderIsBigEndianAndRoundTrips) {
  FrameHeader header{.length = 0x01020304, .stream_id = 0xa0b0c0d1, .type = 2, .flags = 0x7f};
  std::string bytes = EncodeHeader(header);
  EXPECT_EQ(bytes, Bytes({0x01, 0x02, 0x03, 0x04, 0xa0, 0xb0, 0xc0, 0xd1, 0x02, 0x7f}));
  FrameHeader decoded = DecodeHeader(bytes);
  EXPECT_EQ(decoded.length, header.length);
  EXPECT_EQ(decoded.stream_id, header.stream_id);
  EXPECT_EQ(decoded.type, header.type);
  EXPECT_EQ(decoded.flags, header.flags);
}

// The worked example of the reference notes (§1.2): Connect{id:"abc"} on
// stream 1 with the containerd namespace "default".
TEST(TtrpcFrameTest, ConnectRequestMatchesTheReferenceBytes) {
  containerd::task::v2::ConnectRequest connect;
  connect.set_id("abc");
  ::ttrpc::Request request;
  request.set_service(std::string(kTask));
  request.set_method("Connect");
  request.set_payload(connect.SerializeAsString());
  auto* pair = request.add_metadata();
  pair->set_key(std::string(kNamespaceKey));
  pair->set_value("default");
  std::string data = request.SerializeAsString();

  std::string expected = Bytes({0x00, 0x00, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00}) +
                         Bytes({0x0a, 0x17}) + "containerd.task.v2.Task" + Bytes({0x12, 0x07}) +
                         "Connect" + Bytes({0x1a, 0x05, 0x0a, 0x03}) + "abc" +
                         Bytes({0x2a, 0x25, 0x0a, 0x1a}) + "containerd-namespace-ttrpc" +
                         Bytes({0x12, 0x07}) + "default";
  EXPECT_EQ(MakeFrame(1, 1, data), expected);
}

TEST(TtrpcFrameTest, DecodesTheReferenceReplyAndError) {
  FrameDecoder decoder;
  decoder.Feed(Bytes({0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x0a, 0x00, 0x12,
                      0x05, 0x08, 0x64, 0x10, 0xc8, 0x01}));
  std::string error_status = Bytes({0x08, 0x05, 0x12, 0x20}) + "container not created: not found";
  decoder.Feed(MakeFrame(3, 2, Bytes({0x0a, 0x24}) + error_status));

  auto reply = decoder.Next();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->header.stream_id, 1u);
  EXPECT_EQ(reply->header.type, 2);
  EXPECT_FALSE(reply->oversized);
  ::ttrpc::Response response;
  ASSERT_TRUE(response.ParseFromString(reply->data));
  EXPECT_TRUE(response.has_status());
  EXPECT_EQ(response.status().code(), 0);
  containerd::task::v2::ConnectResponse connect;
  ASSERT_TRUE(connect.ParseFromString(response.payload()));
  EXPECT_EQ(connect.shim_pid(), 100u);
  EXPECT_EQ(connect.task_pid(), 200u);

  auto error = decoder.Next();
  ASSERT_TRUE(error);
  EXPECT_EQ(error->header.stream_id, 3u);
  ASSERT_TRUE(response.ParseFromString(error->data));
  EXPECT_EQ(response.status().code(), 5);
  EXPECT_EQ(response.status().message(), "container not created: not found");
  EXPECT_TRUE(response.payload().empty());
  EXPECT_FALSE(decoder.Next());
}

TEST(TtrpcFrameTest, DecoderAssemblesFramesFedOneByteAtATime) {
  std::string stream =
      MakeFrame(1, 1, "first") + MakeFrame(3, 1, "") + MakeFrame(5, 2, std::string(300, 'x'));
  FrameDecoder decoder;
  std::vector<Frame> frames;
  for (char c : stream) {
    decoder.Feed(std::string_view(&c, 1));
    while (auto frame = decoder.Next()) frames.push_back(std::move(*frame));
  }
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0].header.stream_id, 1u);
  EXPECT_EQ(frames[0].data, "first");
  EXPECT_EQ(frames[1].header.stream_id, 3u);
  EXPECT_EQ(frames[1].data, "");
  EXPECT_EQ(frames[2].header.type, 2);
  EXPECT_EQ(frames[2].data, std::string(300, 'x'));
}

TEST(TtrpcFrameTest, NeedsTheWholeFrameBeforeReturningIt) {
  FrameDecoder decoder;
  std::string frame = MakeFrame(7, 1, "payload");
  decoder.Feed(frame.substr(0, kHeaderSize + 3));
  EXPECT_FALSE(decoder.Next());
  decoder.Feed(frame.substr(kHeaderSize + 3));
  auto complete = decoder.Next();
  ASSERT_TRUE(complete);
  EXPECT_EQ(complete->data, "payload");
}

TEST(TtrpcFrameTest, OversizedFrameIsSkippedAndTheNextOneStillDecodes) {
  const uint32_t length = 5u << 20;
  FrameHeader big{.length = length, .stream_id = 9, .type = 1, .flags = 0};
  FrameDecoder decoder;
  decoder.Feed(EncodeHeader(big));
  decoder.Feed(std::string(1000, 'a'));
  EXPECT_FALSE(decoder.Next()) << "reported before its data went by";
  // The rest of the big frame in uneven chunks, the last one carrying the
  // start of the next frame.
  std::string rest(length - 1000, 'b');
  std::string next = MakeFrame(11, 1, "after");
  std::string tail = rest.substr(rest.size() - 10) + next;
  rest.resize(rest.size() - 10);
  for (size_t offset = 0; offset < rest.size(); offset += 65536) {
    decoder.Feed(std::string_view(rest).substr(offset, 65536));
  }
  EXPECT_FALSE(decoder.Next());
  decoder.Feed(tail);

  auto skipped = decoder.Next();
  ASSERT_TRUE(skipped);
  EXPECT_TRUE(skipped->oversized);
  EXPECT_EQ(skipped->header.length, length);
  EXPECT_EQ(skipped->header.stream_id, 9u);
  EXPECT_TRUE(skipped->data.empty());
  auto after = decoder.Next();
  ASSERT_TRUE(after);
  EXPECT_FALSE(after->oversized);
  EXPECT_EQ(after->header.stream_id, 11u);
  EXPECT_EQ(after->data, "after");
  EXPECT_FALSE(decoder.Next());
}

TEST(TtrpcFrameTest, FrameOfExactlyTheMaximumSizeIsAccepted) {
  FrameDecoder decoder;
  decoder.Feed(MakeFrame(1, 1, std::string(kMaxMessageSize, 'm')));
  auto frame = decoder.Next();
  ASSERT_TRUE(frame);
  EXPECT_FALSE(frame->oversized);
  EXPECT_EQ(frame->data.size(), kMaxMessageSize);
}

TEST(TtrpcFrameTest, ManySmallFramesInOneRead) {
  std::string stream;
  for (uint32_t i = 0; i < 20000; ++i) stream += MakeFrame(2 * i + 1, 1, std::to_string(i));
  FrameDecoder decoder;
  decoder.Feed(stream);
  uint32_t count = 0;
  while (auto frame = decoder.Next()) {
    ASSERT_EQ(frame->header.stream_id, 2 * count + 1);
    ASSERT_EQ(frame->data, std::to_string(count));
    ++count;
  }
  EXPECT_EQ(count, 20000u);
}

TEST(TtrpcContextTest, NamespaceAndCancellation) {
  CallContext context;
  EXPECT_EQ(context.Namespace(), "");
  EXPECT_FALSE(context.Cancelled());
  context.metadata.emplace(std::string(kNamespaceKey), "k8s.io");
  EXPECT_EQ(context.Namespace(), "k8s.io");
  auto closed = std::make_shared<std::atomic<bool>>(false);
  context.connection_closed = closed;
  EXPECT_FALSE(context.Cancelled());
  closed->store(true);
  EXPECT_TRUE(context.Cancelled());
  closed->store(false);
  context.deadline = std::chrono::steady_clock::now() - 1ms;
  EXPECT_TRUE(context.Cancelled());
}

// --- server and client over a unix socket -------------------------------------

// A raw connection that speaks frames by hand (what containerd sends).
class RawConnection {
 public:
  explicit RawConnection(const std::string& path) {
    auto fd = ConnectUnix(path);
    EXPECT_TRUE(fd) << fd.error().ToString();
    if (fd) fd_ = std::move(*fd);
    if (fd_) {
      EXPECT_TRUE(SetNonBlocking(fd_.get(), false));
    }
  }

  void Send(std::string_view bytes) { ASSERT_TRUE(WriteAll(fd_.get(), bytes)); }

  // The next frame, or nullopt after `timeout`.
  std::optional<Frame> Receive(std::chrono::milliseconds timeout = 5s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto frame = decoder_.Next()) return frame;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      auto readable = WaitReadable(fd_.get(), left);
      if (!readable || !*readable) return std::nullopt;
      char buffer[65536];
      ssize_t n = ::read(fd_.get(), buffer, sizeof buffer);
      if (n <= 0) return std::nullopt;
      decoder_.Feed(std::string_view(buffer, static_cast<size_t>(n)));
    }
  }

  // The next frame as a Response envelope.
  ::ttrpc::Response ReceiveResponse(uint32_t expected_stream) {
    ::ttrpc::Response response;
    auto frame = Receive();
    EXPECT_TRUE(frame);
    if (!frame) return response;
    EXPECT_EQ(frame->header.stream_id, expected_stream);
    EXPECT_EQ(frame->header.type, static_cast<uint8_t>(MessageType::kResponse));
    EXPECT_TRUE(response.ParseFromString(frame->data));
    return response;
  }

  void Close() { fd_.reset(); }
  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  FrameDecoder decoder_;
};

class TtrpcServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/hull-ttrpc-" + RandomHex(4);
    ASSERT_TRUE(MakeDirs(dir_));
    path_ = dir_ + "/ttrpc.sock";
    server_ = std::make_unique<Server>();
    server_->Register("test.Echo", "Echo",
                      [](const CallContext&, std::string_view payload) -> Result<std::string> {
                        return std::string(payload);
                      });
  }

  void TearDown() override {
    StopServer();
    (void)RemoveTree(dir_);
  }

  void StartServer() {
    auto listener = ListenUnix(path_);
    ASSERT_TRUE(listener) << listener.error().ToString();
    serve_result_ = std::async(std::launch::async, [this, fd = std::move(*listener)]() mutable {
      return server_->Serve(std::move(fd));
    });
  }

  void StopServer() {
    if (!server_) return;
    server_->Shutdown();
    if (serve_result_.valid()) {
      ASSERT_EQ(serve_result_.wait_for(10s), std::future_status::ready);
      Status served = serve_result_.get();
      EXPECT_TRUE(served) << served.error().ToString();
    }
    server_.reset();
  }

  std::unique_ptr<Client> Connect() {
    auto client = Client::Connect(path_);
    EXPECT_TRUE(client) << client.error().ToString();
    return client ? std::move(*client) : nullptr;
  }

  std::string dir_;
  std::string path_;
  std::unique_ptr<Server> server_;
  std::future<Status> serve_result_;
};

TEST_F(TtrpcServerTest, EchoCallRoundTrips) {
  StartServer();
  auto client = Connect();
  ASSERT_TRUE(client);
  auto reply = client->Call("test.Echo", "Echo", "hello", 5s);
  ASSERT_TRUE(reply) << reply.error().ToString();
  EXPECT_EQ(*reply, "hello");
  std::string big(3 << 20, 'z');
  reply = client->Call("test.Echo", "Echo", big, 5s);
  ASSERT_TRUE(reply) << reply.error().ToString();
  EXPECT_EQ(*reply, big);
}

TEST_F(TtrpcServerTest, SuccessfulResponseCarriesAnExplicitOkStatus) {
  StartServer();
  RawConnection raw(path_);
  raw.Send(MakeFrame(1, 1, RequestData("test.Echo", "Echo", "ab")));
  auto frame = raw.Receive();
  ASSERT_TRUE(frame);
  // Go servers send status {} first: bytes 0a 00, then the payload.
  EXPECT_EQ(frame->data, Bytes({0x0a, 0x00, 0x12, 0x02}) + "ab");
  EXPECT_EQ(frame->header.flags, 0);
}

TEST_F(TtrpcServerTest, BlockedCallDoesNotHoldBackOthersAndRepliesComeOutOfOrder) {
  auto release = std::make_shared<Gate>();
  ScopeExit open_on_exit([release] { release->Open(); });
  std::atomic<bool> block_started{false};
  server_->Register("test.Slow", "Block",
                    [&, release](const CallContext&, std::string_view) -> Result<std::string> {
                      block_started = true;
                      release->Wait();
                      return std::string("unblocked");
                    });
  StartServer();

  RawConnection raw(path_);
  raw.Send(MakeFrame(1, 1, RequestData("test.Slow", "Block", "")));
  // Block must really be holding its thread before the second call goes out.
  for (int i = 0; i < 500 && !block_started; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(block_started);
  raw.Send(MakeFrame(3, 1, RequestData("test.Echo", "Echo", "quick")));
  ::ttrpc::Response first = raw.ReceiveResponse(3);
  EXPECT_EQ(first.payload(), "quick");
  EXPECT_FALSE(raw.Receive(100ms)) << "the blocked call answered before it was released";
  release->Open();
  ::ttrpc::Response second = raw.ReceiveResponse(1);
  EXPECT_EQ(second.status().code(), 0);
  EXPECT_EQ(second.payload(), "unblocked");
}

TEST_F(TtrpcServerTest, ClientMultiplexesConcurrentCalls) {
  auto release = std::make_shared<Gate>();
  ScopeExit open_on_exit([release] { release->Open(); });
  server_->Register("test.Slow", "Block",
                    [release](const CallContext&, std::string_view) -> Result<std::string> {
                      release->Wait();
                      return std::string("late");
                    });
  StartServer();
  auto client = Connect();
  ASSERT_TRUE(client);
  auto blocked =
      std::async(std::launch::async, [&] { return client->Call("test.Slow", "Block", "", 10s); });
  // Many quick calls from several threads complete while Block is pending.
  std::vector<std::future<Result<std::string>>> quick;
  for (int i = 0; i < 16; ++i) {
    quick.push_back(std::async(std::launch::async, [&, i] {
      return client->Call("test.Echo", "Echo", std::to_string(i), 5s);
    }));
  }
  for (int i = 0; i < 16; ++i) {
    auto reply = quick[i].get();
    ASSERT_TRUE(reply) << reply.error().ToString();
    EXPECT_EQ(*reply, std::to_string(i));
  }
  EXPECT_EQ(blocked.wait_for(0ms), std::future_status::timeout);
  release->Open();
  auto late = blocked.get();
  ASSERT_TRUE(late) << late.error().ToString();
  EXPECT_EQ(*late, "late");
}

TEST_F(TtrpcServerTest, OversizedRequestGetsResourceExhaustedAndTheConnectionKeepsWorking) {
  StartServer();
  RawConnection raw(path_);
  const size_t length = 5u << 20;
  raw.Send(MakeFrame(1, 1, std::string(length, '\x01')));
  raw.Send(MakeFrame(3, 1, RequestData("test.Echo", "Echo", "still here")));
  ::ttrpc::Response exhausted = raw.ReceiveResponse(1);
  EXPECT_EQ(exhausted.status().code(), static_cast<int>(ErrorCode::kResourceExhausted));
  EXPECT_EQ(exhausted.status().message(),
            "message length 5242880 exceed maximum message size of 4194304");
  ::ttrpc::Response normal = raw.ReceiveResponse(3);
  EXPECT_EQ(normal.status().code(), 0);
  EXPECT_EQ(normal.payload(), "still here");
}

TEST_F(TtrpcServerTest, EvenStreamIdIsInvalidArgument) {
  StartServer();
  RawConnection raw(path_);
  raw.Send(MakeFrame(2, 1, RequestData("test.Echo", "Echo", "x")));
  ::ttrpc::Response response = raw.ReceiveResponse(2);
  EXPECT_EQ(response.status().code(), static_cast<int>(ErrorCode::kInvalidArgument));
  EXPECT_EQ(response.status().message(), "StreamID must be odd for client initiated streams");
}

TEST_F(TtrpcServerTest, EnvelopeThatDoesNotParseIsInvalidArgument) {
  StartServer();
  RawConnection raw(path_);
  raw.Send(MakeFrame(5, 1, Bytes({0x0a, 0x7f, 0x01})));  // a string field longer than the data
  ::ttrpc::Response response = raw.ReceiveResponse(5);
  EXPECT_EQ(response.status().code(), static_cast<int>(ErrorCode::kInvalidArgument));
  EXPECT_NE(response.status().message().find("unmarshal request error"), std::string::npos);
  // The connection is still usable.
  raw.Send(MakeFrame(7, 1, RequestData("test.Echo", "Echo", "ok")));
  EXPECT_EQ(raw.ReceiveResponse(7).payload(), "ok");
}

TEST_F(TtrpcServerTest, NonRequestMessagesAreIgnored) {
  StartServer();
  RawConnection raw(path_);
  raw.Send(MakeFrame(1, 2, "a response the server did not ask for"));
  raw.Send(MakeFrame(3, 3, "a 1.2 data frame"));
  raw.Send(MakeFrame(5, 1, RequestData("test.Echo", "Echo", "after")));
  ::ttrpc::Response response = raw.ReceiveResponse(5);
  EXPECT_EQ(response.payload(), "after");
  EXPECT_FALSE(raw.Receive(100ms));
}

TEST_F(TtrpcServerTest, UnknownServiceAndMethodAreUnimplemented) {
  StartServer();
  auto client = Connect();
  ASSERT_TRUE(client);
  auto no_service = client->Call("containerd.task.v2.Nope", "State", "", 5s);
  ASSERT_FALSE(no_service);
  EXPECT_EQ(no_service.error().code(), ErrorCode::kUnimplemented);
  EXPECT_EQ(no_service.error().message(), "service containerd.task.v2.Nope");
  auto no_method = client->Call("test.Echo", "Shout", "", 5s);
  ASSERT_FALSE(no_method);
  EXPECT_EQ(no_method.error().code(), ErrorCode::kUnimplemented);
  EXPECT_EQ(no_method.error().message(), "method Shout");
}

TEST_F(TtrpcServerTest, MetadataReachesTheHandlerWithLowerCaseKeys) {
  std::promise<CallContext> seen;
  server_->Register(std::string(kTask), "State",
                    [&](const CallContext& context, std::string_view) -> Result<std::string> {
                      seen.set_value(context);
                      return std::string();
                    });
  StartServer();
  auto client = Connect();
  ASSERT_TRUE(client);
  Metadata metadata{{"Containerd-Namespace-TTRPC", "k8s.io"}, {"x-trace", "a"}, {"x-trace", "b"}};
  auto reply = client->Call(kTask, "State", "", 5s, metadata);
  ASSERT_TRUE(reply) << reply.error().ToString();
  CallContext context = seen.get_future().get();
  EXPECT_EQ(context.service, kTask);
  EXPECT_EQ(context.method, "State");
  EXPECT_EQ(context.Namespace(), "k8s.io");
  EXPECT_EQ(context.metadata.count("containerd-namespace-ttrpc"), 1u);
  EXPECT_EQ(context.metadata.count("x-trace"), 2u);
}

TEST_F(TtrpcServerTest, MixedCaseMetadataKeyFromTheWireIsLowerCased) {
  std::promise<std::string> seen;
  server_->Register("test.Meta", "Get",
                    [&](const CallContext& context, std::string_view) -> Result<std::string> {
                      seen.set_value(context.Namespace());
                      return std::string();
                    });
  StartServer();
  RawConnection raw(path_);
  ::ttrpc::Request request;
  request.set_service("test.Meta");
  request.set_method("Get");
  auto* pair = request.add_metadata();
  pair->set_key("Containerd-Namespace-Ttrpc");
  pair->set_value("default");
  raw.Send(MakeFrame(1, 1, request.SerializeAsString()));
  raw.ReceiveResponse(1);
  EXPECT_EQ(seen.get_future().get(), "default");
}

TEST_F(TtrpcServerTest, TimeoutIsDeadlineExceededAndTheHandlerSeesTheDeadline) {
  std::promise<std::optional<std::chrono::steady_clock::time_point>> deadline_seen;
  std::promise<bool> gave_up;
  server_->Register("test.Slow", "Wait",
                    [&](const CallContext& context, std::string_view) -> Result<std::string> {
                      deadline_seen.set_value(context.deadline);
                      auto limit = std::chrono::steady_clock::now() + 5s;
                      while (!context.Cancelled() && std::chrono::steady_clock::now() < limit)
                        std::this_thread::sleep_for(5ms);
                      gave_up.set_value(context.Cancelled());
                      return MakeError(ErrorCode::kDeadlineExceeded, "gave up");
                    });
  StartServer();
  auto client = Connect();
  ASSERT_TRUE(client);
  auto start = std::chrono::steady_clock::now();
  auto reply = client->Call("test.Slow", "Wait", "", 300ms);
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code(), ErrorCode::kDeadlineExceeded);
  // The deadline was honoured; how much later the call returned depends on
  // the machine's load, so there is no upper bound on `elapsed`.
  EXPECT_GE(elapsed, 300ms);

  // The server set its deadline to (when it read the request) + timeout_nano:
  // it read it after `start` and before its handler ran, so the deadline lies
  // in [start + 300 ms, handler seen + 300 ms]. Causal bounds, no time window.
  auto deadline = deadline_seen.get_future().get();
  auto handler_seen = std::chrono::steady_clock::now();
  ASSERT_TRUE(deadline);
  EXPECT_GE(*deadline - start, 300ms);
  EXPECT_LE(*deadline - handler_seen, 300ms);
  EXPECT_TRUE(gave_up.get_future().get()) << "the handler's context never said it was cancelled";
  // A late reply for the abandoned stream is dropped; the client goes on.
  auto next = client->Call("test.Echo", "Echo", "next", 5s);
  ASSERT_TRUE(next) << next.error().ToString();
  EXPECT_EQ(*next, "next");
}

TEST_F(TtrpcServerTest, TimeoutNanoIsSentOnTheWire) {
  // The server side of a socketpair, read by hand.
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  UniqueFd server_end(fds[0]);
  auto client = Client::FromFd(UniqueFd(fds[1]));
  auto call = std::async(std::launch::async, [&] {
    return client->Call(kTask, "State", "p", 2500ms, {{kNamespaceKey.data(), "default"}});
  });
  FrameDecoder decoder;
  std::optional<Frame> frame;
  while (!frame) {
    char buffer[4096];
    ssize_t n = ::read(server_end.get(), buffer, sizeof buffer);
    ASSERT_GT(n, 0);
    decoder.Feed(std::string_view(buffer, static_cast<size_t>(n)));
    frame = decoder.Next();
  }
  EXPECT_EQ(frame->header.type, 1);
  EXPECT_EQ(frame->header.flags, 0);
  ::ttrpc::Request request;
  ASSERT_TRUE(request.ParseFromString(frame->data));
  EXPECT_EQ(request.service(), kTask);
  EXPECT_EQ(request.method(), "State");
  EXPECT_EQ(request.payload(), "p");
  EXPECT_EQ(request.timeout_nano(), 2'500'000'000);
  ASSERT_EQ(request.metadata_size(), 1);
  EXPECT_EQ(request.metadata(0).key(), kNamespaceKey);
  EXPECT_EQ(request.metadata(0).value(), "default");
  ::ttrpc::Response response;
  response.mutable_status();
  response.set_payload("r");
  ASSERT_TRUE(WriteAll(server_end.get(),
                       MakeFrame(frame->header.stream_id, 2, response.SerializeAsString())));
  auto reply = call.get();
  ASSERT_TRUE(reply) << reply.error().ToString();
  EXPECT_EQ(*reply, "r");
}

TEST_F(TtrpcServerTest, ClientUsesOddStreamIdsAndMatchesOutOfOrderReplies) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  UniqueFd server_end(fds[0]);
  auto client = Client::FromFd(UniqueFd(fds[1]));
  std::vector<std::future<Result<std::string>>> calls;
  FrameDecoder decoder;
  std::vector<Frame> requests;
  // One call at a time until its request is on the wire, so ids are ordered.
  for (int i = 0; i < 3; ++i) {
    calls.push_back(std::async(std::launch::async, [&, i] {
      return client->Call("test.Echo", "Echo", std::to_string(i), 5s);
    }));
    while (requests.size() < static_cast<size_t>(i + 1)) {
      char buffer[4096];
      ssize_t n = ::read(server_end.get(), buffer, sizeof buffer);
      ASSERT_GT(n, 0);
      decoder.Feed(std::string_view(buffer, static_cast<size_t>(n)));
      while (auto frame = decoder.Next()) requests.push_back(std::move(*frame));
    }
  }
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[0].header.stream_id, 1u);
  EXPECT_EQ(requests[1].header.stream_id, 3u);
  EXPECT_EQ(requests[2].header.stream_id, 5u);
  // Answer 5, then 1, then 3, each with its own request's payload.
  for (size_t index : {2u, 0u, 1u}) {
    ::ttrpc::Request request;
    ASSERT_TRUE(request.ParseFromString(requests[index].data));
    ::ttrpc::Response response;
    response.set_payload("reply " + request.payload());
    ASSERT_TRUE(WriteAll(server_end.get(), MakeFrame(requests[index].header.stream_id, 2,
                                                     response.SerializeAsString())));
  }
  for (int i = 0; i < 3; ++i) {
    auto reply = calls[i].get();
    ASSERT_TRUE(reply) << reply.error().ToString();
    EXPECT_EQ(*reply, "reply " + std::to_string(i));
  }
}

TEST_F(TtrpcServerTest, ClientTreatsANonResponseTypeAsAnError) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  UniqueFd server_end(fds[0]);
  auto client = Client::FromFd(UniqueFd(fds[1]));
  auto call =
      std::async(std::launch::async, [&] { return client->Call("test.Echo", "Echo", "", 5s); });
  FrameDecoder decoder;
  std::optional<Frame> frame;
  while (!frame) {
    char buffer[4096];
    ssize_t n = ::read(server_end.get(), buffer, sizeof buffer);
    ASSERT_GT(n, 0);
    decoder.Feed(std::string_view(buffer, static_cast<size_t>(n)));
    frame = decoder.Next();
  }
  ASSERT_TRUE(WriteAll(server_end.get(), MakeFrame(frame->header.stream_id, 1, frame->data)));
  auto reply = call.get();
  ASSERT_FALSE(reply);
  EXPECT_NE(reply.error().message().find("unknown message type"), std::string::npos)
      << reply.error().ToString();
  EXPECT_FALSE(client->closed());
}

TEST_F(TtrpcServerTest, ConnectionClosedIsSetWhenTheClientDisconnects) {
  std::promise<void> handler_running;
  std::promise<bool> saw_close;
  std::atomic<int> closed_callbacks{0};
  server_->OnConnectionClosed([&] { ++closed_callbacks; });
  server_->Register(
      std::string(kTask), "Wait",
      [&](const CallContext& context, std::string_view) -> Result<std::string> {
        handler_running.set_value();
        auto limit = std::chrono::steady_clock::now() + 5s;
        while (!context.connection_closed->load() && std::chrono::steady_clock::now() < limit) {
          std::this_thread::sleep_for(5ms);
        }
        saw_close.set_value(context.connection_closed->load());
        return MakeError(ErrorCode::kCancelled, "connection closed");
      });
  StartServer();
  auto client = Connect();
  ASSERT_TRUE(client);
  auto call = std::async(std::launch::async, [&] { return client->Call(kTask, "Wait", "", 0ms); });
  handler_running.get_future().wait();
  EXPECT_EQ(server_->connection_count(), 1u);
  client->Close();
  EXPECT_TRUE(client->closed());
  auto reply = call.get();
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code(), ErrorCode::kUnavailable);
  EXPECT_TRUE(saw_close.get_future().get());
  for (int i = 0; i < 500 && closed_callbacks.load() == 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(closed_callbacks.load(), 1);
  EXPECT_EQ(server_->connection_count(), 0u);
}

TEST_F(TtrpcServerTest, ShutdownFromInsideAHandlerRepliesAndServeReturns) {
  std::promise<bool> waiter_saw_close;
  std::promise<void> waiter_running;
  server_->Register(std::string(kTask), "Wait",
                    [&](const CallContext& context, std::string_view) -> Result<std::string> {
                      waiter_running.set_value();
                      auto limit = std::chrono::steady_clock::now() + 5s;
                      while (!context.Cancelled() && std::chrono::steady_clock::now() < limit)
                        std::this_thread::sleep_for(5ms);
                      waiter_saw_close.set_value(context.connection_closed->load());
                      return MakeError(ErrorCode::kCancelled, "shim shutting down");
                    });
  server_->Register(std::string(kTask), "Shutdown",
                    [&](const CallContext&, std::string_view) -> Result<std::string> {
                      server_->Shutdown();
                      return std::string();
                    });
  StartServer();
  auto waiting_client = Connect();
  ASSERT_TRUE(waiting_client);
  auto wait_call =
      std::async(std::launch::async, [&] { return waiting_client->Call(kTask, "Wait", "", 10s); });
  waiter_running.get_future().wait();

  auto client = Connect();
  ASSERT_TRUE(client);
  auto reply = client->Call(kTask, "Shutdown", "", 5s);
  // containerd also accepts ErrClosed here, but this server gets its reply out.
  EXPECT_TRUE(reply) << reply.error().ToString();
  ASSERT_EQ(serve_result_.wait_for(5s), std::future_status::ready)
      << "Serve did not return after Shutdown";
  EXPECT_TRUE(serve_result_.get());
  EXPECT_TRUE(waiter_saw_close.get_future().get());
  auto waited = wait_call.get();
  ASSERT_FALSE(waited);
  EXPECT_EQ(waited.error().code(), ErrorCode::kCancelled);
  EXPECT_EQ(waited.error().message(), "shim shutting down");
  EXPECT_EQ(server_->connection_count(), 0u);
}

TEST_F(TtrpcServerTest, HandlerErrorCodesAndMessagesRoundTrip) {
  server_->Register(
      "test.Fail", "Fail", [](const CallContext&, std::string_view payload) -> Result<std::string> {
        int code = std::stoi(std::string(payload));
        return Unexpected{
            Error(static_cast<ErrorCode>(code), "container not created").Wrap("state `web`")};
      });
  server_->Register("test.Fail", "Errno",
                    [](const CallContext&, std::string_view) -> Result<std::string> {
                      return ErrnoError("open `/run/x`", ENOENT);
                    });
  StartServer();
  auto client = Connect();
  ASSERT_TRUE(client);
  for (ErrorCode code :
       {ErrorCode::kCancelled, ErrorCode::kUnknown, ErrorCode::kInvalidArgument,
        ErrorCode::kNotFound, ErrorCode::kAlreadyExists, ErrorCode::kFailedPrecondition,
        ErrorCode::kUnimplemented, ErrorCode::kInternal, ErrorCode::kUnavailable,
        ErrorCode::kUnauthenticated}) {
    auto reply = client->Call("test.Fail", "Fail", std::to_string(static_cast<int>(code)), 5s);
    ASSERT_FALSE(reply);
    EXPECT_EQ(reply.error().code(), code);
    EXPECT_EQ(reply.error().message(), "state `web`: container not created");
  }
  auto errno_reply = client->Call("test.Fail", "Errno", "", 5s);
  ASSERT_FALSE(errno_reply);
  EXPECT_EQ(errno_reply.error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(errno_reply.error().message(), "open `/run/x`: ENOENT (No such file or directory)");
}

TEST_F(TtrpcServerTest, TypedHelpersParseAndSerialize) {
  RegisterMethod<containerd::task::v2::ConnectRequest, containerd::task::v2::ConnectResponse>(
      *server_, std::string(kTask), "Connect",
      [](const CallContext&, const containerd::task::v2::ConnectRequest& request)
          -> Result<containerd::task::v2::ConnectResponse> {
        if (request.id() != "abc") return MakeError(ErrorCode::kNotFound, "container not created");
        containerd::task::v2::ConnectResponse response;
        response.set_shim_pid(100);
        response.set_task_pid(200);
        return response;
      });
  StartServer();
  auto client = Connect();
  ASSERT_TRUE(client);
  containerd::task::v2::ConnectRequest request;
  request.set_id("abc");
  auto reply =
      CallMethod<containerd::task::v2::ConnectResponse>(*client, kTask, "Connect", request, 5s);
  ASSERT_TRUE(reply) << reply.error().ToString();
  EXPECT_EQ(reply->shim_pid(), 100u);
  EXPECT_EQ(reply->task_pid(), 200u);
  request.set_id("other");
  reply = CallMethod<containerd::task::v2::ConnectResponse>(*client, kTask, "Connect", request, 5s);
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code(), ErrorCode::kNotFound);
  // A payload that is not a ConnectRequest: Internal, as in Go's ttrpc.
  auto garbage = client->Call(kTask, "Connect", Bytes({0x0a, 0x7f}), 5s);
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.error().code(), ErrorCode::kInternal);
}

TEST_F(TtrpcServerTest, ManyConnectionsAtOnce) {
  StartServer();
  constexpr int kClients = 24;
  std::vector<std::future<bool>> results;
  for (int i = 0; i < kClients; ++i) {
    results.push_back(std::async(std::launch::async, [this, i] {
      auto client = Client::Connect(path_);
      if (!client) return false;
      for (int call = 0; call < 10; ++call) {
        std::string payload = std::to_string(i) + "/" + std::to_string(call);
        auto reply = (*client)->Call("test.Echo", "Echo", payload, 5s);
        if (!reply || *reply != payload) return false;
      }
      return true;
    }));
  }
  for (auto& result : results) EXPECT_TRUE(result.get());
  for (int i = 0; i < 500 && server_->connection_count() != 0; ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(server_->connection_count(), 0u);
}

TEST_F(TtrpcServerTest, CallAfterTheServerShutsDownIsUnavailable) {
  StartServer();
  auto client = Connect();
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->Call("test.Echo", "Echo", "x", 5s));
  StopServer();
  for (int i = 0; i < 500 && !client->closed(); ++i) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(client->closed());
  auto reply = client->Call("test.Echo", "Echo", "x", 5s);
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code(), ErrorCode::kUnavailable);
  auto none = Client::Connect(path_);
  EXPECT_FALSE(none);
}

TEST_F(TtrpcServerTest, PeerThatVanishesMidCallFailsPendingCallsWithUnavailable) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  UniqueFd server_end(fds[0]);
  auto client = Client::FromFd(UniqueFd(fds[1]));
  auto call =
      std::async(std::launch::async, [&] { return client->Call("test.Echo", "Echo", "", 10s); });
  char buffer[256];
  ASSERT_GT(::read(server_end.get(), buffer, sizeof buffer), 0);
  server_end.reset();
  auto reply = call.get();
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code(), ErrorCode::kUnavailable);
  EXPECT_TRUE(client->closed());
}

TEST_F(TtrpcServerTest, ClientRefusesToSendMoreThanTheMaximum) {
  StartServer();
  auto client = Connect();
  ASSERT_TRUE(client);
  auto reply = client->Call("test.Echo", "Echo", std::string(5u << 20, 'x'), 5s);
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error().code(), ErrorCode::kResourceExhausted);
  auto after = client->Call("test.Echo", "Echo", "small", 5s);
  ASSERT_TRUE(after) << after.error().ToString();
}

TEST_F(TtrpcServerTest, ShutdownBeforeServeMakesServeReturnAtOnce) {
  server_->Shutdown();
  StartServer();
  ASSERT_EQ(serve_result_.wait_for(5s), std::future_status::ready);
}

}  // namespace
}  // namespace hull::ttrpc
