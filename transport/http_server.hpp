#pragma once
/// \file
/// Streamable HTTP transport (MCP 2025-11-25) on Boost.Beast: POST/GET/DELETE on one endpoint,
/// JSON or SSE answers, session ids, resumable SSE streams, Origin/Host checks, limits and
/// deadlines, admission control (`admission.hpp`). Also serves `/healthz`, `/readyz` and
/// `/metrics`. Exchanges of sessions another node holds are relayed there (`session_target.hpp`),
/// and exchanges another node relays here are served by `serve_forwarded` exactly as if they had
/// arrived on a socket.
///
/// Threading: every connection runs as one coroutine on one io_context, which must be run by
/// a single thread (IoPool: one per thread), so connections need no strand; sessions are
/// reached only through `mcp::Session`'s thread-safe entry points.

#include "mcp/server.hpp"
#include "transport/admission.hpp"
#include "transport/io_pool.hpp"
#include "transport/session_target.hpp"

#include <functional>
#include <memory>
#include <optional>

#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace mcpmesh::transport {

struct HttpConfig {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  std::string path = "/mcp";
  /// The deprecated HTTP+SSE transport of 2024-11-05, for the clients that still use it: a GET
  /// on `legacy_sse_path` opens a session and its SSE stream, whose first event names the
  /// endpoint (`legacy_messages_path?sessionId=…`) the client POSTs its messages to. The
  /// session ends with its stream. Empty: not served.
  std::string legacy_sse_path = "/sse";
  std::string legacy_messages_path = "/messages";
  std::size_t max_body_bytes = 4 * 1024 * 1024;
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_json_depth = 64;
  /// Messages in one JSON-RPC batch (2025-03-26 sessions); the stream queue (--sse-queue-events)
  /// caps it too.
  std::size_t max_batch_size = 100;
  /// Open connections before new ones get 503 (the node sets it from RLIMIT_NOFILE).
  std::size_t max_connections = 19000;
  /// start() makes the I/O threads' per-socket state for `max_connections` in one run, so that
  /// a flood of connections leaves no pinned heap pages behind (the node does: ~180 B per
  /// connection, 3.3 MB and ~0.15 s at 19,000). Call start() before anything else of the
  /// process opens descriptors on other threads: it holds that many for a moment.
  bool prepare_descriptors = false;
  /// Per-client caps, token buckets and load shedding.
  AdmissionConfig admission;
  /// After an error that ends the connection (400, 408, 413, 431, 501) the rest of what the
  /// client sends is read and dropped for up to this long and this many bytes, so a client
  /// that writes its whole request before reading gets the answer, not a reset.
  std::chrono::milliseconds linger_timeout{5000};
  std::size_t linger_bytes = 16 * 1024 * 1024;
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
  /// Relays of one exchange to other nodes before it must be answered where it is (a session
  /// that moved while a relay was on its way may need a second one).
  unsigned max_forward_hops = 2;
  /// Parts of a relayed answer queued for a client before it counts as a slow consumer.
  std::size_t relay_queue_parts = 256;
  /// Allowed Origin values ("scheme://host[:port]", or "*"); empty = loopback origins only.
  std::vector<std::string> allowed_origins;
  /// Allowed Host names (no port; "*" disables the check); empty = loopback names.
  std::vector<std::string> allowed_hosts;
};

/// A protocol a connection may switch to (HTTP/1.1 `Upgrade`) on one path: how the cluster's
/// relay links reach a node (cluster/forward). Such a request skips the Host and Origin checks
/// (it is not from a browser); `accept` vouches for it instead.
struct UpgradeRoute {
  std::string path;      // e.g. "/cluster/relay"
  std::string protocol;  // the `Upgrade` token asked for, compared case-insensitively
  struct Refusal {
    unsigned status = 401;
    std::string reason;
  };
  /// Runs on the connection's I/O thread and must not block. Returns why the connection may not
  /// switch (sent as a JSON-RPC error with that status; the connection closes), or takes it:
  /// moves the socket out (it stays on that thread's io_context) with the bytes the client sent
  /// past the request, and answers 101 itself.
  std::function<std::optional<Refusal>(const HttpRequest& request, asio::ip::tcp::socket& socket,
                                       std::string leftover)>
      accept;
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

  /// Set before start(); null = a single node (sessions not held here are unknown: 404).
  void set_locator(SessionLocator* locator);
  /// Any thread: the one protocol connections may switch to from now on (none by default or
  /// after nullopt: such a request is served as any other).
  void set_upgrade(std::optional<UpgradeRoute> route);
  /// `/readyz` answers 200 while this holds (default: the server takes new sessions) and the
  /// node is not full (sessions, connections) and not shedding requests (zone red).
  void set_readiness(std::function<bool()> ready);
  /// The admission control of this server (zone, clients); lives as long as the server.
  [[nodiscard]] Admission& admission();
  /// Appends more Prometheus text (the cluster's figures) to every `/metrics` answer.
  void set_extra_metrics(std::function<void(std::string&)> render);
  /// Any thread. What `/metrics` answers (Prometheus text).
  [[nodiscard]] std::string render_metrics() const;
  /// Any thread. Why `/readyz` answers 503 now, or "" when the node takes new work.
  [[nodiscard]] std::string_view not_ready_because() const;

  /// Any thread. Serves `request`, relayed here by another node (its `hops`-th relay), as if it
  /// had arrived on a connection of this node, minus the Host/Origin checks the first node
  /// made; the answer goes to `answer`. Runs on the calling thread when it is one of the
  /// server's I/O threads, else on one of them.
  void serve_forwarded(HttpRequest request, unsigned hops, std::shared_ptr<ForwardedAnswer> answer);

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
