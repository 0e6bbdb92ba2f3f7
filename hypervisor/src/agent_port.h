// What both backends know about the guest's end of the agent's virtio-serial
// port, from QEMU's VSERPORT_CHANGE events. Not thread-safe: the owning VM
// guards it with its own mutex.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "hull/core/error.h"
#include "hull/core/fd.h"
#include "hull/core/transport.h"

namespace hull {

class AgentPortState {
 public:
  void OnChange(bool open) {
    open_ = open;
    if (open) ++opens_;
  }
  void OnVmExit() { open_ = false; }

  // Connect only once the guest has opened its end: bytes sent before that
  // would sit in QEMU's socket and confuse the next connection. After a host
  // connection ends, the agent closes and reopens its port; wait for that
  // reopen too, or the new connection could be spliced onto the agent's
  // previous session before it noticed the old one end.
  bool ReadyForConnection() const { return open_ && opens_ > opens_used_; }
  // The next connection takes the current open.
  void TakeOpen() { opens_used_ = opens_; }

 private:
  bool open_ = false;
  uint64_t opens_ = 0;       // how often the guest opened the port
  uint64_t opens_used_ = 0;  // the open the last connection used
};

// Where a VM's agent listens on the host side.
struct AgentEndpoint {
  TransportKind transport = TransportKind::kSerial;
  std::string socket_path;  // serial: QEMU's end of the virtio-serial port
  uint32_t vsock_cid = 0;   // vsock: the guest's CID
};

// Vm::ConnectAgent for both backends. `mu` guards `port` and the VM's exit
// and `changed` is signalled when either changes; `dead()`, called with `mu`
// held, is nullopt while the VM runs and the error to return once it does not.
template <typename Dead>
Result<UniqueFd> ConnectAgentWhenReady(const AgentEndpoint& endpoint, std::mutex& mu,
                                       std::condition_variable& changed, AgentPortState& port,
                                       Dead dead, std::chrono::steady_clock::time_point deadline) {
  using std::chrono::milliseconds;
  if (endpoint.transport == TransportKind::kSerial) {
    std::unique_lock lock(mu);
    auto ready = [&] { return port.ReadyForConnection() || dead().has_value(); };
    if (!changed.wait_until(lock, deadline, ready)) {
      return MakeError(ErrorCode::kDeadlineExceeded,
                       "the guest agent did not open its virtio-serial port in time");
    }
    if (auto error = dead()) return *error;
    port.TakeOpen();
    lock.unlock();
    return ConnectUnix(endpoint.socket_path);
  }
  while (true) {
    auto fd = ConnectVsock(endpoint.vsock_cid, kAgentVsockPort);
    if (fd) return fd;
    std::unique_lock lock(mu);
    if (auto error = dead()) return *error;
    if (std::chrono::steady_clock::now() + milliseconds(50) > deadline) {
      return std::move(fd).error().Wrap("connect to the agent");
    }
    changed.wait_for(lock, milliseconds(50));
  }
}

}  // namespace hull
