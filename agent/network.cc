#include "network.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "hull/core/fd.h"
#include "hull/core/syscall.h"

namespace hull::agent {

namespace {

std::string Lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// A netlink request: header, family message, attributes.
class NetlinkMessage {
 public:
  NetlinkMessage(uint16_t type, uint16_t flags) {
    buffer_.resize(NLMSG_HDRLEN);
    header()->nlmsg_type = type;
    header()->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    header()->nlmsg_len = NLMSG_HDRLEN;
  }
  template <typename T>
  T* Append(const T& body) {
    size_t at = buffer_.size();
    buffer_.resize(at + NLMSG_ALIGN(sizeof(T)));
    std::memcpy(buffer_.data() + at, &body, sizeof(T));
    header()->nlmsg_len = static_cast<uint32_t>(buffer_.size());
    return reinterpret_cast<T*>(buffer_.data() + at);
  }
  void Attribute(uint16_t type, const void* data, size_t size) {
    size_t at = buffer_.size();
    buffer_.resize(at + RTA_ALIGN(RTA_LENGTH(size)));
    auto* rta = reinterpret_cast<rtattr*>(buffer_.data() + at);
    rta->rta_type = type;
    rta->rta_len = static_cast<uint16_t>(RTA_LENGTH(size));
    std::memcpy(RTA_DATA(rta), data, size);
    header()->nlmsg_len = static_cast<uint32_t>(buffer_.size());
  }
  const std::vector<char>& bytes() const { return buffer_; }

 private:
  nlmsghdr* header() { return reinterpret_cast<nlmsghdr*>(buffer_.data()); }
  std::vector<char> buffer_;
};

// Sends one request and reads its ACK. EEXIST is success when `exist_ok`.
Status Talk(const NetlinkMessage& message, const std::string& what, bool exist_ok) {
  UniqueFd sock(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!sock) return ErrnoError(what + ": netlink socket");
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(sock.get(), message.bytes().data(), message.bytes().size(), 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof kernel) < 0) {
    return ErrnoError(what + ": netlink send");
  }
  char reply[8192];
  ssize_t n = RetryEintr([&] { return ::recv(sock.get(), reply, sizeof reply, 0); });
  if (n < 0) return ErrnoError(what + ": netlink receive");
  for (auto* h = reinterpret_cast<nlmsghdr*>(reply); NLMSG_OK(h, static_cast<uint32_t>(n)); h = NLMSG_NEXT(h, n)) {
    if (h->nlmsg_type != NLMSG_ERROR) continue;
    int error = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
    if (error == 0 || (exist_ok && error == EEXIST)) return Ok();
    return ErrnoError(what, error);
  }
  return MakeError(ErrorCode::kInternal, what + ": no netlink acknowledgement");
}

struct ParsedAddress {
  int family = AF_INET;
  unsigned char bytes[16] = {};
  size_t size = 4;
};

Result<ParsedAddress> ParseAddress(const std::string& text, bool ipv6, const std::string& what) {
  ParsedAddress parsed;
  parsed.family = ipv6 ? AF_INET6 : AF_INET;
  parsed.size = ipv6 ? 16 : 4;
  if (::inet_pton(parsed.family, text.c_str(), parsed.bytes) != 1) {
    return MakeError(ErrorCode::kInvalidArgument, what + ": `" + text + "` is not an IPv" + (ipv6 ? "6" : "4") +
                                                      " address");
  }
  return parsed;
}

Result<int> InterfaceIndex(const std::string& name) {
  unsigned index = ::if_nametoindex(name.c_str());
  if (index == 0) return ErrnoError("interface `" + name + "`");
  return static_cast<int>(index);
}

Status Ioctl(const std::string& name, unsigned long request, ifreq& req, const std::string& what) {
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) return ErrnoError(what + ": socket");
  std::strncpy(req.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (::ioctl(sock.get(), request, &req) < 0) return ErrnoError(what);
  return Ok();
}

}  // namespace

Result<std::string> FindInterfaceByMac(const std::string& mac) {
  const std::string wanted = Lower(mac);
  DIR* dir = ::opendir("/sys/class/net");
  if (dir == nullptr) return ErrnoError("list /sys/class/net");
  std::string found;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    auto address = ReadFile(std::string("/sys/class/net/") + e->d_name + "/address", 64);
    if (!address) continue;
    std::string text = Lower(*address);
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    if (text == wanted) {
      found = e->d_name;
      break;
    }
  }
  ::closedir(dir);
  if (found.empty()) return MakeError(ErrorCode::kNotFound, "no guest interface has MAC " + mac);
  return found;
}

