// libFuzzer target for ParseCniInterface: `ip -j addr`, `ip -j -4 route` and
// `ip -j -6 route` output from the pod's netns, separated by NUL bytes. Must
// never crash or throw, whatever the JSON.
#include <cstddef>
#include <cstdint>
#include <string>

#include "hull/sandbox/pod_network.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  auto split = input.find('\0');
  std::string addr = input.substr(0, split);
  std::string rest = split == std::string::npos ? "[]" : input.substr(split + 1);
  auto split6 = rest.find('\0');
  std::string route = rest.substr(0, split6);
  std::string route6 = split6 == std::string::npos ? "[]" : rest.substr(split6 + 1);
  auto parsed = hull::sandbox::ParseCniInterface(addr, route, route6);
  if (parsed && parsed->name.empty()) __builtin_trap();  // a success always names the interface
  return 0;
}
