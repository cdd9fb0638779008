#pragma once
/// \file
/// The stdio transport: newline-delimited JSON-RPC on stdin/stdout, one session for the life
/// of the process. Logs never go to stdout (spdlog writes to stderr).
/// Threading: reads and writes run on one strand of the given io_context.

#include "mcp/server.hpp"

namespace mcpmesh::transport {

namespace asio = boost::asio;

struct StdioConfig {
  std::size_t max_line_bytes = 4 * 1024 * 1024;
  std::size_t max_json_depth = 64;
  std::size_t max_queued_messages = 65536;
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
