#pragma once
/// \file
/// A node's part in the cluster, in one object: the one gRPC server (membership, admin,
/// forwarding, replication, the notification bus), every cluster RPC authenticated with the
/// cluster secret (and optionally mutual TLS), SWIM membership with the mesh delegate on it,
/// the cluster view of the registry, and the MCP side: the locator the HTTP endpoint asks about
/// sessions it does not hold, the replicator the server tells about session changes, replica
/// copies and their adoption when a holder dies or hands over, the bus for notifications.
/// A process that serves no MCP (mcpmesh-cluster-agent) runs the membership part alone.
///
/// Threads: the membership's event loop; one mesh thread (replication batches, adoption,
/// member changes); gRPC's own. Thread-safety: start() and the destructor from the owner;
/// bound_address(), locator(), render_metrics() from any thread; hand_over() and leave() block
/// (bounded) and must not be called from an I/O, mesh or membership thread.

#include "cluster/auth.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mcpmesh::mcp {
class Server;
}
namespace mcpmesh::transport {
class HttpServer;
class IoPool;
class SessionLocator;
}  // namespace mcpmesh::transport

namespace mcpmesh::cluster {

struct ClusterNodeConfig {
  std::string node_id;
  std::string listen;          // HOST:PORT to bind (port 0 = pick one)
  std::string advertise;       // HOST:PORT others dial; default the bound one (never a wildcard)
  std::string http_advertise;  // the node's HTTP address, for operators and balancers
  std::vector<std::string> seeds;
  std::string cluster_name = "mcpmesh";
  std::string profile = "lan";  // membership timings: lan | fast
  std::string version;
  std::string secret;  // the cluster secret itself (load_cluster_secret)
  std::optional<TlsFiles> tls;
  std::size_t replicas = 1;
  std::chrono::milliseconds forward_timeout{3600000};
  // Relay links: silent this long, one is dead (heartbeats every fifth of it); at most this
  // many from other nodes at once.
  std::chrono::milliseconds relay_silence{5000};
  std::size_t max_relay_links = 256;
  std::size_t max_body_bytes = 4 * 1024 * 1024;
  std::size_t max_header_bytes = 16 * 1024;
  unsigned max_forward_hops = 2;
  // Continue a failed member's sessions even where this node sees at most half of the cluster
  // alive (ClusterView::quorate): a two-node cluster whose lower-id node died. Two sides of a
  // partition may then both continue the same sessions.
  bool adopt_without_quorum = false;
};

/// What the node serves over MCP; all null for a membership-only process.
struct ClusterNodeServices {
  mcp::Server* server = nullptr;
  transport::HttpServer* http = nullptr;
  transport::IoPool* pool = nullptr;  // sessions continued here are spread over its contexts
};

class ClusterNode {
 public:
  /// Binds the cluster port (exclusively: a second process cannot share it), starts the
  /// services and joins through the seeds (retrying in the background). Throws
  /// std::runtime_error when the port cannot be bound or the configuration is unusable.
  static std::unique_ptr<ClusterNode> start(const ClusterNodeConfig& config,
                                            ClusterNodeServices services = {});
  ~ClusterNode();

  /// HOST:PORT this node advertises for its cluster port.
  [[nodiscard]] std::string bound_address() const;
  /// For the HTTP endpoint (null for a membership-only process).
  [[nodiscard]] transport::SessionLocator* locator();
  /// Appends the cluster's Prometheus figures.
  void render_metrics(std::string& out) const;

  /// Called (from a gRPC thread) when `mcpmesh-ctl drain` asks this node to drain; returns
  /// whether a drain started now (false: one is already running).
  void set_drain_handler(std::function<bool()> start_drain);

  /// Blocking. Hands this node's sessions to its heir: everything replicated and acknowledged,
  /// then the heir continues them and tells the cluster, and this node stops replicating.
  /// Returns the number of sessions the heir took, or nullopt when there was none to take them
  /// (no in-sync replica) or it did not answer by `deadline`.
  std::optional<std::uint64_t> hand_over(std::chrono::milliseconds deadline);
  /// Blocking. Leaves the cluster (gossips `left`, waits at most `deadline` for it to spread)
  /// and stops the services. Idempotent.
  void leave(std::chrono::milliseconds deadline);

  struct Impl;

 private:
  explicit ClusterNode(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mcpmesh::cluster
