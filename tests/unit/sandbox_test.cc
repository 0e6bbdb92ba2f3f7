// The sandbox library's pure pieces: the pod network's parser, the records a
// crashed shim leaves, and the agent API's in-process plumbing.
#include "hull/sandbox/sandbox.h"

#include <fcntl.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/server_posix.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "fake_agent.h"
#include "fake_vm.h"
#include "hull/agent/v1/agent.grpc.pb.h"
#include "hull/core/ids.h"
#include "hull/core/syscall.h"
#include "hull/sandbox/grpc_agent.h"
#include "hull/sandbox/host_cgroup.h"
#include "hull/sandbox/io_pump.h"
#include "hull/sandbox/pod_network.h"

namespace hull::sandbox {
namespace {

TEST(PodNetworkParse, PicksCnisInterfaceAndItsRoutes) {
  const std::string addr = R"([
    {"ifindex":1,"ifname":"lo","link_type":"loopback","address":"00:00:00:00:00:00","mtu":65536,
     "addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host"}]},
    {"ifindex":3,"ifname":"eth0","link_type":"ether","address":"2e:1f:19:87:6c:16","mtu":1450,
     "addr_info":[{"family":"inet","local":"10.88.0.5","prefixlen":24,"scope":"global"},
                  {"family":"inet6","local":"fe80::2c1f:19ff:fe87:6c16","prefixlen":64,"scope":"link"}]}])";
  const std::string routes = R"([
    {"dst":"default","gateway":"10.88.0.1","dev":"eth0","flags":[]},
    {"dst":"10.88.0.0/24","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"10.88.0.5","flags":[]},
    {"dst":"10.99.0.0/16","dev":"eth0","scope":"link","flags":[]},
    {"dst":"192.168.0.0/16","gateway":"192.168.0.1","dev":"other0","flags":[]}])";
  auto parsed = ParseCniInterface(addr, routes);
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  EXPECT_EQ(parsed->name, "eth0");
  EXPECT_EQ(parsed->mac_address, "2e:1f:19:87:6c:16");
  EXPECT_EQ(parsed->mtu, 1450u);
  ASSERT_EQ(parsed->addresses.size(), 1u);  // the link-local one is the guest kernel's own business
  EXPECT_EQ(parsed->addresses[0].address, "10.88.0.5");
  EXPECT_EQ(parsed->addresses[0].prefix_length, 24u);
  ASSERT_EQ(parsed->routes.size(), 2u);  // not the kernel's subnet route, not another device's
  EXPECT_EQ(parsed->routes[0].destination, "");
  EXPECT_EQ(parsed->routes[0].gateway, "10.88.0.1");
  EXPECT_EQ(parsed->routes[1].destination, "10.99.0.0/16");
  EXPECT_EQ(parsed->routes[1].scope, 253u);
}

TEST(PodNetworkParse, DualStackTakesBothFamiliesRoutes) {
  const std::string addr = R"([
    {"ifindex":3,"ifname":"eth0","link_type":"ether","address":"2e:1f:19:87:6c:16","mtu":1500,
     "addr_info":[{"family":"inet","local":"10.88.0.5","prefixlen":24,"scope":"global"},
                  {"family":"inet6","local":"fd00:88::5","prefixlen":64,"scope":"global"},
                  {"family":"inet6","local":"fe80::2c1f:19ff:fe87:6c16","prefixlen":64,"scope":"link"}]}])";
  const std::string routes4 =
      R"([{"dst":"default","gateway":"10.88.0.1","dev":"eth0","flags":[]}])";
  const std::string routes6 = R"([
    {"dst":"fd00:88::/64","dev":"eth0","protocol":"kernel","metric":256,"flags":[],"pref":"medium"},
    {"dst":"fe80::/64","dev":"eth0","protocol":"kernel","metric":256,"flags":[],"pref":"medium"},
    {"type":"multicast","dst":"ff00::/8","dev":"eth0","metric":256,"flags":[]},
    {"dst":"default","gateway":"fd00:88::1","dev":"eth0","metric":1024,"flags":[],"pref":"medium"}])";
  auto parsed = ParseCniInterface(addr, routes4, routes6);
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  ASSERT_EQ(parsed->addresses.size(), 2u);
  EXPECT_EQ(parsed->addresses[1].address, "fd00:88::5");
  EXPECT_EQ(parsed->addresses[1].family, IpAddress::Family::kIpv6);
  ASSERT_EQ(parsed->routes.size(), 2u);  // the two defaults; nothing the kernel makes itself
  EXPECT_EQ(parsed->routes[0].family, static_cast<uint32_t>(AF_INET));
  EXPECT_EQ(parsed->routes[1].family, static_cast<uint32_t>(AF_INET6));
  EXPECT_EQ(parsed->routes[1].destination, "");
  EXPECT_EQ(parsed->routes[1].gateway, "fd00:88::1");
  EXPECT_FALSE(ParseCniInterface(addr, routes4, "{")) << "garbage IPv6 routes are an error";
}

