// Byte-stream transports between the host and the in-guest agent.
//
// Every connected fd returned here is O_NONBLOCK and O_CLOEXEC: gRPC's posix fd
// APIs (grpc::CreateInsecureChannelFromFd, grpc::AddInsecureChannelFromFd)
// need non-blocking fds, and a blocking one makes the first call hang silently.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "hull/core/error.h"
#include "hull/core/fd.h"

namespace hull {

enum class TransportKind { kSerial, kVsock };

std::string_view TransportName(TransportKind kind);
Result<TransportKind> ParseTransport(std::string_view name);

inline constexpr uint32_t kAgentVsockPort = 1024;
inline constexpr std::string_view kAgentSerialPortName = "hull.agent";

// --- unix sockets ---------------------------------------------------------
Result<UniqueFd> ListenUnix(const std::string& path, int backlog = 16);
Result<UniqueFd> ConnectUnix(const std::string& path);

// --- AF_VSOCK ---------------------------------------------------------------
// Who may talk to the agent over vsock: the host (CID 2) from a privileged
// port (below 1024, which only a process with CAP_NET_BIND_SERVICE -- the
// runtime -- can bind). Any other local process of the host, or another VM,
// is refused: the guest's CID alone is no secret.
inline constexpr uint32_t kVsockHostCid = 2;
inline constexpr uint32_t kVsockFirstUnprivilegedPort = 1024;
bool TrustedVsockPeer(uint32_t cid, uint32_t port);

Result<UniqueFd> ListenVsock(uint32_t port);  // bound to VMADDR_CID_ANY
// Connects from a privileged local port (the highest free one below 1024),
// so that the guest can tell the runtime from any other host process.
Result<UniqueFd> ConnectVsock(uint32_t cid, uint32_t port);

// Accepts one connection from a listening socket; the result is non-blocking.
Result<UniqueFd> AcceptConnection(int listen_fd);

// --- virtio-serial ----------------------------------------------------------
// Finds the character device of the virtio-serial port called `name` by
// reading <sysfs_root>/<vportNpM>/name (the guest has no udev, so there is no
// /dev/virtio-ports/<name> link). Returns "<dev_root>/vportNpM".
Result<std::string> FindVirtioPort(std::string_view name,
                                   const std::string& sysfs_root = "/sys/class/virtio-ports",
                                   const std::string& dev_root = "/dev");

// Copies bytes both ways between two fds until either side reaches EOF or
// fails, or `stop_fd` becomes readable. Both fds must be non-blocking. Holds at
// most one buffer per direction, so a slow reader slows the writer.
// Returns which side ended the bridge.
enum class BridgeEnd { kFirstClosed, kSecondClosed, kStopped };
Result<BridgeEnd> BridgeFds(int first, int second, int stop_fd = -1);

// A source of agent connections on the guest side. Accept blocks until the
// host connects and returns a connected, non-blocking fd for gRPC.
class AgentListener {
 public:
  virtual ~AgentListener() = default;
  virtual Result<UniqueFd> Accept() = 0;
  // Makes a blocked Accept return an error (used at shutdown).
  virtual void Interrupt() = 0;
};

// Listens on a stream socket (AF_VSOCK or unix); many connections at once.
std::unique_ptr<AgentListener> MakeSocketListener(UniqueFd listen_fd);
// The same for a vsock listener: a connection from an untrusted peer (see
// TrustedVsockPeer) is closed at once, with a warning, and Accept waits on.
std::unique_ptr<AgentListener> MakeVsockListener(UniqueFd listen_fd);

// Serves one host connection at a time over a virtio-serial port: waits for
// the host end to open, then bridges the port into a socketpair whose other
// end is returned. When the host disconnects, the gRPC side sees EOF; the
// next Accept closes and reopens the port (the host waits for that reopen
// before it connects again) and waits for the host to come back.
std::unique_ptr<AgentListener> MakeSerialPortListener(std::string device_path);

}  // namespace hull
