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

// Whether "/" is the kernel's initial `rootfs`, which the initramfs is
// unpacked into: the root mount of the initial mount namespace, shown in
// mountinfo as its own parent or with type "rootfs" (the engine's test for
// pivot_root, see RootSwitch::kAuto). statfs cannot tell: it is a tmpfs or
// ramfs like the one SwitchRootOffInitramfs puts in its place. Mounts proc
// on /proc for the look and unmounts it again, so call it before /proc is
// mounted.
Result<bool> RootIsInitramfs();

// Takes "/" off the kernel's initial `rootfs`, as switch_root(8) does, so
// that pivot_root(2) works for containers (it refuses to move the rootfs
// mount) and a container's mount namespace has nothing from the agent under
// its root. Mounts a tmpfs on `staging_dir` (created), copies everything on
// the root filesystem into it (not crossing mount points; hard links become
// copies), moves it onto "/", chroots into it, then deletes the initramfs's
// files to give their memory back. The tmpfs is then shrunk to what was
// copied plus a little room for mount points.
//
// Call as PID 1 before any other thread exists and before anything is
// mounted, then exec /init: the running process still maps the deleted
// initramfs files, whose memory is freed only when nothing maps them. An
// error is the end of the boot (once the move is done the old root is
// partly deleted): the caller should power off.
Status SwitchRootOffInitramfs(const std::string& staging_dir);

// Copies the tree under the directory `from_fd` into the directory `to_fd`:
// directories, regular files, symlinks and device nodes, fifos and sockets,
// with their permission bits (setuid and sticky included) and owners.
// Entries on another filesystem than `from_fd` (mount points) are skipped.
// `to_fd` should be empty; an existing entry is an error (EEXIST).
Status CopyFilesystemTree(int from_fd, int to_fd);

// Deletes everything under the directory `dir_fd` that is on its own
// filesystem, as switch_root's delete_contents does: mount points and what
// is under them are left alone, and so is the directory itself.
Status DeleteFilesystemContents(int dir_fd);

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
