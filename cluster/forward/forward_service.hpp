#pragma once
/// \file
/// The holding side of forwarding: `Forward.Relay` streams carry the exchanges other nodes
/// relay here. Each is run through this node's HTTP endpoint
/// (`transport::HttpServer::serve_forwarded`), exactly as if it had arrived on a socket here,
/// and the bytes of its answer go back on the same stream, batched with the other exchanges'
/// (one message per write, whatever is queued when the previous write completes).
///
/// Relayed exchanges are untrusted input like any other request: the stream's call token is
/// checked when it opens, then each request's shape and size; a refused exchange is answered
/// with the reason, counted, and changes nothing.
///
/// Thread-safety: gRPC calls the service from its own threads; exchanges write their answers
/// from I/O threads; nothing here blocks either.

#include "cluster/auth.hpp"
#include "proto/mesh.grpc.pb.h"
#include "transport/http_server.hpp"

#include <atomic>

namespace mcpmesh::cluster {

struct ForwardServiceLimits {
  std::size_t max_body_bytes = 4 * 1024 * 1024;
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_headers = 100;
  unsigned max_hops = 2;
  /// Exchanges running at once on one stream; more are refused.
  std::size_t max_exchanges = 65536;
  /// Largest chunk of an answer in one frame (big answers are split).
  std::size_t max_chunk_bytes = 1024 * 1024;
  /// Largest batch of frames in one message.
  std::size_t max_batch_bytes = 2 * 1024 * 1024;
};

class ForwardService final : public ::mcpmesh::v1::Forward::CallbackService {
 public:
  ForwardService(ClusterAuth& auth, transport::HttpServer& http, ForwardServiceLimits limits);

  grpc::ServerBidiReactor<::mcpmesh::v1::RelayBatch, ::mcpmesh::v1::AnswerBatch>* Relay(
      grpc::CallbackServerContext* context) override;

  /// Relayed exchanges refused for their shape (not their token: ClusterAuth counts those).
  [[nodiscard]] std::uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t served() const { return served_.load(std::memory_order_relaxed); }

  /// Checks one relayed request and builds it; the reason when it is refused.
  std::optional<std::string> check(const ::mcpmesh::v1::ForwardRequest& request,
                                   transport::HttpRequest& out) const;

 private:
  friend class RelayServerStream;
  ClusterAuth& auth_;
  transport::HttpServer& http_;
  ForwardServiceLimits limits_;
  std::atomic<std::uint64_t> refused_{0};
  std::atomic<std::uint64_t> served_{0};
};

}  // namespace mcpmesh::cluster
