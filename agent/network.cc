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
#include <thread>

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
  if (::sendto(sock.get(), message.bytes().data(), message.bytes().size(), 0,
               reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) {
    return ErrnoError(what + ": netlink send");
  }
  char reply[8192];
  ssize_t n = RetryEintr([&] { return ::recv(sock.get(), reply, sizeof reply, 0); });
  if (n < 0) return ErrnoError(what + ": netlink receive");
  for (auto* h = reinterpret_cast<nlmsghdr*>(reply); NLMSG_OK(h, static_cast<uint32_t>(n));
       h = NLMSG_NEXT(h, n)) {
    if (h->nlmsg_type != NLMSG_ERROR) continue;
    int error = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
    if (error == 0 || (exist_ok && error == EEXIST)) return Ok();
    return ErrnoError(what, error);
  }
  return MakeError(ErrorCode::kInternal, what + ": no netlink acknowledgement");
}

// Sends a dump request and hands every message of the reply to `each`,
// until NLMSG_DONE.
template <typename F>
Status Dump(uint16_t type, unsigned char family, const std::string& what, F each) {
  UniqueFd sock(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!sock) return ErrnoError(what + ": netlink socket");
  struct {
    nlmsghdr header;
    rtgenmsg body;
  } request{};
  request.header.nlmsg_len = NLMSG_LENGTH(sizeof(rtgenmsg));
  request.header.nlmsg_type = type;
  request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request.body.rtgen_family = family;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(sock.get(), &request, request.header.nlmsg_len, 0,
               reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0) {
    return ErrnoError(what + ": netlink send");
  }
  std::vector<char> reply(64 * 1024);
  while (true) {
    ssize_t n = RetryEintr([&] { return ::recv(sock.get(), reply.data(), reply.size(), 0); });
    if (n < 0) return ErrnoError(what + ": netlink receive");
    if (n == 0) return MakeError(ErrorCode::kInternal, what + ": netlink closed the dump");
    auto left = static_cast<uint32_t>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(reply.data()); NLMSG_OK(h, left);
         h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_DONE) return Ok();
      if (h->nlmsg_type == NLMSG_ERROR) {
        int error = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
        return ErrnoError(what, error);
      }
      each(h);
    }
  }
}

// The attributes after a message's fixed body, by type (the last one wins).
std::vector<const rtattr*> Attributes(const nlmsghdr* h, size_t body_size, size_t max_type) {
  std::vector<const rtattr*> found(max_type + 1, nullptr);
  if (h->nlmsg_len < NLMSG_LENGTH(body_size)) return found;
  auto* rta = reinterpret_cast<const rtattr*>(reinterpret_cast<const char*>(NLMSG_DATA(h)) +
                                              NLMSG_ALIGN(body_size));
  auto left = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(NLMSG_ALIGN(body_size)));
  for (; RTA_OK(rta, left); rta = RTA_NEXT(rta, left)) {
    if (rta->rta_type <= max_type) found[rta->rta_type] = rta;
  }
  return found;
}

std::string AddressText(const rtattr* rta, int family) {
  const size_t size = family == AF_INET6 ? 16 : 4;
  if (rta == nullptr || RTA_PAYLOAD(rta) != size) return "";
  char text[INET6_ADDRSTRLEN] = {};
  if (::inet_ntop(family, RTA_DATA(rta), text, sizeof text) == nullptr) return "";
  return text;
}

