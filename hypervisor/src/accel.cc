#include "hull/hypervisor/accel.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "hull/core/fd.h"

namespace hull {

std::string_view AccelName(Accel accel) { return accel == Accel::kKvm ? "kvm" : "tcg"; }

HostAccelFacts ProbeHostAccel() {
  HostAccelFacts facts;
  UniqueFd kvm(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  facts.kvm_device_opens = kvm.valid();
  if (!kvm) facts.kvm_error = std::string("/dev/kvm: ") + strerror(errno);
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (!line.starts_with("flags")) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::string flag;
    while (words >> flag) {
      if (flag == "vmx" || flag == "svm") facts.cpu_has_virt_extensions = true;
    }
    break;
  }
  return facts;
}

Result<AccelDecision> DecideAccel(std::string_view preference, const HostAccelFacts& facts) {
  if (preference == "tcg") return AccelDecision{Accel::kTcg, "tcg: requested by configuration"};
  if (preference == "kvm") {
    if (!facts.kvm_device_opens) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "accelerator kvm requested but " + facts.kvm_error);
    }
    return AccelDecision{Accel::kKvm, "kvm: requested by configuration"};
  }
  if (preference != "auto") {
    return MakeError(
        ErrorCode::kInvalidArgument,
        "unknown accelerator `" + std::string(preference) + "` (expected auto, kvm or tcg)");
  }
  if (!facts.kvm_device_opens) {
    return AccelDecision{
        Accel::kTcg, "tcg: KVM unavailable (" + facts.kvm_error + "); using software emulation"};
  }
  if (!facts.cpu_has_virt_extensions) {
    return AccelDecision{
        Accel::kTcg,
        "tcg: /dev/kvm opens but the CPU advertises neither vmx nor svm (a paravirtual "
        "nested KVM, slower than software emulation); using software emulation"};
  }
  return AccelDecision{Accel::kKvm, "kvm: /dev/kvm opens and the CPU has hardware virtualisation"};
}

}  // namespace hull
