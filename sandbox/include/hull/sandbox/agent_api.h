// What the host asks of a sandbox's guest agent, in hull's own types: the
// seam between the host runtime and the wire (hull.agent.v1 over gRPC, see
// proto/hull/agent/v1/agent.proto for each call's contract). Nothing above
// this header sees protobuf.
//
// Implementations: GrpcAgent (grpc_agent.h), and the scripted fake the tests
// use (tests/support/fake_agent.h).
//
// Contract for every implementation:
// - Every call but WaitProcess and the streams has a deadline (AgentTimeouts);
//   a missed one is kDeadlineExceeded with a message naming the call.
// - WaitProcess and the streams last as long as the process does; they end
//   with kCancelled once their Cancellation is cancelled.
// - Errors keep the agent's code (kNotFound for an unknown container or
//   process, kFailedPrecondition for a call in the wrong state, ...), and the
//   message names the call. A connection that is gone is kUnavailable.
// - The guest is untrusted: what comes back is bounded and checked here (an
//   exit status is 0..255, lists are capped) before anyone above uses it.
// Threading: every method may be called from any thread, concurrently.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "hull/core/error.h"

namespace hull::sandbox {

struct AgentTimeouts {
  std::chrono::milliseconds call{std::chrono::seconds(30)};
  std::chrono::milliseconds create{std::chrono::seconds(120)};
};

// Cancels long-lived calls (WaitProcess, the output, stdin and OOM streams)
// from another thread. Thread-safe; cancelling twice is harmless.
class Cancellation {
 public:
  void Cancel();
  bool cancelled() const;
  // Runs `fn` when Cancel is called (at once, on this thread, if it was
  // already). Returns an id for Forget; `fn` must not call back into this.
  uint64_t OnCancel(std::function<void()> fn);
  // Drops the callback; if Cancel is running callbacks, returns only once
  // they ran, so whatever the callback touches may go right after.
  void Forget(uint64_t id);

 private:
  mutable std::mutex mu_;
  std::condition_variable ran_;
  bool running_ = false;  // Cancel is running callbacks
  bool cancelled_ = false;
  uint64_t next_id_ = 0;
  std::map<uint64_t, std::function<void()>> callbacks_;
};

// --- types -----------------------------------------------------------------

struct TtySize {
  uint32_t rows = 0;
  uint32_t columns = 0;
};

// Which stdio streams the agent sets up for a process (the rest is /dev/null).
struct StdioSetup {
  bool terminal = false;
  bool stdin = false;
  bool stdout = false;
  bool stderr = false;
  TtySize tty_size;
};

// A process: the container's init (exec_id "") or one of its execs.
struct ProcessRef {
  std::string container_id;
  std::string exec_id;
};

// A filesystem the agent mounts in the guest (see agent.proto Storage).
struct GuestStorage {
  std::string driver;  // "virtiofs", "tmpfs", "bind", "overlay"
  std::string source;
  std::string fstype;
  std::vector<std::string> options;
  std::string mount_point;  // a guest path under /run/hull
};

struct SandboxSetup {
  std::string sandbox_id;
  std::string hostname;
  std::vector<GuestStorage> storages;
  // Host random bytes the guest mixes into its RNG and reseeds from (32..512;
  // "" = none), and the host's time the guest sets its clock to (0 = none):
  // a VM cloned from a template has the template's until then.
  std::string entropy;
  int64_t realtime_ns = 0;
};

struct ContainerSetup {
  std::string container_id;
  std::string oci_spec_json;  // config.json, validated again in the guest
  std::string rootfs_path;    // where the guest finds the root filesystem
  StdioSetup stdio;
};

struct ExecSetup {
  ProcessRef process;
  std::string oci_process_json;
  StdioSetup stdio;
};

struct ProcessExit {
  uint32_t exit_status = 255;  // the code, or 128+signal; always 0..255
  uint32_t signal = 0;
  bool oom_killed = false;
  std::chrono::system_clock::time_point exited_at{};  // the guest's clock
};

struct CpuStats {
  uint64_t usage_usec = 0, user_usec = 0, system_usec = 0;
  uint64_t nr_periods = 0, nr_throttled = 0, throttled_usec = 0;
};
struct MemoryStats {
  uint64_t usage_bytes = 0, limit_bytes = 0, swap_usage_bytes = 0;
  uint64_t anon_bytes = 0, file_bytes = 0;
  uint64_t oom_events = 0, oom_kill_events = 0;
  std::map<std::string, uint64_t> stat;  // memory.stat, raw (bounded)
};
struct PidsStats {
  uint64_t current = 0, limit = 0;
};
struct IoDeviceStats {
  uint32_t major = 0, minor = 0;
  uint64_t read_bytes = 0, write_bytes = 0, read_ios = 0, write_ios = 0;
};
struct ContainerStats {
  CpuStats cpu;
  MemoryStats memory;
  PidsStats pids;
  std::vector<IoDeviceStats> io;
};

struct IpAddress {
  enum class Family { kUnspecified, kIpv4, kIpv6 };
  Family family = Family::kUnspecified;
  std::string address;  // textual, without prefix
  uint32_t prefix_length = 0;
  bool operator==(const IpAddress&) const = default;
};

struct Route {
  std::string destination;  // CIDR, "" for the default route
  std::string gateway;
  std::string device;
  std::string source;
  uint32_t scope = 0;   // rtnetlink scope
  uint32_t family = 0;  // AF_INET / AF_INET6
  bool operator==(const Route&) const = default;
};

struct NetInterface {
  std::string name;  // the guest's name, e.g. eth0
  std::string mac_address;
  uint32_t mtu = 0;
  std::vector<IpAddress> addresses;
  bool up = false;
};

struct GuestDetails {
  std::string kernel_release;
  std::string kernel_version;
  std::string machine;
  uint32_t online_cpus = 0;
  uint64_t memory_total_bytes = 0;
  uint64_t memory_available_bytes = 0;
  std::string agent_version;
  std::string transport;
  std::string cgroup_mode;
  std::vector<std::string> loaded_modules;
  // Start-up, in microseconds since the guest kernel started.
  uint64_t agent_start_us = 0, mounts_done_us = 0, modules_done_us = 0;
  uint64_t network_done_us = 0, listening_us = 0, first_request_us = 0;
};

struct AgentVersion {
  std::string agent_version;
  uint32_t api_version = 0;
  std::string git_commit;
};

enum class OutputStream { kStdout, kStderr };

struct OomEvent {
  std::string container_id;
};

// One long-lived read: Next blocks for the next item; false at the end of
// the stream (then Finish says how it ended: OK, kCancelled, the error).
template <typename T>
class AgentStream {
 public:
  virtual ~AgentStream() = default;
  virtual bool Next(T* item) = 0;
  virtual Status Finish() = 0;
};

// A process's stdin: Write blocks while the agent's window is full; Close
// ends it (the process sees EOF). Finish after Close.
class StdinStream {
 public:
  virtual ~StdinStream() = default;
  virtual bool Write(std::string_view data) = 0;
  virtual Status Close() = 0;
};

class AgentApi {
 public:
  virtual ~AgentApi() = default;

