#include "hull/core/log.h"

#include <spdlog/sinks/stdout_sinks.h>

#include <cstdlib>

namespace hull {

Result<spdlog::level::level_enum> ParseLogLevel(std::string_view level) {
  static constexpr std::pair<std::string_view, spdlog::level::level_enum> kLevels[] = {
      {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},   {"warn", spdlog::level::warn},
      {"error", spdlog::level::err},   {"off", spdlog::level::off},
  };
  for (const auto& [name, value] : kLevels) {
    if (name == level) return value;
  }
  return MakeError(ErrorCode::kInvalidArgument,
                   "unknown log level `" + std::string(level) +
                       "` (expected trace, debug, info, warn, error or off)");
}

Status InitLogging(std::string_view program, std::string_view level) {
  std::string chosen(level);
  if (chosen.empty()) {
    const char* env = std::getenv("HULL_LOG_LEVEL");
    chosen = env != nullptr && *env != '\0' ? env : "info";
  }
  HULL_TRY(auto parsed, ParseLogLevel(chosen), "set log level");
  auto logger = spdlog::stderr_logger_mt(std::string(program) + "-" + std::to_string(::getpid()));
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ " + std::string(program) + "[%P]: %v");
  logger->set_level(parsed);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
  return Ok();
}

}  // namespace hull