TEST(PodNetworkParse, NoCniInterfaceIsAClearError) {
  auto only_lo = ParseCniInterface(
      R"([{"ifname":"lo","link_type":"loopback","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]}])",
      "[]");
  ASSERT_FALSE(only_lo);
  EXPECT_NE(only_lo.error().ToString().find("no interface with an address"), std::string::npos);
  for (const char* garbage : {"", "{", "{}", "[1,2]", "[{\"ifname\": 3}]"}) {
    EXPECT_FALSE(ParseCniInterface(garbage, "[]")) << garbage;
  }
}

// `delete` after a crash reads back what the shim recorded: only
// directories under the cgroup root are taken.
TEST(HostCgroupRecord, RoundTripsAndRefusesPathsOutsideTheRoot) {
  std::string dir = ::testing::TempDir() + "/hull-cgroup-record-" + RandomHex(4);
  ASSERT_TRUE(MakeDirs(dir));
  const std::string record = dir + "/" + kHostCgroupRecord;
  ASSERT_TRUE(WriteFile(
      record, "/sys/fs/cgroup/memory/kubepods/pod1/abc\n/sys/fs/cgroup/cpu/kubepods/pod1/abc\n"));
  auto cgroup = HostCgroup::FromRecord(record);
  ASSERT_TRUE(cgroup) << cgroup.error().ToString();
  EXPECT_EQ(cgroup->dirs(), (std::vector<std::string>{"/sys/fs/cgroup/memory/kubepods/pod1/abc",
                                                      "/sys/fs/cgroup/cpu/kubepods/pod1/abc"}));
  for (const char* bad : {"/etc/passwd\n", "/sys/fs/cgroup/../../etc\n", "sys/fs/cgroup/x\n"}) {
    ASSERT_TRUE(WriteFile(record, bad));
    auto refused = HostCgroup::FromRecord(record);
    ASSERT_FALSE(refused) << bad;
    EXPECT_EQ(refused.error().code(), ErrorCode::kInvalidArgument);
  }
  auto missing = HostCgroup::FromRecord(dir + "/none");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  (void)RemoveTree(dir);
}

TEST(HostTapName, OnlyHullsOwnNamesAreRemovable) {
  EXPECT_TRUE(IsHostTapName("hull0123abcd"));
  for (const char* name : {"hull", "hull0123abc", "hull0123abcde", "hullXYZ3abcd", "eth0",
                           "tap0_hull", "hull0123abc/"}) {
    EXPECT_FALSE(IsHostTapName(name)) << name;
  }
  auto refused = RemoveHostTap("eth0");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::kInvalidArgument);
}

// --- Cancellation and the IO pumps ----------------------------------------------------

TEST(CancellationTest, RunsCallbacksOnceAndAtOnceWhenAlreadyCancelled) {
  Cancellation cancellation;
  int runs = 0;
  uint64_t kept = cancellation.OnCancel([&] { ++runs; });
  uint64_t forgotten = cancellation.OnCancel([&] { runs += 100; });
  cancellation.Forget(forgotten);
  EXPECT_FALSE(cancellation.cancelled());
  cancellation.Cancel();
  cancellation.Cancel();
  EXPECT_TRUE(cancellation.cancelled());
  EXPECT_EQ(runs, 1);
  cancellation.OnCancel([&] { ++runs; });
  EXPECT_EQ(runs, 2) << "a late registration runs at once";
  cancellation.Forget(kept);
}

