// The libvirt backend: the same microVMs as the QEMU backend, as transient
// libvirt domains. A pure function builds the domain XML (domain_xml.h); the
// libvirt C API creates the domain, watches it through lifecycle and QEMU
// monitor events, and destroys it. libvirt starts virtiofsd for the shared
// directory itself. See docs/design/libvirt.md.
#pragma once

#include <memory>
#include <string>

#include "hull/hypervisor/hypervisor.h"

namespace hull::libvirt {

std::unique_ptr<Hypervisor> MakeLibvirtHypervisor();

// Whether libvirt answers at `uri`: "libvirt 9.0.0, QEMU 7.2.0 at <uri>", or
// why not (libvirt's own message). For `hullctl check`.
Result<std::string> ProbeLibvirt(const std::string& uri);

}  // namespace hull::libvirt
