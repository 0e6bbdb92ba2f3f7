// The shim's pure pieces, without containerd or a VM.
#include "shim.h"

#include <google/protobuf/any.pb.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/socket.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>

#include "containerd/events/task.pb.h"
#include "containerd/runtimeoptions/v1/api.pb.h"
#include "containerd/services/events/ttrpc/v1/events.pb.h"
#include "events.h"
#include "hull/core/syscall.h"
#include "hull/core/transport.h"
#include "mounts.h"
#include "pod.h"
#include "shim_flags.h"
#include "ttrpc/ttrpc.h"

namespace hull::shim {
namespace {

TEST(ShimFlags, ParsesWhatContainerdPassesToStart) {
  auto flags =
      ParseShimFlags({"-namespace", "default", "-address", "/run/containerd/containerd.sock",
                      "-publish-binary", "/usr/bin/containerd", "-id", "t1", "-debug", "start"});
  ASSERT_TRUE(flags) << flags.error().ToString();
  EXPECT_EQ(flags->namespace_name, "default");
  EXPECT_EQ(flags->address, "/run/containerd/containerd.sock");
  EXPECT_EQ(flags->publish_binary, "/usr/bin/containerd");
  EXPECT_EQ(flags->id, "t1");
  EXPECT_TRUE(flags->debug);
  EXPECT_EQ(flags->action, ShimAction::kStart);
}

TEST(ShimFlags, AcceptsGoFlagSpellings) {
  auto flags =
      ParseShimFlags({"--namespace=k8s.io", "-id=abc", "-bundle", "/b", "-debug=false", "delete"});
  ASSERT_TRUE(flags) << flags.error().ToString();
  EXPECT_EQ(flags->namespace_name, "k8s.io");
  EXPECT_EQ(flags->id, "abc");
  EXPECT_EQ(flags->bundle, "/b");
  EXPECT_FALSE(flags->debug);
  EXPECT_EQ(flags->action, ShimAction::kDelete);
}

TEST(ShimFlags, RejectsWhatItDoesNotKnow) {
  EXPECT_EQ(ParseShimFlags({"-namespace", "n", "-id", "x"}).error().message(),
            "no action given (start, delete or serve)");
  EXPECT_EQ(ParseShimFlags({"-namespace", "n", "-id", "x", "frob"}).error().message(),
            "unknown action `frob` (start, delete or serve)");
  EXPECT_EQ(ParseShimFlags({"-bogus", "1", "start"}).error().message(), "unknown flag `-bogus`");
  EXPECT_EQ(ParseShimFlags({"-namespace"}).error().message(), "flag `-namespace` needs a value");
  EXPECT_EQ(ParseShimFlags({"-id", "x", "start"}).error().message(), "-namespace is required");
  EXPECT_EQ(ParseShimFlags({"-namespace", "n", "-debug=maybe", "start"}).error().message(),
            "-debug: `maybe` is not a boolean");
}

TEST(ShimFlags, ServeArgsRoundTrip) {
  ShimFlags flags;
  flags.namespace_name = "default";
  flags.id = "t1";
  flags.address = "/a.sock";
  flags.bundle = "/bundle";
  flags.config_path = "/etc/hull/other.toml";
  flags.debug = true;
  auto args = ServeArgs("/proc/self/exe", flags);
  ASSERT_EQ(args.front(), "/proc/self/exe");
  EXPECT_EQ(args.back(), "serve");
  auto parsed = ParseShimFlags({args.begin() + 1, args.end()});
  ASSERT_TRUE(parsed) << parsed.error().ToString();
  EXPECT_EQ(parsed->action, ShimAction::kServe);
  EXPECT_EQ(parsed->config_path, "/etc/hull/other.toml");
  EXPECT_EQ(parsed->bundle, "/bundle");
  EXPECT_EQ(parsed->address, "/a.sock");
  EXPECT_TRUE(parsed->debug);
}

TEST(MountOptions, SplitsFlagsFromDataLikeContainerd) {
  auto overlay = ParseMountOptions({"index=off", "workdir=/w", "upperdir=/u", "lowerdir=/a:/b"});
  EXPECT_EQ(overlay.flags, 0u);
  EXPECT_EQ(overlay.data, "index=off,workdir=/w,upperdir=/u,lowerdir=/a:/b");
  auto bind = ParseMountOptions({"rbind", "ro", "nosuid"});
  EXPECT_EQ(bind.flags, static_cast<unsigned long>(MS_BIND | MS_REC | MS_RDONLY | MS_NOSUID));
  EXPECT_EQ(bind.data, "");
  // `rw` clears what `ro` set; order matters, as in containerd.
  EXPECT_EQ(ParseMountOptions({"ro", "rw"}).flags, 0u);
  EXPECT_EQ(ParseMountOptions({"rw", "ro"}).flags, static_cast<unsigned long>(MS_RDONLY));
  EXPECT_TRUE(ParseMountOptions({"loop"}).loop);
  EXPECT_EQ(ParseMountOptions({"defaults", "size=64k", "mode=755"}).data, "size=64k,mode=755");
}

TEST(MountOptions, BindMountsAreRecognised) {
  EXPECT_TRUE(IsBindMount("bind", {}));
  EXPECT_TRUE(IsBindMount("", {"rbind", "ro"}));
  EXPECT_TRUE(IsBindMount("none", {"bind"}));
  EXPECT_FALSE(IsBindMount("proc", {"nosuid"}));
  EXPECT_FALSE(IsBindMount("tmpfs", {"mode=755"}));
}

TEST(MountAll, RejectsLoopAndOversizedDataWithoutMounting) {
  auto loop = MountAll({{"ext4", "/img", {"loop"}}}, "/nonexistent-target");
  ASSERT_FALSE(loop);
  EXPECT_EQ(loop.error().code(), ErrorCode::kUnimplemented);
  std::string lower = "lowerdir=" + std::string(5000, 'a');
  auto long_data = MountAll({{"overlay", "overlay", {lower}}}, "/nonexistent-target");
  ASSERT_FALSE(long_data);
  EXPECT_NE(long_data.error().ToString().find("more than a page"), std::string::npos)
      << long_data.error().ToString();
}

TEST(RuntimeOptions, ConfigPathFromRuntimeOptionsAny) {
  ::runtimeoptions::v1::Options options;
  options.set_config_path("/etc/hull/pod.toml");
  google::protobuf::Any any;
  any.set_type_url("runtimeoptions.v1.Options");
  any.set_value(options.SerializeAsString());
  auto path = ConfigPathFromOptions(any.SerializeAsString());
  ASSERT_TRUE(path) << path.error().ToString();
  EXPECT_EQ(*path, "/etc/hull/pod.toml");
  // The same with a URL prefix, and nothing at all.
  any.set_type_url("type.googleapis.com/runtimeoptions.v1.Options");
  EXPECT_EQ(*ConfigPathFromOptions(any.SerializeAsString()), "/etc/hull/pod.toml");
  EXPECT_EQ(*ConfigPathFromOptions(""), "");
}

TEST(RuntimeOptions, OtherOptionTypesAreAClearError) {
  google::protobuf::Any any;
  any.set_type_url("containerd.runc.v1.Options");
  auto path = ConfigPathFromOptions(any.SerializeAsString());
  ASSERT_FALSE(path);
  EXPECT_NE(path.error().message().find("containerd.runc.v1.Options"), std::string::npos);
  EXPECT_FALSE(ConfigPathFromOptions("\xff\xff\xff"));
}

class BundleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/hull-shim-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void WriteSpec(const std::string& annotations) {
    ASSERT_TRUE(WriteFile(
        dir_ + "/config.json",
        R"({"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"},)"
        R"("annotations":{)" +
            annotations + "}}"));
  }
  std::string dir_;
};

TEST_F(BundleTest, ContainersOfAPodShareTheSandboxId) {
  WriteSpec(
      R"("io.kubernetes.cri.sandbox-id":"pod1234","io.kubernetes.cri.container-type":"container")");
  EXPECT_EQ(*SandboxIdForBundle(dir_, "ctr5678"), "pod1234");
}

TEST_F(BundleTest, AContainerWithoutAPodIsItsOwnSandbox) {
  WriteSpec("");
  EXPECT_EQ(*SandboxIdForBundle(dir_, "t1"), "t1");
}

TEST_F(BundleTest, IdsThatCouldEscapeAPathAreRefused) {
  WriteSpec(R"("io.kubernetes.cri.sandbox-id":"../../etc")");
  auto sandbox = SandboxIdForBundle(dir_, "t1");
  ASSERT_FALSE(sandbox);
  EXPECT_EQ(sandbox.error().code(), ErrorCode::kInvalidArgument);
  WriteSpec("");
  EXPECT_FALSE(SandboxIdForBundle(dir_, "a/b"));
  EXPECT_FALSE(SandboxIdForBundle(dir_ + "/missing", "t1"));
}

TEST(Events, EnvelopeHasTopicTimestampNamespaceAndBareTypeUrl) {
  ::containerd::events::TaskExit exit;
  exit.set_container_id("t1");
  exit.set_id("t1");
  exit.set_exit_status(3);
  auto when = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000) +
                                                    std::chrono::nanoseconds(5));
  std::string bytes = ForwardRequestBytes("default", TopicFor(exit), exit, when);
  ::containerd::services::events::ttrpc::v1::ForwardRequest request;
  ASSERT_TRUE(request.ParseFromString(bytes));
  EXPECT_EQ(request.envelope().topic(), "/tasks/exit");
  EXPECT_EQ(request.envelope().namespace_(), "default");
  EXPECT_EQ(request.envelope().timestamp().seconds(), 1700000000);
  EXPECT_EQ(request.envelope().timestamp().nanos(), 5);
  EXPECT_EQ(request.envelope().event().type_url(), "containerd.events.TaskExit");
  ::containerd::events::TaskExit decoded;
  ASSERT_TRUE(decoded.ParseFromString(request.envelope().event().value()));
  EXPECT_EQ(decoded.exit_status(), 3u);
}

