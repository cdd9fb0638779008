#pragma once
/// \file
/// What the MCP side of the cluster carries on membership traffic (a `Delegate`): adoptions
/// (node X's sessions of epoch E are now held by H) and this node's interest-set deltas ride on
/// gossip as broadcasts; push-pull carries the whole adoption table, this node's whole interest
/// set and the versions it holds of everyone else's, so that a node that missed a delta finds
/// out and fetches the set. News is re-broadcast, so it spreads epidemically like membership
/// news does.
///
/// Thread-safety: the Delegate calls and `broadcast_adoption` run on the membership's executor
/// only. The hooks are called there too and must not block.

#include "cluster/bus/notification_bus.hpp"
#include "cluster/delegate.hpp"
#include "cluster/membership.hpp"
#include "registry/cluster_view.hpp"

#include <atomic>
#include <functional>
#include <string>

namespace mcpmesh::v1 {
class Adoption;
}

namespace mcpmesh::cluster {

/// An adoption's wire form (proto/mesh.proto), both ways.
registry::ClusterView::Adoption adoption_from_proto(const v1::Adoption& a);
void adoption_to_proto(const registry::ClusterView::Adoption& a, v1::Adoption* out);

class MeshDelegate final : public Delegate {
 public:
  struct Hooks {
    /// An adoption this node had not heard of (already applied to the view).
    std::function<void(const registry::ClusterView::Adoption&)> on_adoption;
    /// `node`'s interest set moved on past what this node holds: fetch it whole.
    std::function<void(const std::string& node)> on_interest_gap;
  };

  MeshDelegate(std::string self, registry::ClusterView& view, InterestTracker& interest,
               const Membership& membership, Hooks hooks);

  /// Queues an adoption this node made (already applied to the view) for gossip.
  void broadcast_adoption(const registry::ClusterView::Adoption& adoption);
  /// Queues a change of this node's interest set for gossip (it is also pushed directly).
  void broadcast_interest(const InterestTracker::Delta& delta);

  std::vector<std::string> broadcasts(size_t max_bytes) override;
  void on_broadcast(std::string_view data, const std::string& from) override;
  std::string local_state(bool join) override;
  void merge_remote_state(std::string_view state, bool join, const std::string& from) override;

  /// Broadcasts or states that could not be read, or carried refused content.
  [[nodiscard]] std::uint64_t malformed() const {
    return malformed_.load(std::memory_order_relaxed);
  }

  /// Largest broadcast or state read (larger is malformed).
  static constexpr std::size_t kMaxBroadcastBytes = 64 * 1024;
  static constexpr std::size_t kMaxStateBytes = 8 * 1024 * 1024;

 private:
  std::string self_;
  registry::ClusterView& view_;
  InterestTracker& interest_;
  const Membership& membership_;
  Hooks hooks_;
  TransmitQueue queue_;
  std::atomic<std::uint64_t> malformed_{0};
};

}  // namespace mcpmesh::cluster
