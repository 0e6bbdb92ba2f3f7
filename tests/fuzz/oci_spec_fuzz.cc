// libFuzzer target for the OCI spec parser: config.json, an ExecProcess
// process and an UpdateContainer resources object come from containerd and its
// clients. Any bytes must give a Spec or an INVALID_ARGUMENT error, never a
// crash, a hang or an exception; and whatever parses must serialise and parse
// back to the same values.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "hull/core/oci_spec.h"

namespace {

void CheckRoundTrip(const hull::oci::Spec& spec) {
  auto again = hull::oci::ParseOciSpec(hull::oci::SerializeOciSpec(spec));
  if (!again) __builtin_trap();             // the serialiser wrote something invalid
  if (!(*again == spec)) __builtin_trap();  // or something different
}

void CheckError(const hull::Error& error) {
  if (error.code() != hull::ErrorCode::kInvalidArgument) __builtin_trap();
  (void)error.ToString();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);

  if (auto spec = hull::oci::ParseOciSpec(text)) {
    CheckRoundTrip(*spec);
  } else {
    CheckError(spec.error());
  }

  if (auto process = hull::oci::ParseOciProcess(text)) {
    hull::oci::Spec spec = hull::oci::DefaultSpec({}, false);
    spec.process = *process;
    CheckRoundTrip(spec);
  } else {
    CheckError(process.error());
  }

  if (auto resources = hull::oci::ParseOciResources(text)) {
    hull::oci::Spec spec = hull::oci::DefaultSpec({}, false);
    spec.linux->resources = *resources;
    CheckRoundTrip(spec);
  } else {
    CheckError(resources.error());
  }
  return 0;
}
