#include "ttrpc/ttrpc.h"

namespace hull::ttrpc {

std::string CallContext::Namespace() const {
  auto it = metadata.find(std::string(kNamespaceKey));
  return it == metadata.end() ? std::string() : it->second;
}

bool CallContext::Cancelled() const {
  if (connection_closed && connection_closed->load()) return true;
  return deadline && std::chrono::steady_clock::now() >= *deadline;
}

}  // namespace hull::ttrpc
