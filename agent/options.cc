#include "options.h"

#include <charconv>

#include "hull/core/guest_contract.h"
#include "hull/core/log.h"

namespace hull::agent {

namespace {

Result<bool> ParseBool(std::string_view key, std::string_view value) {
  if (value == "1" || value == "true" || value == "on" || value.empty()) return true;
  if (value == "0" || value == "false" || value == "off") return false;
  return MakeError(ErrorCode::kInvalidArgument,
                   "`" + std::string(key) + "` expects 0 or 1, got `" + std::string(value) + "`");
}

}  // namespace

Result<AgentOptions> ParseKernelCmdline(std::string_view cmdline) {
  AgentOptions options;
  size_t pos = 0;
  while (pos < cmdline.size()) {
    while (pos < cmdline.size() &&
           (cmdline[pos] == ' ' || cmdline[pos] == '\n' || cmdline[pos] == '\t'))
      ++pos;
    size_t end = pos;
    while (end < cmdline.size() && cmdline[end] != ' ' && cmdline[end] != '\n' &&
           cmdline[end] != '\t')
      ++end;
    std::string_view word = cmdline.substr(pos, end - pos);
    pos = end;
    if (!word.starts_with(guest::kCmdlinePrefix)) continue;
    size_t eq = word.find('=');
    std::string_view key = word.substr(0, eq);
    std::string_view value =
        eq == std::string_view::npos ? std::string_view{} : word.substr(eq + 1);
    if (key == guest::kCmdlineTransport) {
      HULL_TRY(options.transport, ParseTransport(value), "kernel argument `hull.transport`");
    } else if (key == guest::kCmdlineVsockPort) {
      uint32_t port = 0;
      auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), port);
      if (ec != std::errc() || ptr != value.data() + value.size() || port == 0) {
        return MakeError(
            ErrorCode::kInvalidArgument,
            "kernel argument `hull.vsock_port`: not a port number: `" + std::string(value) + "`");
      }
      options.vsock_port = port;
    } else if (key == guest::kCmdlineLogLevel) {
      HULL_CHECK_OK(ParseLogLevel(value), "kernel argument `hull.log`");
      options.log_level = std::string(value);
    } else if (key == guest::kCmdlineRoot) {
      // hull-init's, already used to mount the root this agent runs from.
    } else if (key == guest::kCmdlineDebug) {
      HULL_TRY(options.debug, ParseBool(key, value), "kernel argument");
    } else {
      return MakeError(ErrorCode::kInvalidArgument,
                       "unknown kernel argument `" + std::string(key) + "`");
    }
  }
  if (options.debug && options.log_level == "info") options.log_level = "debug";
  return options;
}

}  // namespace hull::agent