TEST(IoPumpTest, OutputArrivesInOrderAndASinkThatGivesUpDoesNotStopTheStream) {
  testing::FakeAgent agent;
  ASSERT_TRUE(agent.CreateContainer({.container_id = "c"}));
  ASSERT_TRUE(agent.StartContainer("c"));
  agent.Write({"c", ""}, OutputStream::kStdout, "one ");
  Cancellation cancellation;
  std::string seen;
  int calls = 0;
  auto pumped = std::async(std::launch::async, [&] {
    return PumpOutput(agent, {"c", ""}, OutputStream::kStdout, cancellation,
                      [&](std::string_view data) {
                        seen += data;
                        return ++calls < 2;  // the reader goes away after two chunks
                      });
  });
  ASSERT_TRUE(agent.WaitForCall("ReadOutput", 1, std::chrono::seconds(20)));
  agent.Write({"c", ""}, OutputStream::kStdout, "two ");
  agent.Write({"c", ""}, OutputStream::kStdout, "three");
  agent.Exit({"c", ""}, 0);
  auto ended = pumped.get();
  EXPECT_TRUE(ended) << ended.error().ToString();
  EXPECT_TRUE(seen == "one two " || seen == "one two three") << seen;
}

TEST(IoPumpTest, CancellingEndsAStreamThatNeverEnds) {
  testing::FakeAgent agent;
  ASSERT_TRUE(agent.CreateContainer({.container_id = "c"}));
  Cancellation cancellation;
  auto pumped = std::async(std::launch::async, [&] {
    return PumpOutput(agent, {"c", ""}, OutputStream::kStderr, cancellation,
                      [](std::string_view) { return true; });
  });
  ASSERT_TRUE(agent.WaitForCall("ReadOutput", 1, std::chrono::seconds(20)));
  cancellation.Cancel();
  auto ended = pumped.get();
  ASSERT_FALSE(ended);
  EXPECT_EQ(ended.error().code(), ErrorCode::kCancelled);
}