std::string InterfaceName(int index) {
  char name[IF_NAMESIZE] = {};
  return ::if_indextoname(static_cast<unsigned>(index), name) != nullptr ? name : "";
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
    return MakeError(ErrorCode::kInvalidArgument,
                     what + ": `" + text + "` is not an IPv" + (ipv6 ? "6" : "4") + " address");
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
  // A VM cloned from a template gets its NIC plugged in as it resumes: give
  // the kernel a moment to probe it.
  auto found = FindInterfaceByMac(interface.mac_address);
  for (auto give_up = std::chrono::steady_clock::now() + kHotplugWait;
       !found && found.error().code() == ErrorCode::kNotFound &&
       std::chrono::steady_clock::now() < give_up;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    found = FindInterfaceByMac(interface.mac_address);
  }
  HULL_TRY(std::string name, std::move(found), "configure the pod's interface");
  const std::string what = "configure `" + name + "`";
  if (interface.mtu != 0) {
    if (interface.mtu < 68 || interface.mtu > 65535) {
      return MakeError(ErrorCode::kInvalidArgument,
                       what + ": MTU " + std::to_string(interface.mtu) + " is out of range");
    }
    ifreq req{};
    req.ifr_mtu = static_cast<int>(interface.mtu);
    HULL_CHECK_OK(Ioctl(name, SIOCSIFMTU, req, what + ": set MTU"), "");
  }
  HULL_TRY(int index, InterfaceIndex(name), what);
  for (const GuestAddress& address : interface.addresses) {
    HULL_TRY(ParsedAddress parsed, ParseAddress(address.address, address.ipv6, what), "");
    if (address.prefix_length > (address.ipv6 ? 128u : 32u)) {
      return MakeError(ErrorCode::kInvalidArgument,
                       what + ": prefix length " + std::to_string(address.prefix_length));
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
  std::stable_sort(ordered.begin(), ordered.end(), [](const GuestRoute* a, const GuestRoute* b) {
    return a->gateway.empty() && !b->gateway.empty();
  });
  for (const GuestRoute* route : ordered) {
    const std::string what = "add route " +
                             (route->destination.empty() ? "default" : route->destination) +
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
      if (prefix > (route->ipv6 ? 128u : 32u))
        return MakeError(ErrorCode::kInvalidArgument, what + ": bad prefix");
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

Result<std::vector<ListedInterface>> ListInterfaces() {
  std::vector<ListedInterface> interfaces;
  std::vector<int> indexes;
  HULL_CHECK_OK(
      Dump(RTM_GETLINK, AF_UNSPEC, "list interfaces",
           [&](const nlmsghdr* h) {
             if (h->nlmsg_type != RTM_NEWLINK || h->nlmsg_len < NLMSG_LENGTH(sizeof(ifinfomsg)))
               return;
             const auto* info = reinterpret_cast<const ifinfomsg*>(NLMSG_DATA(h));
             auto attributes = Attributes(h, sizeof(ifinfomsg), IFLA_MAX);
             ListedInterface interface;
             if (const rtattr* name = attributes[IFLA_IFNAME]) {
               interface.name.assign(
                   static_cast<const char*>(RTA_DATA(name)),
                   strnlen(static_cast<const char*>(RTA_DATA(name)), RTA_PAYLOAD(name)));
             }
             if (const rtattr* mac = attributes[IFLA_ADDRESS];
                 mac != nullptr && RTA_PAYLOAD(mac) == 6) {
               const auto* b = static_cast<const unsigned char*>(RTA_DATA(mac));
               char text[18];
               std::snprintf(text, sizeof text, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2],
                             b[3], b[4], b[5]);
               interface.mac_address = text;
             }
             if (const rtattr* mtu = attributes[IFLA_MTU];
                 mtu != nullptr && RTA_PAYLOAD(mtu) == sizeof(uint32_t)) {
               std::memcpy(&interface.mtu, RTA_DATA(mtu), sizeof(uint32_t));
             }
             interface.up = (info->ifi_flags & IFF_UP) != 0;
             interfaces.push_back(std::move(interface));
             indexes.push_back(info->ifi_index);
           }),
      "");
  HULL_CHECK_OK(
      Dump(RTM_GETADDR, AF_UNSPEC, "list addresses",
           [&](const nlmsghdr* h) {
             if (h->nlmsg_type != RTM_NEWADDR || h->nlmsg_len < NLMSG_LENGTH(sizeof(ifaddrmsg)))
               return;
             const auto* info = reinterpret_cast<const ifaddrmsg*>(NLMSG_DATA(h));
             if (info->ifa_family != AF_INET && info->ifa_family != AF_INET6) return;
             if (info->ifa_scope == RT_SCOPE_LINK) return;  // the kernel's own (fe80::/64)
             auto attributes = Attributes(h, sizeof(ifaddrmsg), IFA_MAX);
             // IPv4: IFA_LOCAL is the address (IFA_ADDRESS the peer on point-to-point).
             const rtattr* local = info->ifa_family == AF_INET && attributes[IFA_LOCAL]
                                       ? attributes[IFA_LOCAL]
                                       : attributes[IFA_ADDRESS];
             std::string text = AddressText(local, info->ifa_family);
             auto at = std::find(indexes.begin(), indexes.end(), static_cast<int>(info->ifa_index));
             if (text.empty() || at == indexes.end()) return;
             interfaces[static_cast<size_t>(at - indexes.begin())].addresses.push_back(
                 {info->ifa_family == AF_INET6, text, info->ifa_prefixlen});
           }),
      "");
  return interfaces;
}

Result<std::vector<GuestRoute>> ListRoutes() {
  std::vector<GuestRoute> routes;
  HULL_CHECK_OK(
      Dump(RTM_GETROUTE, AF_UNSPEC, "list routes",
           [&](const nlmsghdr* h) {
             if (h->nlmsg_type != RTM_NEWROUTE || h->nlmsg_len < NLMSG_LENGTH(sizeof(rtmsg)))
               return;
             const auto* info = reinterpret_cast<const rtmsg*>(NLMSG_DATA(h));
             if (info->rtm_family != AF_INET && info->rtm_family != AF_INET6) return;
             if (info->rtm_type != RTN_UNICAST) return;
             auto attributes = Attributes(h, sizeof(rtmsg), RTA_MAX);
             uint32_t table = info->rtm_table;
             if (const rtattr* t = attributes[RTA_TABLE];
                 t != nullptr && RTA_PAYLOAD(t) == sizeof(uint32_t)) {
               std::memcpy(&table, RTA_DATA(t), sizeof(uint32_t));
             }
             if (table != RT_TABLE_MAIN) return;
             GuestRoute route;
             route.ipv6 = info->rtm_family == AF_INET6;
             if (info->rtm_dst_len > 0) {
               std::string dst = AddressText(attributes[RTA_DST], info->rtm_family);
               if (dst.empty()) return;
               route.destination = dst + "/" + std::to_string(info->rtm_dst_len);
             }
             route.gateway = AddressText(attributes[RTA_GATEWAY], info->rtm_family);
             if (const rtattr* oif = attributes[RTA_OIF];
                 oif != nullptr && RTA_PAYLOAD(oif) == sizeof(int)) {
               int index = 0;
               std::memcpy(&index, RTA_DATA(oif), sizeof(int));
               route.device = InterfaceName(index);
             }
             route.source = AddressText(attributes[RTA_PREFSRC], info->rtm_family);
             route.scope = info->rtm_scope;
             routes.push_back(std::move(route));
           }),
      "");
  return routes;
}

}  // namespace hull::agent
