// The layering of ARCHITECTURE §2, checked on every quoted #include:
//   core ← proto ← hypervisor ← sandbox ← shim, tools;  agent → core, proto;
//   tests may use anything.
// A file may include its own component's headers (any of them) and the
// public headers (<component>/include/, generated protobuf) of the components
// below it; nothing else. The checker runs on the source tree and, to show it
// can fail, on small fixture trees.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "hull/core/syscall.h"
#include "testlib.h"

namespace hull {
namespace {

namespace fs = std::filesystem;

// What each component may include from, itself included.
const std::map<std::string, std::set<std::string>>& AllowedDependencies() {
  static const std::map<std::string, std::set<std::string>> allowed = {
      {"core", {"core"}},
      {"proto", {"proto", "core"}},
      {"hypervisor", {"hypervisor", "proto", "core"}},
      {"sandbox", {"sandbox", "hypervisor", "proto", "core"}},
      {"shim", {"shim", "sandbox", "hypervisor", "proto", "core"}},
      {"tools", {"tools", "sandbox", "hypervisor", "proto", "core"}},
      {"agent", {"agent", "proto", "core"}},
      {"guest-image", {"guest-image", "core"}},
  };
  return allowed;
}

// Where the build finds a quoted include besides the including file's own
// directory (the targets' include directories), relative to the root.
const std::vector<std::string>& IncludeRoots() {
  static const std::vector<std::string> roots = {"core/include",
                                                 "proto/include",
                                                 "hypervisor/include",
                                                 "hypervisor",
                                                 "sandbox/include",
                                                 "sandbox/src",
                                                 "agent",
                                                 "shim",
                                                 "tools/hullctl",
                                                 "tests/support",
                                                 "tests/testlib"};
  return roots;
}

// The roots other components may include from.
bool IsPublic(const std::string& path) {
  for (const char* root :
       {"core/include/", "proto/include/", "hypervisor/include/", "sandbox/include/"}) {
    if (path.starts_with(root)) return true;
  }
  return false;
}

std::string ComponentOf(const std::string& path) { return path.substr(0, path.find('/')); }

struct Violation {
  std::string file;
  int line = 0;
  std::string include;
  std::string why;

