// /proc/<pid>/mountinfo, parsed once for everyone who needs the mount table.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "hull/core/error.h"

namespace hull {

// One line of mountinfo (proc(5)): "36 35 98:0 /mnt1 /mnt2 rw,noatime
// master:1 - ext3 /dev/root rw,errors=continue". Paths are unescaped.
struct MountInfoEntry {
  int id = 0;
  int parent = 0;
  std::string root;         // the part of the filesystem mounted here ("/" for all of it)
  std::string mount_point;  // in the reader's mount namespace
  std::string fstype;
  bool shared = false;  // has a "shared:N" optional field
};

// Undoes the kernel's \ooo escaping of space, tab, newline and backslash.
std::string UnescapeMountInfo(std::string_view field);

// Every well-formed line of `text`, in order (parents before what is mounted
// on them); malformed lines are skipped, never an error: the text comes from
// the kernel, and a reader cannot do better than skip what it does not know.
std::vector<MountInfoEntry> ParseMountInfo(std::string_view text);

// ParseMountInfo of /proc/self/mountinfo.
Result<std::vector<MountInfoEntry>> ReadMountInfo();

}  // namespace hull
