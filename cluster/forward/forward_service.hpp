#pragma once
/// \file
/// The holding side of forwarding: relay links (relay_link.hpp), opened by other nodes on this
/// node's HTTP port, carry the exchanges they relay here. Each is run through this node's HTTP
/// endpoint (`transport::HttpServer::serve_forwarded`), exactly as if it had arrived on a socket
/// here, and the bytes of its answer go back on the same link, batched with the other
/// exchanges' (one frame per write, whatever is queued when the previous write completes).
///
/// Relayed exchanges are untrusted input like any other request: the link's token is checked
/// when it opens, then each request's shape and size; a refused exchange is answered with the
/// reason, counted, and changes nothing.
///
/// Thread-safety: links run on the I/O threads of their sockets; exchanges write their answers
/// from theirs; nothing here blocks. The service must outlive no HTTP server it was given: it
/// takes its upgrade route back when it goes.

#include "cluster/auth.hpp"
#include "cluster/forward/relay_link.hpp"
#include "transport/http_server.hpp"

#include <atomic>
#include <memory>
#include <optional>
#include <string>

namespace mcpmesh::cluster {

struct ForwardServiceLimits {
  std::size_t max_body_bytes = 4 * 1024 * 1024;
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_headers = 100;
  unsigned max_hops = 2;
  /// Exchanges running at once on one link; more are refused.
  std::size_t max_exchanges = 65536;
  /// Largest chunk of an answer in one frame (big answers are split).
  std::size_t max_chunk_bytes = 1024 * 1024;
  /// Largest batch of answer parts in one frame.
  std::size_t max_batch_bytes = 2 * 1024 * 1024;
  /// Links open at once from other nodes; more are refused (503) and counted.
  std::size_t max_links = 256;
  /// Heartbeats, silence; the largest request frame accepted is set from the limits above.
  LinkSettings link;
};

class ForwardService {
 public:
  /// Serves relay links on `http`'s port from now on. `tls`: the cluster's certificates (links
  /// must use TLS with them), or none. Throws std::runtime_error when a TLS file is unusable.
  ForwardService(ClusterAuth& auth, transport::HttpServer& http, ForwardServiceLimits limits,
                 const std::optional<TlsFiles>& tls = std::nullopt);
  /// Takes the upgrade route back and closes the links.
  ~ForwardService();
  ForwardService(const ForwardService&) = delete;
  ForwardService& operator=(const ForwardService&) = delete;

  /// Relayed exchanges refused for their shape (not their token: ClusterAuth counts those).
  [[nodiscard]] std::uint64_t refused() const;
  [[nodiscard]] std::uint64_t served() const;
  /// Links refused: too many open, or a frame that does not parse or is over the limit (the
  /// link closed).
  [[nodiscard]] std::uint64_t links_refused() const;
  /// Links open now.
  [[nodiscard]] std::size_t links() const;

  /// What the links share with the service; outlives it while links still run.
  struct Shared;

 private:
  std::shared_ptr<Shared> shared_;
  transport::HttpServer& http_;
};

}  // namespace mcpmesh::cluster
