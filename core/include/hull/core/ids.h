// Validation of ids that become parts of host paths.
#pragma once

#include <string_view>

#include "hull/core/error.h"

namespace hull {

// containerd's identifier rule: 1..76 characters, alphanumeric runs joined by
// single `.`, `_` or `-` (so no `..`, no leading or trailing separator, no
// `/`). An id that passes is safe as one path component, and
// /run/hull/<id>/agent.sock stays within a unix socket path.
inline constexpr size_t kMaxIdLength = 76;
Status ValidateId(std::string_view kind, std::string_view id);

}  // namespace hull
