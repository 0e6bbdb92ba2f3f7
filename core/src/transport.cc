#include "hull/core/transport.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <vector>

#include "hull/core/log.h"
#include "hull/core/syscall.h"
#include "hull/core/thread.h"

namespace hull {

std::string_view TransportName(TransportKind kind) {
  switch (kind) {
    case TransportKind::kSerial:
      return "serial";
    case TransportKind::kVsock:
      return "vsock";
  }
  return "unknown";
}

Result<TransportKind> ParseTransport(std::string_view name) {
  if (name == "serial") return TransportKind::kSerial;
  if (name == "vsock") return TransportKind::kVsock;
  return MakeError(ErrorCode::kInvalidArgument,
                   "unknown transport `" + std::string(name) + "` (expected serial or vsock)");
}

namespace {

Result<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "unix socket path `" + path + "` is empty or longer than " +
                         std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

}  // namespace

Result<UniqueFd> ListenUnix(const std::string& path, int backlog) {
  HULL_TRY(sockaddr_un addr, UnixAddress(path), "listen");
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoError("socket(AF_UNIX)");
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    return ErrnoError("bind `" + path + "`");
  }
  if (::listen(fd.get(), backlog) < 0) return ErrnoError("listen `" + path + "`");
  return fd;
}

Result<UniqueFd> ConnectUnix(const std::string& path) {
  HULL_TRY(sockaddr_un addr, UnixAddress(path), "connect");
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoError("socket(AF_UNIX)");
  if (RetryEintr([&] {
        return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
      }) < 0) {
    return ErrnoError("connect `" + path + "`");
  }
  HULL_CHECK_OK(SetNonBlocking(fd.get()), "connect `" + path + "`");
  return fd;
}

Result<UniqueFd> ListenVsock(uint32_t port) {
  UniqueFd fd(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoError("socket(AF_VSOCK)");
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_ANY;
  addr.svm_port = port;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    return ErrnoError("bind vsock port " + std::to_string(port));
  }
  if (::listen(fd.get(), 16) < 0) return ErrnoError("listen on vsock port " + std::to_string(port));
  return fd;
}

bool TrustedVsockPeer(uint32_t cid, uint32_t port) {
  return cid == kVsockHostCid && port < kVsockFirstUnprivilegedPort;
}

Result<UniqueFd> ConnectVsock(uint32_t cid, uint32_t port) {
  UniqueFd fd(::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return ErrnoError("socket(AF_VSOCK)");
  // The guest agent trusts only a privileged source port: take one.
  bool bound = false;
  for (uint32_t local = kVsockFirstUnprivilegedPort - 1; local >= 512 && !bound; --local) {
    sockaddr_vm self{};
    self.svm_family = AF_VSOCK;
    self.svm_cid = VMADDR_CID_ANY;
    self.svm_port = local;
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&self), sizeof self) == 0) {
      bound = true;
    } else if (errno != EADDRINUSE) {
      return ErrnoError("bind vsock port " + std::to_string(local) +
                        " (the agent accepts the host only from a port below 1024)");
    }
  }
  if (!bound) {
    return MakeError(ErrorCode::kResourceExhausted, "no free privileged vsock port (512-1023)");
  }
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = cid;
  addr.svm_port = port;
  if (RetryEintr([&] {
        return ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
      }) < 0) {
    return ErrnoError("connect vsock " + std::to_string(cid) + ":" + std::to_string(port));
  }
  HULL_CHECK_OK(SetNonBlocking(fd.get()), "connect vsock");
  return fd;
}

Result<UniqueFd> AcceptConnection(int listen_fd) {
  UniqueFd fd(RetryEintr(
      [&] { return ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK); }));
  if (!fd) return ErrnoError("accept");
  return fd;
}

