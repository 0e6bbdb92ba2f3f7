// The QEMU backend: launches qemu-system-x86_64 directly and drives it over QMP.
#pragma once

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string_view>

#include "hull/hypervisor/hypervisor.h"

namespace hull::qemu {

std::unique_ptr<Hypervisor> MakeQemuHypervisor();

// Runs one QMP command on a VM launched by the QEMU backend and returns its
// "return" value: a diagnostics seam (tests, hullctl debugging), not a way to
// reconfigure a VM behind its owner's back. Thread-safe.
// Errors: kInvalidArgument if `vm` is not a QEMU VM; kUnavailable once the VM
// is stopped; QEMU's own error otherwise (see QmpClient::Execute).
Result<nlohmann::json> ExecuteQmp(Vm& vm, std::string_view command,
                                  const nlohmann::json& arguments = nullptr,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(5));

}  // namespace hull::qemu
