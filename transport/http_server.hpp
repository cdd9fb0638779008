#pragma once
/// \file
/// Streamable HTTP transport (MCP 2025-11-25) on Boost.Beast: POST/GET/DELETE on one endpoint,
/// JSON or SSE answers, session ids, resumable SSE streams, Origin/Host checks, limits and
/// deadlines. Also serves `/healthz` and `/metrics`.
///
/// Threading: every connection runs as one coroutine on one io_context, which must be run by
/// a single thread (IoPool: one per thread), so connections need no strand; sessions are
/// reached only through `mcp::Session`'s thread-safe entry points.

#include "mcp/server.hpp"
#include "transport/io_pool.hpp"
#include "transport/sse_streams.hpp"

#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace mcpmesh::transport {

struct HttpConfig {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  std::string path = "/mcp";
  std::size_t max_body_bytes = 4 * 1024 * 1024;
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_json_depth = 64;
  /// Messages in one JSON-RPC batch (2025-03-26 sessions); sse.queue_events caps it too.
  std::size_t max_batch_size = 100;
  std::size_t max_connections = 19000;
  /// From the first byte of a request to its last (slowloris bound).
  std::chrono::milliseconds read_timeout{10000};
  /// How long a keep-alive connection may wait for its next request.
  std::chrono::milliseconds idle_timeout{60000};
  /// How long one write may take before the peer counts as a slow consumer.
  std::chrono::milliseconds write_timeout{30000};
  /// Interval of SSE keep-alive comments; also how long a POST answer stays JSON before it
  /// turns into an SSE stream (so long calls get keep-alives and become resumable).
  std::chrono::milliseconds sse_keepalive{15000};
  /// The `retry:` hint sent with the priming event.
  std::chrono::milliseconds sse_retry{1000};
  SseLimits sse;
  /// Allowed Origin values ("scheme://host[:port]", or "*"); empty = loopback origins only.
  std::vector<std::string> allowed_origins;
  /// Allowed Host names (no port; "*" disables the check); empty = loopback names.
  std::vector<std::string> allowed_hosts;
};

class HttpServer {
 public:
  /// Binds and listens; throws std::system_error if the address cannot be bound (start-up).
  HttpServer(asio::io_context& io, mcp::Server& server, HttpConfig config);
  /// Spreads connections over the pool's contexts (listening on the first).
  HttpServer(IoPool& pool, mcp::Server& server, HttpConfig config);
  ~HttpServer();

  /// Starts accepting. Call once.
  void start();
  /// Stops accepting; open connections end on their own deadlines.
  void stop();
  [[nodiscard]] asio::ip::tcp::endpoint local_endpoint() const;

  struct Shared;

 private:
  HttpServer(std::vector<asio::io_context*> contexts, mcp::Server& server, HttpConfig config);
  std::shared_ptr<Shared> shared_;
};

/// True if `origin` ("scheme://host[:port]") may talk to this node.
[[nodiscard]] bool origin_allowed(std::string_view origin, const std::vector<std::string>& allowed);
/// True if the Host header value `host` ("name[:port]") names this node.
[[nodiscard]] bool host_allowed(std::string_view host, const std::vector<std::string>& allowed);

}  // namespace mcpmesh::transport
