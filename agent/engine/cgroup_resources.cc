// OCI linux.resources -> cgroup v2 interface files, as runc's fs2 package
// writes them.
#include <cstdint>
#include <map>
#include <string>

#include "engine/cgroup.h"
#include "engine/cgroup_files.h"
#include "hull/core/log.h"
#include "hull/core/syscall.h"

namespace hull::engine {
namespace {

using cgroup_files::JoinPath;
using cgroup_files::ParseNumber;
using cgroup_files::SetValue;
using cgroup_files::SplitLines;
using cgroup_files::Trim;

// runc writes this default period when only a quota is given (fs2/cpu.go);
// it is the kernel's default (Documentation/admin-guide/cgroup-v2.rst, cpu.max).
constexpr uint64_t kDefaultCpuPeriod = 100000;

// runc's numToStr (fs2/memory.go): 0 is "unset", -1 is "max".
std::string NumToStr(int64_t value) {
  if (value == 0) return "";
  if (value == -1) return "max";
  return std::to_string(value);
}

Status ApplyPids(const std::string& dir, const oci::PidsResources& pids) {
  return SetValue(dir, "pids.max", pids.limit > 0 ? std::to_string(pids.limit) : "max",
                  "linux.resources.pids.limit");
}

// runc fs2/memory.go setMemory.
Status ApplyMemory(const std::string& dir, const oci::MemoryResources& memory) {
  const int64_t limit = memory.limit.value_or(0);
  const int64_t swap = memory.swap.value_or(0);
  const int64_t reservation = memory.reservation.value_or(0);
  if (limit == 0 && swap == 0 && reservation == 0) return Ok();

  auto swap_max = ConvertMemorySwapToCgroupV2(swap, limit);
  if (!swap_max) return Unexpected{std::move(swap_max).error().Wrap("linux.resources.memory.swap")};
  std::string swap_value = NumToStr(*swap_max);
  // swap == limit: no swap at all. ("" would mean "leave it alone".)
  if (swap_value.empty() && *swap_max == 0 && swap > 0) swap_value = "0";
  if (!swap_value.empty()) {
    // Without swap accounting (CONFIG_MEMCG_SWAP off, swapaccount=0) there is
    // no memory.swap.max; "max" and "0" ask for what the kernel does anyway,
    // and runc skips them then.
    const bool harmless = swap_value == "max" || swap_value == "0";
    if (!harmless || PathExists(JoinPath(dir, "memory.swap.max"))) {
      CGROUP_CHECK(SetValue(dir, "memory.swap.max", swap_value, "linux.resources.memory.swap"));
    }
  }
  if (std::string value = NumToStr(limit); !value.empty()) {
    CGROUP_CHECK(SetValue(dir, "memory.max", value, "linux.resources.memory.limit"));
  }
  if (std::string value = NumToStr(reservation); !value.empty()) {
    CGROUP_CHECK(SetValue(dir, "memory.low", value, "linux.resources.memory.reservation"));
  }
  if (memory.kernel || memory.swappiness || memory.disable_oom_killer) {
    HULL_LOG_DEBUG(
        "cgroup {}: memory.kernel, memory.swappiness and disableOOMKiller have no "
        "cgroup v2 equivalent; ignored",
        dir);
  }
  return Ok();
}

// Per-device BFQ weights need Linux >= 5.4 (commit 795fe54c2a8), which prints
// "default N" plus per-device lines in io.bfq.weight; older kernels print a
// bare number (runc fs2/io.go bfqDeviceWeightSupported).
bool BfqDeviceWeightSupported(const std::string& bfq_path) {
  auto text = ReadFile(bfq_path, 4096);
  if (!text) return false;
  uint64_t number = 0;
  return !ParseNumber(Trim(*text), &number);
}

std::string DeviceRate(const oci::BlockIoDeviceRate& device, std::string_view key) {
  return std::to_string(device.major) + ":" + std::to_string(device.minor) + " " +
         std::string(key) + "=" + std::to_string(device.rate);
}

// runc fs2/io.go setIo: BFQ's io.bfq.weight (in blkio units) when the bfq
// scheduler is loaded, else io.weight through the conversion.
Status ApplyIo(const std::string& dir, const oci::BlockIoResources& io) {
  const uint16_t weight = io.weight.value_or(0);
  const std::string bfq_path = JoinPath(dir, "io.bfq.weight");
  const bool bfq = (weight != 0 || !io.weight_device.empty()) && PathExists(bfq_path);
  if (weight != 0) {
    const std::string field = "linux.resources.blockIO.weight";
    if (bfq) {
      CGROUP_CHECK(SetValue(dir, "io.bfq.weight", std::to_string(weight), field));
    } else {
      // runc's conversion underflows below 10 and writes a nonsense number;
      // say what is wrong instead.
      if (weight < 10 || weight > 1000) {
        return MakeError(ErrorCode::kInvalidArgument,
                         field + ": " + std::to_string(weight) + " is outside [10, 1000]");
      }
      CGROUP_CHECK(
          SetValue(dir, "io.weight", std::to_string(ConvertBlkioWeightToIoWeight(weight)), field));
    }
  }
  if (!io.weight_device.empty()) {
    if (bfq && BfqDeviceWeightSupported(bfq_path)) {
      for (const auto& device : io.weight_device) {
        // leafWeight is cgroup v1 only; an entry without a weight sets nothing.
        if (!device.weight) continue;
        std::string value = std::to_string(device.major) + ":" + std::to_string(device.minor) +
                            " " + std::to_string(*device.weight);
        CGROUP_CHECK(SetValue(dir, "io.bfq.weight", value, "linux.resources.blockIO.weightDevice"));
      }
    } else {
      // As runc: io.weight's per-device form is for blk-iocost, whose scale
      // differs; without BFQ the device weights are dropped.
      HULL_LOG_DEBUG("cgroup {}: blockIO.weightDevice needs the bfq scheduler; ignored", dir);
    }
  }
  struct Throttle {
    const std::vector<oci::BlockIoDeviceRate>& devices;
    const char* key;
    const char* field;
  };
  const Throttle throttles[] = {
      {io.throttle_read_bps_device, "rbps", "linux.resources.blockIO.throttleReadBpsDevice"},
      {io.throttle_write_bps_device, "wbps", "linux.resources.blockIO.throttleWriteBpsDevice"},
      {io.throttle_read_iops_device, "riops", "linux.resources.blockIO.throttleReadIOPSDevice"},
      {io.throttle_write_iops_device, "wiops", "linux.resources.blockIO.throttleWriteIOPSDevice"},
  };
  for (const Throttle& throttle : throttles) {
    for (const auto& device : throttle.devices) {
      CGROUP_CHECK(SetValue(dir, "io.max", DeviceRate(device, throttle.key), throttle.field));
    }
  }
  return Ok();
}

// runc fs2/cpu.go setCPU (shares converted as in specconv).
Status ApplyCpu(const std::string& dir, const oci::CpuResources& cpu) {
  if (cpu.idle) {
    CGROUP_CHECK(SetValue(dir, "cpu.idle", std::to_string(*cpu.idle), "linux.resources.cpu.idle"));
  }
  if (uint64_t weight = ConvertCpuSharesToCpuWeight(cpu.shares.value_or(0)); weight != 0) {
    CGROUP_CHECK(SetValue(dir, "cpu.weight", std::to_string(weight), "linux.resources.cpu.shares"));
  }
  const int64_t quota = cpu.quota.value_or(0);
  const uint64_t period = cpu.period.value_or(0);
  if (quota != 0 || period != 0) {
    std::string value = quota > 0 ? std::to_string(quota) : "max";
    value += " " + std::to_string(period != 0 ? period : kDefaultCpuPeriod);
    CGROUP_CHECK(SetValue(dir, "cpu.max", value,
                          quota != 0 ? "linux.resources.cpu.quota" : "linux.resources.cpu.period"));
  }
  if (cpu.realtime_runtime.value_or(0) != 0 || cpu.realtime_period.value_or(0) != 0) {
    HULL_LOG_DEBUG("cgroup {}: realtime cpu settings have no cgroup v2 equivalent; ignored", dir);
  }
  // runc fs2/cpuset.go.
  if (!cpu.cpus.empty()) {
    CGROUP_CHECK(SetValue(dir, "cpuset.cpus", cpu.cpus, "linux.resources.cpu.cpus"));
  }
  if (!cpu.mems.empty()) {
    CGROUP_CHECK(SetValue(dir, "cpuset.mems", cpu.mems, "linux.resources.cpu.mems"));
  }
  return Ok();
}

// runc fs2/fs2.go setUnified: each key is a file of the cgroup, written line
// by line.
Status ApplyUnified(const std::string& dir, const std::map<std::string, std::string>& unified) {
  for (const auto& [key, value] : unified) {
    const std::string field = "linux.resources.unified[" + key + "]";
    if (key.empty() || key == "." || key == ".." || key.find('/') != std::string::npos ||
        key.find('\0') != std::string::npos) {
      return MakeError(ErrorCode::kInvalidArgument,
                       field + ": must be a file name of the cgroup (no slashes)");
    }
    bool wrote = false;
    for (std::string_view line : SplitLines(value)) {
      if (Trim(line).empty()) continue;
      CGROUP_CHECK(SetValue(dir, key, line, field));
      wrote = true;
    }
    if (!wrote) CGROUP_CHECK(SetValue(dir, key, value, field));
  }
  return Ok();
}

}  // namespace

Status Cgroup::Apply(const oci::Resources& resources) {
  const std::string frame = "apply resources to cgroup `" + path_ + "`";
  // runc's order (fs2/fs2.go Set): pids, memory, io, cpu, devices, cpuset,
  // unified last so that it overrides the rest.
  if (resources.pids) HULL_CHECK_OK(ApplyPids(path_, *resources.pids), frame);
  if (resources.memory) HULL_CHECK_OK(ApplyMemory(path_, *resources.memory), frame);
  if (resources.block_io) HULL_CHECK_OK(ApplyIo(path_, *resources.block_io), frame);
  if (resources.cpu) HULL_CHECK_OK(ApplyCpu(path_, *resources.cpu), frame);
  // linux.resources.devices: on cgroup v2 runc attaches an eBPF device
  // program. hull does not: a container's /dev is a fresh tmpfs holding only
  // the devices the spec lists (and the defaults runc also creates), mknod
  // needs CAP_MKNOD, and the VM itself is the isolation boundary. The rules
  // are accepted so specs written for runc work unchanged.
  HULL_CHECK_OK(ApplyUnified(path_, resources.unified), frame);
  return Ok();
}

uint64_t ConvertCpuSharesToCpuWeight(uint64_t shares) {
  if (shares == 0) return 0;
  // The v1 kernel clamped cpu.shares into [MIN_SHARES, MAX_SHARES] = [2, 2^18]
  // on write, so clamping keeps the meaning a v1 spec had; runc's formula
  // underflows for shares == 1.
  shares = std::clamp<uint64_t>(shares, 2, 262144);
  return 1 + ((shares - 2) * 9999) / 262142;
}

uint64_t ConvertBlkioWeightToIoWeight(uint16_t weight) {
  if (weight == 0) return 0;
  // Callers reject weights below 10 (see ApplyIo); clamp so the arithmetic
  // cannot wrap for a direct caller.
  uint64_t w = std::clamp<uint64_t>(weight, 10, 1000);
  return 1 + (w - 10) * 9999 / 990;
}

// runc cgroups/utils.go ConvertMemorySwapToCgroupV2Value, case for case.
Result<int64_t> ConvertMemorySwapToCgroupV2(int64_t memory_swap, int64_t memory) {
  // For compatibility with cgroup v1: unlimited memory with swap not set means
  // "both unlimited".
  if (memory == -1 && memory_swap == 0) return int64_t{-1};
  // -1 ("max") and 0 ("unset") pass through.
  if (memory_swap == -1 || memory_swap == 0) return memory_swap;
  // Unlimited memory: swap is taken as is.
  if (memory == -1) return memory_swap;
  if (memory == 0) {
    return MakeError(ErrorCode::kInvalidArgument, "unable to set swap limit without memory limit");
  }
  if (memory < 0) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "invalid memory value: " + std::to_string(memory));
  }
  if (memory_swap < memory) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "memory+swap limit (" + std::to_string(memory_swap) +
                         ") should be >= memory limit (" + std::to_string(memory) + ")");
  }
  return memory_swap - memory;
}

}  // namespace hull::engine
