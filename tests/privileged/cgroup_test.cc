// Tests of the cgroup v2 manager (agent/engine/cgroup.h).
//
// Three suites in one executable:
//  - CgroupParseTest: the pure parsers, conversions and path validation.
//  - CgroupFakeTreeTest: a temp dir of plain files named like cgroupfs; the
//    manager writes with O_APPEND, so each file records every write. No root.
//  - CgroupRealMountTest: a private cgroup2 mount (root only). cgroup2 is one
//    hierarchy per kernel, so the mount shows the host's tree; each test works
//    in its own uniquely named directory and removes it. On a cgroup v1 host
//    the v1-bound controllers (memory, cpu, pids, io) are absent there, so
//    this suite checks structure (mkdir/rmdir, procs, freeze, kill, events)
//    and the errors for missing controllers; the limits themselves are
//    checked by the VM tests.
#include "engine/cgroup.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "../fuzz/cgroup_parser_properties.h"
#include "hull/core/syscall.h"
#include "testlib.h"

namespace hull::engine {
namespace {

using std::chrono::milliseconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

constexpr int64_t kMiB = 1024 * 1024;

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The non-empty lines of a file: on the fake tree, one per write.
std::vector<std::string> Lines(const std::string& path) {
  std::vector<std::string> lines;
  std::istringstream in(ReadText(path));
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

void Write(const std::string& path, std::string_view text) {
  ASSERT_TRUE(WriteFile(path, text)) << path;
}

std::string MakeTempDir() {
  char tmpl[] = "/tmp/hull-cgroup-test-XXXXXX";
  char* dir = mkdtemp(tmpl);
  EXPECT_NE(dir, nullptr) << strerror(errno);
  return dir != nullptr ? dir : "";
}

// --- Parsers and conversions --------------------------------------------------

// Formats as in Documentation/admin-guide/cgroup-v2.rst, values from a 6.1 guest.
constexpr char kCpuStat[] =
    "usage_usec 1234567\n"
    "user_usec 1000000\n"
    "system_usec 234567\n"
    "core_sched.force_idle_usec 0\n"
    "nr_periods 120\n"
    "nr_throttled 7\n"
    "throttled_usec 45678\n"
    "nr_bursts 0\n"
    "burst_usec 0\n";

constexpr char kMemoryStat[] =
    "anon 10854400\n"
    "file 4210688\n"
    "kernel 1142784\n"
    "kernel_stack 65536\n"
    "pagetables 176128\n"
    "sec_pagetables 0\n"
    "percpu 480\n"
    "sock 0\n"
    "vmalloc 8192\n"
    "shmem 0\n"
    "zswap 0\n"
    "zswapped 0\n"
    "file_mapped 3788800\n"
    "file_dirty 0\n"
    "file_writeback 0\n"
    "swapcached 0\n"
    "anon_thp 0\n"
    "file_thp 0\n"
    "shmem_thp 0\n"
    "inactive_anon 10838016\n"
    "active_anon 16384\n"
    "inactive_file 2252800\n"
    "active_file 1957888\n"
    "unevictable 0\n"
    "slab_reclaimable 246776\n"
    "slab_unreclaimable 493104\n"
    "slab 739880\n"
    "workingset_refault_anon 0\n"
    "workingset_refault_file 0\n"
    "workingset_activate_anon 0\n"
    "workingset_activate_file 0\n"
    "workingset_restore_anon 0\n"
    "workingset_restore_file 0\n"
    "workingset_nodereclaim 0\n"
    "pgscan 0\n"
    "pgsteal 0\n"
    "pgscan_kswapd 0\n"
    "pgscan_direct 0\n"
    "pgsteal_kswapd 0\n"
    "pgsteal_direct 0\n"
    "pgfault 5627\n"
    "pgmajfault 31\n"
    "pgrefill 0\n"
    "pgactivate 0\n"
    "pgdeactivate 0\n"
    "pglazyfree 0\n"
    "pglazyfreed 0\n"
    "zswpin 0\n"
    "zswpout 0\n"
    "thp_fault_alloc 0\n"
    "thp_collapse_alloc 0\n";

constexpr char kMemoryEvents[] =
    "low 0\n"
    "high 0\n"
    "max 57\n"
    "oom 3\n"
    "oom_kill 2\n"
    "oom_group_kill 0\n";

// The example of Documentation/admin-guide/cgroup-v2.rst (io.stat).
constexpr char kIoStat[] =
    "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n"
    "8:0 rbytes=90430464 wbytes=299008000 rios=8950 wios=1252 dbytes=50331648 dios=3021\n";

TEST(CgroupParseTest, FlatKeyedReadsCpuStat) {
  auto values = ParseFlatKeyed(kCpuStat);
  ASSERT_TRUE(values) << values.error().ToString();
  EXPECT_EQ(values->size(), 9u);
  EXPECT_EQ(values->at("usage_usec"), 1234567u);
  EXPECT_EQ(values->at("core_sched.force_idle_usec"), 0u);
  EXPECT_EQ(values->at("throttled_usec"), 45678u);
}

TEST(CgroupParseTest, FlatKeyedReadsMemoryStatAndEvents) {
  auto stat = ParseFlatKeyed(kMemoryStat);
  ASSERT_TRUE(stat) << stat.error().ToString();
  EXPECT_EQ(stat->size(), 51u);
  EXPECT_EQ(stat->at("anon"), 10854400u);
  EXPECT_EQ(stat->at("pgmajfault"), 31u);
  auto events = ParseFlatKeyed(kMemoryEvents);
  ASSERT_TRUE(events);
  EXPECT_EQ(events->at("oom_kill"), 2u);
  EXPECT_EQ(events->at("max"), 57u);
}

TEST(CgroupParseTest, FlatKeyedToleratesBlankLinesAndNoFinalNewline) {
  auto values = ParseFlatKeyed("\npopulated 1\n\n  frozen\t0");
  ASSERT_TRUE(values);
  EXPECT_EQ(values->at("populated"), 1u);
  EXPECT_EQ(values->at("frozen"), 0u);
  EXPECT_TRUE(ParseFlatKeyed("")->empty());
}

TEST(CgroupParseTest, FlatKeyedRejectsMalformedLinesNamingThem) {
  for (const char* text : {"a 1\nb 2 3\n", "a 1\nb -1\n", "a 1\nb\n", "a 1\nb 1x\n",
                           "a 1\nb 18446744073709551616\n"}) {
    auto values = ParseFlatKeyed(text);
    ASSERT_FALSE(values) << text;
    EXPECT_EQ(values.error().code(), ErrorCode::kInternal);
    EXPECT_THAT(values.error().ToString(), HasSubstr("line 2")) << text;
  }
  EXPECT_EQ(ParseFlatKeyed("max 18446744073709551615")->at("max"), UINT64_MAX);
}

TEST(CgroupParseTest, IoStatReadsKernelDocExample) {
  auto devices = ParseIoStat(kIoStat);
  ASSERT_TRUE(devices) << devices.error().ToString();
  ASSERT_EQ(devices->size(), 2u);
  const IoDeviceStats& sdb = (*devices)[0];
  EXPECT_EQ(sdb.major, 8u);
  EXPECT_EQ(sdb.minor, 16u);
  EXPECT_EQ(sdb.rbytes, 1459200u);
  EXPECT_EQ(sdb.wbytes, 314773504u);
  EXPECT_EQ(sdb.rios, 192u);
  EXPECT_EQ(sdb.wios, 353u);
  const IoDeviceStats& sda = (*devices)[1];
  EXPECT_EQ(sda.minor, 0u);
  EXPECT_EQ(sda.rbytes, 90430464u);
  EXPECT_EQ(sda.wios, 1252u);
}

TEST(CgroupParseTest, IoStatSkipsUnknownKeysAndRejectsBadDevicesOrValues) {
  auto devices = ParseIoStat("253:0 cost.usage=12 rbytes=5 junk\n259:1\n");
  ASSERT_TRUE(devices) << devices.error().ToString();
  ASSERT_EQ(devices->size(), 1u);
  EXPECT_EQ((*devices)[0].major, 253u);
  EXPECT_EQ((*devices)[0].rbytes, 5u);
  for (const char* text : {"8-0 rbytes=1\n", "8:x rbytes=1\n", "8:0 rbytes=lots\n", ":0 rbytes=1\n",
                           "8:0 wios=-3\n", "99999999999:0 rbytes=1\n"}) {
    auto bad = ParseIoStat(text);
    ASSERT_FALSE(bad) << text;
    EXPECT_THAT(bad.error().ToString(), HasSubstr("line 1")) << text;
  }
}

TEST(CgroupParseTest, UintOrMax) {
  EXPECT_EQ(ParseUintOrMax("max\n").value(), std::nullopt);
  EXPECT_EQ(ParseUintOrMax("67108864\n").value(), std::optional<uint64_t>(67108864));
  EXPECT_EQ(ParseUintOrMax("0").value(), std::optional<uint64_t>(0));
  for (const char* text : {"", "\n", "-1", "maxx", "12 13", "1e6"}) {
    EXPECT_FALSE(ParseUintOrMax(text)) << text;
  }
}

TEST(CgroupParseTest, CgroupProcs) {
  EXPECT_THAT(ParseCgroupProcs("1\n42\n31337\n").value(), ElementsAre(1, 42, 31337));
  EXPECT_TRUE(ParseCgroupProcs("").value().empty());
  EXPECT_FALSE(ParseCgroupProcs("12\nabc\n"));
  EXPECT_FALSE(ParseCgroupProcs("0\n"));
  EXPECT_FALSE(ParseCgroupProcs("99999999999\n"));
}

// Random text over the parsers' own vocabulary (the fuzz target
// cgroup_parser_fuzz explores further): every result must be consistent with
// its input, and both outcomes must occur, or the generator tests nothing.
TEST(CgroupParseTest, ParsersKeepTheirPromisesOnRandomText) {
  std::mt19937 rng(20240601);
  const std::string alphabet = std::string("0123456789 :=\n\tmaxrbytes-/.\xff") + '\0';
  int flat_keyed_parsed = 0, flat_keyed_refused = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string text(rng() % 64, ' ');
    for (char& c : text) c = alphabet[rng() % alphabet.size()];
    const char* violation = testing::CgroupParserViolation(text);
    ASSERT_EQ(violation, nullptr) << violation << " on " << ::testing::PrintToString(text);
    (ParseFlatKeyed(text) ? flat_keyed_parsed : flat_keyed_refused) += 1;
  }
  EXPECT_GT(flat_keyed_parsed, 0);
  EXPECT_GT(flat_keyed_refused, 0);
}

TEST(CgroupParseTest, CpuSharesToWeightFollowsRunc) {
  EXPECT_EQ(ConvertCpuSharesToCpuWeight(0), 0u);  // unset
  EXPECT_EQ(ConvertCpuSharesToCpuWeight(2), 1u);
  EXPECT_EQ(ConvertCpuSharesToCpuWeight(1024), 39u);
  EXPECT_EQ(ConvertCpuSharesToCpuWeight(512), 20u);
  EXPECT_EQ(ConvertCpuSharesToCpuWeight(262144), 10000u);
  // Out of v1's range: clamped as the v1 kernel did, not wrapped.
  EXPECT_EQ(ConvertCpuSharesToCpuWeight(1), 1u);
  EXPECT_EQ(ConvertCpuSharesToCpuWeight(10'000'000), 10000u);
}

TEST(CgroupParseTest, BlkioWeightToIoWeightFollowsRunc) {
  EXPECT_EQ(ConvertBlkioWeightToIoWeight(0), 0u);
  EXPECT_EQ(ConvertBlkioWeightToIoWeight(10), 1u);
  EXPECT_EQ(ConvertBlkioWeightToIoWeight(500), 4950u);
  EXPECT_EQ(ConvertBlkioWeightToIoWeight(1000), 10000u);
}

TEST(CgroupParseTest, MemorySwapFollowsRunc) {
  EXPECT_EQ(ConvertMemorySwapToCgroupV2(0, -1).value(), -1);  // both unlimited
  EXPECT_EQ(ConvertMemorySwapToCgroupV2(-1, 64 * kMiB).value(), -1);
  EXPECT_EQ(ConvertMemorySwapToCgroupV2(0, 64 * kMiB).value(), 0);  // unset: left alone
  EXPECT_EQ(ConvertMemorySwapToCgroupV2(128 * kMiB, 64 * kMiB).value(), 64 * kMiB);
  EXPECT_EQ(ConvertMemorySwapToCgroupV2(64 * kMiB, 64 * kMiB).value(), 0);
  EXPECT_EQ(ConvertMemorySwapToCgroupV2(64 * kMiB, -1).value(), 64 * kMiB);
  EXPECT_EQ(ConvertMemorySwapToCgroupV2(64 * kMiB, 0).error().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(ConvertMemorySwapToCgroupV2(32 * kMiB, 64 * kMiB));
  EXPECT_FALSE(ConvertMemorySwapToCgroupV2(32 * kMiB, -5));
}

TEST(CgroupParseTest, RelativePathValidation) {
  for (const char* good : {"a", "a/b", "hull/pod-1/ctr", "a.b", "..a", "a..", "..."}) {
    EXPECT_TRUE(ValidateCgroupRelativePath(good)) << good;
  }
  for (const char* bad : {"", "/abs", "../x", "a/../b", "..", "a//b", "a/", "./a", "a/.", "/"}) {
    auto status = ValidateCgroupRelativePath(bad);
    ASSERT_FALSE(status) << bad;
    EXPECT_EQ(status.error().code(), ErrorCode::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(ValidateCgroupRelativePath(std::string_view("a\0b", 3)));
}

// --- Fake tree ------------------------------------------------------------------

// Interface files of the controllers, as cgroupfs would show them.
const std::map<std::string, std::vector<std::string>> kControllerFiles = {
    {"cpu", {"cpu.weight", "cpu.max", "cpu.idle", "cpu.stat"}},
    {"cpuset", {"cpuset.cpus", "cpuset.mems"}},
    {"io", {"io.weight", "io.max", "io.stat"}},
    {"memory", {"memory.max", "memory.low", "memory.high", "memory.swap.max", "memory.events"}},
    {"pids", {"pids.max"}},
};

class CgroupFakeTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = MakeTempDir();
    ASSERT_FALSE(root_.empty());
    AddCgroup("", "cpu cpuset io memory pids hugetlb");
  }
  void TearDown() override {
    if (!root_.empty()) {
      ASSERT_TRUE(RemoveTree(root_));
    }
  }

  // A fake cgroup directory (`relative` "" is the root) whose
  // cgroup.controllers lists `controllers`, with the core files and the
  // interface files of those controllers, all empty.
  std::string AddCgroup(const std::string& relative, const std::string& controllers) {
    std::string dir = relative.empty() ? root_ : root_ + "/" + relative;
    EXPECT_TRUE(MakeDirs(dir));
    EXPECT_TRUE(WriteFile(dir + "/cgroup.controllers", controllers + "\n"));
    for (const char* file : {"cgroup.subtree_control", "cgroup.procs", "cgroup.freeze",
                             "cgroup.kill", "cgroup.max.depth"}) {
      EXPECT_TRUE(WriteFile(dir + "/" + file, ""));
    }
    EXPECT_TRUE(WriteFile(dir + "/cgroup.events", "populated 0\nfrozen 0\n"));
    std::istringstream names(controllers);
    for (std::string name; names >> name;) {
      auto it = kControllerFiles.find(name);
      if (it == kControllerFiles.end()) continue;
      for (const auto& file : it->second) EXPECT_TRUE(WriteFile(dir + "/" + file, ""));
    }
    return dir;
  }

  Cgroup MakeLeaf(const std::string& controllers = "cpu cpuset io memory pids") {
    AddCgroup("ctr", controllers);
    auto cgroup = Cgroup::Open(root_, "ctr");
    EXPECT_TRUE(cgroup) << cgroup.error().ToString();
    return std::move(cgroup).value();
  }

  std::vector<std::string> LeafLines(const std::string& file) {
    return Lines(root_ + "/ctr/" + file);
  }

  std::string root_;
};

TEST_F(CgroupFakeTreeTest, CreateEnablesOnlyControllersTheParentHas) {
  // The root lacks cpuset; the pod level has only cpu and memory.
  Write(root_ + "/cgroup.controllers", "cpu io memory pids hugetlb\n");
  AddCgroup("pod", "cpu memory");
  auto cgroup = Cgroup::Create(root_, "pod/ctr");
  ASSERT_TRUE(cgroup) << cgroup.error().ToString();
  EXPECT_EQ(cgroup->path(), root_ + "/pod/ctr");
  EXPECT_EQ(cgroup->relative_path(), "pod/ctr");
  struct stat st;
  ASSERT_EQ(stat(cgroup->path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  // One write per controller; hugetlb is not one hull wants.
  EXPECT_THAT(Lines(root_ + "/cgroup.subtree_control"),
              ElementsAre("+cpu", "+io", "+memory", "+pids"));
  EXPECT_THAT(Lines(root_ + "/pod/cgroup.subtree_control"), ElementsAre("+cpu", "+memory"));
}

TEST_F(CgroupFakeTreeTest, CreateOfExistingCgroupIsFine) {
  AddCgroup("ctr", "cpu");
  EXPECT_TRUE(Cgroup::Create(root_, "ctr"));
}

TEST_F(CgroupFakeTreeTest, CreateRejectsBadPathsAndCreatesNothing) {
  for (const char* bad : {"../x", "/abs", "a//b", "", "a/../../x"}) {
    auto cgroup = Cgroup::Create(root_, bad);
    ASSERT_FALSE(cgroup) << bad;
    EXPECT_EQ(cgroup.error().code(), ErrorCode::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(PathExists(root_ + "/../x"));
  EXPECT_FALSE(PathExists(root_ + "/a"));
  EXPECT_FALSE(Cgroup::Create("relative/root", "a"));
}

TEST_F(CgroupFakeTreeTest, CreateRefusesADirectoryThatIsNotCgroup2) {
  // What /sys/fs/cgroup looks like on a cgroup v1 host: a tmpfs.
  ASSERT_EQ(unlink((root_ + "/cgroup.controllers").c_str()), 0);
  auto cgroup = Cgroup::Create(root_, "ctr");
  ASSERT_FALSE(cgroup);
  EXPECT_EQ(cgroup.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_THAT(cgroup.error().ToString(), HasSubstr("not a cgroup v2 directory"));
}

TEST_F(CgroupFakeTreeTest, OpenNeedsAnExistingDirectory) {
  auto missing = Cgroup::Open(root_, "nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::kNotFound);
  AddCgroup("there", "");
  EXPECT_TRUE(Cgroup::Open(root_, "there"));
  EXPECT_FALSE(Cgroup::Open(root_, "../there"));
}

TEST_F(CgroupFakeTreeTest, ApplyWritesWhatRuncWrites) {
  Cgroup cgroup = MakeLeaf();
  oci::Resources resources;
  resources.memory =
      oci::MemoryResources{.limit = 64 * kMiB, .reservation = 32 * kMiB, .swap = 128 * kMiB};
  resources.cpu =
      oci::CpuResources{.shares = 1024, .quota = 50000, .period = 100000, .cpus = "0", .mems = "0"};
  resources.pids = oci::PidsResources{.limit = 20};
  resources.block_io = oci::BlockIoResources{
      .weight = 500,
      .throttle_read_bps_device = {{.major = 8, .minor = 0, .rate = 1048576}},
      .throttle_write_bps_device = {{.major = 8, .minor = 0, .rate = 2097152}},
      .throttle_read_iops_device = {{.major = 8, .minor = 16, .rate = 100}},
      .throttle_write_iops_device = {{.major = 8, .minor = 16, .rate = 200}},
  };
  resources.unified = {{"memory.high", "50331648"}};
  resources.devices = {{.allow = false, .access = "rwm"},
                       {.allow = true, .type = "c", .major = 1, .minor = 3, .access = "rwm"}};

  auto status = cgroup.Apply(resources);
  ASSERT_TRUE(status) << status.error().ToString();
  EXPECT_THAT(LeafLines("memory.max"), ElementsAre("67108864"));
  EXPECT_THAT(LeafLines("memory.swap.max"), ElementsAre("67108864"));  // swap - limit
  EXPECT_THAT(LeafLines("memory.low"), ElementsAre("33554432"));
  EXPECT_THAT(LeafLines("memory.high"), ElementsAre("50331648"));
  EXPECT_THAT(LeafLines("cpu.weight"), ElementsAre("39"));
  EXPECT_THAT(LeafLines("cpu.max"), ElementsAre("50000 100000"));
  EXPECT_THAT(LeafLines("cpu.idle"), ElementsAre());
  EXPECT_THAT(LeafLines("cpuset.cpus"), ElementsAre("0"));
  EXPECT_THAT(LeafLines("cpuset.mems"), ElementsAre("0"));
  EXPECT_THAT(LeafLines("pids.max"), ElementsAre("20"));
  EXPECT_THAT(LeafLines("io.weight"), ElementsAre("4950"));
  EXPECT_THAT(LeafLines("io.max"), ElementsAre("8:0 rbps=1048576", "8:0 wbps=2097152",
                                               "8:16 riops=100", "8:16 wiops=200"));
  // Nothing else was touched (device rules write nothing).
  EXPECT_THAT(LeafLines("cgroup.procs"), ElementsAre());
  EXPECT_THAT(LeafLines("cgroup.freeze"), ElementsAre());
}

TEST_F(CgroupFakeTreeTest, CpuMaxFollowsRunc) {
  struct Case {
    std::optional<int64_t> quota;
    std::optional<uint64_t> period;
    const char* want;  // nullptr: not written
  };
  for (const Case& c : {Case{-1, 100000, "max 100000"}, Case{50000, std::nullopt, "50000 100000"},
                        Case{std::nullopt, 250000, "max 250000"}, Case{0, std::nullopt, nullptr},
                        Case{std::nullopt, std::nullopt, nullptr}}) {
    Cgroup cgroup = MakeLeaf();
    oci::Resources resources;
    resources.cpu = oci::CpuResources{.quota = c.quota, .period = c.period};
    ASSERT_TRUE(cgroup.Apply(resources));
    if (c.want != nullptr) {
      EXPECT_THAT(LeafLines("cpu.max"), ElementsAre(c.want));
    } else {
      EXPECT_THAT(LeafLines("cpu.max"), ElementsAre());
    }
    ASSERT_TRUE(RemoveTree(root_ + "/ctr"));
  }
}

TEST_F(CgroupFakeTreeTest, MemoryAndSwapFollowRunc) {
  struct Case {
    std::optional<int64_t> limit;
    std::optional<int64_t> swap;
    std::vector<std::string> memory_max;
    std::vector<std::string> swap_max;
  };
  const std::vector<Case> cases = {
      {-1, std::nullopt, {"max"}, {"max"}},         // unlimited: swap too
      {64 * kMiB, std::nullopt, {"67108864"}, {}},  // swap unset: left alone
      {64 * kMiB, 64 * kMiB, {"67108864"}, {"0"}},  // swap == limit: no swap
      {64 * kMiB, -1, {"67108864"}, {"max"}},
      {-1, 64 * kMiB, {"max"}, {"67108864"}},
      {0, std::nullopt, {}, {}},  // 0 = unset
  };
  for (const Case& c : cases) {
    Cgroup cgroup = MakeLeaf();
    oci::Resources resources;
    resources.memory = oci::MemoryResources{.limit = c.limit, .swap = c.swap};
    auto status = cgroup.Apply(resources);
    ASSERT_TRUE(status) << status.error().ToString();
    EXPECT_EQ(LeafLines("memory.max"), c.memory_max);
    EXPECT_EQ(LeafLines("memory.swap.max"), c.swap_max);
    ASSERT_TRUE(RemoveTree(root_ + "/ctr"));
  }
}

TEST_F(CgroupFakeTreeTest, SwapWithoutLimitIsRejected) {
  Cgroup cgroup = MakeLeaf();
  oci::Resources resources;
  resources.memory = oci::MemoryResources{.swap = 128 * kMiB};
  auto status = cgroup.Apply(resources);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(status.error().ToString(),
              HasSubstr("linux.resources.memory.swap: unable to set swap limit without memory"));
}

TEST_F(CgroupFakeTreeTest, SwapMaxOrZeroIsIgnoredWithoutSwapAccounting) {
  Cgroup cgroup = MakeLeaf();
  ASSERT_EQ(unlink((cgroup.path() + "/memory.swap.max").c_str()), 0);
  oci::Resources resources;
  resources.memory = oci::MemoryResources{.limit = -1};
  auto status = cgroup.Apply(resources);
  ASSERT_TRUE(status) << status.error().ToString();
  EXPECT_THAT(LeafLines("memory.max"), ElementsAre("max"));

  resources.memory = oci::MemoryResources{.limit = 64 * kMiB, .swap = 128 * kMiB};
  status = cgroup.Apply(resources);
  ASSERT_FALSE(status);
  EXPECT_THAT(status.error().ToString(),
              HasSubstr("linux.resources.memory.swap: memory.swap.max: ENOENT (this kernel has "
                        "no memory.swap.max)"));
}

TEST_F(CgroupFakeTreeTest, PidsLimitZeroOrNegativeIsMax) {
  for (int64_t limit : {0, -1}) {
    Cgroup cgroup = MakeLeaf();
    oci::Resources resources;
    resources.pids = oci::PidsResources{.limit = limit};
    ASSERT_TRUE(cgroup.Apply(resources));
    EXPECT_THAT(LeafLines("pids.max"), ElementsAre("max"));
    ASSERT_TRUE(RemoveTree(root_ + "/ctr"));
  }
}

TEST_F(CgroupFakeTreeTest, MissingControllerErrorNamesFieldFileAndController) {
  Cgroup cgroup = MakeLeaf("cpu memory pids");  // no io
  oci::Resources resources;
  resources.block_io = oci::BlockIoResources{.weight = 500};
  auto status = cgroup.Apply(resources);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(status.error().ToString(),
            "apply resources to cgroup `" + cgroup.path() +
                "`: linux.resources.blockIO.weight: io.weight: ENOENT (the io controller is not "
                "available)");
}

TEST_F(CgroupFakeTreeTest, MissingFileOfAnEnabledControllerSaysTheKernelLacksIt) {
  Cgroup cgroup = MakeLeaf();
  ASSERT_EQ(unlink((cgroup.path() + "/cpu.idle").c_str()), 0);
  oci::Resources resources;
  resources.cpu = oci::CpuResources{.idle = 1};
  auto status = cgroup.Apply(resources);
  ASSERT_FALSE(status);
  EXPECT_THAT(status.error().ToString(),
              HasSubstr("linux.resources.cpu.idle: cpu.idle: ENOENT (this kernel has no "
                        "cpu.idle)"));
}

TEST_F(CgroupFakeTreeTest, BfqTakesBlkioWeightsUnconverted) {
  Cgroup cgroup = MakeLeaf();
  // Linux >= 5.4 with bfq: "default N" plus per-device lines.
  Write(cgroup.path() + "/io.bfq.weight", "default 100\n");
  oci::Resources resources;
  resources.block_io =
      oci::BlockIoResources{.weight = 500,
                            .weight_device = {{.major = 8, .minor = 0, .weight = 300},
                                              {.major = 8, .minor = 16, .leaf_weight = 10}}};
  auto status = cgroup.Apply(resources);
  ASSERT_TRUE(status) << status.error().ToString();
  EXPECT_THAT(LeafLines("io.bfq.weight"), ElementsAre("default 100", "500", "8:0 300"));
  EXPECT_THAT(LeafLines("io.weight"), ElementsAre());
}

TEST_F(CgroupFakeTreeTest, BlkioWeightOutsideV1RangeIsRejected) {
  Cgroup cgroup = MakeLeaf();
  oci::Resources resources;
  resources.block_io = oci::BlockIoResources{.weight = 5};
  auto status = cgroup.Apply(resources);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(status.error().ToString(), HasSubstr("linux.resources.blockIO.weight: 5"));
}

TEST_F(CgroupFakeTreeTest, UnifiedIsWrittenAsIsLineByLine) {
  Cgroup cgroup = MakeLeaf();
  oci::Resources resources;
  resources.pids = oci::PidsResources{.limit = 20};
  // unified comes last and wins over the translated value.
  resources.unified = {{"pids.max", "30"}, {"io.max", "8:0 rbps=1\n8:16 wbps=2\n"}};
  ASSERT_TRUE(cgroup.Apply(resources));
  EXPECT_THAT(LeafLines("pids.max"), ElementsAre("20", "30"));
  EXPECT_THAT(LeafLines("io.max"), ElementsAre("8:0 rbps=1", "8:16 wbps=2"));
}

TEST_F(CgroupFakeTreeTest, UnifiedKeysMustBePlainFileNames) {
  Cgroup cgroup = MakeLeaf();
  for (const char* key : {"../cgroup.procs", "a/b", "", ".."}) {
    oci::Resources resources;
    resources.unified = {{key, "1"}};
    auto status = cgroup.Apply(resources);
    ASSERT_FALSE(status) << key;
    EXPECT_EQ(status.error().code(), ErrorCode::kInvalidArgument) << key;
  }
  EXPECT_THAT(Lines(root_ + "/cgroup.procs"), ElementsAre());

  oci::Resources resources;
  resources.unified = {{"hugetlb.2MB.max", "0"}};
  auto status = cgroup.Apply(resources);
  ASSERT_FALSE(status);
  EXPECT_THAT(status.error().ToString(),
              HasSubstr("linux.resources.unified[hugetlb.2MB.max]: hugetlb.2MB.max: ENOENT (the "
                        "hugetlb controller is not available)"));
}

TEST_F(CgroupFakeTreeTest, DeviceRulesAloneWriteNothing) {
  Cgroup cgroup = MakeLeaf();
  oci::Resources resources;
  resources.devices = {{.allow = false, .access = "rwm"}};
  EXPECT_TRUE(cgroup.Apply(resources));
}

TEST_F(CgroupFakeTreeTest, StatsReadsEveryController) {
  Cgroup cgroup = MakeLeaf();
  const std::string dir = cgroup.path();
  Write(dir + "/cpu.stat", kCpuStat);
  Write(dir + "/memory.current", "16777216\n");
  Write(dir + "/memory.max", "max\n");
  Write(dir + "/memory.swap.current", "4096\n");
  Write(dir + "/memory.stat", kMemoryStat);
  Write(dir + "/memory.events", kMemoryEvents);
  Write(dir + "/pids.current", "3\n");
  Write(dir + "/pids.max", "20\n");
  Write(dir + "/io.stat", kIoStat);

  auto stats = cgroup.Stats();
  ASSERT_TRUE(stats) << stats.error().ToString();
  EXPECT_EQ(stats->cpu.usage_usec, 1234567u);
  EXPECT_EQ(stats->cpu.user_usec, 1000000u);
  EXPECT_EQ(stats->cpu.system_usec, 234567u);
  EXPECT_EQ(stats->cpu.nr_periods, 120u);
  EXPECT_EQ(stats->cpu.nr_throttled, 7u);
  EXPECT_EQ(stats->cpu.throttled_usec, 45678u);
  EXPECT_EQ(stats->memory.current, 16777216u);
  EXPECT_EQ(stats->memory.max, 0u);  // "max"
  EXPECT_EQ(stats->memory.swap_current, 4096u);
  EXPECT_EQ(stats->memory.anon, 10854400u);
  EXPECT_EQ(stats->memory.file, 4210688u);
  EXPECT_EQ(stats->memory.stat.size(), 51u);
  EXPECT_EQ(stats->memory.stat.at("slab"), 739880u);
  EXPECT_EQ(stats->memory.oom, 3u);
  EXPECT_EQ(stats->memory.oom_kill, 2u);
  EXPECT_EQ(stats->pids.current, 3u);
  EXPECT_EQ(stats->pids.max, 20u);
  ASSERT_EQ(stats->io.size(), 2u);
  EXPECT_EQ(stats->io[1].major, 8u);
  EXPECT_EQ(stats->io[1].wbytes, 299008000u);
}

TEST_F(CgroupFakeTreeTest, StatsOfControllersThatAreOffAreZero) {
  AddCgroup("bare", "");
  auto cgroup = Cgroup::Open(root_, "bare");
  ASSERT_TRUE(cgroup);
  auto stats = cgroup->Stats();
  ASSERT_TRUE(stats) << stats.error().ToString();
  EXPECT_EQ(stats->cpu.usage_usec, 0u);
  EXPECT_EQ(stats->memory.current, 0u);
  EXPECT_TRUE(stats->memory.stat.empty());
  EXPECT_EQ(stats->pids.max, 0u);
  EXPECT_TRUE(stats->io.empty());
}

TEST_F(CgroupFakeTreeTest, StatsParseErrorNamesTheFile) {
  Cgroup cgroup = MakeLeaf();
  Write(cgroup.path() + "/memory.max", "max\n");
  Write(cgroup.path() + "/pids.max", "max\n");
  Write(cgroup.path() + "/memory.stat", "anon 1\nfile lots\n");
  auto stats = cgroup.Stats();
  ASSERT_FALSE(stats);
  EXPECT_EQ(stats.error().code(), ErrorCode::kInternal);
  EXPECT_THAT(stats.error().ToString(), HasSubstr("parse memory.stat: line 2"));
  Write(cgroup.path() + "/memory.stat", "");
  Write(cgroup.path() + "/pids.max", "unlimited\n");
  stats = cgroup.Stats();
  ASSERT_FALSE(stats);
  EXPECT_THAT(stats.error().ToString(), HasSubstr("parse pids.max"));
}

TEST_F(CgroupFakeTreeTest, PidsAndPopulated) {
  Cgroup cgroup = MakeLeaf();
  Write(cgroup.path() + "/cgroup.procs", "12\n34\n");
  Write(cgroup.path() + "/cgroup.events", "populated 1\nfrozen 0\n");
  EXPECT_THAT(cgroup.Pids().value(), ElementsAre(12, 34));
  EXPECT_TRUE(cgroup.Populated().value());
  Write(cgroup.path() + "/cgroup.events", "frozen 0\n");
  EXPECT_FALSE(cgroup.Populated());
}

TEST_F(CgroupFakeTreeTest, FreezeWaitsForTheFrozenEvent) {
  Cgroup cgroup = MakeLeaf();
  const std::string events = cgroup.path() + "/cgroup.events";
  // Freeze must not return before the "kernel" reports frozen. The sleep only
  // makes it likely that Freeze is already waiting; the flag is the check.
  std::atomic<bool> reported{false};
  std::thread kernel([&] {
    std::this_thread::sleep_for(milliseconds(150));
    reported = true;
    ASSERT_TRUE(WriteFile(events, "populated 1\nfrozen 1\n"));
  });
  auto status = cgroup.Freeze(milliseconds(60000));
  const bool reported_before_return = reported;
  kernel.join();
  ASSERT_TRUE(status) << status.error().ToString();
  EXPECT_TRUE(reported_before_return);
  EXPECT_THAT(LeafLines("cgroup.freeze"), ElementsAre("1"));

  std::thread thaw([&] {
    std::this_thread::sleep_for(milliseconds(50));
    ASSERT_TRUE(WriteFile(events, "populated 1\nfrozen 0\n"));
  });
  status = cgroup.Thaw(milliseconds(60000));
  thaw.join();
  ASSERT_TRUE(status) << status.error().ToString();
  EXPECT_THAT(LeafLines("cgroup.freeze"), ElementsAre("1", "0"));
}

TEST_F(CgroupFakeTreeTest, FreezeTimesOut) {
  Cgroup cgroup = MakeLeaf();
  auto start = std::chrono::steady_clock::now();
  auto status = cgroup.Freeze(milliseconds(200));
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code(), ErrorCode::kDeadlineExceeded);
  EXPECT_THAT(status.error().ToString(), HasSubstr("did not freeze within 200ms"));
  // The deadline is a lower bound only: on a loaded machine the wait may
  // overrun it by any amount.
  EXPECT_GE(elapsed, milliseconds(200));
}

TEST_F(CgroupFakeTreeTest, DestroyOfMissingCgroupIsOk) {
  AddCgroup("gone", "");
  auto cgroup = Cgroup::Open(root_, "gone");
  ASSERT_TRUE(cgroup);
  ASSERT_TRUE(RemoveTree(cgroup->path()));
  EXPECT_TRUE(cgroup->Destroy(milliseconds(100)));
}

// Collects OomWatcher callbacks for the test thread.
class OomRecorder {
 public:
  OomWatcher::Callback callback() {
    return [this](const std::string& id, uint64_t total) {
      std::lock_guard lock(mutex_);
      events_.emplace_back(id, total);
      cv_.notify_all();
    };
  }
  // Waits until `count` events arrived (or the timeout) and returns them all.
  std::vector<std::pair<std::string, uint64_t>> Wait(size_t count, milliseconds timeout) {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, timeout, [&] { return events_.size() >= count; });
    return events_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::pair<std::string, uint64_t>> events_;
};

std::string MemoryEvents(uint64_t oom, uint64_t oom_kill) {
  return "low 0\nhigh 0\nmax 4\noom " + std::to_string(oom) + "\noom_kill " +
         std::to_string(oom_kill) + "\noom_group_kill 0\n";
}

TEST_F(CgroupFakeTreeTest, OomWatcherReportsIncreasesOfOomKill) {
  AddCgroup("a", "memory");
  AddCgroup("b", "memory");
  Write(root_ + "/a/memory.events", MemoryEvents(0, 0));
  Write(root_ + "/b/memory.events", MemoryEvents(2, 2));  // earlier kills: the baseline
  auto a = Cgroup::Open(root_, "a");
  auto b = Cgroup::Open(root_, "b");
  ASSERT_TRUE(a && b);

  OomRecorder recorder;
  auto watcher = OomWatcher::Create(recorder.callback());
  ASSERT_TRUE(watcher) << watcher.error().ToString();
  ASSERT_TRUE((*watcher)->Watch("ctr-a", *a));
  ASSERT_TRUE((*watcher)->Watch("ctr-b", *b));

  Write(root_ + "/a/memory.events", MemoryEvents(1, 1));
  auto events = recorder.Wait(1, milliseconds(5000));
  EXPECT_THAT(events, ElementsAre(std::pair<std::string, uint64_t>("ctr-a", 1)));

  // A change that is not an oom_kill (oom without kill) is not reported...
  Write(root_ + "/b/memory.events", MemoryEvents(3, 2));
  // ...and a kill is.
  Write(root_ + "/b/memory.events", MemoryEvents(4, 3));
  events = recorder.Wait(2, milliseconds(5000));
  EXPECT_THAT(events, ElementsAre(std::pair<std::string, uint64_t>("ctr-a", 1),
                                  std::pair<std::string, uint64_t>("ctr-b", 3)));

  // Unwatched: silent.
  (*watcher)->Unwatch("ctr-a");
  (*watcher)->Unwatch("never-watched");
  Write(root_ + "/a/memory.events", MemoryEvents(5, 5));
  events = recorder.Wait(3, milliseconds(300));
  EXPECT_EQ(events.size(), 2u);
  watcher->reset();  // joins the thread
}

TEST_F(CgroupFakeTreeTest, OomWatcherWatchErrors) {
  OomRecorder recorder;
  auto watcher = OomWatcher::Create(recorder.callback());
  ASSERT_TRUE(watcher);
  AddCgroup("nomem", "cpu");
  auto nomem = Cgroup::Open(root_, "nomem");
  ASSERT_TRUE(nomem);
  auto status = (*watcher)->Watch("x", *nomem);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code(), ErrorCode::kFailedPrecondition);
  EXPECT_THAT(status.error().ToString(), HasSubstr("memory controller is not enabled"));

  AddCgroup("mem", "memory");
  auto mem = Cgroup::Open(root_, "mem");
  ASSERT_TRUE((*watcher)->Watch("x", *mem));
  auto again = (*watcher)->Watch("x", *mem);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code(), ErrorCode::kAlreadyExists);
  // Two ids on one cgroup share an inotify watch; dropping one keeps the other.
  ASSERT_TRUE((*watcher)->Watch("y", *mem));
  (*watcher)->Unwatch("x");
  Write(root_ + "/mem/memory.events", MemoryEvents(1, 1));
  EXPECT_THAT(recorder.Wait(1, milliseconds(5000)),
              ElementsAre(std::pair<std::string, uint64_t>("y", 1)));
}

// --- Real cgroup2 mount -----------------------------------------------------------

// clone3's argument (linux/sched.h, whose macros clash with glibc's <sched.h>).
struct CloneArgs {
  uint64_t flags = 0;
  uint64_t pidfd = 0;
  uint64_t child_tid = 0;
  uint64_t parent_tid = 0;
  uint64_t exit_signal = 0;
  uint64_t stack = 0;
  uint64_t stack_size = 0;
  uint64_t tls = 0;
  uint64_t set_tid = 0;
  uint64_t set_tid_size = 0;
  uint64_t cgroup = 0;
};
constexpr uint64_t kCloneIntoCgroup = 0x200000000ULL;

class CgroupRealMountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HULL_REQUIRE_ROOT("mounts a private cgroup2 hierarchy");
    mount_point_ = MakeTempDir();
    ASSERT_FALSE(mount_point_.empty());
    if (mount("none", mount_point_.c_str(), "cgroup2", 0, nullptr) != 0) {
      int err = errno;
      rmdir(mount_point_.c_str());
      mount_point_.clear();
      GTEST_SKIP() << "cannot mount cgroup2: " << strerror(err);
    }
    name_ = "hull-cgroup-test-" + RandomHex(6);
    root_ = mount_point_ + "/" + name_;
    ASSERT_EQ(mkdir(root_.c_str(), 0755), 0) << strerror(errno);
    counter_ = static_cast<std::atomic<uint64_t>*>(mmap(nullptr, sizeof(std::atomic<uint64_t>),
                                                        PROT_READ | PROT_WRITE,
                                                        MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(counter_, MAP_FAILED);
    new (counter_) std::atomic<uint64_t>(0);
  }

  void TearDown() override {
    for (pid_t pid : children_) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    if (!root_.empty()) {
      // The whole test directory, with whatever a failed test left in it.
      auto leftover = Cgroup::Open(mount_point_, name_);
      if (leftover) {
        auto status = leftover->Destroy(milliseconds(5000));
        EXPECT_TRUE(status) << status.error().ToString();
      }
    }
    if (!mount_point_.empty()) {
      EXPECT_EQ(umount2(mount_point_.c_str(), 0), 0) << strerror(errno);
      rmdir(mount_point_.c_str());
    }
    if (counter_ != nullptr && counter_ != MAP_FAILED) munmap(counter_, sizeof *counter_);
  }

  // A child that counts in shared memory about once a millisecond.
  pid_t ForkCounter() {
    pid_t pid = fork();
    if (pid == 0) {
      for (;;) {
        counter_->fetch_add(1, std::memory_order_relaxed);
        usleep(1000);
      }
    }
    EXPECT_GT(pid, 0) << strerror(errno);
    children_.push_back(pid);
    return pid;
  }

  // Reaps a child the test expects to die of SIGKILL.
  void ExpectKilled(pid_t pid) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
    std::erase(children_, pid);
  }

  uint64_t Count() const { return counter_->load(std::memory_order_relaxed); }

  bool CountAdvancesWithin(milliseconds timeout) {
    uint64_t start = Count();
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (Count() > start) return true;
      std::this_thread::sleep_for(milliseconds(5));
    }
    return false;
  }

  bool WaitUnpopulated(const Cgroup& cgroup, milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto populated = cgroup.Populated();
      if (populated && !*populated) return true;
      std::this_thread::sleep_for(milliseconds(5));
    }
    return false;
  }

  std::string mount_point_;
  std::string name_;
  std::string root_;
  std::vector<pid_t> children_;
  std::atomic<uint64_t>* counter_ = nullptr;
};

TEST_F(CgroupRealMountTest, CreateNestedOpenAndDestroy) {
  auto cgroup = Cgroup::Create(root_, "pod/ctr");
  ASSERT_TRUE(cgroup) << cgroup.error().ToString();
  EXPECT_TRUE(PathExists(root_ + "/pod/ctr/cgroup.procs"));  // a real cgroup
  EXPECT_TRUE(Cgroup::Open(root_, "pod/ctr"));
  EXPECT_FALSE(cgroup->Populated().value());
  auto fd = cgroup->OpenDirFd();
  ASSERT_TRUE(fd);
  EXPECT_TRUE(fd->valid());

  auto status = cgroup->Destroy(milliseconds(2000));
  ASSERT_TRUE(status) << status.error().ToString();
  EXPECT_FALSE(PathExists(root_ + "/pod/ctr"));
  EXPECT_TRUE(PathExists(root_ + "/pod"));          // only the container's own cgroup goes
  EXPECT_TRUE(cgroup->Destroy(milliseconds(100)));  // idempotent
}

TEST_F(CgroupRealMountTest, ProcessLifecycleFreezeThawKillDestroy) {
  auto cgroup = Cgroup::Create(root_, "ctr");
  ASSERT_TRUE(cgroup) << cgroup.error().ToString();
  pid_t pid = ForkCounter();
  ASSERT_TRUE(cgroup->AddProcess(pid));
  EXPECT_THAT(cgroup->Pids().value(), ElementsAre(pid));
  EXPECT_TRUE(cgroup->Populated().value());
  ASSERT_TRUE(CountAdvancesWithin(milliseconds(2000)));

  auto status = cgroup->Freeze(milliseconds(2000));
  ASSERT_TRUE(status) << status.error().ToString();
  EXPECT_THAT(ReadText(cgroup->path() + "/cgroup.events"), HasSubstr("frozen 1"));
  EXPECT_FALSE(CountAdvancesWithin(milliseconds(300)));

  status = cgroup->Thaw(milliseconds(2000));
  ASSERT_TRUE(status) << status.error().ToString();
  EXPECT_TRUE(CountAdvancesWithin(milliseconds(2000)));

  auto stats = cgroup->Stats();
  ASSERT_TRUE(stats) << stats.error().ToString();
  EXPECT_GT(stats->cpu.usage_usec, 0u);  // cpu.stat exists without the cpu controller

  ASSERT_TRUE(cgroup->KillAll());
  ExpectKilled(pid);
  EXPECT_TRUE(WaitUnpopulated(*cgroup, milliseconds(2000)));
  status = cgroup->Destroy(milliseconds(2000));
  ASSERT_TRUE(status) << status.error().ToString();
  EXPECT_FALSE(PathExists(cgroup->path()));
}

TEST_F(CgroupRealMountTest, DestroyKillsProcessesInNestedCgroups) {
  auto outer = Cgroup::Create(root_, "ctr");
  auto inner = Cgroup::Create(root_, "ctr/inner");
  ASSERT_TRUE(outer && inner);
  pid_t in_outer = ForkCounter();
  pid_t in_inner = ForkCounter();
  ASSERT_TRUE(outer->AddProcess(in_outer));
  ASSERT_TRUE(inner->AddProcess(in_inner));
  auto status = outer->Destroy(milliseconds(3000));
  ASSERT_TRUE(status) << status.error().ToString();
  EXPECT_FALSE(PathExists(outer->path()));
  ExpectKilled(in_outer);
  ExpectKilled(in_inner);
}

TEST_F(CgroupRealMountTest, SignalFallbackEmptiesTheTreeBeforeReaping) {
  // The path KillAll takes on kernels without cgroup.kill. Killed children
  // are not reaped until after it returns: zombies leave cgroup.procs.
  auto cgroup = Cgroup::Create(root_, "ctr");
  auto inner = Cgroup::Create(root_, "ctr/inner");
  ASSERT_TRUE(cgroup && inner);
  pid_t a = ForkCounter();
  pid_t b = ForkCounter();
  ASSERT_TRUE(cgroup->AddProcess(a));
  ASSERT_TRUE(inner->AddProcess(b));
  auto status = KillCgroupTree(cgroup->path());
  ASSERT_TRUE(status) << status.error().ToString();
  EXPECT_TRUE(cgroup->Pids().value().empty());
  ExpectKilled(a);
  ExpectKilled(b);
}

TEST_F(CgroupRealMountTest, Clone3IntoCgroupUsesTheDirFd) {
  auto cgroup = Cgroup::Create(root_, "ctr");
  ASSERT_TRUE(cgroup);
  auto fd = cgroup->OpenDirFd();
  ASSERT_TRUE(fd) << fd.error().ToString();
  CloneArgs args;
  args.flags = kCloneIntoCgroup;
  args.exit_signal = SIGCHLD;
  args.cgroup = static_cast<uint64_t>(fd->get());
  long pid = syscall(SYS_clone3, &args, sizeof args);
  if (pid == 0) {
    for (;;) pause();
  }
  ASSERT_GT(pid, 0) << strerror(errno);
  children_.push_back(static_cast<pid_t>(pid));
  EXPECT_THAT(cgroup->Pids().value(), ElementsAre(static_cast<pid_t>(pid)));
  ASSERT_TRUE(cgroup->KillAll());
  ExpectKilled(static_cast<pid_t>(pid));
}

TEST_F(CgroupRealMountTest, FreezeAndThawOfAnEmptyCgroupAreImmediate) {
  auto cgroup = Cgroup::Create(root_, "ctr");
  ASSERT_TRUE(cgroup);
  EXPECT_TRUE(cgroup->Freeze(milliseconds(1000)));
  EXPECT_TRUE(cgroup->Thaw(milliseconds(1000)));
}

TEST_F(CgroupRealMountTest, ApplyOnTheRealKernel) {
  auto cgroup = Cgroup::Create(root_, "ctr");
  ASSERT_TRUE(cgroup);
  // A core file through unified: written and read back by the kernel.
  oci::Resources resources;
  resources.unified = {{"cgroup.max.depth", "3"}};
  auto status = cgroup->Apply(resources);
  ASSERT_TRUE(status) << status.error().ToString();
  EXPECT_EQ(ReadText(cgroup->path() + "/cgroup.max.depth"), "3\n");

  // A value the kernel refuses: kInvalidArgument with file, value, errno.
  resources.unified = {{"cgroup.max.depth", "lots"}};
  status = cgroup->Apply(resources);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code(), ErrorCode::kInvalidArgument);
  EXPECT_THAT(status.error().ToString(),
              HasSubstr("linux.resources.unified[cgroup.max.depth]: write `lots` to "
                        "cgroup.max.depth: EINVAL"));

  // pids: applied where the controller is available, else named as missing.
  resources = {};
  resources.pids = oci::PidsResources{.limit = 20};
  status = cgroup->Apply(resources);
  if (ReadText(cgroup->path() + "/cgroup.controllers").find("pids") != std::string::npos) {
    ASSERT_TRUE(status) << status.error().ToString();
    EXPECT_EQ(ReadText(cgroup->path() + "/pids.max"), "20\n");
  } else {
    ASSERT_FALSE(status);
    EXPECT_EQ(status.error().code(), ErrorCode::kFailedPrecondition);
    EXPECT_THAT(status.error().ToString(),
                HasSubstr("linux.resources.pids.limit: pids.max: ENOENT (the pids controller is "
                          "not available)"));
  }
}

TEST_F(CgroupRealMountTest, AddProcessOfAMissingPidIsNotFound) {
  auto cgroup = Cgroup::Create(root_, "ctr");
  ASSERT_TRUE(cgroup);
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  ASSERT_EQ(waitpid(pid, nullptr, 0), pid);
  auto status = cgroup->AddProcess(pid);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code(), ErrorCode::kNotFound);
}

}  // namespace
}  // namespace hull::engine