TEST(IoPumpTest, StdinIsCopiedUntilEofThenClosed) {
  testing::FakeAgent agent;
  ASSERT_TRUE(agent.CreateContainer({.container_id = "c"}));
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  auto pump = StdinPump::Start(agent, {"c", ""}, read_end.get());
  ASSERT_TRUE(pump) << pump.error().ToString();
  ASSERT_TRUE(WriteAll(write_end.get(), "hello\n"));
  write_end.reset();  // EOF
  for (int i = 0; i < 2000 && !agent.StdinClosed({"c", ""}); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(agent.StdinClosed({"c", ""}));
  EXPECT_EQ(agent.StdinOf({"c", ""}), "hello\n");
}

TEST(IoPumpTest, CloseHandsOnWhatIsBufferedThenCloses) {
  testing::FakeAgent agent;
  ASSERT_TRUE(agent.CreateContainer({.container_id = "c"}));
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  auto pump = StdinPump::Start(agent, {"c", ""}, read_end.get());
  ASSERT_TRUE(pump);
  ASSERT_TRUE(WriteAll(write_end.get(), "last words"));
  (*pump)->Close();  // the writer stays open: only Close ends it
  for (int i = 0; i < 2000 && !agent.StdinClosed({"c", ""}); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(agent.StdinClosed({"c", ""}));
  EXPECT_EQ(agent.StdinOf({"c", ""}), "last words");
}

// --- GrpcAgent against a hostile agent on the wire ---------------------------------------

// An agent that answers what a compromised guest might: hangs, out-of-range
// exit statuses, endless lists.
class HostileAgentService final : public agent::v1::Agent::Service {
 public:
  grpc::Status CreateContainer(grpc::ServerContext* context,
                               const agent::v1::CreateContainerRequest*,
                               agent::v1::CreateContainerResponse*) override {
    while (!context->IsCancelled() && !released_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return grpc::Status::OK;
  }
  grpc::Status WaitProcess(grpc::ServerContext* context,
                           const agent::v1::WaitProcessRequest* request,
                           agent::v1::WaitProcessResponse* response) override {
    if (request->exec_id() == "forever") {
      ++waiting_;
      while (!context->IsCancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      return grpc::Status::CANCELLED;
    }
    response->set_exit_status(request->exec_id() == "negative" ? -7 : 100000);
    response->set_signal(1000);
    return grpc::Status::OK;
  }
  grpc::Status ListProcesses(grpc::ServerContext*, const agent::v1::ListProcessesRequest*,
                             agent::v1::ListProcessesResponse* response) override {
    for (uint32_t pid = 1; pid <= kMaxPids + 10; ++pid) response->add_pids(pid);
    return grpc::Status::OK;
  }
  std::atomic<bool> released_{false};
  std::atomic<int> waiting_{0};  // WaitProcess calls that reached the agent
};

class GrpcAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    grpc::AddInsecureChannelFromFd(server_.get(), fds[0]);
    agent_ = GrpcAgent::FromFd(UniqueFd(fds[1]), AgentTimeouts{std::chrono::milliseconds(300),
                                                               std::chrono::milliseconds(300)});
  }
  void TearDown() override {
    service_.released_ = true;
    agent_.reset();
    server_->Shutdown();
  }
  HostileAgentService service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<GrpcAgent> agent_;
};

TEST_F(GrpcAgentTest, AHangingCallEndsAtItsDeadlineWithAnErrorNamingIt) {
  auto start = std::chrono::steady_clock::now();
  auto created = agent_->CreateContainer({.container_id = "c"});
  ASSERT_FALSE(created);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(300))
      << "the deadline was not honoured";
  EXPECT_EQ(created.error().code(), ErrorCode::kDeadlineExceeded);
  EXPECT_EQ(created.error().ToString(), "agent call CreateContainer: deadline of 300 ms exceeded");
}

TEST_F(GrpcAgentTest, WhatTheGuestClaimsIsBounded) {
  Cancellation never;
  auto negative = agent_->WaitProcess({"c", "negative"}, never);
  ASSERT_TRUE(negative) << negative.error().ToString();
  EXPECT_EQ(negative->exit_status, 255u);
  EXPECT_EQ(negative->signal, 0u);
  auto huge = agent_->WaitProcess({"c", "huge"}, never);
  ASSERT_TRUE(huge);
  EXPECT_EQ(huge->exit_status, 255u);
  auto pids = agent_->ListProcesses("c");
  ASSERT_TRUE(pids);
  EXPECT_EQ(pids->size(), kMaxPids);
}

TEST_F(GrpcAgentTest, AWaitCanBeCancelledFromAnotherThread) {
  Cancellation cancellation;
  auto waited = std::async(std::launch::async, [&] {
    return agent_->WaitProcess({"c", "forever"}, cancellation);
  });
  // Cancelled while the call is in flight in the agent, not before it left.
  for (int i = 0; i < 20000 && service_.waiting_ == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(service_.waiting_, 1) << "the wait never reached the agent";
  cancellation.Cancel();
  auto result = waited.get();
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().code(), ErrorCode::kCancelled) << result.error().ToString();
  EXPECT_NE(result.error().ToString().find("WaitProcess"), std::string::npos);
}

TEST_F(GrpcAgentTest, UnimplementedCallsSayWhich) {
  auto paused = agent_->PauseContainer("c");
  ASSERT_FALSE(paused);
  EXPECT_EQ(paused.error().code(), ErrorCode::kUnimplemented);
  EXPECT_NE(paused.error().ToString().find("PauseContainer"), std::string::npos);
}

// --- Sandbox over a fake VM and agent ------------------------------------------------------

class SandboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ::testing::TempDir() + "/hull-sandbox-" + RandomHex(6);
    ASSERT_TRUE(MakeDirs(root_));
    config_.run_dir = root_;
    // No real cgroups from unit tests: a directory that is no cgroup
    // hierarchy, and sandboxes that may run without limits.
    config_.host_cgroup_required = false;
    deps_.host_cgroup_root = root_;
    deps_.hypervisor = hypervisor_;
    deps_.connect_agent = [this](Vm&, auto,
                                 const AgentTimeouts&) -> Result<std::unique_ptr<AgentApi>> {
      return std::unique_ptr<AgentApi>(new testing::SharedFakeAgent(agent_));
    };
    deps_.make_share = [this](const std::string&) {
      return std::make_unique<testing::RecordingShare>(shares_);
    };
    ASSERT_TRUE(MakeDirs(root_ + "/rootfs"));
  }
  void TearDown() override { (void)RemoveTree(root_); }

  std::string root_;
  Config config_;
  SandboxDeps deps_;
  std::shared_ptr<testing::FakeHypervisor> hypervisor_ =
      std::make_shared<testing::FakeHypervisor>();
  std::shared_ptr<testing::FakeAgent> agent_ = std::make_shared<testing::FakeAgent>(
      AgentTimeouts{std::chrono::milliseconds(200), std::chrono::milliseconds(200)});
  std::shared_ptr<testing::ShareRecord> shares_ = std::make_shared<testing::ShareRecord>();
};

