#include <grpcpp/create_channel_posix.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include "agent_server.h"
#include "hull/core/guest_contract.h"
#include "hull/hypervisor/kernel_cmdline.h"
#include "hull/sandbox/grpc_agent.h"
#include "options.h"

namespace hull::agent {
namespace {

TEST(AgentOptionsTest, ReadsHullWordsAndIgnoresOthers) {
  auto options = ParseKernelCmdline(
      "console=ttyS0 quiet hull.transport=vsock hull.vsock_port=2000 hull.log=warn\n");
  ASSERT_TRUE(options) << options.error().ToString();
  EXPECT_EQ(options->transport, TransportKind::kVsock);
  EXPECT_EQ(options->vsock_port, 2000u);
  EXPECT_EQ(options->log_level, "warn");
  EXPECT_FALSE(options->debug);
}

TEST(AgentOptionsTest, DefaultsAndDebug) {
  auto options = ParseKernelCmdline("console=ttyS0 hull.debug=1");
  ASSERT_TRUE(options);
  EXPECT_EQ(options->transport, TransportKind::kSerial);
  EXPECT_EQ(options->vsock_port, kAgentVsockPort);
  EXPECT_TRUE(options->debug);
  EXPECT_EQ(options->log_level, "debug");
}

TEST(AgentOptionsTest, TyposFailLoudly) {
  EXPECT_FALSE(ParseKernelCmdline("hull.transprot=serial"));
  EXPECT_FALSE(ParseKernelCmdline("hull.transport=tcp"));
  EXPECT_FALSE(ParseKernelCmdline("hull.vsock_port=abc"));
  EXPECT_FALSE(ParseKernelCmdline("hull.vsock_port=0"));
  EXPECT_FALSE(ParseKernelCmdline("hull.log=loud"));
  EXPECT_FALSE(ParseKernelCmdline("hull.debug=maybe"));
}

TEST(AgentOptionsTest, ParsesWhatTheHostBuilds) {
  // The host's builder (hypervisor/) and the agent's parser share the words
  // of hull/core/guest_contract.h; every combination the host can emit must
  // come back as it went in, with the operator's extra words ignored.
  for (TransportKind transport : {TransportKind::kSerial, TransportKind::kVsock}) {
    for (bool debug : {false, true}) {
      for (const char* level : {"info", "warn", "trace"}) {
        std::string cmdline = BuildKernelCmdline(
            {transport, level, debug, "systemd.unit=none quiet", debug ? "pmem0" : ""});
        SCOPED_TRACE(cmdline);
        EXPECT_NE(cmdline.find(std::string(guest::kCmdlineTransport) + "="), std::string::npos);
        auto options = ParseKernelCmdline(cmdline);
        ASSERT_TRUE(options) << options.error().ToString();
        EXPECT_EQ(options->transport, transport);
        // hull.debug raises the default level, as the parser documents.
        const std::string want_level = debug && std::string(level) == "info" ? "debug" : level;
        EXPECT_EQ(options->log_level, want_level);
        EXPECT_EQ(options->debug, debug);
        EXPECT_EQ(options->vsock_port, kAgentVsockPort);
      }
    }
  }
}

TEST(AgentOptionsTest, ContractWordsAreTheOnesTheParserKnows) {
  for (std::string_view key :
       {guest::kCmdlineTransport, guest::kCmdlineVsockPort, guest::kCmdlineLogLevel,
        guest::kCmdlineDebug, guest::kCmdlineRoot}) {
    EXPECT_TRUE(key.starts_with(guest::kCmdlinePrefix)) << key;
  }
  auto options = ParseKernelCmdline(std::string(guest::kCmdlineTransport) + "=vsock " +
                                    std::string(guest::kCmdlineVsockPort) + "=77 " +
                                    std::string(guest::kCmdlineLogLevel) + "=error " +
                                    std::string(guest::kCmdlineDebug));
  ASSERT_TRUE(options) << options.error().ToString();
  EXPECT_EQ(options->transport, TransportKind::kVsock);
  EXPECT_EQ(options->vsock_port, 77u);
  EXPECT_EQ(options->log_level, "error");
  EXPECT_TRUE(options->debug);
  EXPECT_FALSE(ParseKernelCmdline(std::string(guest::kCmdlinePrefix) + "unknown=1"));
}

// The real services, served over a socketpair through gRPC's fd APIs, the
// same way they run in the guest.
class AgentServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    state_.transport = "serial";
    state_.loaded_modules = {"virtio_console"};
    state_.agent_start_us = 1000;
    state_.listening_us = 5000;
    engine::EngineOptions engine_options;
    engine_options.cgroup_root = ::testing::TempDir();  // no container is created here
    server_ = std::make_unique<AgentServer>(&state_, engine_options, [this] { shutdowns_++; });
    ASSERT_TRUE(server_->Start());
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    server_->AddConnection(UniqueFd(fds[0]));
    int client_fd = fds[1];
    auto client = sandbox::GrpcAgent::Connect(
        [&client_fd](auto) -> Result<UniqueFd> {
          if (client_fd < 0) return MakeError(ErrorCode::kUnavailable, "already used");
          return UniqueFd(std::exchange(client_fd, -1));
        },
        std::chrono::steady_clock::now() + std::chrono::seconds(10));
    ASSERT_TRUE(client) << client.error().ToString();
    client_ = std::move(*client);
  }