TEST(Events, EveryTaskEventHasContainerdsTopic) {
  EXPECT_EQ(TopicFor(::containerd::events::TaskCreate()), "/tasks/create");
  EXPECT_EQ(TopicFor(::containerd::events::TaskStart()), "/tasks/start");
  EXPECT_EQ(TopicFor(::containerd::events::TaskDelete()), "/tasks/delete");
  EXPECT_EQ(TopicFor(::containerd::events::TaskExecAdded()), "/tasks/exec-added");
  EXPECT_EQ(TopicFor(::containerd::events::TaskExecStarted()), "/tasks/exec-started");
  EXPECT_EQ(TopicFor(::containerd::events::TaskOOM()), "/tasks/oom");
  EXPECT_EQ(TopicFor(::containerd::events::TaskPaused()), "/tasks/paused");
  EXPECT_EQ(TopicFor(::containerd::events::TaskResumed()), "/tasks/resumed");
}

// A stand-in for containerd's ttrpc events service: records what arrives.
class FakeContainerd {
 public:
  FakeContainerd() {
    char tmpl[] = "/tmp/hull-events-XXXXXX";
    EXPECT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    socket_ = dir_ + "/c.sock.ttrpc";
    server_.Register(
        "containerd.services.events.ttrpc.v1.Events", "Forward",
        [this](const ttrpc::CallContext& context, std::string_view payload) -> Result<std::string> {
          ::containerd::services::events::ttrpc::v1::ForwardRequest request;
          if (!request.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
            return MakeError(ErrorCode::kInvalidArgument, "bad request");
          }
          std::lock_guard lock(mu_);
          if (fail_next_ > 0) {
            --fail_next_;
            return MakeError(ErrorCode::kUnavailable, "not now");
          }
          namespaces_.push_back(context.Namespace());
          received_.push_back(request.envelope());
          return std::string();
        });
    auto listener = ListenUnix(socket_);
    EXPECT_TRUE(listener);
    thread_ = std::thread(
        [this, fd = std::move(*listener)]() mutable { (void)server_.Serve(std::move(fd)); });
  }
  ~FakeContainerd() {
    server_.Shutdown();
    thread_.join();
    std::filesystem::remove_all(dir_);
  }
  std::vector<::containerd::services::events::ttrpc::v1::Envelope> received() {
    std::lock_guard lock(mu_);
    return received_;
  }
  std::vector<std::string> namespaces() {
    std::lock_guard lock(mu_);
    return namespaces_;
  }
  void FailNext(int n) {
    std::lock_guard lock(mu_);
    fail_next_ = n;
  }
  const std::string& socket() const { return socket_; }

