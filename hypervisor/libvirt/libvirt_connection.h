// The libvirt C API, as the backend uses it: the process's event loop, errors
// as hull errors, RAII handles, and connections.
#pragma once

#include <libvirt/libvirt.h>

#include <memory>
#include <string>

#include "hull/core/error.h"

namespace hull::libvirt {

// libvirt delivers events only to processes that run an event loop. One per
// process, started on first use, serves every connection. Errors are returned
// (virGetLastError), never printed: libvirt's default handler writes to stderr.
void EnsureEventLoop();

// The calling thread's last libvirt error as a hull error, then cleared.
Unexpected LibvirtError(const std::string& what);
// Whether the calling thread's last libvirt error says the domain is gone.
bool LastErrorIsNoDomain();

struct ConnectionCloser {
  void operator()(virConnectPtr conn) const { virConnectClose(conn); }
};
using Connection = std::unique_ptr<virConnect, ConnectionCloser>;
struct DomainFreer {
  void operator()(virDomainPtr domain) const { virDomainFree(domain); }
};
using Domain = std::unique_ptr<virDomain, DomainFreer>;

// Connects to libvirt at `uri`, with keepalive on.
Result<Connection> Open(const std::string& uri);

// libvirt's version numbers (major * 1000000 + minor * 1000 + release) as text.
std::string FormatVersion(unsigned long version);

// The domain's UUID as text, "" if libvirt does not say.
std::string UuidOf(virDomainPtr domain);

}  // namespace hull::libvirt
