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

}  // namespace hull::libvirt
