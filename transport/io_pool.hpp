#pragma once
/// \file
/// One io_context per thread (DESIGN §4): a connection, and the sessions it creates, live on
/// one context for their whole life, so the hops between them never cross threads.
/// Thread-safety: `next()` may be called from any thread; `run()` once, from the main thread.
///
/// Teardown: handlers still pending on one context may hold objects bound to another's
/// services (a session's strand belongs to the context that created the session, while
/// connections on every context hold the session). The destructor therefore destroys every
/// context's pending handlers first, while all services still exist, and only then the
/// contexts.

#include "mcp/roaming_executor.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

namespace mcpmesh::transport {

class IoPool {
 public:
  explicit IoPool(std::size_t threads) {
    if (threads == 0) threads = 1;
    for (std::size_t i = 0; i < threads; ++i) {
      contexts_.push_back(std::make_unique<Context>());
      guards_.emplace_back(contexts_.back()->get_executor());
    }
  }

  [[nodiscard]] std::size_t size() const { return contexts_.size(); }
  [[nodiscard]] boost::asio::io_context& at(std::size_t i) { return *contexts_[i]; }
  /// Round-robin over the contexts (for new connections).
  [[nodiscard]] boost::asio::io_context& next() {
    return *contexts_[next_.fetch_add(1, std::memory_order_relaxed) % contexts_.size()];
  }

  /// Overload batching: while `when()` holds (each thread looks every 25 ms; it must be cheap),
  /// each thread runs what is ready, then sleeps `pause` before it looks again, instead of
  /// waking for every arrival. A node that refuses most of what arrives then reads and answers
  /// many requests per wake-up, and the context switches it saves go to the work it admitted.
  /// Call before run(); a zero pause (the default) turns it off.
  void set_batching(std::chrono::microseconds pause, std::function<bool()> when) {
    batch_pause_ = pause;
    batch_when_ = std::move(when);
  }
  /// How many times a thread paused to batch (any thread).
  [[nodiscard]] std::uint64_t batch_pauses() const {
    return batch_pauses_.load(std::memory_order_relaxed);
  }

  /// Runs every context, context 0 on the calling thread; returns once all have stopped.
  void run() {
    arm_batching();
    std::vector<std::thread> threads;
    for (std::size_t i = 1; i < contexts_.size(); ++i) {
      threads.emplace_back([this, i] {
        mcp::RoamingExecutor::set_thread_context(contexts_[i].get());
        contexts_[i]->run();
      });
    }
    mcp::RoamingExecutor::set_thread_context(contexts_[0].get());
    contexts_[0]->run();
    mcp::RoamingExecutor::set_thread_context(nullptr);
    for (auto& t : threads) t.join();
  }

  /// Any thread. Stops every context.
  void stop() {
    for (auto& c : contexts_) c->stop();
  }

  IoPool(const IoPool&) = delete;
  IoPool& operator=(const IoPool&) = delete;

  ~IoPool() {
    guards_.clear();
    checks_.clear();  // their cancelled waits are destroyed with the other pending handlers
    for (auto& c : contexts_) c->destroy_handlers();
  }

 private:
  /// An io_context whose pending handlers can be destroyed before the context itself.
  struct Context final : boost::asio::io_context {
    Context() : boost::asio::io_context(1) {}
    /// Shuts the services down (destroying pending handlers); the destructor's own shutdown
    /// then finds nothing left.
    void destroy_handlers() { shutdown(); }
  };

  /// Looks at the batching condition on every context every 25 ms. While it holds, the check
  /// handler runs the rounds itself: nested poll()s, which Asio allows from a handler outside
  /// any strand (an outer run()'s own queued work is taken in). The fast path stays run().
  void arm_batching() {
    if (batch_pause_.count() <= 0 || !batch_when_ || !checks_.empty()) return;
    for (auto& c : contexts_) {
      checks_.push_back(std::make_unique<boost::asio::steady_timer>(*c));
      arm_check(*c, *checks_.back());
    }
  }
  void arm_check(boost::asio::io_context& context, boost::asio::steady_timer& timer) {
    timer.expires_after(std::chrono::milliseconds(25));
    timer.async_wait([this, &context, &timer](boost::system::error_code ec) {
      if (ec) return;
      while (!context.stopped() && batch_when_()) {
        context.poll();
        if (context.stopped()) return;
        batch_pauses_.fetch_add(1, std::memory_order_relaxed);
        std::this_thread::sleep_for(batch_pause_);
      }
      arm_check(context, timer);
    });
  }

  std::vector<std::unique_ptr<Context>> contexts_;
  std::vector<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guards_;
  std::atomic<std::size_t> next_{0};
  std::chrono::microseconds batch_pause_{0};
  std::function<bool()> batch_when_;
  std::atomic<std::uint64_t> batch_pauses_{0};
  std::vector<std::unique_ptr<boost::asio::steady_timer>> checks_;  // one per context
};

}  // namespace mcpmesh::transport
