#pragma once
/// \file
/// The way back to a client, implemented by transports (an HTTP stream, stdout, a test).
/// Thread-safety: `deliver` may be called from any thread and must not block.

#include "mcp/jsonrpc.hpp"

namespace mcpmesh::mcp {

/// A way back to the client. Implemented by transports.
/// Thread-safety: every member may be called from any thread and must not block.
class ClientChannel {
 public:
  virtual ~ClientChannel() = default;
  /// Sends `message`. `completes_request` marks the final answer to one client request;
  /// `message` is null when that request ends without an answer (it was cancelled).
  virtual void deliver(Payload message, bool completes_request) = 0;
  /// The session this channel serves has ended (standalone channels only).
  virtual void on_session_closed() {}
  /// Ends the transport stream carrying this channel now, keeping what it would still carry
  /// for a resumption (SSE polling); a no-op where streams cannot be resumed.
  virtual void close_stream() {}
};

}  // namespace mcpmesh::mcp
