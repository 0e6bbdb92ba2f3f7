// The command line containerd gives a v2 shim, in Go's `flag` syntax:
//   <shim> -namespace NS -address ADDR -publish-binary BIN -id ID [-debug]
//          [-bundle DIR] [-socket ADDR] start|delete|serve
// Single or double dashes, `-name value` or `-name=value`; `-debug` is a bool
// (`-debug=false` allowed); the action is the first positional argument.
#pragma once

#include <string>
#include <vector>

#include "hull/core/error.h"

namespace hull::shim {

enum class ShimAction { kStart, kDelete, kServe };

struct ShimFlags {
  std::string namespace_name;
  std::string address;         // containerd's gRPC socket
  std::string publish_binary;  // containerd's executable
  std::string id;              // the container (task) id
  std::string bundle;          // "" = the working directory
  std::string socket;          // unused by hull, accepted
  std::string config_path;     // -hull-config: hull's own, passed from start to serve
  bool debug = false;
  bool version = false;  // -v: print the version and exit
  ShimAction action = ShimAction::kServe;
};

// Parses argv[1..]. Unknown flags and a missing or unknown action are
// errors; `start` and `delete` need -namespace and -id.
Result<ShimFlags> ParseShimFlags(const std::vector<std::string>& args);

// The argv that re-executes the shim as its long-running server: the same
// flags (plus -hull-config) with the action `serve`.
std::vector<std::string> ServeArgs(const std::string& self, const ShimFlags& flags);

}  // namespace hull::shim
