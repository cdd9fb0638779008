#pragma once
/// \file
/// The requesting side of forwarding: a `transport::SessionTarget` per remote holder. An HTTP
/// exchange becomes one `Forward.Exchange` call on the holder's mesh channel; the chunks of its
/// answer are pushed to the exchange's relay queue as they arrive. A deadline bounds every call;
/// a call is never retried (the request may have run); dropping the relay handle cancels it
/// (the client went away), which the holder sees as its client going away.
///
/// Thread-safety: every member may be called from any thread.

#include "cluster/mesh/peer_channels.hpp"
#include "transport/session_target.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

namespace mcpmesh::cluster {

struct ForwardClientConfig {
  std::string self_id;
  /// Deadline of one relayed exchange (an SSE stream ends there; the client resumes it).
  std::chrono::milliseconds timeout{3600000};
};

class ForwardClient {
 public:
  ForwardClient(PeerChannels& channels, const ClusterAuth& auth, ForwardClientConfig config);

  /// The target for sessions held by `node` at cluster address `address`.
  [[nodiscard]] std::shared_ptr<transport::SessionTarget> target(const std::string& node,
                                                                 const std::string& address);

  [[nodiscard]] std::uint64_t calls() const { return calls_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t failures() const {
    return failures_.load(std::memory_order_relaxed);
  }

  /// gRPC method name, for call tokens.
  static constexpr std::string_view kExchangeMethod = "/mcpmesh.v1.Forward/Exchange";

 private:
  friend class RemoteSession;
  PeerChannels& channels_;
  const ClusterAuth& auth_;
  ForwardClientConfig config_;
  std::atomic<std::uint64_t> calls_{0};
  std::atomic<std::uint64_t> failures_{0};
};

}  // namespace mcpmesh::cluster
