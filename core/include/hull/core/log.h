// Logging: spdlog underneath, one process-wide logger writing to stderr.
#pragma once

#include <spdlog/spdlog.h>

#include <string>
#include <string_view>

#include "hull/core/error.h"

namespace hull {

// Sets up the process logger named `program`. The level comes from `level`
// when non-empty, else from $HULL_LOG_LEVEL, else "info".
// Levels: trace, debug, info, warn, error, off.
Status InitLogging(std::string_view program, std::string_view level = {});

Result<spdlog::level::level_enum> ParseLogLevel(std::string_view level);

}  // namespace hull

#define HULL_LOG_TRACE(...) SPDLOG_TRACE(__VA_ARGS__)
#define HULL_LOG_DEBUG(...) ::spdlog::debug(__VA_ARGS__)
#define HULL_LOG_INFO(...) ::spdlog::info(__VA_ARGS__)
#define HULL_LOG_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define HULL_LOG_ERROR(...) ::spdlog::error(__VA_ARGS__)
