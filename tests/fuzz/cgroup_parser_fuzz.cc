// libFuzzer target for the cgroup v2 file parsers (agent/engine/cgroup_files.cc):
// cgroup.events, memory.stat, io.stat, cgroup.procs, memory.max come from the
// guest kernel, and a relative cgroup path from the spec. Any bytes must give
// a consistent result or an error (cgroup_parser_properties.h), never a crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cgroup_parser_properties.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (hull::engine::testing::CgroupParserViolation(text) != nullptr) __builtin_trap();
  return 0;
}