Result<std::string> ConfigureInterface(const GuestInterface& interface) {
  HULL_TRY(std::string name, FindInterfaceByMac(interface.mac_address), "configure the pod's interface");
  const std::string what = "configure `" + name + "`";
  if (interface.mtu != 0) {
    if (interface.mtu < 68 || interface.mtu > 65535) {
      return MakeError(ErrorCode::kInvalidArgument, what + ": MTU " + std::to_string(interface.mtu) + " is out of range");
    }
    ifreq req{};
    req.ifr_mtu = static_cast<int>(interface.mtu);
    HULL_CHECK_OK(Ioctl(name, SIOCSIFMTU, req, what + ": set MTU"), "");
  }
  HULL_TRY(int index, InterfaceIndex(name), what);
  for (const GuestAddress& address : interface.addresses) {
    HULL_TRY(ParsedAddress parsed, ParseAddress(address.address, address.ipv6, what), "");
    if (address.prefix_length > (address.ipv6 ? 128u : 32u)) {
      return MakeError(ErrorCode::kInvalidArgument, what + ": prefix length " + std::to_string(address.prefix_length));
    }
    NetlinkMessage message(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
    ifaddrmsg body{};
    body.ifa_family = static_cast<unsigned char>(parsed.family);
    body.ifa_prefixlen = static_cast<unsigned char>(address.prefix_length);
    body.ifa_index = static_cast<unsigned>(index);
    // CNI's IPAM made the address unique already; duplicate address
    // detection would only keep it tentative (unusable) for a second.
    if (address.ipv6) body.ifa_flags = IFA_F_NODAD;
    message.Append(body);
    message.Attribute(IFA_LOCAL, parsed.bytes, parsed.size);
    message.Attribute(IFA_ADDRESS, parsed.bytes, parsed.size);
    HULL_CHECK_OK(Talk(message, what + ": add " + address.address, true), "");
  }
  if (interface.up) {
    ifreq req{};
    HULL_CHECK_OK(Ioctl(name, SIOCGIFFLAGS, req, what + ": read flags"), "");
    req.ifr_flags |= IFF_UP;
    HULL_CHECK_OK(Ioctl(name, SIOCSIFFLAGS, req, what + ": set up"), "");
  }
  return name;
}

Status AddRoutes(const std::vector<GuestRoute>& routes) {
  std::vector<const GuestRoute*> ordered;
  for (const auto& route : routes) ordered.push_back(&route);
  std::stable_sort(ordered.begin(), ordered.end(),
                   [](const GuestRoute* a, const GuestRoute* b) { return a->gateway.empty() && !b->gateway.empty(); });
  for (const GuestRoute* route : ordered) {
    const std::string what = "add route " + (route->destination.empty() ? "default" : route->destination) +
                             (route->gateway.empty() ? "" : " via " + route->gateway);
    NetlinkMessage message(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE);
    rtmsg body{};
    body.rtm_family = route->ipv6 ? AF_INET6 : AF_INET;
    body.rtm_table = RT_TABLE_MAIN;
    body.rtm_protocol = RTPROT_BOOT;
    body.rtm_type = RTN_UNICAST;
    body.rtm_scope = static_cast<unsigned char>(route->scope);
    std::string destination = route->destination;
    uint32_t prefix = 0;
    if (!destination.empty()) {
      auto slash = destination.find('/');
      prefix = route->ipv6 ? 128 : 32;
      if (slash != std::string::npos) {
        prefix = static_cast<uint32_t>(std::strtoul(destination.c_str() + slash + 1, nullptr, 10));
        destination.resize(slash);
      }
      if (prefix > (route->ipv6 ? 128u : 32u)) return MakeError(ErrorCode::kInvalidArgument, what + ": bad prefix");
    }
    body.rtm_dst_len = static_cast<unsigned char>(prefix);
    message.Append(body);
    if (!destination.empty()) {
      HULL_TRY(ParsedAddress dst, ParseAddress(destination, route->ipv6, what), "");
      message.Attribute(RTA_DST, dst.bytes, dst.size);
    }
    if (!route->gateway.empty()) {
      HULL_TRY(ParsedAddress gateway, ParseAddress(route->gateway, route->ipv6, what), "");
      message.Attribute(RTA_GATEWAY, gateway.bytes, gateway.size);
    }
    if (!route->device.empty()) {
      HULL_TRY(int index, InterfaceIndex(route->device), what);
      message.Attribute(RTA_OIF, &index, sizeof index);
    }
    HULL_CHECK_OK(Talk(message, what, true), "");
  }
  return Ok();
}

}  // namespace hull::agent
