#pragma once
// The two small interfaces the membership logic runs on: a clock with timers, and a
// message transport. Implemented by the simulator (virtual time, in-process network) and by
// the real node (event-loop thread + gRPC).

#include <cstdint>
#include <functional>
#include <string>

#include "cluster/types.hpp"

namespace mcpmesh::cluster {

using TimerId = uint64_t;

/// Monotonic clock and one-shot timers.
/// Thread-safety: called only from the membership's executor; callbacks run there too.
class Clock {
 public:
  virtual ~Clock() = default;
  [[nodiscard]] virtual TimePoint now() const = 0;
  /// Runs `fn` on the membership's executor after `delay`. Never runs it inline.
  virtual TimerId schedule(Duration delay, std::function<void()> fn) = 0;
  /// Cancels a pending timer; cancelling a fired or unknown timer is a no-op.
  virtual void cancel(TimerId id) = 0;
  /// Wall-clock milliseconds since the Unix epoch (virtual in the simulator); used for the
  /// boot incarnation and for "last change" shown to operators.
  [[nodiscard]] virtual int64_t wall_ms() const = 0;
};

/// Message transport. Every request has a deadline; the reply callback runs exactly once on
/// the membership's executor, with nullptr on timeout, loss or connection failure.
/// Thread-safety: called only from the membership's executor.
class Transport {
 public:
  using ReplyFn = std::function<void(const Message* reply)>;
  virtual ~Transport() = default;
  virtual void request(const std::string& addr, Message msg, Duration timeout,
                       ReplyFn on_reply) = 0;
  /// One-way message (gossip, leave); best effort, bounded by `timeout`.
  virtual void send(const std::string& addr, Message msg, Duration timeout) = 0;
  /// The peer at `addr` has just come back (a new process, or alive after we believed it dead):
  /// forget whatever connection state is cached for it, so the next message connects at once
  /// instead of failing fast on a connection still in reconnect backoff from its downtime.
  virtual void reset(const std::string& /*addr*/) {}
};

/// Sends the reply to an incoming request; call at most once, from the membership's executor.
/// An empty Responder means the incoming message was one-way.
using Responder = std::function<void(Message reply)>;

}  // namespace mcpmesh::cluster
