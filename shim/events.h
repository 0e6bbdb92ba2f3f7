// Task events to containerd: ttrpc `containerd.services.events.ttrpc.v1.Events/Forward`
// at $TTRPC_ADDRESS, in the order they were published (create < start <
// exit < delete), each with a non-zero timestamp and a bare type_url
// (`containerd.events.TaskExit`).
#pragma once

#include <google/protobuf/message.h>
#include <google/protobuf/timestamp.pb.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "ttrpc/ttrpc.h"

namespace hull::shim {

// A protobuf Timestamp of `when` (seconds and nanoseconds since the epoch).
void SetTimestamp(google::protobuf::Timestamp* out, std::chrono::system_clock::time_point when);

// containerd's topic for an event message (`/tasks/exit` for TaskExit, ...).
std::string_view TopicFor(const google::protobuf::Message& event);

// Serialises a containerd.services.events.ttrpc.v1.ForwardRequest.
std::string ForwardRequestBytes(const std::string& ns, std::string_view topic,
                                const google::protobuf::Message& event,
                                std::chrono::system_clock::time_point when);

// Where the task service sends containerd events; an interface so that
// tests can record them.
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void Publish(const google::protobuf::Message& event) = 0;
};

class EventPublisher final : public EventSink {
 public:
  // `ttrpc_address`: containerd's ttrpc socket path ("" drops events, with a
  // debug log). `ns`: the containerd namespace of the events.
  EventPublisher(std::string ttrpc_address, std::string ns);
  // Delivers what is queued (up to a few seconds), then stops.
  ~EventPublisher();

  // Queues the event; delivery is asynchronous and retried (5 attempts).
  // An OOM event for a container that already has one waiting in the queue
  // is dropped: it would tell containerd nothing new, and the guest decides
  // how many there are, so the queue must not grow with them.
  void Publish(const google::protobuf::Message& event) override;
  // OOM events dropped so far because one was already queued.
  uint64_t coalesced();
  // Waits until the queue is empty or `timeout` passed.
  void Flush(std::chrono::milliseconds timeout);

 private:
  struct Pending {
    std::string topic;
    std::string request;  // serialized ForwardRequest
    std::string oom_of;   // TaskOOM: its container
  };
  void Run();
  Status Send(const Pending& pending);

  std::string address_;
  std::string namespace_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::deque<Pending> queue_;
  bool sending_ = false;  // queue_.front() is being sent
  uint64_t coalesced_ = 0;
  bool stopping_ = false;
  std::unique_ptr<ttrpc::Client> client_;
  std::thread thread_;
};

}  // namespace hull::shim
