#pragma once
// A single-threaded executor with timers: the real-time Clock the membership runs on in a node.
//
// Thread-safety: post(), schedule(), cancel(), now() and wall_ms() may be called from any
// thread. Tasks and timer callbacks run one at a time on the loop's own thread and must not
// block.

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "cluster/env.hpp"

namespace mcpmesh::cluster {

class EventLoop final : public Clock {
 public:
  EventLoop();
  ~EventLoop() override;  // stops and joins; pending tasks are dropped
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  /// Runs `fn` on the loop thread, in posting order.
  void post(std::function<void()> fn);
  /// post(), unless `limit` tasks are already waiting (or the loop stopped): then false and
  /// `fn` is dropped.
  bool try_post(std::function<void()> fn, size_t limit);
  /// Stops the loop after the task that is running; idempotent.
  void stop();
  /// stop() and wait for the loop thread to finish; must not be called from the loop.
  void join();
  [[nodiscard]] bool in_loop() const { return std::this_thread::get_id() == thread_.get_id(); }

  [[nodiscard]] TimePoint now() const override;
  TimerId schedule(Duration delay, std::function<void()> fn) override;
  void cancel(TimerId id) override;
  [[nodiscard]] int64_t wall_ms() const override;

 private:
  void run();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  std::multimap<int64_t, TimerId> deadlines_;
  std::unordered_map<TimerId, std::function<void()>> timers_;
  TimerId next_timer_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace mcpmesh::cluster
