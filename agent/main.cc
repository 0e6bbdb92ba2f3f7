// hull-agent: PID 1 of a hull guest. Sets the guest up, then serves the agent
// API on the transport named by the kernel command line (agent/run.h).
//
// Outside a VM (for tests) it runs as an ordinary process:
//   hull-agent --listen-unix PATH [--cgroup-root DIR] [--log-level LEVEL]
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <optional>
#include <string_view>

#include "run.h"

namespace {

// The boot time carried by --switched-root; nullopt without the flag (or
// with a malformed one).
std::optional<uint64_t> SwitchedRootStart(int argc, char** argv) {
  using hull::agent::kSwitchedRootFlag;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (!arg.starts_with(kSwitchedRootFlag)) continue;
    arg.remove_prefix(kSwitchedRootFlag.size());
    uint64_t start_us = 0;
    auto [end, error] = std::from_chars(arg.data(), arg.data() + arg.size(), start_us);
    if (error == std::errc() && end == arg.data() + arg.size()) return start_us;
  }
  return std::nullopt;
}

int Usage() {
  fprintf(stderr,
          "usage: hull-agent --listen-unix PATH [--cgroup-root DIR] [--log-level LEVEL]\n"
          "  (as PID 1 in a guest it takes its options from the kernel command line)\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (getpid() == 1) {
    hull::agent::RunAsInit(
        {.executable = argv[0], .switched_root_start_us = SwitchedRootStart(argc, argv)});
  }
  hull::agent::ProcessOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--listen-unix" && i + 1 < argc) {
      options.listen_unix = argv[++i];
    } else if (arg == "--cgroup-root" && i + 1 < argc) {
      options.cgroup_root = argv[++i];
    } else if (arg == "--log-level" && i + 1 < argc) {
      options.log_level = argv[++i];
    } else {
      return Usage();
    }
  }
  if (options.listen_unix.empty()) {
    fprintf(stderr, "hull-agent: --listen-unix PATH is required outside a guest\n");
    return 2;
  }
  return hull::agent::RunAsProcess(options);
}
