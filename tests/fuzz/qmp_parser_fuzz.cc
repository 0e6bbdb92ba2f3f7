// libFuzzer target for the QMP parser: whatever QEMU (or a guest that took it
// over) writes to the QMP socket must come back as a message or an error,
// never as a crash, a hang or an exception.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <variant>

#include "qemu/qmp.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  auto parsed = hull::qemu::ParseQmpMessage(line);
  if (!parsed) {
    (void)parsed.error().ToString();
    return 0;
  }
  // Touch what the client touches, so a malformed value that slipped through
  // the parser shows up here rather than in the client.
  if (const auto* reply = std::get_if<hull::qemu::QmpReturn>(&*parsed)) {
    (void)hull::qemu::FormatQmpCommand("fuzz", reply->value.is_object() ? reply->value : nullptr,
                                       reply->id.value_or(""));
  } else if (const auto* error = std::get_if<hull::qemu::QmpErrorReply>(&*parsed)) {
    (void)hull::qemu::QmpErrorCode(error->error_class);
  } else if (const auto* event = std::get_if<hull::qemu::QmpEvent>(&*parsed)) {
    if (!event->data.is_object()) __builtin_trap();  // the parser promises an object
  }
  return 0;
}
