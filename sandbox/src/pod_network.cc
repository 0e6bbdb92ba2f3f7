#include "hull/sandbox/pod_network.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "hull/core/log.h"
#include "hull/core/process.h"
#include "hull/core/syscall.h"
#include "hull/core/thread.h"

namespace hull::sandbox {

namespace {

constexpr char kNsenter[] = "/usr/bin/nsenter";
constexpr char kIp[] = "/usr/sbin/ip";
constexpr char kTc[] = "/usr/sbin/tc";

// An anonymous file for a child's output: nothing on disk to leave behind
// if this process dies mid-command.
Result<UniqueFd> OutputFile(const char* name) {
  UniqueFd fd(::memfd_create(name, MFD_CLOEXEC));
  if (!fd) return ErrnoError("memfd_create");
  return fd;
}

std::string ReadBack(int fd, size_t max_bytes) {
  if (::lseek(fd, 0, SEEK_SET) < 0) return "";
  return ReadAll(fd, max_bytes).value_or("");
}

// Runs a command inside the netns ("" = the host's); its stdout, or an error
// with its stderr.
Result<std::string> InNetns(const std::string& netns, std::vector<std::string> command) {
  std::string what;
  for (const auto& word : command) what += (what.empty() ? "" : " ") + word;
  const std::string where = netns.empty() ? "the host" : netns;
  HULL_TRY(UniqueFd out, OutputFile("hull-net-out"), "run `" + what + "` in " + where);
  HULL_TRY(UniqueFd err, OutputFile("hull-net-err"), "run `" + what + "` in " + where);
  SpawnOptions spawn;
  if (!netns.empty()) spawn.argv = {kNsenter, "--net=" + netns, "--"};
  spawn.argv.insert(spawn.argv.end(), command.begin(), command.end());
  spawn.stdout_path = "/proc/self/fd/" + std::to_string(out.get());
  spawn.stderr_path = "/proc/self/fd/" + std::to_string(err.get());
  auto child = Child::Spawn(spawn);
  if (!child) return std::move(child).error().Wrap("run `" + what + "` in " + where);
  auto status = child->Wait();
  std::string stdout_text = ReadBack(out.get(), 4 << 20);
  std::string stderr_text = ReadBack(err.get(), 1 << 16);
  if (!status || !status->success()) {
    while (!stderr_text.empty() && stderr_text.back() == '\n') stderr_text.pop_back();
    return MakeError(
        ErrorCode::kFailedPrecondition,
        "`" + what + "` in " + where + " failed" + (stderr_text.empty() ? "" : ": " + stderr_text));
  }
  return stdout_text;
}

// Creates the tap `name` and returns its fd. Non-persistent, it goes with
// its last fd; persistent, it stays until deleted.
Result<UniqueFd> OpenNewTap(const std::string& name, bool persistent) {
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  if (!fd) return ErrnoError("open /dev/net/tun");
  ifreq req{};
  std::strncpy(req.ifr_name, name.c_str(), IFNAMSIZ - 1);
  req.ifr_flags = IFF_TAP | IFF_NO_PI;
  if (::ioctl(fd.get(), TUNSETIFF, &req) < 0) return ErrnoError("create tap " + name);
  if (persistent && ::ioctl(fd.get(), TUNSETPERSIST, 1) < 0)
    return ErrnoError("make tap " + name + " persistent");
  return fd;
}

// Creates the (non-persistent) tap in the netns: TUNSETIFF attaches to the
// calling thread's netns, so a thread of its own enters it first.
Result<UniqueFd> CreateTapInNetns(const std::string& netns_path) {
  UniqueFd netns(::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!netns) return ErrnoError("open network namespace `" + netns_path + "`");
  Result<UniqueFd> tap = MakeError(ErrorCode::kInternal, "not run");
  SpawnThread("netns", [&] {
    if (::setns(netns.get(), CLONE_NEWNET) < 0) {
      tap = ErrnoError("enter `" + netns_path + "`");
      return;
    }
    tap = OpenNewTap(kPodTapName, /*persistent=*/false);
  }).join();
  return tap;
}

// Fields of another program's JSON, never throwing: a missing or mistyped
// field reads as empty.
std::string StringField(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}
uint32_t UintField(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_number_unsigned() && *it <= UINT32_MAX ? it->get<uint32_t>()
                                                                             : 0;
}

}  // namespace

Result<CniInterface> ParseCniInterface(const std::string& addr_json, const std::string& route_json,
                                       const std::string& route6_json) {
  auto invalid = [](std::string message) {
    return MakeError(ErrorCode::kFailedPrecondition, std::move(message));
  };
  auto links = nlohmann::json::parse(addr_json, nullptr, false);
  if (!links.is_array()) return invalid("`ip -j addr` printed no JSON array");
  CniInterface found;
  for (const auto& link : links) {
    if (!link.is_object()) continue;
    std::string name = StringField(link, "ifname");
    std::string type = StringField(link, "link_type");
    if (name.empty() || name == "lo" || type == "loopback" || name == kPodTapName ||
        IsHostTapName(name))
      continue;
    if (!link.contains("addr_info") || !link["addr_info"].is_array()) continue;
    CniInterface candidate;
    candidate.name = name;
    candidate.mac_address = StringField(link, "address");
    candidate.mtu = UintField(link, "mtu");
    for (const auto& info : link["addr_info"]) {
      if (!info.is_object()) continue;
      std::string family = StringField(info, "family");
      std::string scope = StringField(info, "scope");
      if ((family != "inet" && family != "inet6") || scope == "link" || scope == "host") continue;
      IpAddress address;
      address.family = family == "inet" ? IpAddress::Family::kIpv4 : IpAddress::Family::kIpv6;
      address.address = StringField(info, "local");
      address.prefix_length = UintField(info, "prefixlen");
      if (address.address.empty()) continue;
      candidate.addresses.push_back(address);
    }
    if (candidate.addresses.empty()) continue;
    if (candidate.mac_address.size() != 17)
      return invalid("interface `" + name + "` has no MAC address");
    found = std::move(candidate);
    break;
  }
  if (found.name.empty())
    return invalid("the pod's network namespace has no interface with an address (CNI's)");
  for (auto [json, family] : {std::pair{&route_json, AF_INET}, {&route6_json, AF_INET6}}) {
    auto routes = nlohmann::json::parse(*json, nullptr, false);
    if (!routes.is_array())
      return invalid(family == AF_INET ? "`ip -j -4 route` printed no JSON array"
                                       : "`ip -j -6 route` printed no JSON array");
    for (const auto& entry : routes) {
      if (!entry.is_object() || StringField(entry, "dev") != found.name) continue;
      // The guest's kernel adds the subnet routes of its addresses itself,
      // and IPv6 link-local ones; only unicast routes are CNI's.
      if (StringField(entry, "protocol") == "kernel") continue;
      if (entry.contains("type") && StringField(entry, "type") != "unicast") continue;
      std::string dst = StringField(entry, "dst");
      if (family == AF_INET6 && (dst.starts_with("fe80:") || dst.starts_with("ff00:"))) continue;
      Route route;
      route.destination = dst == "default" ? "" : dst;
      route.gateway = StringField(entry, "gateway");
      route.scope = StringField(entry, "scope") == "link" ? 253 : 0;
      route.family = static_cast<uint32_t>(family);
      found.routes.push_back(route);
    }
  }
  return found;
}

bool IsHostTapName(const std::string& name) {
  const size_t prefix = std::strlen(kHostTapPrefix);
  return name.size() == prefix + 8 && name.starts_with(kHostTapPrefix) &&
         name.find_first_not_of("0123456789abcdef", prefix) == std::string::npos;
}

Status RemoveHostTap(const std::string& name) {
  if (!IsHostTapName(name))
    return MakeError(ErrorCode::kInvalidArgument, "`" + name + "` is not a hull host tap");
  if (!PathExists("/sys/class/net/" + name)) return Ok();  // moved into the pod's netns, or gone
  HULL_CHECK_OK(InNetns("", {kIp, "link", "del", "dev", name}), "remove tap " + name);
  return Ok();
}

Result<PodNetwork> PodNetwork::Attach(const std::string& netns_path, TapHandover handover) {
  const std::string what = "attach the pod network in " + netns_path;
  HULL_TRY(std::string addr_json, InNetns(netns_path, {kIp, "-j", "addr", "show"}), what);
  HULL_TRY(std::string route_json, InNetns(netns_path, {kIp, "-j", "-4", "route", "show"}), what);
  HULL_TRY(std::string route6_json, InNetns(netns_path, {kIp, "-j", "-6", "route", "show"}), what);
  HULL_TRY(CniInterface interface, ParseCniInterface(addr_json, route_json, route6_json), what);
  PodNetwork network;
  network.netns_path_ = netns_path;
  network.interface_ = interface;
  if (handover == TapHandover::kFdInNetns) {
    HULL_TRY(network.tap_, CreateTapInNetns(netns_path), what);
    network.tap_name_ = kPodTapName;
    network.in_netns_ = true;
    network.attached_ = true;  // from here on, Detach (the destructor) undoes what was done
    HULL_CHECK_OK(network.JoinTapToVeth(), what);
  } else {
    // The hypervisor attaches to it by name; this process lets go at once.
    network.tap_name_ = kHostTapPrefix + RandomHex(4);
    HULL_TRY(UniqueFd fd, OpenNewTap(network.tap_name_, /*persistent=*/true), what);
    network.persistent_ = true;
    network.attached_ = true;
  }
  return network;
}

Status PodNetwork::MoveTapIntoNetns() {
  const std::string what = "move tap " + tap_name_ + " into " + netns_path_;
  if (!persistent_ || in_netns_)
    return MakeError(ErrorCode::kFailedPrecondition, what + ": not a host tap");
  HULL_CHECK_OK(InNetns("", {kIp, "link", "set", "dev", tap_name_, "netns", netns_path_}), what);
  in_netns_ = true;
  HULL_CHECK_OK(JoinTapToVeth(), what);
  return Ok();
}

Status PodNetwork::JoinTapToVeth() {
  const std::string& veth = interface_.name;
  const std::string mtu = std::to_string(interface_.mtu != 0 ? interface_.mtu : 1500);
  HULL_CHECK_OK(InNetns(netns_path_, {kIp, "link", "set", tap_name_, "mtu", mtu, "up"}), "");
  // Ingress of each, redirected to the egress of the other: the tcfilter model.
  for (auto [from, to] : {std::pair{veth, tap_name_}, {tap_name_, veth}}) {
    HULL_CHECK_OK(InNetns(netns_path_, {kTc, "qdisc", "add", "dev", from, "ingress"}), "");
    HULL_CHECK_OK(InNetns(netns_path_, {kTc,      "filter", "add",      "dev", from,
                                        "parent", "ffff:",  "protocol", "all", "u32",
                                        "match",  "u8",     "0",        "0",   "action",
                                        "mirred", "egress", "redirect", "dev", to}),
                  "");
  }
  HULL_LOG_INFO("pod network: {} ({}) <-> {} in {}", veth, interface_.mac_address, tap_name_,
                netns_path_);
  return Ok();
}

void PodNetwork::Detach() {
  if (!attached_) return;
  attached_ = false;
  // The netns may be gone already (CNI deletes it when the pod stops), and
  // the tap with it.
  if (in_netns_ && PathExists(netns_path_)) {
    (void)InNetns(netns_path_, {kTc, "qdisc", "del", "dev", interface_.name, "ingress"});
    if (persistent_) (void)InNetns(netns_path_, {kIp, "link", "del", "dev", tap_name_});
  }
  if (persistent_ && !in_netns_) {
    if (auto removed = RemoveHostTap(tap_name_); !removed)
      HULL_LOG_WARN("{}", removed.error().ToString());
  }
  tap_.reset();
}

PodNetwork::PodNetwork(PodNetwork&& other) noexcept
    : netns_path_(std::move(other.netns_path_)),
      interface_(std::move(other.interface_)),
      tap_(std::move(other.tap_)),
      tap_name_(std::move(other.tap_name_)),
      persistent_(other.persistent_),
      in_netns_(other.in_netns_),
      attached_(std::exchange(other.attached_, false)) {}

PodNetwork& PodNetwork::operator=(PodNetwork&& other) noexcept {
  if (this != &other) {
    Detach();
    netns_path_ = std::move(other.netns_path_);
    interface_ = std::move(other.interface_);
    tap_ = std::move(other.tap_);
    tap_name_ = std::move(other.tap_name_);
    persistent_ = other.persistent_;
    in_netns_ = other.in_netns_;
    attached_ = std::exchange(other.attached_, false);
  }
  return *this;
}

PodNetwork::~PodNetwork() { Detach(); }

}  // namespace hull::sandbox
