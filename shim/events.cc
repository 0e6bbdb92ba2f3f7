#include "events.h"

#include <google/protobuf/any.pb.h>

#include <algorithm>

#include "containerd/events/task.pb.h"
#include "containerd/services/events/ttrpc/v1/events.pb.h"
#include "hull/core/log.h"
#include "hull/core/thread.h"

namespace hull::shim {

namespace events = ::containerd::events;
namespace forward = ::containerd::services::events::ttrpc::v1;
using std::chrono::milliseconds;
using std::chrono::seconds;

void SetTimestamp(google::protobuf::Timestamp* out, std::chrono::system_clock::time_point when) {
  auto since_epoch = when.time_since_epoch();
  auto secs = std::chrono::duration_cast<seconds>(since_epoch);
  out->set_seconds(secs.count());
  out->set_nanos(static_cast<int32_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - secs).count()));
}

std::string_view TopicFor(const google::protobuf::Message& event) {
  const std::string& name = event.GetDescriptor()->full_name();
  if (name == events::TaskCreate::descriptor()->full_name()) return "/tasks/create";
  if (name == events::TaskStart::descriptor()->full_name()) return "/tasks/start";
  if (name == events::TaskExit::descriptor()->full_name()) return "/tasks/exit";
  if (name == events::TaskDelete::descriptor()->full_name()) return "/tasks/delete";
  if (name == events::TaskExecAdded::descriptor()->full_name()) return "/tasks/exec-added";
  if (name == events::TaskExecStarted::descriptor()->full_name()) return "/tasks/exec-started";
  if (name == events::TaskOOM::descriptor()->full_name()) return "/tasks/oom";
  if (name == events::TaskPaused::descriptor()->full_name()) return "/tasks/paused";
  if (name == events::TaskResumed::descriptor()->full_name()) return "/tasks/resumed";
  if (name == events::TaskCheckpointed::descriptor()->full_name()) return "/tasks/checkpointed";
  return "";
}

std::string ForwardRequestBytes(const std::string& ns, std::string_view topic,
                                const google::protobuf::Message& event,
                                std::chrono::system_clock::time_point when) {
  forward::ForwardRequest request;
  auto* envelope = request.mutable_envelope();
  SetTimestamp(envelope->mutable_timestamp(), when);
  envelope->set_namespace_(ns);
  envelope->set_topic(std::string(topic));
  // containerd's typeurl names events by their bare proto name.
  envelope->mutable_event()->set_type_url(event.GetDescriptor()->full_name());
  envelope->mutable_event()->set_value(event.SerializeAsString());
  return request.SerializeAsString();
}

EventPublisher::EventPublisher(std::string ttrpc_address, std::string ns)
    : address_(std::move(ttrpc_address)), namespace_(std::move(ns)) {
  thread_ = SpawnThread("events", [this] { Run(); });
}

EventPublisher::~EventPublisher() {
  Flush(seconds(5));
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void EventPublisher::Publish(const google::protobuf::Message& event) {
  std::string_view topic = TopicFor(event);
  std::string oom_of;
  if (const auto* oom = dynamic_cast<const events::TaskOOM*>(&event)) oom_of = oom->container_id();
  {
    std::lock_guard lock(mu_);
    if (!oom_of.empty()) {
      // Only entries not yet being sent count: one in flight may be lost.
      auto waiting = queue_.begin() + (sending_ ? 1 : 0);
      if (std::any_of(waiting, queue_.end(),
                      [&](const Pending& pending) { return pending.oom_of == oom_of; })) {
        ++coalesced_;
        return;
      }
    }
  }
  std::string request =
      ForwardRequestBytes(namespace_, topic, event, std::chrono::system_clock::now());
  HULL_LOG_DEBUG("event {} ({})", topic, event.ShortDebugString());
  {
    std::lock_guard lock(mu_);
    queue_.push_back({std::string(topic), std::move(request), std::move(oom_of)});
  }
  changed_.notify_all();
}

uint64_t EventPublisher::coalesced() {
  std::lock_guard lock(mu_);
  return coalesced_;
}

void EventPublisher::Flush(milliseconds timeout) {
  std::unique_lock lock(mu_);
  changed_.wait_for(lock, timeout, [&] { return queue_.empty() && !sending_; });
}

Status EventPublisher::Send(const Pending& pending) {
  if (!client_ || client_->closed()) {
    client_.reset();
    HULL_TRY(client_, ttrpc::Client::Connect(address_),
             "connect to containerd's ttrpc socket `" + address_ + "`");
  }
  ttrpc::Metadata metadata{{std::string(ttrpc::kNamespaceKey), namespace_}};
  auto reply = client_->Call("containerd.services.events.ttrpc.v1.Events", "Forward",
                             pending.request, seconds(5), metadata);
  if (!reply) {
    if (reply.error().code() == ErrorCode::kUnavailable) client_.reset();
    return std::move(reply).error();
  }
  return Ok();
}

void EventPublisher::Run() {
  std::unique_lock lock(mu_);
  while (true) {
    changed_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;
    Pending pending = queue_.front();
    sending_ = true;
    lock.unlock();
    if (address_.empty()) {
      HULL_LOG_DEBUG("no TTRPC_ADDRESS: event {} dropped", pending.topic);
    } else {
      // containerd's own publisher retries five times, backing off 1 s·n.
      for (int attempt = 1; attempt <= 5; ++attempt) {
        auto sent = Send(pending);
        if (sent) break;
        HULL_LOG_WARN("publish {} (attempt {}): {}", pending.topic, attempt,
                      sent.error().ToString());
        if (attempt == 5) break;
        std::unique_lock wait_lock(mu_);
        if (changed_.wait_for(wait_lock, seconds(attempt), [&] { return stopping_; })) break;
      }
    }
    lock.lock();
    queue_.pop_front();
    sending_ = false;
    changed_.notify_all();
  }
}

}  // namespace hull::shim
