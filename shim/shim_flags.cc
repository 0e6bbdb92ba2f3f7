#include "shim_flags.h"

#include <map>
#include <optional>

namespace hull::shim {

Result<ShimFlags> ParseShimFlags(const std::vector<std::string>& args) {
  ShimFlags flags;
  const std::map<std::string, std::string ShimFlags::*> strings = {
      {"namespace", &ShimFlags::namespace_name},
      {"address", &ShimFlags::address},
      {"publish-binary", &ShimFlags::publish_binary},
      {"id", &ShimFlags::id},
      {"bundle", &ShimFlags::bundle},
      {"socket", &ShimFlags::socket},
      {"hull-config", &ShimFlags::config_path},
  };
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 2 || arg[0] != '-' || !positional.empty()) {
      positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(arg[1] == '-' ? 2 : 1);
    std::optional<std::string> value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (name == "debug" || name == "v") {
      bool on = true;
      if (value) {
        if (*value == "true" || *value == "1") {
          on = true;
        } else if (*value == "false" || *value == "0") {
          on = false;
        } else {
          return MakeError(ErrorCode::kInvalidArgument,
                           "-" + name + ": `" + *value + "` is not a boolean");
        }
      }
      (name == "debug" ? flags.debug : flags.version) = on;
      continue;
    }
    auto field = strings.find(name);
    if (field == strings.end())
      return MakeError(ErrorCode::kInvalidArgument, "unknown flag `" + arg + "`");
    if (!value) {
      if (i + 1 >= args.size())
        return MakeError(ErrorCode::kInvalidArgument, "flag `" + arg + "` needs a value");
      value = args[++i];
    }
    flags.*(field->second) = *value;
  }
  if (flags.version) return flags;
  if (positional.empty())
    return MakeError(ErrorCode::kInvalidArgument, "no action given (start, delete or serve)");
  if (positional.size() > 1) {
    return MakeError(ErrorCode::kInvalidArgument, "unexpected argument `" + positional[1] + "`");
  }
  if (positional[0] == "start") {
    flags.action = ShimAction::kStart;
  } else if (positional[0] == "delete") {
    flags.action = ShimAction::kDelete;
  } else if (positional[0] == "serve") {
    flags.action = ShimAction::kServe;
  } else {
    return MakeError(ErrorCode::kInvalidArgument,
                     "unknown action `" + positional[0] + "` (start, delete or serve)");
  }
  if (flags.namespace_name.empty())
    return MakeError(ErrorCode::kInvalidArgument, "-namespace is required");
  if (flags.id.empty()) return MakeError(ErrorCode::kInvalidArgument, "-id is required");
  return flags;
}

std::vector<std::string> ServeArgs(const std::string& self, const ShimFlags& flags) {
  std::vector<std::string> argv = {self, "-namespace", flags.namespace_name, "-id", flags.id};
  if (!flags.address.empty()) argv.insert(argv.end(), {"-address", flags.address});
  if (!flags.publish_binary.empty())
    argv.insert(argv.end(), {"-publish-binary", flags.publish_binary});
  if (!flags.bundle.empty()) argv.insert(argv.end(), {"-bundle", flags.bundle});
  if (!flags.config_path.empty()) argv.insert(argv.end(), {"-hull-config", flags.config_path});
  if (flags.debug) argv.push_back("-debug");
  argv.push_back("serve");
  return argv;
}

}  // namespace hull::shim
