// One VM as a transient libvirt domain: its lifecycle and QEMU monitor
// events, a monitor thread that survives a restarted libvirtd, and Stop.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "hull/hypervisor/hypervisor.h"
#include "hull/hypervisor/virtiofsd.h"

namespace hull::libvirt {

// What Launch has made ready for the domain.
struct LibvirtVmPlan {
  VmConfig config;
  std::string state_dir;
  std::string shared_dir;
  std::optional<SharedMount> mount;  // the shared directory's bind mount, if any
  std::string uuid;
  std::string console_log;
  std::string xml;  // the domain, from BuildDomainXml
};

// Subscribes to the domain's events, then creates it. Takes over the state
// directory and the mount: on error nothing runs and both are gone.
Result<std::unique_ptr<Vm>> CreateLibvirtVm(LibvirtVmPlan plan);

}  // namespace hull::libvirt
