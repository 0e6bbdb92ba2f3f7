#include "hull/core/transport.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "hull/core/syscall.h"

namespace hull {
namespace {

std::pair<UniqueFd, UniqueFd> SocketPair() {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds), 0);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

std::string ReadExactly(int fd, size_t n) {
  std::string out;
  char buf[65536];
  while (out.size() < n) {
    auto ready = WaitReadable(fd, std::chrono::seconds(5));
    if (!ready || !*ready) break;
    ssize_t got = ::read(fd, buf, std::min(sizeof buf, n - out.size()));
    if (got <= 0) break;
    out.append(buf, static_cast<size_t>(got));
  }
  return out;
}

TEST(TransportTest, ParsesTransportNames) {
  EXPECT_EQ(*ParseTransport("serial"), TransportKind::kSerial);
  EXPECT_EQ(*ParseTransport("vsock"), TransportKind::kVsock);
  auto bad = ParseTransport("tcp");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().ToString(), "unknown transport `tcp` (expected serial or vsock)");
}

// The agent's vsock peer check: the host (CID 2) from a port only root can
// bind. Another VM, the guest itself, or a host process on a port any user
// can bind is refused.
TEST(TransportTest, OnlyTheHostFromAPrivilegedPortIsATrustedVsockPeer) {
  EXPECT_TRUE(TrustedVsockPeer(2, 1023));
  EXPECT_TRUE(TrustedVsockPeer(2, 512));
  EXPECT_TRUE(TrustedVsockPeer(2, 0));
  EXPECT_FALSE(TrustedVsockPeer(2, 1024)) << "any host user can bind 1024";
  EXPECT_FALSE(TrustedVsockPeer(2, 49152));
  EXPECT_FALSE(TrustedVsockPeer(2, 0xFFFFFFFF)) << "VMADDR_PORT_ANY";
  EXPECT_FALSE(TrustedVsockPeer(3, 1023)) << "another VM";
  EXPECT_FALSE(TrustedVsockPeer(1, 1023)) << "the guest's own loopback";
  EXPECT_FALSE(TrustedVsockPeer(0, 1023)) << "the hypervisor";
  EXPECT_FALSE(TrustedVsockPeer(0xFFFFFFFF, 1023)) << "VMADDR_CID_ANY";
}

TEST(TransportTest, UnixListenAcceptConnectGivesNonBlockingFds) {
  std::string path = ::testing::TempDir() + "/hull-t-" + RandomHex(4) + ".sock";
  auto listener = ListenUnix(path);
  ASSERT_TRUE(listener) << listener.error().ToString();
  auto client = ConnectUnix(path);
  ASSERT_TRUE(client) << client.error().ToString();
  auto server = AcceptConnection(listener->get());
  ASSERT_TRUE(server) << server.error().ToString();
  EXPECT_TRUE(fcntl(client->get(), F_GETFL) & O_NONBLOCK);
  EXPECT_TRUE(fcntl(server->get(), F_GETFL) & O_NONBLOCK);
  EXPECT_TRUE(fcntl(server->get(), F_GETFD) & FD_CLOEXEC);
  ASSERT_TRUE(WriteAll(client->get(), "hello"));
  EXPECT_EQ(ReadExactly(server->get(), 5), "hello");
  ::unlink(path.c_str());
}

TEST(TransportTest, ConnectToMissingSocketSaysWhere) {
  auto fd = ConnectUnix("/nonexistent/hull.sock");
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(fd.error().ToString().find("/nonexistent/hull.sock"), std::string::npos);
}

TEST(TransportTest, OverlongUnixPathIsRejected) {
  auto fd = ListenUnix("/tmp/" + std::string(200, 'x'));
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error().code(), ErrorCode::kInvalidArgument);
}

TEST(TransportTest, SocketListenerInterruptEndsAccept) {
  std::string path = ::testing::TempDir() + "/hull-t-" + RandomHex(4) + ".sock";
  auto fd = ListenUnix(path);
  ASSERT_TRUE(fd);
  auto listener = MakeSocketListener(std::move(*fd));
  std::thread interrupter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    listener->Interrupt();
  });
  auto accepted = listener->Accept();
  interrupter.join();
  ASSERT_FALSE(accepted);
  EXPECT_EQ(accepted.error().code(), ErrorCode::kCancelled);
  ::unlink(path.c_str());
}

TEST(BridgeTest, CopiesBothWaysWithoutLoss) {
  auto [a_outer, a_inner] = SocketPair();
  auto [b_inner, b_outer] = SocketPair();
  std::thread bridge([&, ai = a_inner.get(), bi = b_inner.get()] {
    auto end = BridgeFds(ai, bi);
    ASSERT_TRUE(end);
    EXPECT_EQ(*end, BridgeEnd::kFirstClosed);
  });
  // 4 MiB one way while a reply flows the other way.
  std::string big(4 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 % 251);
  std::thread writer([&, fd = a_outer.get()] { ASSERT_TRUE(WriteAll(fd, big)); });
  ASSERT_TRUE(WriteAll(b_outer.get(), "pong"));
  std::string got = ReadExactly(b_outer.get(), big.size());
  writer.join();
  EXPECT_EQ(got.size(), big.size());
  EXPECT_TRUE(got == big);
  EXPECT_EQ(ReadExactly(a_outer.get(), 4), "pong");
  a_outer.reset();  // first side closes: the bridge ends
  bridge.join();
}

TEST(BridgeTest, StopFdEndsTheBridge) {
  auto [a_outer, a_inner] = SocketPair();
  auto [b_inner, b_outer] = SocketPair();
  auto [stop_write, stop_read] = SocketPair();
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    ASSERT_TRUE(WriteAll(stop_write.get(), "x"));
  });
  auto end = BridgeFds(a_inner.get(), b_inner.get(), stop_read.get());
  stopper.join();
  ASSERT_TRUE(end);
  EXPECT_EQ(*end, BridgeEnd::kStopped);
}

TEST(VirtioPortTest, FindsThePortByNameInSysfs) {
  std::string root = ::testing::TempDir() + "/hull-sysfs-" + RandomHex(4);
  ASSERT_TRUE(MakeDirs(root + "/vport0p0"));
  ASSERT_TRUE(MakeDirs(root + "/vport1p1"));
  ASSERT_TRUE(WriteFile(root + "/vport0p0/name", "org.qemu.guest_agent.0\n"));
  ASSERT_TRUE(WriteFile(root + "/vport1p1/name", "hull.agent\n"));
  auto path = FindVirtioPort("hull.agent", root, "/dev");
  ASSERT_TRUE(path) << path.error().ToString();
  EXPECT_EQ(*path, "/dev/vport1p1");
  auto missing = FindVirtioPort("other", root, "/dev");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  ASSERT_TRUE(RemoveTree(root));
}

}  // namespace
}  // namespace hull
