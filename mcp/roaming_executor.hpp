#pragma once
/// \file
/// The executor under each session's strand: work dispatched to an idle session runs at once on
/// the thread that asked (the I/O thread that read the request), not on a fixed thread.
///
/// A session's strand still serialises everything the session does; what changes is where it
/// runs. With a strand on one fixed io_context, a request read on another I/O thread costs two
/// cross-thread hops (to the session and back to the connection), each a wake-up system call.
/// With this executor a request is parsed, handled and answered on one thread, and only work
/// that queues behind a busy strand, or that asks not to run inline (`post`), is scheduled: on
/// the calling thread's own io_context. Only I/O threads that registered their io_context
/// (`set_thread_context`) run work inline or receive it; from any other thread (the worker
/// pool, a test's own thread) work goes to the session's home context, which also owns its
/// timers.
///
/// Thread-safety: copies may be used from any thread. `set_thread_context` is per thread.

#include <boost/asio/execution.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/require.hpp>

#include <cstdint>
#include <utility>

namespace mcpmesh::mcp {

namespace asio = boost::asio;

class RoamingExecutor {
 public:
  explicit RoamingExecutor(asio::io_context& home) noexcept
      : bits_(reinterpret_cast<std::uintptr_t>(&home)) {}

  /// Declares that the calling thread runs `context` (nullptr: none), so work scheduled from it
  /// stays on it. I/O threads call this once when they start.
  static void set_thread_context(asio::io_context* context) noexcept { current() = context; }
  /// The io_context the calling thread runs (an I/O thread), or null.
  [[nodiscard]] static asio::io_context* thread_context() noexcept { return current(); }

  [[nodiscard]] asio::io_context& query(asio::execution::context_t) const noexcept {
    return *home();
  }
  [[nodiscard]] asio::execution::blocking_t query(asio::execution::blocking_t) const noexcept {
    if (never()) return asio::execution::blocking.never;
    return asio::execution::blocking.possibly;
  }
  [[nodiscard]] RoamingExecutor require(asio::execution::blocking_t::never_t) const noexcept {
    RoamingExecutor e = *this;
    e.bits_ |= kNever;
    return e;
  }
  [[nodiscard]] RoamingExecutor require(asio::execution::blocking_t::possibly_t) const noexcept {
    RoamingExecutor e = *this;
    e.bits_ &= ~kNever;
    return e;
  }

  template <class F>
  void execute(F&& f) const {
    asio::io_context* target = current();
    // Inline only on I/O threads: a completion arriving on a worker or a foreign thread goes
    // back to the home context rather than running session code there.
    if (!never() && target != nullptr) {
      std::forward<F>(f)();
      return;
    }
    if (target == nullptr) target = home();
    asio::require(target->get_executor(), asio::execution::blocking.never)
        .execute(std::forward<F>(f));
  }

  friend bool operator==(const RoamingExecutor& a, const RoamingExecutor& b) noexcept {
    return a.bits_ == b.bits_;
  }
  friend bool operator!=(const RoamingExecutor& a, const RoamingExecutor& b) noexcept {
    return !(a == b);
  }

 private:
  static asio::io_context*& current() noexcept {
    static thread_local asio::io_context* context = nullptr;
    return context;
  }

  // The home context's address with `never` in its lowest bit (an io_context is aligned far
  // above 2): one pointer wide, so a session's strand<RoamingExecutor> (this and a shared_ptr)
  // fits in an any_io_executor's inline storage (24 bytes) instead of a heap block of its own.
  static constexpr std::uintptr_t kNever = 1;
  [[nodiscard]] asio::io_context* home() const noexcept {
    return reinterpret_cast<asio::io_context*>(bits_ & ~kNever);
  }
  [[nodiscard]] bool never() const noexcept { return (bits_ & kNever) != 0; }

  std::uintptr_t bits_;
};
static_assert(sizeof(RoamingExecutor) == sizeof(void*));
static_assert(alignof(asio::io_context) > 1);

}  // namespace mcpmesh::mcp
