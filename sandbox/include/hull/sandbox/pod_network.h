// A pod's network on the host, the tcfilter way (ARCHITECTURE §5): in the
// pod's CNI netns, a tap next to CNI's veth, joined to it with tc mirred
// redirects both ways, so every frame from the bridge reaches the guest's NIC
// and back unchanged. The guest NIC takes the veth's MAC, addresses, MTU and
// routes, which the agent applies. See docs/kubernetes.md.
#pragma once

#include <string>
#include <vector>

#include "hull/core/error.h"
#include "hull/core/fd.h"
#include "hull/hypervisor/hypervisor.h"
#include "hull/sandbox/agent_api.h"

namespace hull::sandbox {

inline constexpr char kPodTapName[] = "tap0_hull";
// A tap made in the host's netns for a backend that opens it by name
// (libvirt) is "hull" + 8 hex digits: unique on the host.
inline constexpr char kHostTapPrefix[] = "hull";
// The file in the sandbox's state dir that names such a tap, so `delete`
// can remove it after a crash that left it in the host's netns.
inline constexpr char kHostTapRecord[] = "pod-tap";
// True for a name Attach gives a host tap.
bool IsHostTapName(const std::string& name);
// Removes the host tap `name` from the host's netns, if it is there.
Status RemoveHostTap(const std::string& name);

// What CNI configured in the netns, as `ip -j addr` and `ip -j route` print
// it. Parsed by a pure function (fuzzed: it reads another program's output).
struct CniInterface {
  std::string name;  // e.g. eth0
  std::string mac_address;
  uint32_t mtu = 0;
  std::vector<IpAddress> addresses;
  std::vector<Route> routes;  // device = the guest's interface name is filled in later
};

// Picks the interface CNI set up: the first one that is not loopback and has
// an address. `addr_json`, `route_json` and `route6_json` are `ip -j addr
// show`, `ip -j -4 route show` and `ip -j -6 route show` output.
Result<CniInterface> ParseCniInterface(const std::string& addr_json, const std::string& route_json,
                                       const std::string& route6_json = "[]");

class PodNetwork {
 public:
  // Reads the netns's interface and creates the tap, as the backend takes it:
  //  kFdInNetns: the tap in the netns, joined to the veth by the redirects
  //    now; QEMU gets tap_fd().
  //  kNameInHostNetns: a persistent tap `tap_name()` in the host's netns for
  //    the hypervisor to open; MoveTapIntoNetns() then joins it to the veth.
  // On error nothing is left, in the netns or on the host.
  static Result<PodNetwork> Attach(const std::string& netns_path, TapHandover handover);

  PodNetwork(PodNetwork&& other) noexcept;
  PodNetwork& operator=(PodNetwork&& other) noexcept;
  ~PodNetwork();

  const std::string& netns_path() const { return netns_path_; }
  const CniInterface& interface() const { return interface_; }
  // The tap's fd, for QEMU; once QEMU holds its copy, CloseTap() lets the
  // tap vanish with QEMU (a tap lives as long as an fd of it is open).
  int tap_fd() const { return tap_.get(); }
  void CloseTap() { tap_.reset(); }
  const std::string& tap_name() const { return tap_name_; }
  // kNameInHostNetns, once the hypervisor holds the tap: into the pod's
  // netns with it, and the redirects.
  Status MoveTapIntoNetns();
  // Removes the redirect from the veth, and a persistent tap (a tap of
  // kFdInNetns goes with its fds).
  void Detach();

 private:
  PodNetwork() = default;
  Status JoinTapToVeth();
  std::string netns_path_;
  CniInterface interface_;
  UniqueFd tap_;
  std::string tap_name_;
  bool persistent_ = false;  // kNameInHostNetns: removed by Detach
  bool in_netns_ = false;    // the tap is in the pod's netns
  bool attached_ = false;
};

}  // namespace hull::sandbox
