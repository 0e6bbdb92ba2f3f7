// Splitting the text the kernel and other programs print (/proc, cgroup
// files, mountinfo). Views into the input: it must outlive them.
#pragma once

#include <string_view>
#include <vector>

namespace hull {

bool IsSpace(char c);
// Without leading and trailing whitespace.
std::string_view Trim(std::string_view s);
// Whitespace-separated fields (runs of whitespace separate one field).
std::vector<std::string_view> SplitFields(std::string_view line);
// Lines split at '\n'; the last may lack one.
std::vector<std::string_view> SplitLines(std::string_view text);

}  // namespace hull
