// What hull-agent does as PID 1 of the guest before it serves the API.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "hull/core/error.h"

namespace hull::agent {

// Microseconds of CLOCK_BOOTTIME: time since the guest kernel started.
uint64_t BootTimeMicros();

// Mounts /proc, /sys, /dev, /dev/pts, /dev/shm, /run, /tmp and cgroup2 at
// /sys/fs/cgroup, and makes sure fds 0-2 are the console.
Status MountBaseFilesystems();

// Loads the modules listed (one absolute path per line, dependencies first)
// in `list_path`. A module that is already loaded is fine. Returns the names
// of the modules loaded.
Result<std::vector<std::string>> LoadModules(const std::string& list_path);

// Sets an interface up (SIOCSIFFLAGS), e.g. "lo".
Status SetLinkUp(const std::string& interface);

// Flushes filesystems and powers the VM off. Does not return on success.
Status PowerOff();

// Reaps every child that exits (PID 1 inherits all orphans). Call from one
// thread that has SIGCHLD blocked along with every other thread in the
// process; runs until the process ends. `on_exit` sees each reaped pid.
[[noreturn]] void RunReaper(std::function<void(pid_t, int wait_status)> on_exit);

}  // namespace hull::agent
