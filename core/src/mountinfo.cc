#include "hull/core/mountinfo.h"

#include <cstdlib>

#include "hull/core/syscall.h"
#include "hull/core/text.h"

namespace hull {

std::string UnescapeMountInfo(std::string_view field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && field[i + 1] >= '0' && field[i + 1] <= '3' &&
        field[i + 2] >= '0' && field[i + 2] <= '7' && field[i + 3] >= '0' && field[i + 3] <= '7') {
      out += static_cast<char>(((field[i + 1] - '0') << 6) | ((field[i + 2] - '0') << 3) |
                               (field[i + 3] - '0'));
      i += 3;
    } else {
      out += field[i];
    }
  }
  return out;
}

std::vector<MountInfoEntry> ParseMountInfo(std::string_view text) {
  std::vector<MountInfoEntry> entries;
  for (std::string_view line : SplitLines(text)) {
    // Fields are never empty: mountinfo escapes spaces in them as \040.
    std::vector<std::string_view> fields = SplitFields(line);
    // Optional fields end at a lone "-", followed by the fstype.
    size_t separator = 6;
    while (separator < fields.size() && fields[separator] != "-") ++separator;
    if (fields.size() < 7 || separator + 1 >= fields.size()) continue;
    MountInfoEntry entry;
    entry.id = std::atoi(std::string(fields[0]).c_str());
    entry.parent = std::atoi(std::string(fields[1]).c_str());
    entry.root = UnescapeMountInfo(fields[3]);
    entry.mount_point = UnescapeMountInfo(fields[4]);
    for (size_t i = 6; i < separator; ++i) {
      if (fields[i].starts_with("shared:")) entry.shared = true;
    }
    entry.fstype = std::string(fields[separator + 1]);
    entries.push_back(std::move(entry));
  }
  return entries;
}

Result<std::vector<MountInfoEntry>> ReadMountInfo() {
  HULL_TRY(std::string text, ReadFile("/proc/self/mountinfo"), "read /proc/self/mountinfo");
  return ParseMountInfo(text);
}

}  // namespace hull
