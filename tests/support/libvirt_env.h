// A private libvirt daemon for the libvirt backend's tests: started by
// tests/support/private-libvirtd (see there), stopped with its domains when
// the object goes.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "hull/core/error.h"

namespace hull::testing {

class PrivateLibvirtd {
 public:
  // `dir` holds the daemon's configuration, state and logs; `run_dir` is the
  // run_dir of the hull under test; `cache_dir` outlives the daemon, so
  // libvirt probes QEMU's capabilities once, not at every start.
  // kUnavailable (with the script's words) when the daemon cannot run here.
  static Result<std::unique_ptr<PrivateLibvirtd>> Start(const std::string& dir,
                                                        const std::string& run_dir,
                                                        const std::string& cache_dir);
  ~PrivateLibvirtd();

  const std::string& uri() const { return uri_; }
  // The names of the running domains.
  std::vector<std::string> Domains() const;
  // The end of libvirtd's own log and of a domain's QEMU log, for failures.
  std::string LogTail(const std::string& domain = "") const;

 private:
  PrivateLibvirtd(std::string dir, std::string uri) : dir_(std::move(dir)), uri_(std::move(uri)) {}
  std::string dir_;
  std::string uri_;
};

}  // namespace hull::testing