  std::string ToString() const {
    return file + ":" + std::to_string(line) + ": #include \"" + include + "\": " + why;
  }
};

// Edges the tree crosses today on purpose, each with its reason. An entry that
// no longer matches anything fails the check, so the list only shrinks.
struct Exemption {
  std::string file;
  std::string include;
  std::string reason;
};
const std::vector<Exemption>& Exemptions() {
  // None today: the host runtime moved into sandbox/ (issue 12). An entry
  // here must name the file, the include and why the edge is still needed.
  static const std::vector<Exemption> exemptions = {};
  return exemptions;
}

std::vector<Violation> CheckLayering(const fs::path& root,
                                     const std::vector<Exemption>& exemptions = {}) {
  static const std::regex kInclude(R"re(^\s*#\s*include\s+"([^"]+)")re");
  std::vector<Violation> violations;
  std::set<size_t> used_exemptions;
  for (const auto& [component, allowed] : AllowedDependencies()) {
    if (!fs::is_directory(root / component)) continue;
    for (const auto& entry : fs::recursive_directory_iterator(root / component)) {
      const std::string ext = entry.path().extension().string();
      if (!entry.is_regular_file() || (ext != ".cc" && ext != ".h" && ext != ".c")) continue;
      const std::string file = fs::relative(entry.path(), root).string();
      std::ifstream in(entry.path());
      int number = 0;
      for (std::string text; std::getline(in, text);) {
        ++number;
        std::smatch match;
        if (!std::regex_search(text, match, kInclude)) continue;
        const std::string include = match[1];
        // Generated protobuf is the proto component's public surface.
        if (include.ends_with(".pb.h")) {
          if (!allowed.contains("proto"))
            violations.push_back({file, number, include, component + " may not use proto"});
          continue;
        }
        std::vector<std::string> candidates;
        fs::path local = entry.path().parent_path() / include;
        if (fs::exists(local)) candidates.push_back(fs::relative(local, root).lexically_normal());
        for (const auto& include_root : IncludeRoots()) {
          // Normalised, so "../" cannot walk out of the root it was found in.
          if (fs::exists(root / include_root / include))
            candidates.push_back((fs::path(include_root) / include).lexically_normal().string());
        }
        if (candidates.empty()) {
          violations.push_back({file, number, include, "not found in any include root"});
          continue;
        }
        bool ok = std::any_of(candidates.begin(), candidates.end(), [&](const std::string& c) {
          const std::string target = ComponentOf(c);
          return target == component || (allowed.contains(target) && IsPublic(c));
        });
        if (ok) continue;
        auto exempt = std::find_if(exemptions.begin(), exemptions.end(), [&](const Exemption& e) {
          return e.file == file && e.include == include;
        });
        if (exempt != exemptions.end()) {
          used_exemptions.insert(exempt - exemptions.begin());
          continue;
        }
        std::string why = component + " may not include ";
        for (size_t i = 0; i < candidates.size(); ++i)
          why += (i == 0 ? "" : " or ") + candidates[i];
        why += " (" + component + " may use the public headers of:";
        for (const auto& dep : allowed)
          if (dep != component) why += " " + dep;
        why += ")";
        violations.push_back({file, number, include, why});
      }
    }
  }
  for (size_t i = 0; i < exemptions.size(); ++i) {
    if (!used_exemptions.contains(i)) {
      violations.push_back({exemptions[i].file, 0, exemptions[i].include,
                            "exemption no longer needed (" + exemptions[i].reason +
                                "): remove it from Exemptions()"});
    }
  }
  return violations;
}

std::string Describe(const std::vector<Violation>& violations) {
  std::string text;
  for (const auto& v : violations) text += v.ToString() + "\n";
  return text;
}

TEST(LayeringTest, SourceTreeIncludesOnlyAllowedEdges) {
  auto violations = CheckLayering(testlib::SourceDir(), Exemptions());
  EXPECT_TRUE(violations.empty()) << Describe(violations);
}

// --- the checker itself, on fixture trees -----------------------------------

class LayeringFixtureTest : public ::testing::Test {
 protected:
  void Write(const std::string& path, const std::string& text) {
    ASSERT_TRUE(MakeDirs(fs::path(dir_.Sub(path)).parent_path().string()));
    ASSERT_TRUE(WriteFile(dir_.Sub(path), text));
  }
  void SetUp() override {
    Write("core/include/hull/core/error.h", "#pragma once\n");
    Write("proto/include/hull/proto/grpc_error.h", "#include \"hull/core/error.h\"\n");
    Write("hypervisor/include/hull/hypervisor/hypervisor.h", "#include \"hull/core/error.h\"\n");
    Write("hypervisor/qemu/qmp.h", "#pragma once\n");
    Write("hypervisor/qemu/qmp_client.cc", "#include \"qemu/qmp.h\"\n#include \"qmp.h\"\n");
    Write("sandbox/include/hull/sandbox/sandbox.h", "#include \"hull/hypervisor/hypervisor.h\"\n");
    Write("shim/session.h", "#include \"hull/sandbox/sandbox.h\"\n");
  }
  std::vector<Violation> Check(const std::vector<Exemption>& exemptions = {}) {
    return CheckLayering(dir_.path(), exemptions);
  }

  testlib::TempDir dir_{"layering"};
};

TEST_F(LayeringFixtureTest, AllowedEdgesPass) {
  Write("tools/hullctl/check.cc",
        "#include <vector>\n#include \"hull/hypervisor/hypervisor.h\"\n"
        "#include \"hull/sandbox/sandbox.h\"\n#include \"containerd/task.pb.h\"\n");
  Write("agent/main.cc", "#include \"hull/core/error.h\"\n#include \"hull/agent/v1/agent.pb.h\"\n");
  Write("tests/unit/qmp_test.cc", "#include \"qemu/qmp.h\"\n#include \"session.h\"\n");
  auto violations = Check();
  EXPECT_TRUE(violations.empty()) << Describe(violations);
}

TEST_F(LayeringFixtureTest, UpwardIncludeFails) {
  Write("core/src/log.cc", "#include \"hull/hypervisor/hypervisor.h\"\n");
  Write("hypervisor/src/vm.cc", "\n  #  include \"hull/sandbox/sandbox.h\"\n");
  auto violations = Check();
  ASSERT_EQ(violations.size(), 2u) << Describe(violations);
  EXPECT_EQ(violations[0].file, "core/src/log.cc");
  EXPECT_EQ(violations[1].file, "hypervisor/src/vm.cc");
  EXPECT_EQ(violations[1].line, 2);
}

TEST_F(LayeringFixtureTest, AgentMayNotUseTheHostSide) {
  Write("agent/agent_server.cc", "#include \"hull/hypervisor/hypervisor.h\"\n");
  Write("agent/options.cc", "#include \"hull/sandbox/sandbox.h\"\n");
  auto violations = Check();
  EXPECT_EQ(violations.size(), 2u) << Describe(violations);
}

TEST_F(LayeringFixtureTest, PrivateHeadersOfAnotherComponentFail) {
  Write("tools/hullctl/check.cc", "#include \"qemu/qmp.h\"\n");
  auto violations = Check();
  ASSERT_EQ(violations.size(), 1u) << Describe(violations);
  EXPECT_NE(violations[0].why.find("hypervisor/qemu/qmp.h"), std::string::npos);
}

TEST_F(LayeringFixtureTest, PeersAndTestsAreOffLimits) {
  Write("tools/hullctl/run.cc", "#include \"session.h\"\n");                  // shim is a peer
  Write("tests/support/env.h", "#pragma once\n");                             // a test helper
  Write("tools/bench/bench.cc", "#include \"env.h\"\n");                      // tests: never
  Write("tools/bench/other.cc", "#include \"../../tests/support/env.h\"\n");  // nor this way
  Write("sandbox/src/sandbox.cc", "#include \"session.h\"\n");                // shim is above
  auto violations = Check();
  EXPECT_EQ(violations.size(), 4u) << Describe(violations);
}

TEST_F(LayeringFixtureTest, UnresolvedIncludeFails) {
  Write("shim/task.cc", "#include \"nowhere/missing.h\"\n");
  auto violations = Check();
  ASSERT_EQ(violations.size(), 1u) << Describe(violations);
  EXPECT_NE(violations[0].why.find("not found"), std::string::npos);
}

TEST_F(LayeringFixtureTest, ExemptionsCoverAnEdgeAndMustStayNeeded) {
  Write("tools/hullctl/run.cc", "#include \"session.h\"\n");
  auto covered = Check({{"tools/hullctl/run.cc", "session.h", "moving"}});
  EXPECT_TRUE(covered.empty()) << Describe(covered);

  auto stale = Check({{"tools/hullctl/run.cc", "session.h", "moving"},
                      {"tools/hullctl/gc.cc", "orphans.h", "moving"}});
  ASSERT_EQ(stale.size(), 1u) << Describe(stale);
  EXPECT_NE(stale[0].why.find("no longer needed"), std::string::npos);
}

}  // namespace
}  // namespace hull
