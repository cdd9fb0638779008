#include "cluster/event_loop.hpp"

#include <chrono>

namespace mcpmesh::cluster {

EventLoop::EventLoop() : thread_([this] { run(); }) {}

EventLoop::~EventLoop() { join(); }

void EventLoop::join() {
  stop();
  if (thread_.joinable() && !in_loop()) thread_.join();
}

void EventLoop::stop() {
  std::lock_guard lock(mu_);
  stopping_ = true;
  cv_.notify_all();
}

void EventLoop::post(std::function<void()> fn) {
  std::lock_guard lock(mu_);
  if (stopping_) return;
  tasks_.push_back(std::move(fn));
  cv_.notify_one();
}

bool EventLoop::try_post(std::function<void()> fn, size_t limit) {
  std::lock_guard lock(mu_);
  if (stopping_ || tasks_.size() >= limit) return false;
  tasks_.push_back(std::move(fn));
  cv_.notify_one();
  return true;
}

TimePoint EventLoop::now() const {
  return std::chrono::duration_cast<TimePoint>(std::chrono::steady_clock::now().time_since_epoch());
}

int64_t EventLoop::wall_ms() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

TimerId EventLoop::schedule(Duration delay, std::function<void()> fn) {
  std::lock_guard lock(mu_);
  TimerId id = ++next_timer_;
  timers_.emplace(id, std::move(fn));
  deadlines_.emplace((now() + delay).count(), id);
  cv_.notify_one();
  return id;
}

void EventLoop::cancel(TimerId id) {
  std::lock_guard lock(mu_);
  timers_.erase(id);  // its deadline entry is skipped when reached
}

void EventLoop::run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    // Due timers go before queued tasks: a burst of incoming RPCs must not delay probe ticks
    // and suspicion timeouts.
    if (!deadlines_.empty() && deadlines_.begin()->first <= now().count()) {
      auto first = deadlines_.begin();
      TimerId id = first->second;
      deadlines_.erase(first);
      auto it = timers_.find(id);
      if (it == timers_.end()) continue;  // cancelled
      auto fn = std::move(it->second);
      timers_.erase(it);
      lock.unlock();
      fn();
      lock.lock();
      continue;
    }
    if (!tasks_.empty()) {
      auto fn = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      fn();
      lock.lock();
      continue;
    }
    if (!deadlines_.empty()) {
      cv_.wait_until(lock, std::chrono::steady_clock::time_point(
                               std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                   Duration(deadlines_.begin()->first))));
      continue;
    }
    cv_.wait(lock);
  }
}

}  // namespace mcpmesh::cluster
