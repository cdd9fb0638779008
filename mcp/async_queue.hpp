#pragma once
// A bounded multi-producer, single-consumer queue whose consumer awaits on its own executor.
// Thread-safety: push() and close() from any thread; pop() only from the consumer's executor
// (a strand), one pop at a time.

#include "mcp/event_ring.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

namespace mcpmesh::mcp {

namespace asio = boost::asio;

template <class T>
class AsyncQueue : public std::enable_shared_from_this<AsyncQueue<T>> {
 public:
  enum class Status { kItem, kTimeout, kClosed, kOverflow };

  AsyncQueue(asio::any_io_executor consumer, std::size_t bound)
      : timer_(std::move(consumer)), bound_(bound) {}

  /// Any thread. False (and the queue is marked overflowed) when full; false when closed.
  bool push(T item) {
    std::lock_guard lock(mutex_);
    if (closed_ || overflow_) return false;
    if (items_.size() >= bound_) {
      overflow_ = true;
      wake_locked();
      return false;
    }
    items_.push_back(std::move(item));
    wake_locked();
    return true;
  }

  /// Any thread. The consumer sees kClosed once the queued items are drained.
  void close() {
    std::lock_guard lock(mutex_);
    closed_ = true;
    wake_locked();
  }

  /// Consumer executor only. True unless closed or overflowed (then make a new queue).
  [[nodiscard]] bool reusable() {
    std::lock_guard lock(mutex_);
    return !closed_ && !overflow_;
  }

  /// Consumer executor only. Drops queued items (left over from a stream that ended).
  void clear() {
    std::lock_guard lock(mutex_);
    items_.clear();
  }

  /// Consumer executor only. Takes the front item if there is one and `accept` wants it;
  /// never waits (no coroutine frame, no timer): the fast path before pop().
  template <class Accept>
  std::optional<T> try_pop(Accept&& accept) {
    std::lock_guard lock(mutex_);
    if (overflow_ || items_.empty() || !accept(std::as_const(items_.front()))) return std::nullopt;
    std::optional<T> item(std::move(items_.front()));
    items_.pop_front();
    return item;
  }

  /// Consumer executor only. What pop() would return without waiting: an item, kClosed or
  /// kOverflow; nullopt when it would wait (then the next push or close wakes a wait_until()).
  /// With wait_until(), a consumer that waits holds one timer wait and no coroutine frame.
  std::optional<std::pair<Status, std::optional<T>>> poll() {
    std::lock_guard lock(mutex_);
    waiting_ = false;
    if (overflow_) return std::pair{Status::kOverflow, std::optional<T>()};
    if (!items_.empty()) {
      std::optional<T> item(std::move(items_.front()));
      items_.pop_front();
      return std::pair{Status::kItem, std::move(item)};
    }
    if (closed_) return std::pair{Status::kClosed, std::optional<T>()};
    waiting_ = true;
    items_.release();  // an idle consumer (a held SSE stream) keeps no event storage
    return std::nullopt;
  }

  /// Consumer executor only, right after poll() returned nullopt. Calls `handler()` on the
  /// consumer's executor at `deadline`, or sooner once something arrived (poll() again to see
  /// what; a spurious wake-up is possible).
  template <class Handler>
  void wait_until(std::chrono::steady_clock::time_point deadline, Handler handler) {
    timer_.expires_at(deadline);
    timer_.async_wait(
        [handler = std::move(handler)](boost::system::error_code) mutable { handler(); });
  }

  /// Consumer executor only. Waits at most `timeout` for an item.
  asio::awaitable<std::pair<Status, std::optional<T>>> pop(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      {
        std::lock_guard lock(mutex_);
        waiting_ = false;
        if (overflow_) co_return std::pair{Status::kOverflow, std::optional<T>()};
        if (!items_.empty()) {
          std::optional<T> item(std::move(items_.front()));
          items_.pop_front();
          co_return std::pair{Status::kItem, std::move(item)};
        }
        if (closed_) co_return std::pair{Status::kClosed, std::optional<T>()};
        if (std::chrono::steady_clock::now() >= deadline) {
          co_return std::pair{Status::kTimeout, std::optional<T>()};
        }
        // From here a push wakes the wait below. Its wake-up is posted to this executor, which
        // runs it only after the wait has started, so none is lost.
        waiting_ = true;
        items_.release();  // an idle consumer (a held SSE stream) keeps no event storage
      }
      timer_.expires_at(deadline);
      boost::system::error_code ec;
      co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

 private:
  /// Wakes a consumer that is waiting; one that is not will see the change when it looks.
  void wake_locked() {
    if (!waiting_ || wake_posted_) return;
    wake_posted_ = true;
    asio::post(timer_.get_executor(), [self = this->shared_from_this()] {
      {
        std::lock_guard lock(self->mutex_);
        self->wake_posted_ = false;
      }
      self->timer_.cancel();
    });
  }

  asio::steady_timer timer_;
  const std::size_t bound_;
  std::mutex mutex_;
  EventRing<T> items_;   // guarded by mutex_; holds no memory while empty and idle
  bool closed_ = false;  // guarded by mutex_
  bool overflow_ = false;
  bool waiting_ = false;  // the consumer is (about to be) waiting on timer_
  bool wake_posted_ = false;
};

}  // namespace mcpmesh::mcp
