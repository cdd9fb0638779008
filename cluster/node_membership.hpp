#pragma once
// Cluster membership for a node: owns the membership thread, the gRPC server (membership +
// admin services) and the client transport. Self-contained; the node only starts and stops it.
//
// Thread-safety: start() and leave() may be called from any thread, but not concurrently with
// each other or with destruction. bound_address() is safe at any time after start().

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace mcpmesh::cluster {

struct NodeClusterConfig {
  std::string node_id;       // e.g. "n1"
  std::string cluster_addr;  // HOST:PORT for the gRPC server (membership + admin), port 0 = pick
  std::vector<std::string> seeds;  // HOST:PORT of other nodes' cluster_addr
  std::string http_addr;           // advertised MCP HTTP address (metadata)
  std::string cluster_name = "mcpmesh";
  std::string profile = "lan";  // "lan" | "fast"
  std::string version;          // node version string for metadata
};

class NodeMembership {
 public:
  /// Starts the gRPC server and joins through the seeds (retrying in the background).
  /// Throws std::runtime_error on bind failure, std::invalid_argument on a bad config.
  static std::unique_ptr<NodeMembership> start(const NodeClusterConfig& cfg);
  /// Graceful leave: disseminates `left`, waits at most `deadline` for it to spread, stops the
  /// server. Idempotent.
  void leave(std::chrono::milliseconds deadline);
  /// HOST:PORT the gRPC server listens on (and advertises).
  std::string bound_address() const;
  ~NodeMembership();

  struct Impl;

 private:
  explicit NodeMembership(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mcpmesh::cluster