TEST_F(SandboxTest, OpensCreatesSharesAndClosesEverything) {
  auto sandbox = Sandbox::Open(config_, "s1", {}, deps_);
  ASSERT_TRUE(sandbox) << sandbox.error().ToString();
  EXPECT_EQ(agent_->CallCount("CreateSandbox"), 1);
  auto volume = (*sandbox)->SharePath("c1", root_ + "/rootfs", true);
  ASSERT_TRUE(volume);
  EXPECT_EQ(*volume, "/run/hull/shared/c1/volumes/0");
  auto pid = (*sandbox)->CreateContainer("c1", "{}", root_ + "/rootfs", {});
  ASSERT_TRUE(pid) << pid.error().ToString();
  EXPECT_EQ(agent_->containers(), std::set<std::string>{"c1"});
  {
    std::lock_guard lock(shares_->mu);
    EXPECT_EQ(shares_->shares["c1"].size(), 2u);
  }
  (*sandbox)->Close();
  EXPECT_EQ(agent_->CallCount("RemoveContainer"), 1);
  EXPECT_EQ(agent_->CallCount("Shutdown"), 1);
  EXPECT_FALSE(hypervisor_->launched()[0]->running);
  // The agent answered (synced): the VM ends at once, no grace.
  EXPECT_EQ(hypervisor_->launched()[0]->stop_grace_ms, 0);
  std::lock_guard lock(shares_->mu);
  EXPECT_TRUE(shares_->shares.empty());
  EXPECT_FALSE(PathExists(root_ + "/s1")) << "the VM's state dir is gone";
}

TEST_F(SandboxTest, AnUnansweredShutdownGetsTheGraceToPowerOff) {
  config_.hypervisor.stop_grace_seconds = 3;
  auto sandbox = Sandbox::Open(config_, "s1", {}, deps_);
  ASSERT_TRUE(sandbox) << sandbox.error().ToString();
  agent_->Fail("Shutdown", Error(ErrorCode::kDeadlineExceeded, "no answer"));
  (*sandbox)->Close();
  EXPECT_EQ(agent_->CallCount("Shutdown"), 1);
  EXPECT_EQ(hypervisor_->launched()[0]->stop_grace_ms, 3000);
}

TEST_F(SandboxTest, AFailedCreateUnsharesAndRemovesWhatTheGuestMade) {
  auto sandbox = Sandbox::Open(config_, "s1", {}, deps_);
  ASSERT_TRUE(sandbox);
  agent_->Hang("CreateContainer");
  auto created = (*sandbox)->CreateContainer("c1", "{}", root_ + "/rootfs", {});
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code(), ErrorCode::kDeadlineExceeded);
  EXPECT_EQ(agent_->CallCount("RemoveContainer"), 1) << "a late create in the guest is undone";
  std::lock_guard lock(shares_->mu);
  EXPECT_TRUE(shares_->shares.empty());
}

// A guest that misses a deadline is ended: nothing above waits on it again.
TEST_F(SandboxTest, AnAgentCallPastItsDeadlineEndsTheVm) {
  auto sandbox = Sandbox::Open(config_, "s1", {}, deps_);
  ASSERT_TRUE(sandbox);
  agent_->Hang("StatsContainer");
  auto stats = (*sandbox)->agent().StatsContainer("c1");
  ASSERT_FALSE(stats);
  EXPECT_EQ(stats.error().code(), ErrorCode::kDeadlineExceeded);
  auto& record = *hypervisor_->launched()[0];
  EXPECT_TRUE(record.aborted);
  EXPECT_FALSE(record.running);
  auto exit = (*sandbox)->vm().exit();
  ASSERT_TRUE(exit);
  EXPECT_FALSE(exit->expected);
  EXPECT_EQ(exit->reason,
            "the guest's agent stopped answering (agent call StatsContainer: deadline of 200 ms "
            "exceeded)");
}