  // Health.Check: true when the agent serves.
  virtual Result<bool> Check() = 0;
  virtual Result<AgentVersion> Version() = 0;
  virtual Result<GuestDetails> GetGuestDetails() = 0;
  // Powers the guest off. true: the agent answered that the guest's
  // filesystems are synced, so the VM may be ended at once, without waiting
  // for the kernel's power-off. false: it answered without (an older agent)
  // or the connection dropped once the request was out (the guest may go
  // before it answers): give it the grace to power off.
  virtual Result<bool> Shutdown(bool force) = 0;

  virtual Status CreateSandbox(const SandboxSetup& setup) = 0;
  virtual Status DestroySandbox(const std::string& sandbox_id, bool power_off) = 0;

  // Returns the init's pid in the guest (informational only).
  virtual Result<uint32_t> CreateContainer(const ContainerSetup& setup) = 0;
  virtual Status StartContainer(const std::string& container_id) = 0;
  virtual Status RemoveContainer(const std::string& container_id, bool force) = 0;
  virtual Status UpdateContainer(const std::string& container_id,
                                 const std::string& linux_resources_json) = 0;
  virtual Result<ContainerStats> StatsContainer(const std::string& container_id) = 0;
  virtual Status PauseContainer(const std::string& container_id) = 0;
  virtual Status ResumeContainer(const std::string& container_id) = 0;
  // Guest pids of the container's processes (at most kMaxPids).
  virtual Result<std::vector<uint32_t>> ListProcesses(const std::string& container_id) = 0;

  // Returns the exec's pid in the guest (informational only).
  virtual Result<uint32_t> ExecProcess(const ExecSetup& setup) = 0;
  virtual Status SignalProcess(const ProcessRef& process, uint32_t signal, bool all) = 0;
  // Blocks until the process exited and its output was delivered.
  virtual Result<ProcessExit> WaitProcess(const ProcessRef& process,
                                          Cancellation& cancellation) = 0;
  virtual Status RemoveProcess(const ProcessRef& process) = 0;
  virtual Status ResizeTty(const ProcessRef& process, TtySize size) = 0;

  // What the process writes on `stream`, as it writes it; ends after the
  // last byte.
  virtual std::unique_ptr<AgentStream<std::string>> ReadOutput(const ProcessRef& process,
                                                               OutputStream stream,
                                                               Cancellation& cancellation) = 0;
  virtual std::unique_ptr<StdinStream> WriteStdin(const ProcessRef& process,
                                                  Cancellation& cancellation) = 0;
  // OOM kills in the guest, for the sandbox's lifetime.
  virtual std::unique_ptr<AgentStream<OomEvent>> OomEvents(Cancellation& cancellation) = 0;

  virtual Result<NetInterface> UpdateInterface(const NetInterface& interface) = 0;
  virtual Result<std::vector<Route>> UpdateRoutes(const std::vector<Route>& routes) = 0;
  virtual Result<std::vector<NetInterface>> ListInterfaces() = 0;
  virtual Result<std::vector<Route>> ListRoutes() = 0;
};

// At most this many pids are taken from the guest for one container.
inline constexpr size_t kMaxPids = 1 << 16;

}  // namespace hull::sandbox
