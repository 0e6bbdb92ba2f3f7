// Pods through containerd's CRI plugin, driven with hull's CRI client the way
// kubelet drives it: RuntimeClass handler `hull`, a private containerd with a
// CNI bridge of its own, the pause and busybox images built here and imported
// into namespace k8s.io. After every case: no shim, QEMU, virtiofsd, mount,
// run_dir entry or CNI netns of the test is left.
#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <thread>

#include "containerd_env.h"
#include "cri_client.h"
#include "hull/core/syscall.h"
#include "libvirt_env.h"
#include "testlib.h"

namespace hull::testing {
namespace {

namespace cri = runtime::v1;
using Stub = cri::RuntimeService::Stub;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kImage[] = "docker.io/hull-test/busybox:latest";
constexpr char kHullShim[] = "containerd-shim-hull-v2";

std::string BinDir() {
  const char* dir = std::getenv("HULL_TEST_BIN_DIR");
  return dir != nullptr && *dir != '\0' ? dir : HULL_BIN_DIR;
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::vector<std::string> CniNetns() {
  std::vector<std::string> names;
  DIR* dir = ::opendir("/var/run/netns");
  if (dir == nullptr) return names;
  while (dirent* e = ::readdir(dir)) {
    if (std::string_view(e->d_name).starts_with("cni-")) names.emplace_back(e->d_name);
  }
  ::closedir(dir);
  return names;
}

// A WebSocket client of CRI's streaming server (kubelet's
// `v4.channel.k8s.io` protocol): each binary message is a channel byte (0
// stdin, 1 stdout, 2 stderr, 3 status, 4 resize) and the payload. Enough for
// exec and attach with a terminal.
class StreamClient {
 public:
  // url: http://127.0.0.1:<port>/<exec|attach>/<token>
  static std::unique_ptr<StreamClient> Open(const std::string& url, std::string* error) {
    auto fail = [&](std::string why) {
      *error = why;
      return nullptr;
    };
    const std::string prefix = "http://";
    if (!url.starts_with(prefix)) return fail("not an http URL: " + url);
    auto slash = url.find('/', prefix.size());
    std::string host_port = url.substr(prefix.size(), slash - prefix.size());
    std::string path = slash == std::string::npos ? "/" : url.substr(slash);
    auto colon = host_port.rfind(':');
    std::string host = host_port.substr(0, colon);
    int port = std::atoi(host_port.substr(colon + 1).c_str());
    UniqueFd sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    if (!sock || ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1 ||
        ::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
      return fail("connect to " + host_port + ": " + std::strerror(errno));
    }
    timeval timeout{20, 0};
    ::setsockopt(sock.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    std::string request =
        "GET " + path + " HTTP/1.1\r\nHost: " + host_port +
        "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: aHVsbC10ZXN0LWtleS0xMjM0NQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n";
    if (::write(sock.get(), request.data(), request.size()) !=
        static_cast<ssize_t>(request.size())) {
      return fail("send the upgrade request");
    }
    std::string head;
    char c;
    while (head.find("\r\n\r\n") == std::string::npos && ::read(sock.get(), &c, 1) == 1) head += c;
    if (!head.starts_with("HTTP/1.1 101")) return fail("no WebSocket upgrade: " + head);
    auto client = std::unique_ptr<StreamClient>(new StreamClient());
    client->sock_ = std::move(sock);
    return client;
  }

  bool Send(uint8_t channel, const std::string& data) {
    std::string payload(1, static_cast<char>(channel));
    payload += data;
    std::string frame(1, static_cast<char>(0x82));  // FIN, binary
    const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
    if (payload.size() < 126) {
      frame += static_cast<char>(0x80 | payload.size());
    } else {
      frame += static_cast<char>(0x80 | 126);
      frame += static_cast<char>(payload.size() >> 8);
      frame += static_cast<char>(payload.size() & 0xff);
    }
    frame.append(reinterpret_cast<const char*>(mask), 4);
    for (size_t i = 0; i < payload.size(); ++i)
      frame += static_cast<char>(payload[i] ^ mask[i % 4]);
    return ::write(sock_.get(), frame.data(), frame.size()) == static_cast<ssize_t>(frame.size());
  }

  // Reads messages until the status channel speaks or the stream ends;
  // returns everything that arrived on stdout, and the status JSON.
  std::pair<std::string, std::string> ReadUntilStatus() {
    std::string out, status;
    while (true) {
      unsigned char header[2];
      if (!ReadFull(header, 2)) break;
      int opcode = header[0] & 0x0f;
      uint64_t length = header[1] & 0x7f;
      if (length == 126) {
        unsigned char ext[2];
        if (!ReadFull(ext, 2)) break;
        length = (ext[0] << 8) | ext[1];
      } else if (length == 127) {
        unsigned char ext[8];
        if (!ReadFull(ext, 8)) break;
        length = 0;
        for (unsigned char b : ext) length = (length << 8) | b;
      }
      std::string payload(length, '\0');
      if (length > 0 && !ReadFull(reinterpret_cast<unsigned char*>(payload.data()), length)) break;
      if (opcode == 8) break;  // close
      if (opcode != 2 || payload.empty()) continue;
      if (payload[0] == 1) out += payload.substr(1);
      if (payload[0] == 3) {
        status += payload.substr(1);
        if (!status.empty()) break;
      }
    }
    return {out, status};
  }

 private:
  StreamClient() = default;
  bool ReadFull(unsigned char* data, size_t size) {
    size_t got = 0;
    while (got < size) {
      ssize_t n = ::read(sock_.get(), data + got, size - got);
      if (n <= 0) return false;
      got += static_cast<size_t>(n);
    }
    return true;
  }
  UniqueFd sock_;
};

class CriTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HULL_REQUIRE_ROOT("containerd, CNI and VMs");
    if (!IsExecutable(kContainerd)) GTEST_SKIP() << "containerd is not installed";
    if (!IsExecutable("/usr/lib/cni/bridge")) {
      GTEST_SKIP()
          << "CNI plugins are not installed (containernetworking-plugins: /usr/lib/cni/bridge)";
    }
    if (!PathExists(HULL_TEST_IMAGE_ARCHIVE))
      GTEST_SKIP() << "test image " << HULL_TEST_IMAGE_ARCHIVE << " not built";
    if (!IsExecutable(BinDir() + "/" + kHullShim))
      GTEST_SKIP() << "containerd-shim-hull-v2 not built";
    HULL_REQUIRE_QEMU();
    netns_before_ = CniNetns();
    auto started = PrivateContainerd::Start(EnvOptions());
    ASSERT_TRUE(started) << started.error().ToString();
    env_ = std::move(*started);
    ASSERT_TRUE(env_->ImportImage(HULL_TEST_IMAGE_ARCHIVE));
    ASSERT_TRUE(env_->ImportImage(HULL_TEST_PAUSE_ARCHIVE));
    auto client = CriClient::Connect(env_->socket(), seconds(30));
    ASSERT_TRUE(client) << client.error().ToString() << "\n" << env_->LogTail();
    cri_ = std::move(*client);
  }

  virtual PrivateContainerd::Options EnvOptions() { return {.bin_dir = BinDir(), .cri = true}; }

  void TearDown() override {
    if (!env_) return;
    // Pods a failed case left: stopped and removed as kubelet would.
    if (cri_) {
      auto pods = cri_->Call(&Stub::ListPodSandbox, cri::ListPodSandboxRequest(), "ListPodSandbox");
      if (pods) {
        for (const auto& pod : pods->items()) {
          EXPECT_TRUE(HasFailure())
              << "pod " << pod.metadata().name() << " was left running by the case";
          StopAndRemovePod(pod.id());
        }
      }
    }
    if (!HasFailure()) {
      EXPECT_EQ(env_->WaitForNoLeftovers(seconds(15)), "")
          << "hull left this behind after the case";
      EXPECT_EQ(CniNetns(), netns_before_) << "a CNI network namespace was left";
    } else {
      std::cerr << "--- containerd log (tail) ---\n" << env_->LogTail(80) << "\n";
    }
    cri_.reset();
    env_.reset();
  }

  cri::PodSandboxConfig PodConfig(const std::string& name) {
    cri::PodSandboxConfig config;
    config.mutable_metadata()->set_name(name);
    config.mutable_metadata()->set_namespace_("default");
    config.mutable_metadata()->set_uid(name + "-uid-" + RandomHex(4));
    config.set_hostname(name);
    config.set_log_directory(env_->dir() + "/pods/" + name);
    EXPECT_TRUE(MakeDirs(config.log_directory(), 0755));
    return config;
  }

  std::string RunPod(const cri::PodSandboxConfig& config, const std::string& handler = "hull") {
    cri::RunPodSandboxRequest request;
    *request.mutable_config() = config;
    request.set_runtime_handler(handler);
    auto pod = cri_->Call(&Stub::RunPodSandbox, request, "RunPodSandbox");
    EXPECT_TRUE(pod) << pod.error().ToString();
    return pod ? pod->pod_sandbox_id() : "";
  }

  cri::ContainerConfig ContainerConfig(const std::string& name, std::vector<std::string> args) {
    cri::ContainerConfig config;
    config.mutable_metadata()->set_name(name);
    config.mutable_image()->set_image(kImage);
    for (auto& arg : args) config.add_args(arg);
    config.set_log_path(name + ".log");
    return config;
  }

  std::string CreateAndStart(const std::string& pod, const cri::PodSandboxConfig& pod_config,
                             const cri::ContainerConfig& config) {
    cri::CreateContainerRequest create;
    create.set_pod_sandbox_id(pod);
    *create.mutable_config() = config;
    *create.mutable_sandbox_config() = pod_config;
    auto created = cri_->Call(&Stub::CreateContainer, create, "CreateContainer");
    EXPECT_TRUE(created) << created.error().ToString();
    if (!created) return "";
    cri::StartContainerRequest start;
    start.set_container_id(created->container_id());
    auto started = cri_->Call(&Stub::StartContainer, start, "StartContainer");
    EXPECT_TRUE(started) << started.error().ToString();
    return created->container_id();
  }

  Result<cri::ExecSyncResponse> ExecSync(const std::string& container, std::vector<std::string> cmd,
                                         int64_t timeout_seconds = 30) {
    cri::ExecSyncRequest request;
    request.set_container_id(container);
    for (auto& word : cmd) request.add_cmd(word);
    request.set_timeout(timeout_seconds);
    return cri_->Call(&Stub::ExecSync, request, "ExecSync", seconds(timeout_seconds + 60));
  }

  cri::ContainerStatus Status(const std::string& container) {
    cri::ContainerStatusRequest request;
    request.set_container_id(container);
    auto status = cri_->Call(&Stub::ContainerStatus, request, "ContainerStatus");
    EXPECT_TRUE(status) << status.error().ToString();
    return status ? status->status() : cri::ContainerStatus();
  }

  bool WaitForState(const std::string& container, cri::ContainerState state,
                    milliseconds timeout = seconds(30)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (Status(container).state() == state) return true;
      std::this_thread::sleep_for(milliseconds(200));
    }
    return false;
  }

