#pragma once
/// \file
/// ControlChannel: where a bench process's main thread waits, with a deadline, for the I/O
/// threads to finish a phase, for SIGINT/SIGTERM, or for a descriptor (a child's pipe) to
/// become readable, all in one poll(): a signalfd for the signals, an eventfd the I/O threads
/// write when a phase's last unit arrives.
///
/// Thread-safety: construct on the main thread before any other thread starts (it blocks
/// SIGINT and SIGTERM, and threads started later inherit that mask, so the signals reach the
/// signalfd only). wake() and Phase::arrive() from any thread; wait() from the main thread.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <span>

namespace mcpmesh::bench {

class ControlChannel {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Event { kDone, kSignal, kDeadline, kReadable };

  ControlChannel();
  ~ControlChannel();
  ControlChannel(const ControlChannel&) = delete;
  ControlChannel& operator=(const ControlChannel&) = delete;

  /// Any thread: makes the main thread re-check its wait condition.
  void wake();

  /// Main thread: returns kDone once `done()` holds, kSignal on SIGINT/SIGTERM, kReadable when
  /// one of `fds` is readable (its index in `*which`), kDeadline when `deadline` passed.
  Event wait(Clock::time_point deadline, const std::function<bool()>& done,
             std::span<const int> fds = {}, std::size_t* which = nullptr);

  [[nodiscard]] int signals_received() const { return signals_; }
  [[nodiscard]] int last_signal() const { return last_signal_; }

  /// Closes the descriptors without touching the signal mask: for a forked child, which then
  /// makes a channel of its own.
  void close_descriptors();

 private:
  int signal_fd_ = -1;
  int event_fd_ = -1;
  int signals_ = 0;
  int last_signal_ = 0;
};

/// A count of units (connections, streams) still busy in a phase; the last to arrive wakes
/// the main thread.
class Phase {
 public:
  explicit Phase(ControlChannel& control) : control_(control) {}
  void start(std::size_t units) { pending_.store(units, std::memory_order_release); }
  void arrive() {
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) control_.wake();
  }
  [[nodiscard]] bool done() const { return pending_.load(std::memory_order_acquire) == 0; }

 private:
  ControlChannel& control_;
  std::atomic<std::size_t> pending_{0};
};

}  // namespace mcpmesh::bench
