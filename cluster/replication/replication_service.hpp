#pragma once
/// \file
/// The replica's side of `proto/mesh.proto`'s Replication service: batches are checked (call
/// token, then that the holder is a live member other than this node) and applied to the
/// ReplicaStore; a handoff asks this node to continue a draining holder's sessions now.
///
/// Thread-safety: gRPC calls the service from its own threads; nothing here blocks them (a
/// handoff runs on the mesh executor and answers from there).

#include "cluster/auth.hpp"
#include "cluster/replication/replica_store.hpp"
#include "mcp/trace.hpp"
#include "proto/mesh.grpc.pb.h"
#include "registry/cluster_view.hpp"

#include <functional>

namespace mcpmesh::cluster {

class ReplicationService final : public ::mcpmesh::v1::Replication::CallbackService {
 public:
  /// `adopt(holder, done)`: continue `holder`'s sessions here now, then `done(count)`.
  ReplicationService(
      ClusterAuth& auth, ReplicaStore& store, registry::ClusterView& view,
      std::function<void(std::string holder, std::function<void(std::uint64_t)>)> adopt);

  grpc::ServerUnaryReactor* Replicate(grpc::CallbackServerContext* context,
                                      const ::mcpmesh::v1::ReplicationBatch* request,
                                      ::mcpmesh::v1::ReplicationAck* response) override;
  grpc::ServerUnaryReactor* Handoff(grpc::CallbackServerContext* context,
                                    const ::mcpmesh::v1::HandoffRequest* request,
                                    ::mcpmesh::v1::HandoffReply* response) override;

  /// Set before serving; null = no spans.
  void set_tracer(mcp::Tracer* tracer) { tracer_ = tracer; }

  /// Batches refused because of who sent them (unknown, dead, this node).
  [[nodiscard]] std::uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }

  static constexpr std::string_view kHandoffMethod = "/mcpmesh.v1.Replication/Handoff";

 private:
  /// OK when `holder` may send us its sessions (a live member other than this node); else the
  /// refusal, counted.
  grpc::Status check_holder(const std::string& holder);

  ClusterAuth& auth_;
  ReplicaStore& store_;
  registry::ClusterView& view_;
  std::function<void(std::string, std::function<void(std::uint64_t)>)> adopt_;
  std::atomic<std::uint64_t> refused_{0};
  mcp::Tracer* tracer_ = nullptr;
};

}  // namespace mcpmesh::cluster
