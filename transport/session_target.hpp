#pragma once
/// \file
/// Where the HTTP exchanges of a session go when this node does not hold it. The HTTP endpoint
/// serves a session it holds itself; for any other it asks a `SessionLocator` (implemented by
/// the cluster), which answers with the `SessionTarget` holding it: the exchange (request and
/// whole answer, JSON or SSE) is relayed there and the answer's bytes are relayed back
/// unchanged, so the client gets exactly what the holder would have given it.
///
/// The other direction, a node serving an exchange another node relayed to it, goes through
/// `HttpServer::serve_forwarded` and a `ForwardedAnswer`.
///
/// Thread-safety: see each class.

#include "mcp/async_queue.hpp"
#include "mcp/trace.hpp"
#include "transport/http_request.hpp"

#include <functional>
#include <memory>
#include <string>

namespace mcpmesh::transport {

namespace asio = boost::asio;

/// One step of a relayed answer, pushed by the relay as it arrives from the holder.
struct RelayEvent {
  enum class Kind {
    kBytes,   // the next bytes of the HTTP answer
    kEnd,     // the answer is complete
    kFailed,  // the holder could not be reached, or went away mid-answer
  };
  Kind kind = Kind::kBytes;
  std::string bytes;
  bool close = false;        // kEnd: the client connection must close after this answer
  std::string error;         // kFailed: why, for the client
  bool unreachable = false;  // kFailed: the holder could not be reached (503, retry)
};
using RelayQueue = mcp::AsyncQueue<RelayEvent>;

/// A session held by another node.
/// Thread-safety: `relay` may be called from any I/O thread; events arrive on `queue` from any
/// thread.
class SessionTarget {
 public:
  virtual ~SessionTarget() = default;
  /// Starts relaying `request` (the `hops`-th relay of this exchange). The answer arrives on
  /// `queue` as kBytes events ending with kEnd or kFailed. Dropping the returned handle
  /// cancels the relay (the client went away); an exchange that may have run is never retried.
  /// `trace` (the relaying span), when given, replaces the request's `traceparent` and
  /// `tracestate`: the holder's span is its child.
  [[nodiscard]] virtual std::shared_ptr<void> relay(const HttpRequest& request, unsigned hops,
                                                    std::shared_ptr<RelayQueue> queue,
                                                    const mcp::TraceContext* trace) = 0;
  /// The node holding the session (for logs and errors).
  [[nodiscard]] virtual const std::string& node() const = 0;
};

/// Resolves session ids this node does not hold.
/// Thread-safety: any thread; must not block (O(1), no network call).
class SessionLocator {
 public:
  enum class Verdict {
    kHere,         // answer here: nobody else holds it (404), or this node should
    kElsewhere,    // `target` holds it
    kUnavailable,  // its holder is failing and no other node has taken it over yet: retry
  };
  struct Location {
    Verdict verdict = Verdict::kHere;
    std::shared_ptr<SessionTarget> target;
  };
  virtual ~SessionLocator() = default;
  [[nodiscard]] virtual Location locate(std::string_view session_id) = 0;
};

/// Receives the answer of an exchange another node relayed here, part by part, in order.
/// Implemented by the forwarding service. Thread-safety: called from the exchange's I/O thread;
/// must not block. `sent` may be called from any thread.
class ForwardedAnswer {
 public:
  virtual ~ForwardedAnswer() = default;
  /// Sends the next bytes of the answer; `sent(ok)` once they left (ok = false when the
  /// requesting node is gone: the exchange stops, as for a client that went away).
  virtual void send(std::string bytes, std::function<void(bool ok)> sent) = 0;
  /// The last bytes; `close`: the client connection must close after this answer.
  virtual void finish(std::string bytes, bool close) = 0;
};

}  // namespace mcpmesh::transport
