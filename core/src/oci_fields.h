// Internal to the OCI spec model: the member tables shared by the parser
// (oci_parse.cc) and the writer (oci_write.cc), in runc's member order, with
// the checks that run as each member is read. See oci_json.h for Field.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "oci_json.h"

namespace hull::oci {

constexpr std::array<std::string_view, 7> kSeccompOps = {
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE",       "SCMP_CMP_EQ",
    "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"};

// seccomp(2) filters see six syscall arguments.
constexpr uint32_t kSeccompMaxArgs = 6;

// Byte counts where -1 means unlimited.
inline Status CheckByteLimit(const std::optional<int64_t>& value, const std::string& path) {
  if (value && *value < -1) {
    return Invalid(path, std::to_string(*value) + " is neither a byte count nor -1 (unlimited)");
  }
  return Ok();
}

inline Status CheckSeccompArgIndex(const uint32_t& index, const std::string& path) {
  if (index >= kSeccompMaxArgs) {
    return Invalid(path, std::to_string(index) + " is out of range (0 to " +
                             std::to_string(kSeccompMaxArgs - 1) + ")");
  }
  return Ok();
}

inline Status CheckSeccompOperator(const std::string& op, const std::string& path) {
  return CheckName(op, Contains(kSeccompOps, op), path, "seccomp operator");
}

// Members that runc writes even when zero say so (omit_empty = false).
inline constexpr auto kConsoleSizeFields =
    std::make_tuple(MakeField("height", &ConsoleSize::height, false),
                    MakeField("width", &ConsoleSize::width, false));

inline constexpr auto kUserFields = std::make_tuple(
    MakeField("uid", &User::uid, false), MakeField("gid", &User::gid, false),
    MakeField("umask", &User::umask), MakeField("additionalGids", &User::additional_gids));

inline constexpr auto kRlimitFields = std::make_tuple(MakeField("type", &Rlimit::type, false),
                                                      MakeField("hard", &Rlimit::hard, false),
                                                      MakeField("soft", &Rlimit::soft, false));

inline constexpr auto kIdMappingFields = std::make_tuple(
    MakeField("containerID", &IdMapping::container_id, false),
    MakeField("hostID", &IdMapping::host_id, false), MakeField("size", &IdMapping::size, false));

inline constexpr auto kMemoryFields =
    std::make_tuple(MakeField("limit", &MemoryResources::limit, true, CheckByteLimit),
                    MakeField("reservation", &MemoryResources::reservation, true, CheckByteLimit),
                    MakeField("swap", &MemoryResources::swap, true, CheckByteLimit),
                    MakeField("kernel", &MemoryResources::kernel),
                    MakeField("swappiness", &MemoryResources::swappiness),
                    MakeField("disableOOMKiller", &MemoryResources::disable_oom_killer));

inline constexpr auto kCpuFields = std::make_tuple(
    MakeField("shares", &CpuResources::shares), MakeField("quota", &CpuResources::quota),
    MakeField("period", &CpuResources::period),
    MakeField("realtimeRuntime", &CpuResources::realtime_runtime),
    MakeField("realtimePeriod", &CpuResources::realtime_period),
    MakeField("cpus", &CpuResources::cpus), MakeField("mems", &CpuResources::mems),
    MakeField("idle", &CpuResources::idle));

inline constexpr auto kPidsFields =
    std::make_tuple(MakeField("limit", &PidsResources::limit, false));

inline constexpr auto kBlockIoDeviceWeightFields =
    std::make_tuple(MakeField("major", &BlockIoDeviceWeight::major, false),
                    MakeField("minor", &BlockIoDeviceWeight::minor, false),
                    MakeField("weight", &BlockIoDeviceWeight::weight),
                    MakeField("leafWeight", &BlockIoDeviceWeight::leaf_weight));

inline constexpr auto kBlockIoDeviceRateFields =
    std::make_tuple(MakeField("major", &BlockIoDeviceRate::major, false),
                    MakeField("minor", &BlockIoDeviceRate::minor, false),
                    MakeField("rate", &BlockIoDeviceRate::rate, false));

inline constexpr auto kSeccompArgFields = std::make_tuple(
    MakeField("index", &SeccompArg::index, false, CheckSeccompArgIndex),
    MakeField("value", &SeccompArg::value, false), MakeField("valueTwo", &SeccompArg::value_two),
    MakeField("op", &SeccompArg::op, false, CheckSeccompOperator));

// The five capability sets, each an array of capability names.
inline constexpr std::array<std::pair<std::string_view, std::vector<std::string> Capabilities::*>,
                            5>
    kCapabilitySets = {{{"bounding", &Capabilities::bounding},
                        {"effective", &Capabilities::effective},
                        {"inheritable", &Capabilities::inheritable},
                        {"permitted", &Capabilities::permitted},
                        {"ambient", &Capabilities::ambient}}};

// The four throttles of blockIO, each an array of device rates.
inline constexpr std::array<
    std::pair<std::string_view, std::vector<BlockIoDeviceRate> BlockIoResources::*>, 4>
    kThrottleDevices = {
        {{"throttleReadBpsDevice", &BlockIoResources::throttle_read_bps_device},
         {"throttleWriteBpsDevice", &BlockIoResources::throttle_write_bps_device},
         {"throttleReadIOPSDevice", &BlockIoResources::throttle_read_iops_device},
         {"throttleWriteIOPSDevice", &BlockIoResources::throttle_write_iops_device}}};

}  // namespace hull::oci