TEST_F(SandboxTest, OtherAgentErrorsLeaveTheVmRunning) {
  auto sandbox = Sandbox::Open(config_, "s1", {}, deps_);
  ASSERT_TRUE(sandbox);
  agent_->Fail("StartContainer", Error(ErrorCode::kNotFound, "no such container"));
  EXPECT_FALSE((*sandbox)->agent().StartContainer("c1"));
  // The long-lived calls have no deadline to miss; Shutdown's is the caller's.
  agent_->Fail("Shutdown", Error(ErrorCode::kDeadlineExceeded, "no answer"));
  EXPECT_FALSE((*sandbox)->agent().Shutdown(true));
  EXPECT_FALSE(hypervisor_->launched()[0]->aborted);
  EXPECT_TRUE((*sandbox)->vm().running());
}

TEST_F(SandboxTest, ACreateCutOffByTheVmsDeathSaysWhyTheVmDied) {
  auto sandbox = Sandbox::Open(config_, "s1", {}, deps_);
  ASSERT_TRUE(sandbox);
  static_cast<testing::FakeVm&>((*sandbox)->vm()).Crash();
  agent_->Fail("CreateContainer", Error(ErrorCode::kUnavailable, "Socket closed"));
  auto created = (*sandbox)->CreateContainer("c1", "{}", root_ + "/rootfs", {});
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(created.error().ToString(),
            "create container `c1`: the sandbox VM is gone: killed by signal 9 (SIGKILL) "
            "(Socket closed)");
  std::lock_guard lock(shares_->mu);
  EXPECT_TRUE(shares_->shares.empty());
}

// Fail closed: a sandbox whose host limits cannot be set does not start.
TEST_F(SandboxTest, WithoutHostLimitsNoVmStartsUnlessAllowed) {
  config_.host_cgroup_required = true;
  auto sandbox = Sandbox::Open(config_, "s1", {}, deps_);
  ASSERT_FALSE(sandbox);
  EXPECT_NE(sandbox.error().ToString().find("bound the VM's host resources"), std::string::npos)
      << sandbox.error().ToString();
  EXPECT_EQ(hypervisor_->launched().size(), 0u);
  config_.host_cgroup_required = false;
  EXPECT_TRUE(Sandbox::Open(config_, "s2", {}, deps_));
}

TEST_F(SandboxTest, ALaunchThatFailsLeavesNothing) {
  hypervisor_->FailNextLaunch(Error(ErrorCode::kInternal, "no QEMU today"));
  auto sandbox = Sandbox::Open(config_, "s1", {}, deps_);
  ASSERT_FALSE(sandbox);
  EXPECT_NE(sandbox.error().ToString().find("no QEMU today"), std::string::npos);
  EXPECT_EQ(agent_->calls().size(), 0u);
}

TEST_F(SandboxTest, AnAgentThatFailsCreateSandboxStopsTheVm) {
  agent_->Fail("CreateSandbox", Error(ErrorCode::kInternal, "mount failed"));
  auto sandbox = Sandbox::Open(config_, "s1", {}, deps_);
  ASSERT_FALSE(sandbox);
  EXPECT_NE(sandbox.error().ToString().find("mount failed"), std::string::npos);
  ASSERT_EQ(hypervisor_->launched().size(), 1u);
  EXPECT_FALSE(hypervisor_->launched()[0]->running);
  EXPECT_FALSE(PathExists(root_ + "/s1"));
}

TEST_F(SandboxTest, EveryGuestGetsHostEntropyTheHostsClockAndItsOwnHostname) {
  auto a = Sandbox::Open(config_, "s1", {}, deps_);
  auto b = Sandbox::Open(config_, "s2", {}, deps_);
  ASSERT_TRUE(a && b);
  auto setups = agent_->sandbox_setups();
  ASSERT_EQ(setups.size(), 2u);
  EXPECT_EQ(setups[0].hostname, "s1");
  EXPECT_EQ(setups[1].hostname, "s2");
  EXPECT_EQ(setups[0].entropy.size(), 64u);
  EXPECT_NE(setups[0].entropy, setups[1].entropy);
  auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  EXPECT_GT(setups[0].realtime_ns, now - int64_t{3600} * 1000000000);
  EXPECT_LE(setups[0].realtime_ns, now);
}

// --- templates: the decisions around them, with a fake hypervisor ------------------

