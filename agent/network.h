// The guest's network, configured from what the host read off the pod's CNI
// interface: the agent's UpdateInterface and UpdateRoutes. rtnetlink and
// ioctls only (the guest has no `ip`). The values come from the host, which
// the guest trusts for its own configuration; they are still validated so a
// bad request is an error, not a half-configured interface.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "hull/core/error.h"

namespace hull::agent {

// How long the agent waits for a device the host plugged into a VM cloned
// from a template (the shared directory's tag, the pod's NIC) to show up.
inline constexpr std::chrono::seconds kHotplugWait{5};

struct GuestAddress {
  bool ipv6 = false;
  std::string address;  // textual, no prefix
  uint32_t prefix_length = 0;
};

struct GuestInterface {
  std::string mac_address;  // how the interface is found: "aa:bb:cc:dd:ee:ff"
  uint32_t mtu = 0;         // 0 = leave it
  std::vector<GuestAddress> addresses;
  bool up = true;
};

struct GuestRoute {
  bool ipv6 = false;
  std::string destination;  // CIDR; "" = default route
  std::string gateway;      // "" = on-link
  std::string device;       // guest interface name
  uint32_t scope = 0;       // RT_SCOPE_*: 0 universe, 253 link
  std::string source;       // the preferred source address, "" = none (listed only)
};

// The interface with this MAC (from /sys/class/net/*/address); kNotFound
// names the MAC.
Result<std::string> FindInterfaceByMac(const std::string& mac);

// Sets MTU, adds the addresses (existing ones are fine) and brings the link
// up; waits up to kHotplugWait for the interface to appear. Returns its name.
Result<std::string> ConfigureInterface(const GuestInterface& interface);

// Adds (or replaces) the routes: on-link ones first, so gateways resolve.
Status AddRoutes(const std::vector<GuestRoute>& routes);

// What the guest has now (rtnetlink dumps): every interface with its name,
// MAC, MTU, state and global and host addresses (not link-local ones), and
// the unicast routes of the main table, both families.
struct ListedInterface {
  std::string name;
  std::string mac_address;  // "" for one without (lo has all zeros)
  uint32_t mtu = 0;
  bool up = false;
  std::vector<GuestAddress> addresses;
};
Result<std::vector<ListedInterface>> ListInterfaces();
Result<std::vector<GuestRoute>> ListRoutes();

}  // namespace hull::agent
