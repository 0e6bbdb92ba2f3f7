#include "libvirt_env.h"

#include <sys/wait.h>

#include <cstdio>
#include <sstream>

#include "hull/core/syscall.h"

namespace hull::testing {

namespace {

// Runs a shell command; its stdout and exit code.
std::pair<std::string, int> Shell(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return {"", -1};
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) out.append(buffer, n);
  int status = ::pclose(pipe);
  return {out, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

std::string Quote(const std::string& word) {
  std::string quoted = "'";
  for (char c : word) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

std::string Script() { return std::string(HULL_SOURCE_DIR) + "/tests/support/private-libvirtd"; }

}  // namespace

Result<std::unique_ptr<PrivateLibvirtd>> PrivateLibvirtd::Start(const std::string& dir,
                                                                const std::string& run_dir,
                                                                const std::string& cache_dir) {
  auto [out, code] = Shell(Script() + " start " + Quote(dir) + " " + Quote(run_dir) + " " +
                           Quote(cache_dir) + " 2>" + Quote(dir + ".err"));
  std::string err = ReadFile(dir + ".err", 1 << 16).value_or("");
  ::unlink((dir + ".err").c_str());
  while (!out.empty() && out.back() == '\n') out.pop_back();
  if (code != 0 || out.empty()) {
    return MakeError(code == 77 ? ErrorCode::kUnavailable : ErrorCode::kInternal,
                     "private libvirtd did not start (exit " + std::to_string(code) + "): " + err);
  }
  return std::unique_ptr<PrivateLibvirtd>(new PrivateLibvirtd(dir, out));
}

PrivateLibvirtd::~PrivateLibvirtd() { Shell(Script() + " stop " + Quote(dir_) + " 2>&1"); }

std::vector<std::string> PrivateLibvirtd::Domains() const {
  std::vector<std::string> names;
  std::istringstream lines(Shell("virsh -c " + Quote(uri_) + " list --name 2>/dev/null").first);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) names.push_back(line);
  }
  return names;
}

std::string PrivateLibvirtd::LogTail(const std::string& domain) const {
  std::string text = Shell("tail -n 20 " + Quote(dir_ + "/libvirtd.log") + " 2>/dev/null").first;
  if (!domain.empty())
    text +=
        Shell("tail -n 20 " + Quote(dir_ + "/log/qemu/" + domain + ".log") + " 2>/dev/null").first;
  return text;
}

}  // namespace hull::testing