class SandboxTemplateTest : public SandboxTest {
 protected:
  void SetUp() override {
    SandboxTest::SetUp();
    hypervisor_->EnableTemplates();
    // Real files for the template key; the fake never runs them.
    ASSERT_TRUE(WriteFile(root_ + "/vmlinuz", "kernel"));
    ASSERT_TRUE(WriteFile(root_ + "/initrd.img", "initrd"));
    config_.hypervisor.path = "/bin/sh";
    config_.hypervisor.kernel = root_ + "/vmlinuz";
    config_.hypervisor.initrd = root_ + "/initrd.img";
    config_.hypervisor.accel = "tcg";
    config_.agent.transport = "serial";
    // A guest of its own for every VM: closing one sandbox powers its off.
    deps_.connect_agent = [](Vm&, auto, const AgentTimeouts&) -> Result<std::unique_ptr<AgentApi>> {
      return std::unique_ptr<AgentApi>(new testing::FakeAgent(
          AgentTimeouts{std::chrono::milliseconds(200), std::chrono::milliseconds(200)}));
    };
  }
  std::vector<std::string> Templates() { return TemplateStore(TemplateRoot(config_)).List(); }
  // The launched VMs that were clones.
  int Clones() {
    int clones = 0;
    for (const auto& vm : hypervisor_->launched()) clones += !vm->config.clone_of.empty();
    return clones;
  }
};

TEST_F(SandboxTemplateTest, TheFirstSandboxBootsAndLeavesATemplateEveryLaterOneIsAClone) {
  {
    auto first = Sandbox::Open(config_, "s0", {}, deps_);
    ASSERT_TRUE(first) << first.error().ToString();
    EXPECT_FALSE((*first)->from_template()) << "nobody waits for a template to be built";
  }  // Close waits for the build it started
  EXPECT_EQ(hypervisor_->saves(), 1);
  EXPECT_EQ(Templates().size(), 1u);
  auto a = Sandbox::Open(config_, "s1", {}, deps_);
  ASSERT_TRUE(a) << a.error().ToString();
  auto b = Sandbox::Open(config_, "s2", {}, deps_);
  ASSERT_TRUE(b) << b.error().ToString();
  EXPECT_EQ(hypervisor_->saves(), 1);
  EXPECT_TRUE((*a)->from_template());
  EXPECT_TRUE((*b)->from_template());
  EXPECT_EQ(Clones(), 2);
}

TEST_F(SandboxTemplateTest, ABrokenTemplateCostsABootAndIsRebuilt) {
  { ASSERT_TRUE(Sandbox::Open(config_, "s0", {}, deps_)); }  // builds the template
  hypervisor_->FailClones(Error(ErrorCode::kDataLoss, "the state did not load"));
  {
    auto sandbox = Sandbox::Open(config_, "s2", {}, deps_);
    ASSERT_TRUE(sandbox) << sandbox.error().ToString();
    EXPECT_FALSE((*sandbox)->from_template());
  }
  EXPECT_EQ(hypervisor_->saves(), 2) << "the broken template was replaced";
  EXPECT_EQ(Templates().size(), 1u);
}

TEST_F(SandboxTemplateTest, ACloneFailingForAnotherReasonBootsAndKeepsTheTemplate) {
  { ASSERT_TRUE(Sandbox::Open(config_, "s0", {}, deps_)); }  // builds the template
  hypervisor_->FailClones(Error(ErrorCode::kUnavailable, "virtiofsd did not start"));
  {
    auto sandbox = Sandbox::Open(config_, "s2", {}, deps_);
    ASSERT_TRUE(sandbox) << sandbox.error().ToString();
    EXPECT_FALSE((*sandbox)->from_template());
  }
  EXPECT_EQ(hypervisor_->saves(), 1) << "a template that is not at fault stays";
  EXPECT_EQ(Templates().size(), 1u);
}

