#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "engine/cgroup.h"
#include "engine/cgroup_files.h"
#include "hull/core/log.h"
#include "hull/core/syscall.h"
#include "hull/core/thread.h"

namespace hull::engine {

using cgroup_files::JoinPath;

namespace {

// The oom_kill count of a memory.events file; nullopt if unreadable or
// half-written (a fake tree being rewritten).
std::optional<uint64_t> ReadOomKill(const std::string& events_path) {
  auto text = ReadFile(events_path, 4096);
  if (!text) return std::nullopt;
  auto values = ParseFlatKeyed(*text);
  if (!values) return std::nullopt;
  auto it = values->find("oom_kill");
  if (it == values->end()) return std::nullopt;
  return it->second;
}

}  // namespace

Result<std::unique_ptr<OomWatcher>> OomWatcher::Create(Callback callback) {
  UniqueFd inotify(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!inotify) return ErrnoError("inotify_init1");
  UniqueFd wake(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake) return ErrnoError("eventfd");
  std::unique_ptr<OomWatcher> watcher(
      new OomWatcher(std::move(callback), std::move(inotify), std::move(wake)));
  watcher->thread_ = SpawnThread("oom-watcher", [self = watcher.get()] { self->Run(); });
  return watcher;
}

OomWatcher::OomWatcher(Callback callback, UniqueFd inotify_fd, UniqueFd wake_fd)
    : callback_(std::move(callback)),
      inotify_fd_(std::move(inotify_fd)),
      wake_fd_(std::move(wake_fd)) {}

OomWatcher::~OomWatcher() {
  uint64_t one = 1;
  // An eventfd write cannot fail short of overflowing the counter.
  (void)!::write(wake_fd_.get(), &one, sizeof one);
  if (thread_.joinable()) thread_.join();
}

Status OomWatcher::Watch(const std::string& id, const Cgroup& cgroup) {
  const std::string events_path = JoinPath(cgroup.path(), "memory.events");
  std::lock_guard lock(mutex_);
  if (entries_.contains(id)) {
    return MakeError(ErrorCode::kAlreadyExists, "OOM watch `" + id + "` exists already");
  }
  // Watch first, then read the baseline: a kill after the read raises an
  // event the thread handles once we release the lock.
  int wd = ::inotify_add_watch(inotify_fd_.get(), events_path.c_str(), IN_MODIFY);
  if (wd < 0) {
    if (errno == ENOENT) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "watch OOM events of cgroup `" + cgroup.path() +
                           "`: no memory.events (the memory controller is not enabled)");
    }
    return ErrnoError("watch `" + events_path + "`");
  }
  entries_[id] = Entry{events_path, wd, ReadOomKill(events_path).value_or(0)};
  return Ok();
}

void OomWatcher::Unwatch(const std::string& id) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  int wd = it->second.wd;
  entries_.erase(it);
  // Two ids on the same cgroup share one watch descriptor.
  bool shared = std::any_of(entries_.begin(), entries_.end(),
                            [&](const auto& entry) { return entry.second.wd == wd; });
  if (wd >= 0 && !shared) ::inotify_rm_watch(inotify_fd_.get(), wd);
}

void OomWatcher::Run() {
  pollfd fds[2] = {{inotify_fd_.get(), POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
  for (;;) {
    int rc = ::poll(fds, 2, -1);
    if (rc < 0) {
      if (errno == EINTR) continue;
      HULL_LOG_ERROR("OOM watcher: poll: {}", std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;
    if (fds[0].revents == 0) continue;
    std::vector<int> modified;
    alignas(inotify_event) char buf[8192];
    for (;;) {
      ssize_t n = ::read(inotify_fd_.get(), buf, sizeof buf);
      if (n <= 0) break;
      for (char* p = buf; p < buf + n;) {
        auto* event = reinterpret_cast<inotify_event*>(p);
        if (event->mask & IN_Q_OVERFLOW) {
          // Events were dropped: look at every cgroup.
          std::lock_guard lock(mutex_);
          for (const auto& [id, entry] : entries_) modified.push_back(entry.wd);
        } else if (event->mask & IN_IGNORED) {
          // The file is gone (cgroup removed) or the watch was removed.
          std::lock_guard lock(mutex_);
          for (auto& [id, entry] : entries_) {
            if (entry.wd == event->wd) entry.wd = -1;
          }
        } else if (event->mask & IN_MODIFY) {
          modified.push_back(event->wd);
        }
        p += sizeof(inotify_event) + event->len;
      }
    }
    if (!modified.empty()) CheckWatches(modified);
  }
}

void OomWatcher::CheckWatches(const std::vector<int>& wds) {
  std::vector<std::pair<std::string, std::string>> targets;  // id, path
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, entry] : entries_) {
      if (entry.wd >= 0 && std::find(wds.begin(), wds.end(), entry.wd) != wds.end()) {
        targets.emplace_back(id, entry.events_path);
      }
    }
  }
  std::vector<std::pair<std::string, uint64_t>> fired;
  for (const auto& [id, path] : targets) {
    std::optional<uint64_t> count = ReadOomKill(path);
    if (!count) continue;
    std::lock_guard lock(mutex_);
    auto it = entries_.find(id);
    // Unwatched (or re-watched elsewhere) while we read.
    if (it == entries_.end() || it->second.events_path != path) continue;
    if (*count > it->second.oom_kill) {
      it->second.oom_kill = *count;
      fired.emplace_back(id, *count);
    }
  }
  // Outside the lock, so the callback may Watch/Unwatch.
  for (const auto& [id, count] : fired) callback_(id, count);
}

}  // namespace hull::engine