Result<std::string> FindVirtioPort(std::string_view name, const std::string& sysfs_root,
                                   const std::string& dev_root) {
  DIR* dir = ::opendir(sysfs_root.c_str());
  if (dir == nullptr) return ErrnoError("list `" + sysfs_root + "`");
  std::vector<std::string> ports;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ports.emplace_back(e->d_name);
  }
  ::closedir(dir);
  for (const auto& port : ports) {
    auto port_name = ReadFile(sysfs_root + "/" + port + "/name", 4096);
    if (!port_name) continue;
    std::string_view trimmed = *port_name;
    while (!trimmed.empty() && (trimmed.back() == '\n' || trimmed.back() == '\0'))
      trimmed.remove_suffix(1);
    if (trimmed == name) return dev_root + "/" + port;
  }
  return MakeError(ErrorCode::kNotFound,
                   "no virtio-serial port named `" + std::string(name) + "` under " + sysfs_root);
}

Result<BridgeEnd> BridgeFds(int first, int second, int stop_fd) {
  struct Direction {
    int from;
    int to;
    std::vector<char> buffer = std::vector<char>(64 * 1024);
    size_t begin = 0;
    size_t end = 0;
    BridgeEnd closed_end;
  };
  Direction dirs[2] = {{first, second, {}, 0, 0, BridgeEnd::kFirstClosed},
                       {second, first, {}, 0, 0, BridgeEnd::kSecondClosed}};
  dirs[0].buffer.resize(64 * 1024);
  dirs[1].buffer.resize(64 * 1024);
  while (true) {
    // For each direction: read when its buffer is empty, else wait to write.
    pollfd fds[5];
    int n = 0;
    int read_slot[2] = {-1, -1};
    int write_slot[2] = {-1, -1};
    for (int d = 0; d < 2; ++d) {
      if (dirs[d].begin == dirs[d].end) {
        read_slot[d] = n;
        fds[n++] = {dirs[d].from, POLLIN, 0};
      } else {
        write_slot[d] = n;
        fds[n++] = {dirs[d].to, POLLOUT, 0};
      }
    }
    int stop_slot = -1;
    if (stop_fd >= 0) {
      stop_slot = n;
      fds[n++] = {stop_fd, POLLIN, 0};
    }
    if (RetryEintr([&] { return ::poll(fds, static_cast<nfds_t>(n), -1); }) < 0) {
      return ErrnoError("poll");
    }
    if (stop_slot >= 0 && fds[stop_slot].revents != 0) return BridgeEnd::kStopped;
    for (int d = 0; d < 2; ++d) {
      Direction& dir = dirs[d];
      if (read_slot[d] >= 0 && fds[read_slot[d]].revents != 0) {
        ssize_t got =
            RetryEintr([&] { return ::read(dir.from, dir.buffer.data(), dir.buffer.size()); });
        if (got == 0) return dir.closed_end;
        if (got < 0) {
          if (errno == EAGAIN) continue;
          if (errno == ECONNRESET || errno == EPIPE || errno == EIO) return dir.closed_end;
          return ErrnoError("bridge read");
        }
        dir.begin = 0;
        dir.end = static_cast<size_t>(got);
      }
      if (write_slot[d] >= 0 && fds[write_slot[d]].revents != 0) {
        ssize_t put = RetryEintr(
            [&] { return ::write(dir.to, dir.buffer.data() + dir.begin, dir.end - dir.begin); });
        if (put < 0) {
          if (errno == EAGAIN) continue;
          // The side we write to went away.
          if (errno == ECONNRESET || errno == EPIPE || errno == EIO) {
            return d == 0 ? BridgeEnd::kSecondClosed : BridgeEnd::kFirstClosed;
          }
          return ErrnoError("bridge write");
        }
        dir.begin += static_cast<size_t>(put);
        if (dir.begin == dir.end) dir.begin = dir.end = 0;
      }
    }
  }
}

namespace {

class SocketListener final : public AgentListener {
 public:
  SocketListener(UniqueFd fd, bool vsock)
      : fd_(std::move(fd)), vsock_(vsock), wake_(::eventfd(0, EFD_CLOEXEC)) {}

