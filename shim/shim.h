// The three faces of containerd-shim-hull-v2 (see docs/containerd.md):
//   start  - find or launch the sandbox's shim; print its address
//   delete - clean up one container after its shim went away
//   serve  - the long-running ttrpc server (what `start` launches)
#pragma once

#include <string>
#include <vector>

#include "hull/core/error.h"
#include "shim_flags.h"

namespace hull::shim {

// The shim's socket inside the sandbox's state directory.
inline constexpr char kShimSocketName[] = "shim.sock";
// Written into each container's bundle: the sandbox state directory, so
// `delete` finds it without the runtime options.
inline constexpr char kBundleSandboxFile[] = "hull-sandbox";
// unix socket paths containerd accepts (runc shim's socketPathLimit).
inline constexpr size_t kSocketPathLimit = 106;

// The sandbox a container belongs to: the bundle's config.json annotation
// `io.kubernetes.cri.sandbox-id`, else the container itself.
Result<std::string> SandboxIdForBundle(const std::string& bundle, const std::string& container_id);

// Decodes the runtime options containerd writes on the shim's stdin (a
// google.protobuf.Any of runtimeoptions.v1.Options): the ConfigPath, or "".
Result<std::string> ConfigPathFromOptions(std::string_view any_bytes);

int RunStart(const ShimFlags& flags);
int RunDelete(const ShimFlags& flags);
int RunServe(const ShimFlags& flags);

}  // namespace hull::shim
