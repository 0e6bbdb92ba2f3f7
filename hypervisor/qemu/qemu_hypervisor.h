// The QEMU backend: launches qemu-system-x86_64 directly and drives it over QMP.
#pragma once

#include <memory>

#include "hull/hypervisor/hypervisor.h"

namespace hull::qemu {

std::unique_ptr<Hypervisor> MakeQemuHypervisor();

}  // namespace hull::qemu
