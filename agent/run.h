// hull-agent's two ways to run, as a library so that main.cc only reads
// flags (and so that a test could drive them).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace hull::agent {

// Passed to /init when it is exec'd again on the new root, with the boot
// time (CLOCK_BOOTTIME us) at which the first run started: the start-up
// timings count from there.
inline constexpr std::string_view kSwitchedRootFlag = "--switched-root=";

struct InitOptions {
  // The agent's own path (argv[0]), exec'd again after the root switch.
  std::string executable;
  // From --switched-root: set on the second run, on the new root.
  std::optional<uint64_t> switched_root_start_us;
};

// PID 1 of a hull guest: moves the root off the initramfs (re-exec'ing
// `executable`), mounts the base filesystems, reads its options from the
// kernel command line, loads modules, serves the agent API on the transport
// named there and reaps orphans. Never returns; a fatal error powers the VM
// off.
[[noreturn]] void RunAsInit(const InitOptions& init);

struct ProcessOptions {
  std::string listen_unix;  // required
  std::string cgroup_root;  // empty: the engine's default
  std::string log_level;    // empty: the default level
};

// An ordinary process (tests, development): serves on a unix socket as a
// child subreaper until a Shutdown RPC. Returns the process exit code.
int RunAsProcess(const ProcessOptions& options);

}  // namespace hull::agent