 private:
  std::string dir_, socket_;
  ttrpc::Server server_;
  std::thread thread_;
  std::mutex mu_;
  int fail_next_ = 0;
  std::vector<::containerd::services::events::ttrpc::v1::Envelope> received_;
  std::vector<std::string> namespaces_;
};

TEST(EventPublisher, DeliversInOrderWithNamespaceAndTimestamps) {
  FakeContainerd containerd;
  {
    EventPublisher publisher(containerd.socket(), "default");
    ::containerd::events::TaskCreate create;
    create.set_container_id("t1");
    ::containerd::events::TaskStart start;
    start.set_container_id("t1");
    ::containerd::events::TaskExit exit;
    exit.set_container_id("t1");
    exit.set_exit_status(137);
    ::containerd::events::TaskDelete del;
    del.set_container_id("t1");
    publisher.Publish(create);
    publisher.Publish(start);
    publisher.Publish(exit);
    publisher.Publish(del);
    publisher.Flush(std::chrono::seconds(10));
  }
  auto received = containerd.received();
  ASSERT_EQ(received.size(), 4u);
  EXPECT_EQ(received[0].topic(), "/tasks/create");
  EXPECT_EQ(received[1].topic(), "/tasks/start");
  EXPECT_EQ(received[2].topic(), "/tasks/exit");
  EXPECT_EQ(received[3].topic(), "/tasks/delete");
  for (const auto& envelope : received) {
    EXPECT_EQ(envelope.namespace_(), "default");
    EXPECT_GT(envelope.timestamp().seconds(), 1600000000);
  }
  for (const auto& ns : containerd.namespaces()) EXPECT_EQ(ns, "default");
}

