// containerd-shim-hull-v2: containerd's runtime v2 shim for hull.
#include <cstdio>
#include <string>
#include <vector>

#include "shim.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  auto flags = hull::shim::ParseShimFlags(args);
  if (!flags) {
    std::fprintf(stderr, "containerd-shim-hull-v2: %s\n", flags.error().ToString().c_str());
    return 2;
  }
  if (flags->version) {
    std::printf("containerd-shim-hull-v2 %s\n", PROJECT_VERSION_STRING);
    return 0;
  }
  switch (flags->action) {
    case hull::shim::ShimAction::kStart:
      return hull::shim::RunStart(*flags);
    case hull::shim::ShimAction::kDelete:
      return hull::shim::RunDelete(*flags);
    case hull::shim::ShimAction::kServe:
      return hull::shim::RunServe(*flags);
  }
  return 2;
}
