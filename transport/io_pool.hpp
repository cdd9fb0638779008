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

#include <atomic>
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

  /// Runs every context, context 0 on the calling thread; returns once all have stopped.
  void run() {
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

  std::vector<std::unique_ptr<Context>> contexts_;
  std::vector<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guards_;
  std::atomic<std::size_t> next_{0};
};

}  // namespace mcpmesh::transport
