#pragma once
/// \file
/// The holding side of forwarding: `Forward.Exchange` runs a relayed HTTP exchange through this
/// node's HTTP endpoint (`transport::HttpServer::serve_forwarded`), exactly as if it had arrived
/// on a socket here, and streams the bytes of its answer back. A relayed exchange is untrusted
/// input like any other request: the call token is checked first, then the shape and size of
/// the request; refusals are counted and change nothing.
///
/// Thread-safety: gRPC calls the service from its own threads; nothing here blocks them.

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
  /// Largest chunk of an answer in one message (big answers are split).
  std::size_t max_chunk_bytes = 1024 * 1024;
};

class ForwardService final : public ::mcpmesh::v1::Forward::CallbackService {
 public:
  ForwardService(ClusterAuth& auth, transport::HttpServer& http, ForwardServiceLimits limits);

  grpc::ServerWriteReactor<::mcpmesh::v1::ForwardChunk>* Exchange(
      grpc::CallbackServerContext* context, const ::mcpmesh::v1::ForwardRequest* request) override;

  /// Relayed exchanges refused for their shape (not their token: ClusterAuth counts those).
  [[nodiscard]] std::uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t served() const { return served_.load(std::memory_order_relaxed); }

 private:
  ClusterAuth& auth_;
  transport::HttpServer& http_;
  ForwardServiceLimits limits_;
  std::atomic<std::uint64_t> refused_{0};
  std::atomic<std::uint64_t> served_{0};
};

}  // namespace mcpmesh::cluster