TEST(EventPublisher, RetriesAFailedForward) {
  FakeContainerd containerd;
  containerd.FailNext(1);
  {
    EventPublisher publisher(containerd.socket(), "k8s.io");
    ::containerd::events::TaskOOM oom;
    oom.set_container_id("c1");
    publisher.Publish(oom);
    publisher.Flush(std::chrono::seconds(10));
  }
  auto received = containerd.received();
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].topic(), "/tasks/oom");
  EXPECT_EQ(received[0].namespace_(), "k8s.io");
}

// A guest flooding OOM events: one waits in the queue per container at most;
// every other event is delivered, in order.
TEST(EventPublisher, AFloodOfOomEventsIsCoalescedPerContainer) {
  FakeContainerd containerd;
  containerd.FailNext(1);  // the first send backs off: the rest queue up
  uint64_t coalesced = 0;
  {
    EventPublisher publisher(containerd.socket(), "k8s.io");
    ::containerd::events::TaskOOM oom1;
    oom1.set_container_id("c1");
    ::containerd::events::TaskOOM oom2;
    oom2.set_container_id("c2");
    ::containerd::events::TaskExit exit;
    exit.set_container_id("c1");
    for (int i = 0; i < 1000; ++i) {
      publisher.Publish(oom1);
      publisher.Publish(oom2);
      if (i == 500) publisher.Publish(exit);
    }
    publisher.Flush(std::chrono::seconds(10));
    coalesced = publisher.coalesced();
  }
  std::map<std::string, int> ooms;
  int exits = 0;
  for (const auto& envelope : containerd.received()) {
    if (envelope.topic() == "/tasks/exit") ++exits;
    if (envelope.topic() != "/tasks/oom") continue;
    ::containerd::events::TaskOOM oom;
    ASSERT_TRUE(oom.ParseFromString(envelope.event().value()));
    ++ooms[oom.container_id()];
  }
  EXPECT_EQ(exits, 1);
  ASSERT_EQ(ooms.size(), 2u);
  // One for each container, and one more at most for one being sent when the
  // others came.
  EXPECT_LE(ooms["c1"] + ooms["c2"], 4);
  EXPECT_GE(ooms["c1"], 1);
  EXPECT_GE(ooms["c2"], 1);
  EXPECT_EQ(coalesced + ooms["c1"] + ooms["c2"], 2000u);
}

}  // namespace
// --- pods: namespaces for the guest -------------------------------------------------

oci::Spec PodSpec(const std::string& role, std::vector<oci::Namespace> namespaces) {
  oci::Spec spec;
  spec.linux.emplace();
  spec.linux->namespaces = std::move(namespaces);
  if (!role.empty()) spec.annotations["io.kubernetes.cri.container-type"] = role;
  return spec;
}

TEST(PodNamespaces, SandboxLeavesItsCniNetnsToTheVm) {
  oci::Spec spec = PodSpec("sandbox", {{"pid", ""},
                                       {"ipc", ""},
                                       {"uts", ""},
                                       {"mount", ""},
                                       {"network", "/var/run/netns/cni-1234"}});
  ASSERT_TRUE(AdaptPodNamespaces(spec, {.task_pid = 42, .sandbox_guest_pid = 0}));
  EXPECT_EQ(spec.linux->namespaces,
            (std::vector<oci::Namespace>{{"pid", ""}, {"ipc", ""}, {"uts", ""}, {"mount", ""}}));
  EXPECT_EQ(PodRoleOf(spec), PodRole::kSandbox);
}

