// Parsing and formatting of QMP wire messages. Pure functions; no I/O.
//
// Every access to the parsed JSON checks the type first: nlohmann::json throws
// on a type mismatch (get<>, at(), value()), and the bytes come from QEMU,
// which the guest may have compromised.

#include <limits>
#include <utility>

#include "qemu/qmp.h"

namespace hull::qemu {
namespace {

using nlohmann::json;

Unexpected Invalid(std::string message) {
  return MakeError(ErrorCode::kInvalidArgument, "QMP: " + std::move(message));
}

// The member `key` of `object`, or nullptr if absent. `object` must be an object.
const json* Member(const json& object, std::string_view key) {
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

Result<int64_t> ToInt64(const json& value, std::string_view what) {
  if (value.is_number_unsigned()) {
    auto u = value.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Invalid(std::string(what) + " is out of range");
    }
    return static_cast<int64_t>(u);
  }
  if (value.is_number_integer()) return value.get<int64_t>();
  return Invalid(std::string(what) + " is not an integer");
}

Result<int64_t> RequiredInt(const json& object, std::string_view key, std::string_view what) {
  const json* value = Member(object, key);
  if (value == nullptr) return Invalid(std::string(what) + " has no `" + std::string(key) + "`");
  return ToInt64(*value, std::string(what) + " `" + std::string(key) + "`");
}

// The optional "id" of a reply; `kind` is "return" or "error" for messages.
Result<std::optional<std::string>> ReplyId(const json& message, std::string_view kind) {
  const json* id = Member(message, "id");
  if (id == nullptr) return std::optional<std::string>{};
  if (!id->is_string()) return Invalid("`" + std::string(kind) + "` reply has non-string id");
  return std::optional<std::string>(id->get_ref<const std::string&>());
}

Result<QmpMessage> ParseGreeting(const json& message) {
  const json& qmp = *Member(message, "QMP");
  if (!qmp.is_object()) return Invalid("greeting `QMP` is not an object");
  QmpGreeting greeting;

  const json* version = Member(qmp, "version");
  if (version == nullptr || !version->is_object()) {
    return Invalid("greeting has no `version` object");
  }
  const json* qemu = Member(*version, "qemu");
  if (qemu == nullptr || !qemu->is_object()) {
    return Invalid("greeting version has no `qemu` object");
  }
  HULL_TRY(greeting.version.major, RequiredInt(*qemu, "major", "greeting version"),
           "parse greeting");
  HULL_TRY(greeting.version.minor, RequiredInt(*qemu, "minor", "greeting version"),
           "parse greeting");
  HULL_TRY(greeting.version.micro, RequiredInt(*qemu, "micro", "greeting version"),
           "parse greeting");
  if (const json* package = Member(*version, "package"); package != nullptr) {
    if (!package->is_string()) return Invalid("greeting `package` is not a string");
    greeting.package = package->get_ref<const std::string&>();
  }

  const json* capabilities = Member(qmp, "capabilities");
  if (capabilities != nullptr) {
    if (!capabilities->is_array()) return Invalid("greeting `capabilities` is not an array");
    for (const json& capability : *capabilities) {
      if (!capability.is_string()) return Invalid("greeting capability is not a string");
      greeting.capabilities.push_back(capability.get_ref<const std::string&>());
    }
  }
  return QmpMessage(std::move(greeting));
}

Result<QmpMessage> ParseReturn(json& message) {
  HULL_TRY(auto id, ReplyId(message, "return"), "parse reply");
  QmpReturn reply;
  reply.id = std::move(id);
  reply.value = std::move(*message.find("return"));
  return QmpMessage(std::move(reply));
}

Result<QmpMessage> ParseErrorReply(const json& message) {
  HULL_TRY(auto id, ReplyId(message, "error"), "parse reply");
  const json& error = *Member(message, "error");
  if (!error.is_object()) return Invalid("`error` reply has no error object");
  QmpErrorReply reply;
  reply.id = std::move(id);
  const json* error_class = Member(error, "class");
  if (error_class == nullptr || !error_class->is_string()) {
    return Invalid("`error` reply has no string `class`");
  }
  reply.error_class = error_class->get_ref<const std::string&>();
  if (const json* desc = Member(error, "desc"); desc != nullptr) {
    if (!desc->is_string()) return Invalid("`error` reply has non-string `desc`");
    reply.desc = desc->get_ref<const std::string&>();
  }
  return QmpMessage(std::move(reply));
}

Result<QmpMessage> ParseEvent(json& message) {
  const json& name = *Member(message, "event");
  if (!name.is_string()) return Invalid("event has non-string name");
  QmpEvent event;
  event.name = name.get_ref<const std::string&>();
  if (auto data = message.find("data"); data != message.end()) {
    // QEMU's events carry an object (or nothing); anything else is malformed.
    if (!data->is_object()) return Invalid("event `" + event.name + "` has non-object `data`");
    event.data = std::move(*data);
  }
  // Every QEMU event has a timestamp, but losing a SHUTDOWN because one is
  // missing would be worse than a zero time, so only a malformed one is an error.
  if (const json* timestamp = Member(message, "timestamp"); timestamp != nullptr) {
    if (!timestamp->is_object()) {
      return Invalid("event `" + event.name + "` has non-object `timestamp`");
    }
    std::string what = "event `" + event.name + "` timestamp";
    HULL_TRY(event.seconds, RequiredInt(*timestamp, "seconds", what), "parse event");
    HULL_TRY(event.microseconds, RequiredInt(*timestamp, "microseconds", what), "parse event");
  }
  return QmpMessage(std::move(event));
}

}  // namespace

Result<QmpMessage> ParseQmpMessage(std::string_view line) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.size() > kMaxQmpLineBytes) {
    return MakeError(ErrorCode::kResourceExhausted, "QMP: line of " + std::to_string(line.size()) +
                                                        " bytes exceeds the limit of " +
                                                        std::to_string(kMaxQmpLineBytes));
  }
  if (line.empty()) return Invalid("empty line");
  // nlohmann::json stops at a NUL as if the input ended there, which would
  // accept "{...}\0<anything>". JSON text never holds a raw NUL.
  if (line.find('\0') != std::string_view::npos) return Invalid("line contains a NUL byte");

  json message = json::parse(line.begin(), line.end(), /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (message.is_discarded()) return Invalid("line is not valid JSON");
  if (!message.is_object()) return Invalid("message is not a JSON object");

  // Exactly one kind marker: a message that claims to be two things at once
  // could complete a command with the wrong outcome.
  const bool is_greeting = message.contains("QMP");
  const bool is_return = message.contains("return");
  const bool is_error = message.contains("error");
  const bool is_event = message.contains("event");
  int kinds = int{is_greeting} + int{is_return} + int{is_error} + int{is_event};
  if (kinds == 0) return Invalid("message has none of `QMP`, `return`, `error`, `event`");
  if (kinds > 1) return Invalid("message has more than one of `QMP`, `return`, `error`, `event`");

  if (is_greeting) return ParseGreeting(message);
  if (is_return) return ParseReturn(message);
  if (is_error) return ParseErrorReply(message);
  return ParseEvent(message);
}

std::string FormatQmpCommand(std::string_view execute, const nlohmann::json& arguments,
                             std::string_view id) {
  json command = json::object();
  command["execute"] = std::string(execute);
  if (!arguments.is_null()) command["arguments"] = arguments;
  if (!id.empty()) command["id"] = std::string(id);
  // Replacing invalid UTF-8 keeps dump() from throwing; QEMU would reject the
  // bytes anyway. The result never holds a raw newline: JSON escapes them.
  std::string line = command.dump(-1, ' ', /*ensure_ascii=*/false, json::error_handler_t::replace);
  line += '\n';
  return line;
}

ErrorCode QmpErrorCode(std::string_view error_class) {
  if (error_class == "CommandNotFound" || error_class == "DeviceNotFound") {
    return ErrorCode::kNotFound;
  }
  if (error_class == "GenericError" || error_class == "DeviceNotActive") {
    return ErrorCode::kFailedPrecondition;
  }
  if (error_class == "KVMMissingCap") return ErrorCode::kUnimplemented;
  return ErrorCode::kInternal;
}

}  // namespace hull::qemu
