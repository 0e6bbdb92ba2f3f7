// Accelerator choice: KVM where it is usable, else TCG (software emulation).
#pragma once

#include <string>
#include <string_view>

#include "hull/core/error.h"

namespace hull {

enum class Accel { kKvm, kTcg };

std::string_view AccelName(Accel accel);

// What the host offers, gathered by ProbeHostAccel(); a plain struct so the
// decision can be tested without the host.
struct HostAccelFacts {
  bool kvm_device_opens = false;
  std::string kvm_error;                 // why /dev/kvm did not open, if it did not
  bool cpu_has_virt_extensions = false;  // vmx or svm in /proc/cpuinfo
};

struct AccelDecision {
  Accel accel = Accel::kTcg;
  std::string reason;  // one line for logs and `hullctl check`
};

HostAccelFacts ProbeHostAccel();

// `preference` is "auto", "kvm" or "tcg". "auto" picks KVM only when
// /dev/kvm opens AND the CPU advertises vmx/svm: a /dev/kvm without them is
// a paravirtual nested KVM that runs guests far slower than TCG. "kvm" is
// an error when /dev/kvm does not open.
Result<AccelDecision> DecideAccel(std::string_view preference, const HostAccelFacts& facts);

}  // namespace hull
