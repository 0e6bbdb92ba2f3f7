// SpawnThread: how every hull thread starts, so that each one carries a name
// in `ps -L`, /proc/<pid>/task/*/comm and core dumps, and so that later a
// per-role seccomp filter has one place to go in.
#pragma once

#include <functional>
#include <string>
#include <thread>

namespace hull {

// The kernel keeps at most this many bytes of a thread name.
inline constexpr size_t kMaxThreadNameLength = 15;

// Starts `fn` on a new thread named `name` (cut to kMaxThreadNameLength
// bytes). The name is set by the new thread itself before `fn` runs, so it
// is in place for anything `fn` does. The caller owns the std::thread: join
// it or detach it, as with any std::thread. Exceptions out of `fn` terminate
// the process, as they would on a plain std::thread.
std::thread SpawnThread(std::string name, std::function<void()> fn);

}  // namespace hull
