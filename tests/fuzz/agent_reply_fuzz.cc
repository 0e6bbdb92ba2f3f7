// libFuzzer target for what the host makes of the guest agent's replies
// (sandbox/src/agent_wire.cc): the first byte picks the reply type, the rest
// is its protobuf encoding, as a hostile agent may send it. Must never crash,
// and what comes out keeps the bounds the agent API promises.
#include <cstddef>
#include <cstdint>

#include "agent_wire.h"
#include "hull/agent/v1/agent.pb.h"

namespace v1 = hull::agent::v1;
using hull::sandbox::FromWire;
using hull::sandbox::kMaxListEntries;

namespace {

void Check(bool holds) {
  if (!holds) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const void* body = data + 1;
  const int length = static_cast<int>(size - 1);
  switch (data[0] % 5) {
    case 0: {
      v1::WaitProcessResponse reply;
      if (!reply.ParseFromArray(body, length)) return 0;
      auto exit = FromWire(reply);
      Check(exit.exit_status <= 255 && exit.signal <= 64);
      break;
    }
    case 1: {
      v1::StatsContainerResponse reply;
      if (!reply.ParseFromArray(body, length)) return 0;
      auto stats = FromWire(reply);
      Check(stats.memory.stat.size() <= static_cast<size_t>(kMaxListEntries));
      for (const auto& [key, value] : stats.memory.stat) Check(key.size() <= 64);
      Check(stats.io.size() <= static_cast<size_t>(kMaxListEntries));
      break;
    }
    case 2: {
      v1::GetGuestDetailsResponse reply;
      if (!reply.ParseFromArray(body, length)) return 0;
      Check(FromWire(reply).loaded_modules.size() <= static_cast<size_t>(kMaxListEntries));
      break;
    }
    case 3: {
      v1::ListInterfacesResponse reply;
      if (!reply.ParseFromArray(body, length)) return 0;
      for (const auto& interface : reply.interfaces()) {
        Check(FromWire(interface).addresses.size() <= static_cast<size_t>(kMaxListEntries));
      }
      break;
    }
    case 4: {
      v1::ListRoutesResponse reply;
      if (!reply.ParseFromArray(body, length)) return 0;
      Check(FromWire(reply.routes()).size() <= static_cast<size_t>(kMaxListEntries));
      break;
    }
  }
  return 0;
}