  Result<UniqueFd> Accept() override {
    while (true) {
      pollfd fds[2] = {{fd_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
      if (RetryEintr([&] { return ::poll(fds, 2, -1); }) < 0) return ErrnoError("poll");
      if (fds[1].revents != 0) return MakeError(ErrorCode::kCancelled, "listener interrupted");
      if (!vsock_) return AcceptConnection(fd_.get());
      sockaddr_vm peer{};
      socklen_t length = sizeof peer;
      UniqueFd fd(RetryEintr([&] {
        return ::accept4(fd_.get(), reinterpret_cast<sockaddr*>(&peer), &length,
                         SOCK_CLOEXEC | SOCK_NONBLOCK);
      }));
      if (!fd) {
        if (errno == EAGAIN || errno == ECONNABORTED) continue;
        return ErrnoError("accept");
      }
      if (TrustedVsockPeer(peer.svm_cid, peer.svm_port)) return fd;
      HULL_LOG_WARN("refused a vsock connection from {}:{}: only the host's runtime ({}:<1024)",
                    peer.svm_cid, peer.svm_port, kVsockHostCid);
    }
  }

  void Interrupt() override {
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_.get(), &one, sizeof one);
  }

 private:
  UniqueFd fd_;
  bool vsock_;
  UniqueFd wake_;
};

class SerialPortListener final : public AgentListener {
 public:
  explicit SerialPortListener(std::string path)
      : path_(std::move(path)), wake_(::eventfd(0, EFD_CLOEXEC)) {}

  ~SerialPortListener() override {
    Interrupt();
    if (bridge_.joinable()) bridge_.join();
  }

  Result<UniqueFd> Accept() override {
    // One host connection at a time: wait for the previous bridge to end,
    // then close the port and open it again. The host sees the reopen as a
    // QMP VSERPORT_CHANGE event and connects only after it, so a new host
    // connection can never be spliced onto the previous gRPC session.
    if (bridge_.joinable()) {
      bridge_.join();
      port_.reset();
    }
    if (!port_) {
      port_.reset(
          RetryEintr([&] { return ::open(path_.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC); }));
      if (!port_) return ErrnoError("open virtio-serial port `" + path_ + "`");
    }
    // The port reports POLLHUP while no host end is connected, and the driver
    // does not wake pollers for that state alone, so wait by polling.
    while (true) {
      pollfd fds[2] = {{port_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
      if (RetryEintr([&] { return ::poll(fds, 2, 0); }) < 0) return ErrnoError("poll");
      if (fds[1].revents != 0) return MakeError(ErrorCode::kCancelled, "listener interrupted");
      if ((fds[0].revents & POLLHUP) == 0) break;
      ::usleep(20 * 1000);
    }
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) < 0) {
      return ErrnoError("socketpair");
    }
    UniqueFd grpc_end(pair[0]);
    auto bridge_end = std::make_shared<UniqueFd>(pair[1]);
    bridge_ = SpawnThread("serial-bridge", [this, bridge_end] {
      auto ended = BridgeFds(port_.get(), bridge_end->get(), wake_.get());
      if (!ended) {
        HULL_LOG_WARN("serial bridge failed: {}", ended.error().ToString());
      } else if (*ended == BridgeEnd::kFirstClosed) {
        HULL_LOG_INFO("host disconnected from `{}`", path_);
      } else if (*ended == BridgeEnd::kSecondClosed) {
        HULL_LOG_INFO("agent connection on `{}` closed", path_);
      }
      bridge_end->reset();  // the gRPC side now sees EOF
    });
    return grpc_end;
  }

  void Interrupt() override {
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_.get(), &one, sizeof one);
  }

 private:
  std::string path_;
  UniqueFd port_;
  UniqueFd wake_;
  std::thread bridge_;
};

}  // namespace

std::unique_ptr<AgentListener> MakeSocketListener(UniqueFd listen_fd) {
  return std::make_unique<SocketListener>(std::move(listen_fd), /*vsock=*/false);
}

std::unique_ptr<AgentListener> MakeVsockListener(UniqueFd listen_fd) {
  return std::make_unique<SocketListener>(std::move(listen_fd), /*vsock=*/true);
}

std::unique_ptr<AgentListener> MakeSerialPortListener(std::string device_path) {
  return std::make_unique<SerialPortListener>(std::move(device_path));
}

}  // namespace hull