TEST(PodNamespaces, ContainersJoinTheSandboxInTheGuest) {
  oci::Spec spec = PodSpec("container", {{"pid", "/proc/42/ns/pid"},
                                         {"ipc", "/proc/42/ns/ipc"},
                                         {"uts", "/proc/42/ns/uts"},
                                         {"mount", ""},
                                         {"network", "/proc/42/ns/net"}});
  ASSERT_TRUE(AdaptPodNamespaces(spec, {.task_pid = 42, .sandbox_guest_pid = 7}));
  EXPECT_EQ(spec.linux->namespaces, (std::vector<oci::Namespace>{{"pid", "/proc/7/ns/pid"},
                                                                 {"ipc", "/proc/7/ns/ipc"},
                                                                 {"uts", "/proc/7/ns/uts"},
                                                                 {"mount", ""}}));
}

TEST(PodNamespaces, HostNamespacesAreClearErrors) {
  struct Case {
    oci::Spec spec;
    const char* expected;
  } cases[] = {
      {PodSpec("sandbox", {{"pid", ""}, {"ipc", ""}, {"mount", ""}}), "hostNetwork"},
      {PodSpec("sandbox", {{"network", "/var/run/netns/cni-1"}, {"ipc", ""}, {"mount", ""}}),
       "hostPID"},
      {PodSpec("sandbox", {{"network", "/var/run/netns/cni-1"}, {"pid", ""}, {"mount", ""}}),
       "hostIPC"},
      // Another process's namespaces, not the pod's (the task pid is 42).
      {PodSpec("container", {{"ipc", "/proc/1/ns/ipc"}, {"mount", ""}}), "is on the host"},
      // A kind the pod does not share.
      {PodSpec("container", {{"mount", "/proc/42/ns/mnt"}}), "is on the host"},
      // Outside CRI a network namespace path is a host netns hull cannot enter.
      {PodSpec("", {{"network", "/var/run/netns/mine"}, {"mount", ""}}), "is on the host"},
  };
  for (auto& c : cases) {
    auto adapted = AdaptPodNamespaces(c.spec, {.task_pid = 42, .sandbox_guest_pid = 7});
    ASSERT_FALSE(adapted) << c.expected;
    EXPECT_NE(adapted.error().ToString().find(c.expected), std::string::npos)
        << adapted.error().ToString();
  }
  oci::Spec early = PodSpec("container", {{"ipc", "/proc/42/ns/ipc"}, {"mount", ""}});
  auto no_sandbox = AdaptPodNamespaces(early, {.task_pid = 42, .sandbox_guest_pid = 0});
  ASSERT_FALSE(no_sandbox);
  EXPECT_EQ(no_sandbox.error().code(), ErrorCode::kFailedPrecondition);
}

TEST(PodNamespaces, PlainSpecsAreUntouched) {
  oci::Spec spec = PodSpec("", {{"pid", ""}, {"network", ""}, {"mount", ""}});
  oci::Spec before = spec;
  ASSERT_TRUE(AdaptPodNamespaces(spec, {.task_pid = 42, .sandbox_guest_pid = 0}));
  EXPECT_EQ(spec, before);
  EXPECT_EQ(PodRoleOf(spec), PodRole::kNone);
}

TEST(PodVmSizing, LimitsPlusOverheadElseDefaults) {
  auto none = SizePodVm({}, 160);
  ASSERT_TRUE(none);
  EXPECT_EQ(none->memory_mib, 0u);
  EXPECT_EQ(none->vcpus, 0u);
  auto sized = SizePodVm({{"io.kubernetes.cri.sandbox-memory", std::to_string(256ull << 20)},
                          {"io.kubernetes.cri.sandbox-cpu-quota", "150000"},
                          {"io.kubernetes.cri.sandbox-cpu-period", "100000"}},
                         160);
  ASSERT_TRUE(sized);
  EXPECT_EQ(sized->memory_mib, 256u + 160u);
  EXPECT_EQ(sized->vcpus, 2u);  // 1.5 CPUs round up
  auto odd =
      SizePodVm({{"io.kubernetes.cri.sandbox-memory", std::to_string((64ull << 20) + 1)}}, 0);
  ASSERT_TRUE(odd);
  EXPECT_EQ(odd->memory_mib, 65u);  // a byte over rounds up
  auto unlimited = SizePodVm({{"io.kubernetes.cri.sandbox-memory", "0"},
                              {"io.kubernetes.cri.sandbox-cpu-quota", "-1"},
                              {"io.kubernetes.cri.sandbox-cpu-period", "100000"}},
                             160);
  ASSERT_TRUE(unlimited);
  EXPECT_EQ(unlimited->memory_mib, 0u);
  EXPECT_EQ(unlimited->vcpus, 0u);
  auto bad = SizePodVm({{"io.kubernetes.cri.sandbox-memory", "lots"}}, 160);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().ToString().find("io.kubernetes.cri.sandbox-memory"), std::string::npos);
}

}  // namespace hull::shim