TEST_F(SandboxTemplateTest, ASandboxThatCannotBeMadeOnACloneIsMadeOnABoot) {
  { ASSERT_TRUE(Sandbox::Open(config_, "s0", {}, deps_)); }  // builds the template
  // On a clone the hot-plugged share never shows up; on a boot it does.
  deps_.connect_agent = [this](Vm& vm, auto,
                               const AgentTimeouts&) -> Result<std::unique_ptr<AgentApi>> {
    auto agent = std::make_unique<testing::FakeAgent>(
        AgentTimeouts{std::chrono::milliseconds(200), std::chrono::milliseconds(200)});
    for (const auto& record : hypervisor_->launched()) {
      if (record->config.id == vm.id() && !record->config.clone_of.empty() && record->running) {
        agent->Fail("CreateSandbox", Error(ErrorCode::kInvalidArgument, "no virtio-fs tag"));
      }
    }
    return std::unique_ptr<AgentApi>(std::move(agent));
  };
  auto sandbox = Sandbox::Open(config_, "s1", {}, deps_);
  ASSERT_TRUE(sandbox) << sandbox.error().ToString();
  EXPECT_FALSE((*sandbox)->from_template());
  EXPECT_EQ(Clones(), 1);
  for (const auto& record : hypervisor_->launched()) {
    if (!record->config.clone_of.empty()) {
      EXPECT_FALSE(record->running) << "the clone was stopped";
    }
  }
}

TEST_F(SandboxTemplateTest, AfterAFailedBuildSandboxesBootWithoutTryingAgainAtOnce) {
  hypervisor_->FailNextSave(Error(ErrorCode::kInternal, "the template's agent never answered"));
  { ASSERT_TRUE(Sandbox::Open(config_, "s0", {}, deps_)); }  // its build fails
  EXPECT_EQ(hypervisor_->saves(), 0);
  { ASSERT_TRUE(Sandbox::Open(config_, "s1", {}, deps_)); }
  EXPECT_EQ(hypervisor_->save_attempts(), 1) << "no second doomed build";
}

TEST_F(SandboxTemplateTest, ACloneWhoseAgentNeverAnswersIsStoppedAndTheSandboxBoots) {
  { ASSERT_TRUE(Sandbox::Open(config_, "s0", {}, deps_)); }  // builds the template
  // Clones' agents do not answer; a booted VM's does.
  deps_.connect_agent = [this](Vm& vm, auto,
                               const AgentTimeouts&) -> Result<std::unique_ptr<AgentApi>> {
    for (const auto& record : hypervisor_->launched()) {
      if (record->config.id == vm.id() && !record->config.clone_of.empty() && record->running) {
        return MakeError(ErrorCode::kDeadlineExceeded, "agent did not answer");
      }
    }
    return std::unique_ptr<AgentApi>(new testing::FakeAgent(
        AgentTimeouts{std::chrono::milliseconds(200), std::chrono::milliseconds(200)}));
  };
  size_t launched_before = hypervisor_->launched().size();
  auto sandbox = Sandbox::Open(config_, "s2", {}, deps_);
  ASSERT_TRUE(sandbox) << sandbox.error().ToString();
  EXPECT_FALSE((*sandbox)->from_template());
  auto launched = hypervisor_->launched();
  ASSERT_GE(launched.size(), launched_before + 2);
  EXPECT_FALSE(launched[launched_before]->config.clone_of.empty());
  EXPECT_FALSE(launched[launched_before]->running) << "the silent clone was stopped";
}

TEST_F(SandboxTemplateTest, WhileAnotherProcessBuildsTheTemplateSandboxesBoot) {
  VmConfig shape = *VmConfigFromConfig(config_, "s1");
  auto key = TemplateKey(shape);
  ASSERT_TRUE(key) << key.error().ToString();
  ASSERT_TRUE(MakeDirs(TemplateRoot(config_), 0700));
  UniqueFd builder(::open((TemplateRoot(config_) + "/" + TemplateName(*key) + ".lock").c_str(),
                          O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(builder);
  ASSERT_EQ(::flock(builder.get(), LOCK_EX), 0);
  auto sandbox = Sandbox::Open(config_, "s1", {}, deps_);
  ASSERT_TRUE(sandbox) << sandbox.error().ToString();
  EXPECT_FALSE((*sandbox)->from_template());
  EXPECT_EQ(hypervisor_->saves(), 0);
}

TEST_F(SandboxTemplateTest, TemplatesOffMeansNoTemplateAtAll) {
  config_.hypervisor.template_enabled = false;
  auto sandbox = Sandbox::Open(config_, "s1", {}, deps_);
  ASSERT_TRUE(sandbox);
  EXPECT_FALSE((*sandbox)->from_template());
  EXPECT_EQ(hypervisor_->saves(), 0);
  EXPECT_FALSE(PathExists(TemplateRoot(config_)));
}

}  // namespace
}  // namespace hull::sandbox
