// What a sandbox left when the process that owned it died (SIGKILL, OOM
// killer, a crash): its QEMU and virtiofsd, mounts under its state
// directory, a pod tap stranded in the host's netns, the pod's host cgroup,
// and the directory itself. `containerd-shim-hull-v2 delete` and
// `hullctl gc` take it down with this one function.
#pragma once

#include <string>
#include <vector>

namespace hull::sandbox {

// QEMU and virtiofsd processes whose command line names `dir/` (a sandbox's
// helpers name their state directory in their arguments). Only those: an
// operator's `tail -f .../console.log` mentions it too.
std::vector<pid_t> HelpersOf(const std::string& dir);

// Kills the helpers, unmounts everything under `dir` (deepest first),
// removes the recorded tap and host cgroup, then the directory. The caller
// has made sure nothing alive owns `dir`. Returns one line per thing that
// could not be undone (empty: all gone).
std::vector<std::string> RemoveOrphanedSandbox(const std::string& dir);

}  // namespace hull::sandbox
