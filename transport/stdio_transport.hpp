#pragma once
/// \file
/// The stdio transport: newline-delimited JSON-RPC on stdin/stdout, one session for the life
/// of the process. Logs never go to stdout (spdlog writes to stderr).
/// Threading: reads and writes run on one strand of the given io_context.
///
/// Backpressure: what waits for stdout is bounded in messages and bytes. While either bound is
/// reached (a client that does not read its stdout), or more requests wait for an answer than
/// the session may have in flight, stdin is not read: the client's own writes block, and
/// reading resumes once the queue is down to half. Answers are never dropped; notifications
/// beyond the bounds are (counted in stdio_dropped_total).

#include "mcp/server.hpp"

namespace mcpmesh::transport {

namespace asio = boost::asio;

struct StdioConfig {
  std::size_t max_line_bytes = 4 * 1024 * 1024;
  std::size_t max_json_depth = 64;
  /// Messages in one JSON-RPC batch (2025-03-26 sessions) before -32600.
  std::size_t max_batch_size = 100;
  /// Bounds of the queue waiting for stdout (see the file comment).
  std::size_t max_queued_messages = 8192;
  std::size_t max_queued_bytes = 8 * 1024 * 1024;
  int in_fd = 0;
  int out_fd = 1;
};

/// Serves one session over stdio until stdin ends; then closes the session and calls `on_eof`.
class StdioTransport {
 public:
  StdioTransport(asio::io_context& io, mcp::Server& server, StdioConfig config);
  ~StdioTransport();
  void start(std::function<void()> on_eof);

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace mcpmesh::transport