  void StopAndRemoveContainer(const std::string& container) {
    cri::StopContainerRequest stop;
    stop.set_container_id(container);
    stop.set_timeout(5);
    auto stopped = cri_->Call(&Stub::StopContainer, stop, "StopContainer");
    EXPECT_TRUE(stopped) << stopped.error().ToString();
    cri::RemoveContainerRequest remove;
    remove.set_container_id(container);
    auto removed = cri_->Call(&Stub::RemoveContainer, remove, "RemoveContainer");
    EXPECT_TRUE(removed) << removed.error().ToString();
  }

  // Polls PodSandboxStatus (up to 30 s) until the pod is NOTREADY.
  bool WaitForPodNotReady(const std::string& pod) {
    for (int i = 0; i < 150; ++i) {
      cri::PodSandboxStatusRequest request;
      request.set_pod_sandbox_id(pod);
      auto status = cri_->Call(&Stub::PodSandboxStatus, request, "PodSandboxStatus");
      if (status && status->status().state() == cri::SANDBOX_NOTREADY) return true;
      std::this_thread::sleep_for(milliseconds(200));
    }
    return false;
  }

  void StopAndRemovePod(const std::string& pod) {
    cri::StopPodSandboxRequest stop;
    stop.set_pod_sandbox_id(pod);
    auto stopped = cri_->Call(&Stub::StopPodSandbox, stop, "StopPodSandbox");
    EXPECT_TRUE(stopped) << stopped.error().ToString();
    cri::RemovePodSandboxRequest remove;
    remove.set_pod_sandbox_id(pod);
    auto removed = cri_->Call(&Stub::RemovePodSandbox, remove, "RemovePodSandbox");
    EXPECT_TRUE(removed) << removed.error().ToString();
  }

  // The pod's host cgroup went with the pod; the parent is kubelet's (here,
  // the test's, removed too).
  void ExpectPodCgroupGone(const std::string& parent, const std::string& pod) {
    for (const char* hierarchy : {"/sys/fs/cgroup/memory", "/sys/fs/cgroup"}) {
      std::string dir = std::string(hierarchy) + parent;
      if (!PathExists(dir)) continue;
      EXPECT_FALSE(PathExists(dir + "/" + pod))
          << "the pod's host cgroup was left: " << dir << "/" << pod;
    }
    auto mounts = ReadFile("/proc/self/mounts").value_or("");
    std::istringstream lines(mounts);
    for (std::string line; std::getline(lines, line);) {
      std::istringstream fields(line);
      std::string source, target, type;
      fields >> source >> target >> type;
      if (type == "cgroup" || type == "cgroup2") ::rmdir((target + parent).c_str());
    }
  }

