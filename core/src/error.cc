#include "hull/core/error.h"

#include <cstring>

namespace hull {

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk:
      return "OK";
    case ErrorCode::kCancelled:
      return "CANCELLED";
    case ErrorCode::kUnknown:
      return "UNKNOWN";
    case ErrorCode::kInvalidArgument:
      return "INVALID_ARGUMENT";
    case ErrorCode::kDeadlineExceeded:
      return "DEADLINE_EXCEEDED";
    case ErrorCode::kNotFound:
      return "NOT_FOUND";
    case ErrorCode::kAlreadyExists:
      return "ALREADY_EXISTS";
    case ErrorCode::kPermissionDenied:
      return "PERMISSION_DENIED";
    case ErrorCode::kResourceExhausted:
      return "RESOURCE_EXHAUSTED";
    case ErrorCode::kFailedPrecondition:
      return "FAILED_PRECONDITION";
    case ErrorCode::kAborted:
      return "ABORTED";
    case ErrorCode::kOutOfRange:
      return "OUT_OF_RANGE";
    case ErrorCode::kUnimplemented:
      return "UNIMPLEMENTED";
    case ErrorCode::kInternal:
      return "INTERNAL";
    case ErrorCode::kUnavailable:
      return "UNAVAILABLE";
    case ErrorCode::kDataLoss:
      return "DATA_LOSS";
    case ErrorCode::kUnauthenticated:
      return "UNAUTHENTICATED";
  }
  return "UNKNOWN";
}

ErrorCode ErrorCodeFromErrno(int err) {
  switch (err) {
    case 0:
      return ErrorCode::kUnknown;
    case ENOENT:
    case ESRCH:
    case ENODEV:
    case ENXIO:
      return ErrorCode::kNotFound;
    case EEXIST:
      return ErrorCode::kAlreadyExists;
    case EACCES:
    case EPERM:
    case EROFS:
      return ErrorCode::kPermissionDenied;
    case EINVAL:
    case ENAMETOOLONG:
    case ENOTDIR:
    case EISDIR:
    case ELOOP:
    case E2BIG:
      return ErrorCode::kInvalidArgument;
    case ENOMEM:
    case ENOSPC:
    case EMFILE:
    case ENFILE:
    case EDQUOT:
      return ErrorCode::kResourceExhausted;
    case ETIMEDOUT:
      return ErrorCode::kDeadlineExceeded;
    case EAGAIN:
    case ECONNREFUSED:
    case ECONNRESET:
    case EPIPE:
    case ENOTCONN:
    case EHOSTUNREACH:
    case ENETUNREACH:
      return ErrorCode::kUnavailable;
    case EBUSY:
    case ENOTEMPTY:
      return ErrorCode::kFailedPrecondition;
    case ENOSYS:
    case EOPNOTSUPP:
    case EAFNOSUPPORT:
      return ErrorCode::kUnimplemented;
    case ECANCELED:
    case EINTR:
      return ErrorCode::kCancelled;
    case ERANGE:
    case EOVERFLOW:
      return ErrorCode::kOutOfRange;
    default:
      return ErrorCode::kInternal;
  }
}

std::string Error::ToString() const {
  std::string out;
  for (const auto& frame : context_) {
    out += frame;
    out += ": ";
  }
  out += message_;
  if (errno_ != 0) {
    const char* name = strerrorname_np(errno_);
    out += ": ";
    out += name != nullptr ? name : "errno " + std::to_string(errno_);
    out += " (";
    out += strerrordesc_np(errno_) != nullptr ? strerrordesc_np(errno_) : "unknown error";
    out += ")";
  }
  return out;
}

}  // namespace hull