  AgentState state_;
  std::atomic<int> shutdowns_{0};
  std::unique_ptr<AgentServer> server_;
  std::unique_ptr<sandbox::GrpcAgent> client_;
};

TEST_F(AgentServerTest, HealthCheckAndVersion) {
  auto check = client_->Check();
  ASSERT_TRUE(check);
  EXPECT_TRUE(*check) << "the agent is not serving";
  auto version = client_->Version();
  ASSERT_TRUE(version);
  EXPECT_EQ(version->agent_version, kAgentVersion);
  EXPECT_EQ(version->api_version, kApiVersion);
}

TEST_F(AgentServerTest, GuestDetailsDescribeTheMachineAndTimings) {
  auto details = client_->GetGuestDetails();
  ASSERT_TRUE(details) << details.error().ToString();
  EXPECT_FALSE(details->kernel_release.empty());
  EXPECT_EQ(details->machine, "x86_64");
  EXPECT_GE(details->online_cpus, 1u);
  EXPECT_GT(details->memory_total_bytes, 0u);
  EXPECT_EQ(details->transport, "serial");
  EXPECT_EQ(details->loaded_modules, std::vector<std::string>{"virtio_console"});
  EXPECT_EQ(details->agent_start_us, 1000u);
  EXPECT_EQ(details->listening_us, 5000u);
  EXPECT_GT(details->first_request_us, 0u);
}

// The agent's view of the network, here the host's (rtnetlink dumps): lo
// with its address, and only the main table's unicast routes.
TEST_F(AgentServerTest, ListsInterfacesAndMainTableRoutes) {
  auto interfaces = client_->ListInterfaces();
  ASSERT_TRUE(interfaces) << interfaces.error().ToString();
  const sandbox::NetInterface* lo = nullptr;
  for (const auto& interface : *interfaces) {
    EXPECT_FALSE(interface.name.empty());
    if (interface.name == "lo") lo = &interface;
  }
  ASSERT_NE(lo, nullptr);
  EXPECT_TRUE(lo->up);
  EXPECT_EQ(lo->mtu, 65536u);
  sandbox::IpAddress loopback{sandbox::IpAddress::Family::kIpv4, "127.0.0.1", 8};
  EXPECT_NE(std::find(lo->addresses.begin(), lo->addresses.end(), loopback), lo->addresses.end());

  auto routes = client_->ListRoutes();
  ASSERT_TRUE(routes) << routes.error().ToString();
  for (const auto& route : *routes) {
    EXPECT_TRUE(route.family == AF_INET || route.family == AF_INET6) << route.destination;
    // 127.0.0.0/8 and the like live in the local table, not the main one.
    EXPECT_FALSE(route.destination.starts_with("127.")) << route.destination;
  }
}

TEST_F(AgentServerTest, UpdateInterfaceFindsTheNicByMacOrSaysWhichIsMissing) {
  auto updated = client_->UpdateInterface({.mac_address = "02:00:5e:00:53:99"});
  ASSERT_FALSE(updated);
  EXPECT_EQ(updated.error().code(), ErrorCode::kNotFound);
  EXPECT_NE(updated.error().ToString().find("no guest interface has MAC 02:00:5e:00:53:99"),
            std::string::npos)
      << updated.error().ToString();
}

TEST_F(AgentServerTest, ContainerRpcsValidateTheirInput) {
  // The wire contract itself: raw requests, gRPC codes.
  auto stub = v1::Agent::NewStub(client_->channel());
  grpc::ClientContext context;
  v1::CreateContainerRequest request;
  request.set_container_id("web");
  request.set_oci_spec_json("{ not json");
  request.set_rootfs_path("/run/hull/shared/web/rootfs");
  v1::CreateContainerResponse response;
  auto status = stub->CreateContainer(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("config.json"), std::string::npos)
      << status.error_message();

  grpc::ClientContext escape_context;
  request.set_oci_spec_json(
      R"({"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"args": ["sh"]}})");
  request.set_rootfs_path("/run/hull/../../etc");
  status = stub->CreateContainer(&escape_context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("rootfs_path"), std::string::npos)
      << status.error_message();

  grpc::ClientContext wait_context;
  v1::WaitProcessRequest wait;
  wait.set_container_id("nope");
  v1::WaitProcessResponse waited;
  status = stub->WaitProcess(&wait_context, wait, &waited);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);

  grpc::ClientContext bad_id_context;
  wait.set_container_id("../x");
  status = stub->WaitProcess(&bad_id_context, wait, &waited);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(AgentServerTest, ShutdownIsAnsweredAndActsExactlyOnce) {
  auto first = client_->Shutdown(false);
  ASSERT_TRUE(first) << first.error().ToString();
  EXPECT_TRUE(*first) << "the agent answers once it has synced";
  ASSERT_TRUE(client_->Shutdown(false));  // a second request is harmless
  // Destroying the server joins the thread that acts on a shutdown, so from
  // here on the count is final: no sleep, no window.
  client_.reset();
  server_.reset();
  EXPECT_EQ(shutdowns_, 1);
}

}  // namespace
}  // namespace hull::agent
