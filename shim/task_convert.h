// containerd's task API <-> hull's types, written once: what the task
// service's handlers take from a request and how they build a reply or event.
// Pure functions, unit-tested (tests/unit/task_convert_test.cc).
#pragma once

#include <google/protobuf/any.pb.h>
#include <google/protobuf/timestamp.pb.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "containerd/cgroups/v2/metrics.pb.h"
#include "containerd/task/v2/shim.pb.h"
#include "containerd/types/task/task.pb.h"
#include "hull/core/error.h"
#include "hull/sandbox/agent_api.h"
#include "mounts.h"
#include "process_io.h"

namespace hull::shim {

namespace task = ::containerd::task::v2;

// A process's life as containerd sees it.
enum class ProcessState { kCreated, kRunning, kStopped };

// containerd's status for a process in `state` (a running one of a paused
// container reads PAUSED).
::containerd::v1::types::Status TaskStatus(ProcessState state, bool paused);

// Go's zero time: what the runc shim reports as exited_at of a live process.
void SetZeroTime(google::protobuf::Timestamp* out);

StdioPaths StdioOf(const task::CreateTaskRequest& request);
StdioPaths StdioOf(const task::ExecProcessRequest& request);

// containerd's rootfs mounts (overlay or bind) as the shim mounts them.
std::vector<HostMount> RootfsMounts(const task::CreateTaskRequest& request);

// The OCI process JSON of an exec, checked for its type.
Result<std::string> ExecProcessJson(const google::protobuf::Any& spec);
// The OCI linux.resources JSON of an update, checked for its type.
Result<std::string> ResourcesJson(const google::protobuf::Any& resources);

// The stats the agent sampled as containerd's cgroup v2 metrics.
::io::containerd::cgroups::v2::Metrics ToMetrics(const sandbox::ContainerStats& stats);
// ... wrapped as StatsResponse.stats.
task::StatsResponse ToStatsResponse(const sandbox::ContainerStats& stats);

// The guest's pids of a container; those of execs carry their exec id
// (containerd.runc.v1.ProcessDetails), as the runc shim reports them.
task::PidsResponse ToPidsResponse(const std::vector<uint32_t>& pids,
                                  const std::map<uint32_t, std::string>& exec_ids);

// "container `id`" or "process `exec_id`", for messages.
std::string ProcessLabel(const std::string& id, const std::string& exec_id);

// The task pid containerd sees for every process: the shim's own (guest pids
// mean nothing on the host).
inline uint32_t ShimPid() { return static_cast<uint32_t>(::getpid()); }

// A signal number containerd may ask for: 1..64.
Status ValidateSignal(uint32_t signal);

}  // namespace hull::shim
