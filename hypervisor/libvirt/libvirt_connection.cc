#include "libvirt/libvirt_connection.h"

#include <libvirt/virterror.h>

#include <mutex>
#include <thread>

#include "hull/core/log.h"
#include "hull/core/thread.h"

namespace hull::libvirt {

void EnsureEventLoop() {
  static std::once_flag once;
  std::call_once(once, [] {
    virSetErrorFunc(nullptr, [](void*, virErrorPtr) {});
    if (virInitialize() < 0 || virEventRegisterDefaultImpl() < 0) {
      HULL_LOG_WARN(
          "libvirt: could not start its event loop; VM deaths are noticed by polling only");
      return;
    }
    SpawnThread("libvirt-events", [] {
      while (virEventRunDefaultImpl() == 0) {
      }
      HULL_LOG_WARN("libvirt: event loop ended");
    }).detach();
  });
}

Unexpected LibvirtError(const std::string& what) {
  virErrorPtr error = virGetLastError();
  std::string message =
      error != nullptr && error->message != nullptr ? error->message : "unknown libvirt error";
  ErrorCode code = ErrorCode::kInternal;
  if (error != nullptr) {
    switch (error->code) {
      case VIR_ERR_NO_DOMAIN:
        code = ErrorCode::kNotFound;
        break;
      case VIR_ERR_NO_CONNECT:
      case VIR_ERR_SYSTEM_ERROR:
      case VIR_ERR_RPC:
      case VIR_ERR_AUTH_FAILED:
      case VIR_ERR_AUTH_UNAVAILABLE:
        code = ErrorCode::kUnavailable;
        break;
      case VIR_ERR_OPERATION_INVALID:
        code = ErrorCode::kFailedPrecondition;
        break;
      case VIR_ERR_XML_ERROR:
      case VIR_ERR_CONFIG_UNSUPPORTED:
      case VIR_ERR_INVALID_ARG:
        code = ErrorCode::kInvalidArgument;
        break;
      default:
        break;
    }
  }
  virResetLastError();
  return MakeError(code, what + ": " + message);
}

bool LastErrorIsNoDomain() {
  virErrorPtr error = virGetLastError();
  return error != nullptr && error->code == VIR_ERR_NO_DOMAIN;
}

Result<Connection> Open(const std::string& uri) {
  EnsureEventLoop();
  Connection conn(virConnectOpen(uri.c_str()));
  if (!conn) return LibvirtError("connect to libvirt at `" + uri + "`");
  // A daemon that stops answering closes the connection after ~15 s, so the
  // monitor notices and reconnects.
  if (virConnectSetKeepAlive(conn.get(), 5, 3) < 0) virResetLastError();
  return conn;
}

std::string FormatVersion(unsigned long version) {
  return std::to_string(version / 1000000) + "." + std::to_string(version / 1000 % 1000) + "." +
         std::to_string(version % 1000);
}

std::string UuidOf(virDomainPtr domain) {
  char uuid[VIR_UUID_STRING_BUFLEN] = {};
  if (virDomainGetUUIDString(domain, uuid) < 0) return "";
  return uuid;
}

}  // namespace hull::libvirt
