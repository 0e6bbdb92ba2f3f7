// containerd's task types <-> hull's: the conversions the task service's
// handlers are built from.
#include "task_convert.h"

#include <gtest/gtest.h>

#include "containerd/runc/v1/process_details.pb.h"

namespace hull::shim {
namespace {

namespace types = ::containerd::v1::types;

TEST(TaskConvertTest, StatusFollowsTheStateAndPause) {
  EXPECT_EQ(TaskStatus(ProcessState::kCreated, false), types::CREATED);
  EXPECT_EQ(TaskStatus(ProcessState::kRunning, false), types::RUNNING);
  EXPECT_EQ(TaskStatus(ProcessState::kRunning, true), types::PAUSED);
  EXPECT_EQ(TaskStatus(ProcessState::kStopped, true), types::STOPPED);
  google::protobuf::Timestamp zero;
  SetZeroTime(&zero);
  EXPECT_EQ(zero.seconds(), -62135596800);  // 0001-01-01T00:00:00Z, Go's zero time
}

TEST(TaskConvertTest, RequestsGiveTheirStdioAndMounts) {
  task::CreateTaskRequest create;
  create.set_stdin("/fifo/in");
  create.set_stdout("/fifo/out");
  create.set_terminal(true);
  auto* mount = create.add_rootfs();
  mount->set_type("overlay");
  mount->set_source("overlay");
  mount->add_options("lowerdir=/a");
  mount->add_options("upperdir=/b");
  StdioPaths stdio = StdioOf(create);
  EXPECT_EQ(stdio.stdin, "/fifo/in");
  EXPECT_EQ(stdio.stdout, "/fifo/out");
  EXPECT_EQ(stdio.stderr, "");
  EXPECT_TRUE(stdio.terminal);
  auto mounts = RootfsMounts(create);
  ASSERT_EQ(mounts.size(), 1u);
  EXPECT_EQ(mounts[0].type, "overlay");
  EXPECT_EQ(mounts[0].options, (std::vector<std::string>{"lowerdir=/a", "upperdir=/b"}));
}

TEST(TaskConvertTest, AnysAreCheckedForTheirType) {
  google::protobuf::Any any;
  any.set_type_url("types.containerd.io/opencontainers/runtime-spec/1/Process");
  any.set_value(R"({"args":["sh"]})");
  EXPECT_EQ(ExecProcessJson(any).value_or(""), R"({"args":["sh"]})");
  auto wrong = ResourcesJson(any);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(wrong.error().ToString().find("LinuxResources"), std::string::npos);
  any.set_type_url("types.containerd.io/opencontainers/runtime-spec/1/LinuxResources");
  EXPECT_TRUE(ResourcesJson(any));
  EXPECT_FALSE(ExecProcessJson(any));
}

TEST(TaskConvertTest, StatsBecomeCgroupV2Metrics) {
  sandbox::ContainerStats stats;
  stats.cpu = {10, 6, 4, 7, 1, 99};
  stats.memory.usage_bytes = 1 << 20;
  stats.memory.limit_bytes = 2 << 20;
  stats.memory.oom_kill_events = 2;
  stats.memory.stat = {{"slab", 8}, {"pgfault", 9}, {"unknown_key", 1}};
  stats.pids = {5, 50};
  stats.io.push_back({8, 16, 100, 200, 3, 4});
  auto metrics = ToMetrics(stats);
  EXPECT_EQ(metrics.cpu().usage_usec(), 10u);
  EXPECT_EQ(metrics.cpu().throttled_usec(), 99u);
  EXPECT_EQ(metrics.memory().usage(), 1u << 20);
  EXPECT_EQ(metrics.memory().usage_limit(), 2u << 20);
  EXPECT_EQ(metrics.memory().slab(), 8u);
  EXPECT_EQ(metrics.memory().pgfault(), 9u);
  EXPECT_EQ(metrics.memory().shmem(), 0u) << "a key the guest did not send reads 0";
  EXPECT_EQ(metrics.memory_events().oom_kill(), 2u);
  EXPECT_EQ(metrics.pids().limit(), 50u);
  ASSERT_EQ(metrics.io().usage_size(), 1);
  EXPECT_EQ(metrics.io().usage(0).minor(), 16u);
  EXPECT_EQ(metrics.io().usage(0).wbytes(), 200u);
  auto response = ToStatsResponse(stats);
  EXPECT_EQ(response.stats().type_url(), "io.containerd.cgroups.v2.Metrics");
}

TEST(TaskConvertTest, PidsOfExecsCarryTheirExecId) {
  auto response = ToPidsResponse({1, 7, 9}, {{7, "probe"}});
  ASSERT_EQ(response.processes_size(), 3);
  EXPECT_TRUE(response.processes(0).info().value().empty());
  ::containerd::runc::v1::ProcessDetails details;
  ASSERT_TRUE(details.ParseFromString(response.processes(1).info().value()));
  EXPECT_EQ(details.exec_id(), "probe");
  EXPECT_EQ(response.processes(1).info().type_url(), "containerd.runc.v1.ProcessDetails");
}

TEST(TaskConvertTest, LabelsAndSignals) {
  EXPECT_EQ(ProcessLabel("web", ""), "container `web`");
  EXPECT_EQ(ProcessLabel("web", "e1"), "process `e1`");
  EXPECT_TRUE(ValidateSignal(9));
  EXPECT_TRUE(ValidateSignal(64));
  EXPECT_FALSE(ValidateSignal(0));
  EXPECT_FALSE(ValidateSignal(65));
}

}  // namespace
}  // namespace hull::shim
