// The vocabulary of a spec mount's "options" (runc's tables): what becomes
// mount(2) flags, what becomes propagation, what becomes mount_setattr(2)
// attributes, and what is left for the filesystem as data. Pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hull/core/error.h"

namespace hull::engine {

// A spec mount's "options", split the way runc splits them.
struct MountOptions {
  // MS_* for mount(2): ro, nosuid, bind, rbind, ...
  unsigned long flags = 0;
  // MS_PRIVATE, MS_SLAVE | MS_REC, ...: one mount(2) call each, after the mount.
  std::vector<unsigned long> propagation;
  // Everything else, comma-joined: "mode=755,size=65536k".
  std::string data;
  // Recursive attributes (rro, rnosuid, ...), applied with
  // mount_setattr(AT_RECURSIVE) after the mount: MOUNT_ATTR_* bits.
  uint64_t recursive_set = 0;
  uint64_t recursive_clear = 0;
};

// kUnimplemented for options hull cannot honour: runc's "tmpcopyup" and
// id-mapped mounts ("idmap", "ridmap"). Unknown options go into `data` and
// the kernel decides.
Result<MountOptions> ParseMountOptions(const std::vector<std::string>& options);

// The MS_* flags of a propagation name ("rslave" -> MS_SLAVE | MS_REC), as
// linux.rootfsPropagation and the mount options spell them; nullopt for
// anything else.
std::optional<unsigned long> PropagationFlags(std::string_view name);

}  // namespace hull::engine