  std::vector<std::string> netns_before_;
  std::unique_ptr<PrivateContainerd> env_;
  std::unique_ptr<CriClient> cri_;
};

TEST_F(CriTest, PodLifecycleWithExecLogsAndStatus) {
  cri::PodSandboxConfig pod_config = PodConfig("life");
  std::string pod = RunPod(pod_config);
  ASSERT_FALSE(pod.empty());
  cri::PodSandboxStatusRequest status_request;
  status_request.set_pod_sandbox_id(pod);
  auto pod_status = cri_->Call(&Stub::PodSandboxStatus, status_request, "PodSandboxStatus");
  ASSERT_TRUE(pod_status) << pod_status.error().ToString();
  EXPECT_EQ(pod_status->status().state(), cri::SANDBOX_READY);
  EXPECT_EQ(pod_status->status().runtime_handler(), "hull");

  std::string container = CreateAndStart(
      pod, pod_config,
      ContainerConfig("app", {"sh", "-c", "echo started; echo oops >&2; exec sleep 600"}));
  ASSERT_FALSE(container.empty());
  EXPECT_TRUE(WaitForState(container, cri::CONTAINER_RUNNING));

  // It runs in a VM: the machine the container sees is QEMU's.
  auto vendor = ExecSync(container, {"cat", "/sys/class/dmi/id/sys_vendor"});
  ASSERT_TRUE(vendor) << vendor.error().ToString();
  EXPECT_EQ(vendor->stdout(), "QEMU\n");

  auto exec = ExecSync(container, {"sh", "-c", "echo from-exec; echo to-stderr >&2; exit 3"});
  ASSERT_TRUE(exec) << exec.error().ToString();
  EXPECT_EQ(exec->exit_code(), 3);
  EXPECT_EQ(exec->stdout(), "from-exec\n");
  EXPECT_EQ(exec->stderr(), "to-stderr\n");

  // The CRI log file: "<RFC 3339 time> <stream> F <line>" per line.
  std::string log_path = pod_config.log_directory() + "/app.log";
  std::string log;
  for (int i = 0; i < 50 && !(Contains(log, "stdout F started") && Contains(log, "stderr F oops"));
       ++i) {
    log = ReadFile(log_path).value_or("");
    std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_TRUE(Contains(log, " stdout F started\n")) << log;
  EXPECT_TRUE(Contains(log, " stderr F oops\n")) << log;

  StopAndRemoveContainer(container);
  StopAndRemovePod(pod);
}

TEST_F(CriTest, HostnameAndDnsAsRequested) {
  cri::PodSandboxConfig pod_config = PodConfig("dnspod");
  pod_config.mutable_dns_config()->add_servers("10.96.0.10");
  pod_config.mutable_dns_config()->add_searches("default.svc.cluster.local");
  pod_config.mutable_dns_config()->add_options("ndots:5");
  std::string pod = RunPod(pod_config);
  ASSERT_FALSE(pod.empty());
  std::string container =
      CreateAndStart(pod, pod_config, ContainerConfig("probe", {"sleep", "600"}));
  ASSERT_FALSE(container.empty());
  auto hostname = ExecSync(container, {"hostname"});
  ASSERT_TRUE(hostname) << hostname.error().ToString();
  EXPECT_EQ(hostname->stdout(), "dnspod\n");
  // /etc/hosts as CRI writes it for the pod (runc gives the same file).
  auto hosts = ExecSync(container, {"cat", "/etc/hosts"});
  ASSERT_TRUE(hosts) << hosts.error().ToString();
  EXPECT_TRUE(Contains(hosts->stdout(), "localhost")) << hosts->stdout();
  auto resolv = ExecSync(container, {"cat", "/etc/resolv.conf"});
  ASSERT_TRUE(resolv) << resolv.error().ToString();
  EXPECT_TRUE(Contains(resolv->stdout(), "nameserver 10.96.0.10")) << resolv->stdout();
  EXPECT_TRUE(Contains(resolv->stdout(), "search default.svc.cluster.local")) << resolv->stdout();
  EXPECT_TRUE(Contains(resolv->stdout(), "options ndots:5")) << resolv->stdout();
  StopAndRemoveContainer(container);
  StopAndRemovePod(pod);
}

TEST_F(CriTest, TwoContainersInAPodShareLocalhost) {
  cri::PodSandboxConfig pod_config = PodConfig("web");
  std::string pod = RunPod(pod_config);
  ASSERT_FALSE(pod.empty());
  std::string server = CreateAndStart(
      pod, pod_config,
      ContainerConfig("server", {"sh", "-c",
                                 "mkdir -p /www && echo served-by-httpd > /www/index.html && "
                                 "exec httpd -f -p 127.0.0.1:8080 -h /www"}));
  std::string client = CreateAndStart(pod, pod_config, ContainerConfig("client", {"sleep", "600"}));
  ASSERT_FALSE(server.empty());
  ASSERT_FALSE(client.empty());
  std::string body;
  for (int i = 0; i < 50 && body != "served-by-httpd\n"; ++i) {
    auto fetched = ExecSync(client, {"wget", "-q", "-O", "-", "http://127.0.0.1:8080/"});
    if (fetched && fetched->exit_code() == 0) body = fetched->stdout();
    if (body != "served-by-httpd\n") std::this_thread::sleep_for(milliseconds(200));
  }
  EXPECT_EQ(body, "served-by-httpd\n");
  StopAndRemoveContainer(client);
  StopAndRemoveContainer(server);
  StopAndRemovePod(pod);
}

TEST_F(CriTest, ExecSyncTimeoutKillsTheCommand) {
  cri::PodSandboxConfig pod_config = PodConfig("slow");
  std::string pod = RunPod(pod_config);
  ASSERT_FALSE(pod.empty());
  std::string container = CreateAndStart(pod, pod_config, ContainerConfig("app", {"sleep", "600"}));
  ASSERT_FALSE(container.empty());
  auto hung =
      ExecSync(container, {"sh", "-c", "echo marker-$((6*7)) > /dev/null; exec sleep 3000"}, 2);
  ASSERT_FALSE(hung) << "a command past its deadline must fail";
  EXPECT_TRUE(Contains(hung.error().ToString(), "timeout") ||
              Contains(hung.error().ToString(), "deadline"))
      << hung.error().ToString();
  // containerd answers "timeout 2s exceeded: context deadline exceeded"; gRPC's
  // own "Deadline Exceeded" would mean the client's deadline (the timeout + 60
  // s) fired first: ExecSync ignored its timeout. No wall-clock bound needed.
  EXPECT_FALSE(Contains(hung.error().ToString(), "Deadline Exceeded"))
      << "ExecSync did not return at its deadline: " << hung.error().ToString();
  // The hung command was killed: no `sleep 3000` is left in the container.
  std::string ps;
  for (int i = 0; i < 50; ++i) {
    auto listed = ExecSync(container, {"ps", "-o", "args"});
    ASSERT_TRUE(listed) << listed.error().ToString();
    ps = listed->stdout();
    if (!Contains(ps, "sleep 3000")) break;
    std::this_thread::sleep_for(milliseconds(200));
  }
  EXPECT_FALSE(Contains(ps, "sleep 3000")) << ps;
  StopAndRemoveContainer(container);
  StopAndRemovePod(pod);
}

TEST_F(CriTest, CrashedContainerIsCreatedAgainInTheSamePod) {
  cri::PodSandboxConfig pod_config = PodConfig("crashy");
  std::string pod = RunPod(pod_config);
  ASSERT_FALSE(pod.empty());
  cri::ContainerConfig config = ContainerConfig("app", {"sh", "-c", "exit 7"});
  std::string first = CreateAndStart(pod, pod_config, config);
  ASSERT_FALSE(first.empty());
  ASSERT_TRUE(WaitForState(first, cri::CONTAINER_EXITED));
  EXPECT_EQ(Status(first).exit_code(), 7);
  // kubelet's restart: remove the dead one, create attempt 1 in the same pod.
  cri::RemoveContainerRequest remove;
  remove.set_container_id(first);
  ASSERT_TRUE(cri_->Call(&Stub::RemoveContainer, remove, "RemoveContainer"));
  config = ContainerConfig("app", {"sleep", "600"});
  config.mutable_metadata()->set_attempt(1);
  std::string second = CreateAndStart(pod, pod_config, config);
  ASSERT_FALSE(second.empty());
  EXPECT_TRUE(WaitForState(second, cri::CONTAINER_RUNNING));
  auto alive = ExecSync(second, {"echo", "restarted"});
  ASSERT_TRUE(alive) << alive.error().ToString();
  EXPECT_EQ(alive->stdout(), "restarted\n");
  StopAndRemoveContainer(second);
  StopAndRemovePod(pod);
}

// The critest specs "should support Privileged is true" and "... adding
// capability" run `brctl addbr foobar`: the guest kernel loads the bridge
// module from the shared root when asked (modprobe on demand). Explicit
// loading stays with CAP_SYS_MODULE.
TEST_F(CriTest, PrivilegedContainerGetsKernelModulesOnDemand) {
  cri::PodSandboxConfig pod_config = PodConfig("privileged");
  pod_config.mutable_linux()->mutable_security_context()->set_privileged(true);
  std::string pod = RunPod(pod_config);
  ASSERT_FALSE(pod.empty());
  cri::ContainerConfig config = ContainerConfig("admin", {"sleep", "600"});
  config.mutable_linux()->mutable_security_context()->set_privileged(true);
  std::string container = CreateAndStart(pod, pod_config, config);
  ASSERT_FALSE(container.empty());
  auto run = [&](std::vector<std::string> cmd) {
    auto result = ExecSync(container, cmd);
    EXPECT_TRUE(result) << result.error().ToString();
    if (!result) return std::string("exec failed");
    EXPECT_EQ(result->exit_code(), 0) << cmd[0] << ": " << result->stderr();
    return result->stdout();
  };
  auto modules = [&] { return run({"cat", "/proc/modules"}); };
  ASSERT_FALSE(Contains(modules(), "bridge ")) << "bridge is loaded before anyone asked";
  run({"brctl", "addbr", "foobar"});
  run({"ip", "link", "add", "b0", "type", "bridge"});
  run({"ip", "link", "add", "v0", "type", "veth"});  // busybox names the peer itself
  run({"ip", "link", "set", "v0", "master", "b0"});
  std::string links = run({"ip", "-o", "link"});
  EXPECT_TRUE(Contains(links, "foobar")) << links;
  EXPECT_TRUE(Contains(links, ": v0@")) << links;
  EXPECT_TRUE(Contains(links, "master b0")) << links;
  std::string loaded = modules();
  EXPECT_TRUE(Contains(loaded, "bridge ")) << loaded;
  EXPECT_TRUE(Contains(loaded, "veth ")) << loaded;

  // The guest root is every VM's: a privileged container that writes over
  // its device changes nothing on the host, and the guest still reads it.
  const std::string image = BinDir() + "/../guest/root.erofs";
  auto head = [&] { return ReadFile(image, 1 << 20).value_or("unreadable"); };
  const std::string before = head();
  auto scribble = ExecSync(container, {"sh", "-c",
                                       "ls /dev/pmem0 && dd if=/dev/zero of=/dev/pmem0 bs=4096 "
                                       "count=64 conv=fsync; sync"});
  ASSERT_TRUE(scribble) << scribble.error().ToString();
  EXPECT_EQ(scribble->exit_code(), 0) << "no /dev/pmem0 to write to: " << scribble->stderr();
  EXPECT_TRUE(head() == before) << "a guest wrote into the shared root image";
  run({"ip", "link", "add", "b1", "type", "bridge"});
  StopAndRemoveContainer(container);
  StopAndRemovePod(pod);
}

TEST_F(CriTest, OnlyNetAdminMakesABridgeAndNoContainerLoadsAModuleItself) {
  cri::PodSandboxConfig pod_config = PodConfig("caps");
  std::string pod = RunPod(pod_config);
  ASSERT_FALSE(pod.empty());
  cri::ContainerConfig admin = ContainerConfig("netadmin", {"sleep", "600"});
  admin.mutable_linux()->mutable_security_context()->mutable_capabilities()->add_add_capabilities(
      "NET_ADMIN");
  std::string with_cap = CreateAndStart(pod, pod_config, admin);
  cri::ContainerConfig plain = ContainerConfig("plain", {"sleep", "600"});
  std::string without_cap = CreateAndStart(pod, pod_config, plain);
  ASSERT_FALSE(with_cap.empty());
  ASSERT_FALSE(without_cap.empty());
  auto denied = ExecSync(without_cap, {"brctl", "addbr", "nope"});
  ASSERT_TRUE(denied) << denied.error().ToString();
  EXPECT_NE(denied->exit_code(), 0) << "a bridge without CAP_NET_ADMIN";
  auto made = ExecSync(with_cap, {"brctl", "addbr", "foobar"});
  ASSERT_TRUE(made) << made.error().ToString();
  EXPECT_EQ(made->exit_code(), 0) << made->stderr();
  // Neither may load a module of its own: that takes CAP_SYS_MODULE.
  for (const auto& container : {with_cap, without_cap}) {
    auto insmod = ExecSync(container, {"insmod", "/bin/busybox"});
    ASSERT_TRUE(insmod) << insmod.error().ToString();
    EXPECT_NE(insmod->exit_code(), 0);
    EXPECT_TRUE(Contains(insmod->stderr(), "not permitted")) << insmod->stderr();
  }
  StopAndRemoveContainer(with_cap);
  StopAndRemoveContainer(without_cap);
  StopAndRemovePod(pod);
}

TEST_F(CriTest, HostNetworkPodIsAClearError) {
  cri::PodSandboxConfig pod_config = PodConfig("hostnet");
  pod_config.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_network(
      cri::NODE);
  cri::RunPodSandboxRequest request;
  *request.mutable_config() = pod_config;
  request.set_runtime_handler("hull");
  auto pod = cri_->Call(&Stub::RunPodSandbox, request, "RunPodSandbox");
  ASSERT_FALSE(pod) << "a hostNetwork pod must not start in a VM";
  EXPECT_TRUE(Contains(pod.error().ToString(), "hostNetwork")) << pod.error().ToString();
}

// kubelet's sum of the containers' limits sizes the VM: memory plus the
// configured overhead (160 MiB by default), vCPUs rounded up.
TEST_F(CriTest, PodResourcesSizeTheVm) {
  cri::PodSandboxConfig pod_config = PodConfig("sized");
  auto* resources = pod_config.mutable_linux()->mutable_resources();
  resources->set_memory_limit_in_bytes(256ll << 20);
  resources->set_cpu_quota(150000);
  resources->set_cpu_period(100000);
  std::string pod = RunPod(pod_config);
  ASSERT_FALSE(pod.empty());
  std::string container =
      CreateAndStart(pod, pod_config, ContainerConfig("probe", {"sleep", "600"}));
  ASSERT_FALSE(container.empty());
  auto cpus = ExecSync(container, {"nproc"});
  ASSERT_TRUE(cpus) << cpus.error().ToString();
  EXPECT_EQ(cpus->stdout(), "2\n");
  auto meminfo = ExecSync(
      container, {"sh", "-c", "sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo"});
  ASSERT_TRUE(meminfo) << meminfo.error().ToString();
  long total_kib = std::atol(meminfo->stdout().c_str());
  // 416 MiB of RAM, less what the guest kernel keeps for itself.
  EXPECT_GT(total_kib, 330 * 1024) << meminfo->stdout();
  EXPECT_LE(total_kib, 416 * 1024) << meminfo->stdout();
  StopAndRemoveContainer(container);
  StopAndRemovePod(pod);
}

TEST_F(CriTest, StatsUpdateAndOomKill) {
  cri::PodSandboxConfig pod_config = PodConfig("limits");
  std::string pod = RunPod(pod_config);
  ASSERT_FALSE(pod.empty());
  std::string app =
      CreateAndStart(pod, pod_config, ContainerConfig("app", {"sh", "-c", "while :; do :; done"}));
  ASSERT_FALSE(app.empty());
  ASSERT_TRUE(WaitForState(app, cri::CONTAINER_RUNNING));
  std::this_thread::sleep_for(milliseconds(500));
  cri::ContainerStatsRequest stats_request;
  stats_request.set_container_id(app);
  auto stats = cri_->Call(&Stub::ContainerStats, stats_request, "ContainerStats");
  ASSERT_TRUE(stats) << stats.error().ToString();
  EXPECT_GT(stats->stats().cpu().usage_core_nano_seconds().value(), 0u);
  EXPECT_GT(stats->stats().memory().working_set_bytes().value(), 0u);

  cri::UpdateContainerResourcesRequest update;
  update.set_container_id(app);
  update.mutable_linux()->set_memory_limit_in_bytes(96ll << 20);
  auto updated = cri_->Call(&Stub::UpdateContainerResources, update, "UpdateContainerResources");
  ASSERT_TRUE(updated) << updated.error().ToString();
  // The container's own cgroup, as /proc/self/cgroup names it (CRI gives it
  // no cgroup namespace).
  auto limit = ExecSync(
      app, {"sh", "-c", "cat /sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup)/memory.max"});
  ASSERT_TRUE(limit) << limit.error().ToString();
  EXPECT_EQ(limit->stdout(), std::to_string(96ll << 20) + "\n") << limit->stderr();
  StopAndRemoveContainer(app);

  // Past its limit, a container is OOM-killed, and CRI says so.
  cri::ContainerConfig hog = ContainerConfig("hog", {"sh", "-c", "head -c 200m /dev/zero | tail"});
  hog.mutable_linux()->mutable_resources()->set_memory_limit_in_bytes(32ll << 20);
  std::string hog_id = CreateAndStart(pod, pod_config, hog);
  ASSERT_FALSE(hog_id.empty());
  ASSERT_TRUE(WaitForState(hog_id, cri::CONTAINER_EXITED, seconds(60)));
  cri::ContainerStatus status = Status(hog_id);
  EXPECT_EQ(status.reason(), "OOMKilled") << "exit code " << status.exit_code();
  EXPECT_EQ(status.exit_code(), 137);
  cri::RemoveContainerRequest remove;
  remove.set_container_id(hog_id);
  ASSERT_TRUE(cri_->Call(&Stub::RemoveContainer, remove, "RemoveContainer"));
  StopAndRemovePod(pod);
}

// Five pods at once, as a node starting a deployment: five VMs, each with
// its own container, none mixed up with another.
TEST_F(CriTest, FivePodsStartConcurrently) {
  constexpr int kPods = 5;
  std::vector<cri::PodSandboxConfig> configs;
  for (int i = 0; i < kPods; ++i) configs.push_back(PodConfig("many" + std::to_string(i)));
  std::vector<std::string> pods(kPods), containers(kPods);
  std::vector<std::thread> starters;
  for (int i = 0; i < kPods; ++i) {
    starters.emplace_back([&, i] {
      pods[i] = RunPod(configs[i]);
      if (!pods[i].empty())
        containers[i] =
            CreateAndStart(pods[i], configs[i], ContainerConfig("app", {"sleep", "600"}));
    });
  }
  for (auto& thread : starters) thread.join();
  for (int i = 0; i < kPods; ++i) {
    ASSERT_FALSE(containers[i].empty()) << "pod " << i << " did not start";
    auto hostname = ExecSync(containers[i], {"hostname"});
    ASSERT_TRUE(hostname) << hostname.error().ToString();
    EXPECT_EQ(hostname->stdout(), "many" + std::to_string(i) + "\n");
  }
  for (int i = 0; i < kPods; ++i) {
    StopAndRemoveContainer(containers[i]);
    StopAndRemovePod(pods[i]);
  }
}

// The pod's IP, as CRI learnt it from CNI.
std::string PodIp(CriClient& client, const std::string& pod) {
  cri::PodSandboxStatusRequest request;
  request.set_pod_sandbox_id(pod);
  auto status = client.Call(&Stub::PodSandboxStatus, request, "PodSandboxStatus");
  return status ? status->status().network().ip() : "";
}

// An HTTP GET from this (host) process; the body, or "" on any failure.
// The pod's IPv6 address in a dual-stack pod ("" if none).
std::string PodIp6(CriClient& client, const std::string& pod) {
  cri::PodSandboxStatusRequest request;
  request.set_pod_sandbox_id(pod);
  auto status = client.Call(&Stub::PodSandboxStatus, request, "PodSandboxStatus");
  if (!status) return "";
  if (status->status().network().ip().find(':') != std::string::npos)
    return status->status().network().ip();
  for (const auto& extra : status->status().network().additional_ips()) {
    if (extra.ip().find(':') != std::string::npos) return extra.ip();
  }
  return "";
}
// GET / from ip:port (IPv4 or IPv6); the body, or "" on any failure.
std::string HttpGet(const std::string& ip, int port) {
  const bool v6 = ip.find(':') != std::string::npos;
  UniqueFd sock(::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_storage storage{};
  socklen_t length = 0;
  if (v6) {
    auto* addr = reinterpret_cast<sockaddr_in6*>(&storage);
    addr->sin6_family = AF_INET6;
    addr->sin6_port = htons(static_cast<uint16_t>(port));
    if (::inet_pton(AF_INET6, ip.c_str(), &addr->sin6_addr) != 1) return "";
    length = sizeof *addr;
  } else {
    auto* addr = reinterpret_cast<sockaddr_in*>(&storage);
    addr->sin_family = AF_INET;
    addr->sin_port = htons(static_cast<uint16_t>(port));
    if (::inet_pton(AF_INET, ip.c_str(), &addr->sin_addr) != 1) return "";
    length = sizeof *addr;
  }
  if (!sock) return "";
  timeval timeout{5, 0};
  ::setsockopt(sock.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(sock.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&storage), length) < 0) return "";
  std::string request = "GET / HTTP/1.0\r\nHost: " + (v6 ? "[" + ip + "]" : ip) + "\r\n\r\n";
  if (::write(sock.get(), request.data(), request.size()) != static_cast<ssize_t>(request.size()))
    return "";
  std::string response;
  char buffer[4096];
  for (ssize_t n; (n = ::read(sock.get(), buffer, sizeof buffer)) > 0;) response.append(buffer, n);
  auto body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

// HttpGet, retried for up to 10 s until it returns `expected` (a server in a
// booting VM or a fresh iptables rule takes a moment); the last body.
std::string HttpGetWhenUp(const std::string& ip, int port, const std::string& expected) {
  std::string body;
  for (int i = 0; i < 50 && body != expected; ++i) {
    body = HttpGet(ip, port);
    if (body != expected) std::this_thread::sleep_for(milliseconds(200));
  }
  return body;
}

const std::vector<std::string> kHttpd = {
    "sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"};

// Pods reach each other over CNI's bridge: the guest's eth0 has the pod's
// IP and MAC, and the tap next to the veth carries its frames.
TEST_F(CriTest, PodsReachEachOtherOverTheBridge) {
  cri::PodSandboxConfig server_config = PodConfig("server");
  cri::PodSandboxConfig client_config = PodConfig("client");
  std::string server_pod = RunPod(server_config);
  std::string client_pod = RunPod(client_config);
  ASSERT_FALSE(server_pod.empty());
  ASSERT_FALSE(client_pod.empty());
  std::string server = CreateAndStart(server_pod, server_config, ContainerConfig("httpd", kHttpd));
  std::string client =
      CreateAndStart(client_pod, client_config, ContainerConfig("wget", {"sleep", "600"}));
  ASSERT_FALSE(server.empty());
  ASSERT_FALSE(client.empty());
  std::string ip = PodIp(*cri_, server_pod);
  ASSERT_FALSE(ip.empty()) << "CRI has no IP for the pod";
  // The guest carries the pod's address itself.
  auto addresses = ExecSync(server, {"ip", "-4", "addr", "show", "eth0"});
  ASSERT_TRUE(addresses) << addresses.error().ToString();
  EXPECT_TRUE(Contains(addresses->stdout(), "inet " + ip + "/")) << addresses->stdout();
  std::string body;
  for (int i = 0; i < 50 && body != "server\n"; ++i) {
    // (busybox-static's wget crashes with -T: the ExecSync timeout bounds it.)
    auto fetched = ExecSync(client, {"wget", "-q", "-O", "-", "http://" + ip + ":8080/"}, 10);
    if (fetched && fetched->exit_code() == 0) body = fetched->stdout();
    if (body != "server\n") std::this_thread::sleep_for(milliseconds(200));
  }
  if (body != "server\n") {
    auto diag = ExecSync(
        client, {"sh", "-c",
                 "ip addr; ip route; wget -O - http://" + ip + ":8080/ 2>&1; cat /proc/net/arp"});
    ADD_FAILURE() << "pod " << ip << " did not answer the other pod; in the client pod:\n"
                  << (diag ? diag->stdout() + diag->stderr() : diag.error().ToString());
  }
  // And the host (the node) reaches the pod too.
  EXPECT_EQ(HttpGet(ip, 8080), "server\n");
  StopAndRemoveContainer(client);
  StopAndRemoveContainer(server);
  StopAndRemovePod(client_pod);
  StopAndRemovePod(server_pod);
}

// A pod on the libvirt backend: libvirtd opens the pod's tap by name in the
// host's netns, then the shim moves it into the pod's netns next to the veth.
// The node reaches the pod; afterwards no domain and no tap is left.
TEST_F(CriTest, LibvirtPodIsReachableOverTheBridge) {
  if (!IsExecutable("/usr/sbin/libvirtd"))
    GTEST_SKIP() << "libvirtd is not installed (libvirt-daemon-system)";
  auto libvirtd = testing::PrivateLibvirtd::Start(env_->dir() + "/libvirt", env_->hull_run_dir(),
                                                  HULL_LIBVIRT_CACHE);
  if (!libvirtd && libvirtd.error().code() == ErrorCode::kUnavailable)
    GTEST_SKIP() << libvirtd.error().ToString();
  ASSERT_TRUE(libvirtd) << libvirtd.error().ToString();
  ASSERT_TRUE(WriteFile(env_->handler_config("hull-libvirt"),
                        "[runtime]\nrun_dir = \"" + env_->hull_run_dir() +
                            "\"\n"
                            "[hypervisor]\nbackend = \"libvirt\"\nlibvirt_uri = \"" +
                            (*libvirtd)->uri() + "\"\n"));
  auto host_taps = [] {
    std::vector<std::string> taps;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/sys/class/net", ec)) {
      std::string name = entry.path().filename();
      if (name.starts_with("hull")) taps.push_back(name);
    }
    std::sort(taps.begin(), taps.end());
    return taps;
  };
  const auto taps_before = host_taps();
  cri::PodSandboxConfig pod_config = PodConfig("lvnet");
  std::string pod = RunPod(pod_config, "hull-libvirt");
  ASSERT_FALSE(pod.empty()) << (*libvirtd)->LogTail();
  EXPECT_EQ((*libvirtd)->Domains().size(), 1u);
  EXPECT_EQ(host_taps(), taps_before) << "the pod's tap stayed in the host's netns";
  std::string server = CreateAndStart(pod, pod_config, ContainerConfig("httpd", kHttpd));
  ASSERT_FALSE(server.empty());
  std::string ip = PodIp(*cri_, pod);
  ASSERT_FALSE(ip.empty()) << "CRI has no IP for the pod";
  std::string body = HttpGetWhenUp(ip, 8080, "lvnet\n");
  EXPECT_EQ(body, "lvnet\n") << "the libvirt pod at " << ip << " did not answer the node";
  StopAndRemoveContainer(server);
  StopAndRemovePod(pod);
  EXPECT_TRUE((*libvirtd)->Domains().empty()) << "the pod's domain outlived the pod";
  EXPECT_EQ(host_taps(), taps_before);
}

// A dual-stack CNI network: the guest's eth0 carries the pod's IPv6 address
// and default route too, and the node reaches the pod over IPv6.
class DualStackCriTest : public CriTest {
 protected:
  PrivateContainerd::Options EnvOptions() override {
    auto options = CriTest::EnvOptions();
    options.dual_stack = true;
    return options;
  }
};

TEST_F(DualStackCriTest, PodIsReachableOverIpv6) {
  cri::PodSandboxConfig pod_config = PodConfig("dual");
  std::string pod = RunPod(pod_config);
  ASSERT_FALSE(pod.empty());
  std::string server = CreateAndStart(pod, pod_config, ContainerConfig("httpd", kHttpd));
  ASSERT_FALSE(server.empty());
  std::string ip6 = PodIp6(*cri_, pod);
  ASSERT_FALSE(ip6.empty()) << "CRI has no IPv6 address for the pod (subnet " << env_->pod_subnet6()
                            << ")";
  auto addresses = ExecSync(server, {"ip", "-6", "addr", "show", "eth0"});
  ASSERT_TRUE(addresses) << addresses.error().ToString();
  EXPECT_TRUE(Contains(addresses->stdout(), "inet6 " + ip6 + "/64")) << addresses->stdout();
  auto routes = ExecSync(server, {"ip", "-6", "route", "show", "default"});
  ASSERT_TRUE(routes) << routes.error().ToString();
  EXPECT_TRUE(Contains(routes->stdout(), "default via "))
      << "no IPv6 default route in the guest: " << routes->stdout();
  std::string body = HttpGetWhenUp(ip6, 8080, "dual\n");
  EXPECT_EQ(body, "dual\n") << "the pod at [" << ip6 << "] did not answer the node";
  StopAndRemoveContainer(server);
  StopAndRemovePod(pod);
}

// CNI's portmap: a host port DNATs to the pod, through to the guest.
TEST_F(CriTest, HostPortReachesTheContainer) {
  if (!IsExecutable("/usr/sbin/iptables"))
    GTEST_SKIP() << "iptables is not installed (CNI portmap needs it)";
  cri::PodSandboxConfig pod_config = PodConfig("ported");
  const int host_port =
      20000 + static_cast<int>(std::stoul(RandomHex(1), nullptr, 16)) * 16 + ::getpid() % 16;
  auto* mapping = pod_config.add_port_mappings();
  mapping->set_protocol(cri::TCP);
  mapping->set_container_port(8080);
  mapping->set_host_port(host_port);
  std::string pod = RunPod(pod_config);
  ASSERT_FALSE(pod.empty());
  std::string server = CreateAndStart(pod, pod_config, ContainerConfig("httpd", kHttpd));
  ASSERT_FALSE(server.empty());
  // The bridge's address is one of the node's own: the DNAT in OUTPUT applies.
  std::string gateway = env_->pod_subnet().substr(0, env_->pod_subnet().rfind('.')) + ".1";
  std::string body = HttpGetWhenUp(gateway, host_port, "ported\n");
  EXPECT_EQ(body, "ported\n") << "host port " << host_port << " on " << gateway;
  StopAndRemoveContainer(server);
  StopAndRemovePod(pod);
}

// kubelet's cgroup_parent: the pod's VM is accounted in the pod's host
// cgroup, which CRI's PodSandboxStats reads.
TEST_F(CriTest, PodSandboxStatsFromTheHostCgroup) {
  const std::string parent = "/hull-test-" + RandomHex(4);
  cri::PodSandboxConfig pod_config = PodConfig("accounted");
  pod_config.mutable_linux()->set_cgroup_parent(parent);
  std::string pod = RunPod(pod_config);
  ASSERT_FALSE(pod.empty());
  std::string app =
      CreateAndStart(pod, pod_config, ContainerConfig("app", {"sh", "-c", "while :; do :; done"}));
  ASSERT_FALSE(app.empty());
  std::this_thread::sleep_for(seconds(1));
  cri::PodSandboxStatsRequest request;
  request.set_pod_sandbox_id(pod);
  auto stats = cri_->Call(&Stub::PodSandboxStats, request, "PodSandboxStats");
  ASSERT_TRUE(stats) << stats.error().ToString();
  EXPECT_EQ(stats->stats().attributes().id(), pod);
  EXPECT_GT(stats->stats().linux().cpu().usage_core_nano_seconds().value(), 0u);
  // The guest's RAM that QEMU touched, at least the guest kernel's.
  EXPECT_GT(stats->stats().linux().memory().working_set_bytes().value(), 16ull << 20);
  // Both of the pod's host processes are in it: QEMU and virtiofsd.
  std::string procs;
  for (const char* hierarchy : {"/sys/fs/cgroup/memory", "/sys/fs/cgroup"}) {
    if (auto read = ReadFile(std::string(hierarchy) + parent + "/" + pod + "/cgroup.procs"); read) {
      procs = *read;
      break;
    }
  }
  std::string names;
  std::istringstream pids(procs);
  for (std::string pid; std::getline(pids, pid);) {
    names += ReadFile("/proc/" + pid + "/comm").value_or("?\n");
  }
  EXPECT_TRUE(names.find("qemu-system-") != std::string::npos) << "processes in the pod's cgroup:\n"
                                                               << names;
  EXPECT_TRUE(names.find("virtiofsd") != std::string::npos) << "processes in the pod's cgroup:\n"
                                                            << names;
  StopAndRemoveContainer(app);
  StopAndRemovePod(pod);
  ExpectPodCgroupGone(parent, pod);
}

// The pod's shim is killed (a crash, the OOM killer): containerd runs
// `containerd-shim-hull-v2 delete`, the pod turns NOTREADY, and once kubelet
// stops and removes it nothing is left: no VM, virtiofsd, mount, run dir,
// netns or host cgroup.
TEST_F(CriTest, KilledShimLeavesNothingOnceThePodIsRemoved) {
  const std::string parent = "/hull-test-" + RandomHex(4);
  cri::PodSandboxConfig pod_config = PodConfig("crashed");
  pod_config.mutable_linux()->set_cgroup_parent(parent);
  std::string pod = RunPod(pod_config);
  ASSERT_FALSE(pod.empty());
  std::string app = CreateAndStart(pod, pod_config, ContainerConfig("app", {"sleep", "1000"}));
  ASSERT_FALSE(app.empty());
  ASSERT_TRUE(WaitForState(app, cri::CONTAINER_RUNNING));
  pid_t shim = env_->ShimPid(pod);
  ASSERT_NE(shim, 0) << "no shim process for pod " << pod;
  ASSERT_EQ(::kill(shim, SIGKILL), 0);
  EXPECT_TRUE(WaitForState(app, cri::CONTAINER_EXITED)) << "the app of the killed shim still runs";
  EXPECT_TRUE(WaitForPodNotReady(pod)) << "the pod of the killed shim is still ready";
  cri::RemoveContainerRequest remove;
  remove.set_container_id(app);
  auto removed = cri_->Call(&Stub::RemoveContainer, remove, "RemoveContainer");
  EXPECT_TRUE(removed) << removed.error().ToString();
  StopAndRemovePod(pod);
  ExpectPodCgroupGone(parent, pod);  // the rest: TearDown's leftover check
}

// virtiofsd serves every container's root filesystem: when it dies the pod's
// VM is stopped, its containers exit (255: containerd's "unknown"), the pod
// is NOTREADY, and kubelet's cleanup steps all succeed with nothing left.
TEST_F(CriTest, KilledVirtiofsdExitsThePodsContainers) {
  cri::PodSandboxConfig pod_config = PodConfig("fskilled");
  std::string pod = RunPod(pod_config);
  ASSERT_FALSE(pod.empty());
  std::string app = CreateAndStart(pod, pod_config, ContainerConfig("app", {"sleep", "1000"}));
  ASSERT_FALSE(app.empty());
  ASSERT_TRUE(WaitForState(app, cri::CONTAINER_RUNNING));
  auto virtiofsd = testlib::ProcessesWithArgument("/" + pod + "/", "/usr/lib/qemu/virtiofsd");
  ASSERT_FALSE(virtiofsd.empty()) << "no virtiofsd serves pod " << pod;
  ASSERT_EQ(::kill(virtiofsd.front(), SIGKILL), 0);
  ASSERT_TRUE(WaitForState(app, cri::CONTAINER_EXITED, seconds(60)))
      << "the app still runs without its virtiofsd";
  EXPECT_EQ(Status(app).exit_code(), 255);
  EXPECT_TRUE(WaitForPodNotReady(pod)) << "the pod whose VM is gone is still ready";
  StopAndRemoveContainer(app);
  StopAndRemovePod(pod);  // the rest: TearDown's leftover check
}

// The share's top level is the guest's to write (virtiofsd serves it as
// root): a privileged container that mounts the share itself and fills it
// hits the share root's small tmpfs, not the host's /run.
TEST_F(CriTest, APrivilegedGuestCannotFillTheHostThroughTheShare) {
  cri::PodSandboxConfig pod_config = PodConfig("filler");
  pod_config.mutable_linux()->mutable_security_context()->set_privileged(true);
  std::string pod = RunPod(pod_config);
  ASSERT_FALSE(pod.empty());
  cri::ContainerConfig config = ContainerConfig("filler", {"sleep", "600"});
  config.mutable_linux()->mutable_security_context()->set_privileged(true);
  std::string container = CreateAndStart(pod, pod_config, config);
  ASSERT_FALSE(container.empty());
  auto fill = ExecSync(container, {"sh", "-c",
                                   "mkdir -p /share && mount -t virtiofs hull-shared /share && "
                                   "dd if=/dev/zero of=/share/fill bs=1M count=64 2>&1; "
                                   "echo dd=$?; ls -ld /share/*/rootfs | wc -l"});
  ASSERT_TRUE(fill) << fill.error().ToString();
  EXPECT_EQ(fill->exit_code(), 0) << fill->stdout() << fill->stderr();
  EXPECT_TRUE(Contains(fill->stdout(), "No space left on device")) << fill->stdout();
  EXPECT_TRUE(Contains(fill->stdout(), "dd=1")) << fill->stdout();
  EXPECT_TRUE(Contains(fill->stdout(), "\n2\n"))
      << "the pause and the filler's roots are there: " << fill->stdout();
  // On the host: the file is in the share root's tmpfs, within its size.
  struct stat st {};
  std::string file = env_->hull_run_dir() + "/" + pod + "/vm/shared/fill";
  ASSERT_EQ(::stat(file.c_str(), &st), 0) << file;
  EXPECT_LE(static_cast<uint64_t>(st.st_size), 4u << 20);
  StopAndRemoveContainer(container);
  StopAndRemovePod(pod);
}

// containerd killed while RunPodSandbox boots the pod's VM, and started
// again: the half-made pod is listed, kubelet's StopPodSandbox and
// RemovePodSandbox succeed, and nothing is left (no shim, VM, mount, netns).
TEST_F(CriTest, ContainerdRestartDuringRunPodSandboxLeavesNothingOnceRemoved) {
  cri::PodSandboxConfig pod_config = PodConfig("restarted");
  std::thread runner([&] {
    cri::RunPodSandboxRequest request;
    *request.mutable_config() = pod_config;
    request.set_runtime_handler("hull");
    (void)cri_->Call(&Stub::RunPodSandbox, request, "RunPodSandbox");  // cut off
  });
  bool came = false;  // the moment: the pod's VM is starting
  for (int i = 0; i < 4000 && !came; ++i) {
    came = !testlib::ProcessesWithArgument(env_->hull_run_dir() + "/", testlib::kQemuPath).empty();
    if (!came) std::this_thread::sleep_for(milliseconds(5));
  }
  env_->Kill();
  runner.join();
  ASSERT_TRUE(came) << "the pod's VM never started";
  auto restarted = env_->Restart();
  ASSERT_TRUE(restarted) << restarted.error().ToString();
  auto client = CriClient::Connect(env_->socket(), seconds(30));
  ASSERT_TRUE(client) << client.error().ToString();
  cri_ = std::move(*client);
  auto pods = cri_->Call(&Stub::ListPodSandbox, cri::ListPodSandboxRequest(), "ListPodSandbox");
  ASSERT_TRUE(pods) << pods.error().ToString();
  ASSERT_EQ(pods->items_size(), 1) << "the half-made pod is not listed";
  StopAndRemovePod(pods->items(0).id());  // the rest: TearDown's leftover check
}

// kubectl exec -it and kubectl attach: CRI's streaming server, a terminal
// in the guest, output back, the exit code in the status.
TEST_F(CriTest, ExecAndAttachWithATerminal) {
  cri::PodSandboxConfig pod_config = PodConfig("tty");
  std::string pod = RunPod(pod_config);
  ASSERT_FALSE(pod.empty());
  cri::ContainerConfig config = ContainerConfig("shell", {"sh"});
  config.set_tty(true);
  config.set_stdin(true);
  std::string container = CreateAndStart(pod, pod_config, config);
  ASSERT_FALSE(container.empty());
  ASSERT_TRUE(WaitForState(container, cri::CONTAINER_RUNNING));

  cri::ExecRequest exec;
  exec.set_container_id(container);
  exec.add_cmd("sh");
  exec.set_tty(true);
  exec.set_stdin(true);
  exec.set_stdout(true);
  auto url = cri_->Call(&Stub::Exec, exec, "Exec");
  ASSERT_TRUE(url) << url.error().ToString();
  std::string error;
  auto stream = StreamClient::Open(url->url(), &error);
  ASSERT_NE(stream, nullptr) << error;
  ASSERT_TRUE(stream->Send(0, "tty; echo exec-$((40+2)); exit 3\n"));
  auto [out, status] = stream->ReadUntilStatus();
  EXPECT_TRUE(Contains(out, "/dev/pts/")) << out;
  EXPECT_TRUE(Contains(out, "exec-42")) << out;
  EXPECT_TRUE(Contains(status, "\"ExitCode\"") && Contains(status, "\"3\"")) << status;

  cri::AttachRequest attach;
  attach.set_container_id(container);
  attach.set_tty(true);
  attach.set_stdin(true);
  attach.set_stdout(true);
  auto attach_url = cri_->Call(&Stub::Attach, attach, "Attach");
  ASSERT_TRUE(attach_url) << attach_url.error().ToString();
  auto attached = StreamClient::Open(attach_url->url(), &error);
  ASSERT_NE(attached, nullptr) << error;
  ASSERT_TRUE(attached->Send(0, "echo attached-$((6*7)); exit 0\n"));
  auto [attach_out, attach_status] = attached->ReadUntilStatus();
  EXPECT_TRUE(Contains(attach_out, "attached-42")) << attach_out;
  EXPECT_TRUE(WaitForState(container, cri::CONTAINER_EXITED))
      << "the attached shell's exit ends the container";
  cri::RemoveContainerRequest remove;
  remove.set_container_id(container);
  ASSERT_TRUE(cri_->Call(&Stub::RemoveContainer, remove, "RemoveContainer"));
  StopAndRemovePod(pod);
}

}  // namespace
}  // namespace hull::testing
