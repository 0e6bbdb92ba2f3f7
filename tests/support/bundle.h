// Test bundles: a busybox root filesystem and a config.json, built by the
// tests from Debian's busybox-static (nothing is downloaded).
#pragma once

#include <string>
#include <vector>

#include "hull/core/error.h"
#include "hull/core/oci_spec.h"

namespace hull::testing {

inline constexpr char kBusybox[] = "/bin/busybox";

// Creates <dir>/rootfs with busybox and a symlink per applet in /bin, plus
// /etc/passwd and /etc/group, /tmp, /proc, /sys, /dev.
Status MakeBusyboxRootfs(const std::string& rootfs);

// Writes <bundle>/config.json from `spec` and a busybox rootfs at
// <bundle>/rootfs (unless it exists).
Status MakeBundle(const std::string& bundle, const oci::Spec& spec);

// The default spec (as `runc spec`) running `args`, terminal off, hostname
// "hull", writable root.
oci::Spec TestSpec(std::vector<std::string> args);

}  // namespace hull::testing
