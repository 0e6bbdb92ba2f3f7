// hull's agent types <-> hull.agent.v1 protobuf: the one place that converts,
// private to GrpcAgent. What comes from the guest is bounded here: at most
// kMaxListEntries entries of any list or map, keys of sane length.
#pragma once

#include <vector>

#include "hull/agent/v1/agent.pb.h"
#include "hull/sandbox/agent_api.h"

namespace hull::sandbox {

// At most this many entries are taken from the guest for one list or map.
inline constexpr int kMaxListEntries = 4096;

agent::v1::ProcessIo ToWire(const StdioSetup& stdio);
agent::v1::Storage ToWire(const GuestStorage& storage);
agent::v1::IpAddress ToWire(const IpAddress& address);
IpAddress FromWire(const agent::v1::IpAddress& address);
agent::v1::Route ToWire(const Route& route);
Route FromWire(const agent::v1::Route& route);
NetInterface FromWire(const agent::v1::Interface& interface);
std::vector<Route> FromWire(const google::protobuf::RepeatedPtrField<agent::v1::Route>& routes);
ContainerStats FromWire(const agent::v1::StatsContainerResponse& stats);
GuestDetails FromWire(const agent::v1::GetGuestDetailsResponse& response);
// An exit status is 0..255 (255 if the guest says otherwise), a signal 0..64.
ProcessExit FromWire(const agent::v1::WaitProcessResponse& response);
agent::v1::OutputStream ToWire(OutputStream stream);

}  // namespace hull::sandbox
