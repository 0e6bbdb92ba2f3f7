#include "guest_details.h"

#include <sys/statfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <sstream>

#include "hull/core/syscall.h"

namespace hull::agent {

namespace {

// Reads "MemTotal:  123 kB" style values from /proc/meminfo.
uint64_t MeminfoBytes(const std::string& meminfo, std::string_view key) {
  size_t pos = meminfo.find(std::string(key) + ":");
  if (pos == std::string::npos) return 0;
  std::istringstream in(meminfo.substr(pos + key.size() + 1));
  uint64_t kib = 0;
  in >> kib;
  return kib * 1024;
}

std::string CgroupMode() {
  struct statfs fs {};
  if (::statfs("/sys/fs/cgroup", &fs) == 0 && fs.f_type == 0x63677270 /* CGROUP2_SUPER_MAGIC */) {
    return "v2";
  }
  return "none";
}

}  // namespace

void FillGuestDetails(const AgentState& state, v1::GetGuestDetailsResponse* response) {
  utsname uts{};
  ::uname(&uts);
  response->set_kernel_release(uts.release);
  response->set_kernel_version(uts.version);
  response->set_machine(uts.machine);
  response->set_online_cpus(static_cast<uint32_t>(::sysconf(_SC_NPROCESSORS_ONLN)));
  auto meminfo = ReadFile("/proc/meminfo", 1 << 20);
  if (meminfo) {
    response->set_memory_total_bytes(MeminfoBytes(*meminfo, "MemTotal"));
    response->set_memory_available_bytes(MeminfoBytes(*meminfo, "MemAvailable"));
  }
  response->set_agent_version(std::string(kAgentVersion));
  response->set_transport(state.transport);
  response->set_cgroup_mode(CgroupMode());
  for (const auto& module : state.loaded_modules) response->add_loaded_modules(module);
  auto* startup = response->mutable_startup();
  startup->set_agent_start_us(state.agent_start_us);
  startup->set_mounts_done_us(state.mounts_done_us);
  startup->set_modules_done_us(state.modules_done_us);
  startup->set_network_done_us(state.network_done_us);
  startup->set_listening_us(state.listening_us);
  startup->set_first_request_us(state.first_request_us.load());
}

}  // namespace hull::agent
