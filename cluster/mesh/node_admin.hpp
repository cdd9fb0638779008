#pragma once
/// NodeAdmin (proto/admin.proto): what a node serving MCP says about itself to mcpmesh-ctl —
/// its sessions (one session's owner, holder, heir, epoch, subscriptions), its registry and
/// the cluster view's interest sets and adoptions, its health (zone, readiness) and its
/// metrics. Every call needs a cluster call token. The CLI asks each member for cluster-wide
/// figures; a node answers for itself only.
///
/// Thread-safety: the reactions run on gRPC's threads and read only thread-safe sources; a
/// session's record is read on that session's strand.

#include "proto/admin.grpc.pb.h"

#include <functional>
#include <string>
#include <string_view>

namespace mcpmesh::mcp {
class Server;
}
namespace mcpmesh::transport {
class HttpServer;
}
namespace mcpmesh::registry {
class ClusterView;
}

namespace mcpmesh::cluster {

class ClusterAuth;
class ReplicaStore;

/// What the service reads. Every pointer outlives the service; `http` may be null (no HTTP).
struct NodeAdminSources {
  std::string node_id;
  mcp::Server* server = nullptr;
  transport::HttpServer* http = nullptr;
  const registry::ClusterView* view = nullptr;
  const ReplicaStore* store = nullptr;
  std::function<bool()> draining;
};

class NodeAdminService final : public v1::NodeAdmin::CallbackService {
 public:
  NodeAdminService(ClusterAuth& auth, NodeAdminSources sources)
      : auth_(auth), src_(std::move(sources)) {}

  grpc::ServerUnaryReactor* Sessions(grpc::CallbackServerContext* ctx,
                                     const v1::SessionsRequest* req,
                                     v1::SessionsResponse* resp) override;
  grpc::ServerUnaryReactor* Registry(grpc::CallbackServerContext* ctx,
                                     const v1::RegistryRequest* req,
                                     v1::RegistryResponse* resp) override;
  grpc::ServerUnaryReactor* Health(grpc::CallbackServerContext* ctx, const v1::HealthRequest* req,
                                   v1::HealthResponse* resp) override;
  grpc::ServerUnaryReactor* Metrics(grpc::CallbackServerContext* ctx, const v1::MetricsRequest* req,
                                    v1::MetricsResponse* resp) override;

  static constexpr std::string_view kSessionsMethod = "/mcpmesh.v1.NodeAdmin/Sessions";
  static constexpr std::string_view kRegistryMethod = "/mcpmesh.v1.NodeAdmin/Registry";
  static constexpr std::string_view kHealthMethod = "/mcpmesh.v1.NodeAdmin/Health";
  static constexpr std::string_view kMetricsMethod = "/mcpmesh.v1.NodeAdmin/Metrics";

 private:
  ClusterAuth& auth_;
  NodeAdminSources src_;
};

}  // namespace mcpmesh::cluster
