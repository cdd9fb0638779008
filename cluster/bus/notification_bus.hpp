#pragma once
/// \file
/// The notification bus: a resource update or list change raised by this node's app reaches the
/// sessions on the other nodes that care, exactly once per subscriber.
///
/// - Resource updates go only to the nodes in the URI's interest set (the cluster view's, fed
///   from gossip); a node that died is replaced by its heir, which continues its sessions.
///   List changes go to every live node.
/// - Each message carries (origin, epoch, sequence); a receiver delivers it to its own sessions
///   once, however often it arrives (a retry to an heir, a heir that was also interested).
/// - This node's own interest set is kept by `InterestTracker`, from the server's hints, and
///   published as versioned deltas (see mesh_delegate.hpp).
///
/// Thread-safety: every member may be called from any thread; gRPC calls the service from its
/// threads and nothing here blocks them.

#include "cluster/auth.hpp"
#include "cluster/mesh/peer_channels.hpp"
#include "mcp/server.hpp"
#include "registry/cluster_view.hpp"

#include <atomic>
#include <bitset>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>

namespace mcpmesh::cluster {

/// This node's interest set: the URIs its sessions subscribe to, versioned; its changes are
/// taken as deltas to publish.
class InterestTracker {
 public:
  /// Versions start after `first_version`: the node's start time in ms, so that a restarted
  /// node's set is newer than its previous life's, which the other nodes may still hold (they
  /// drop any version they hold already).
  explicit InterestTracker(registry::SubscriptionIndex& index, std::uint64_t first_version = 0)
      : index_(index), version_(first_version) {}

  /// Any thread: whether this node subscribes to `uri` may have changed. True when the set
  /// changed (a delta is waiting to be taken).
  bool hint(std::string_view uri);

  struct Delta {
    std::uint64_t from = 0;
    std::uint64_t to = 0;
    std::vector<std::string> add, remove;
  };
  /// The changes since the last call, as one delta; nullopt when there are none.
  std::optional<Delta> take_delta();
  /// The whole set and its version.
  [[nodiscard]] std::pair<std::uint64_t, std::vector<std::string>> full() const;

 private:
  registry::SubscriptionIndex& index_;
  mutable std::mutex mutex_;
  std::set<std::string, std::less<>> uris_;  // published or about to be; guarded by mutex_
  std::uint64_t version_ = 0;
  std::set<std::string, std::less<>> added_, removed_;  // since the last delta
};

struct BusConfig {
  std::string self_id;
  std::chrono::milliseconds timeout{2000};
};

class NotificationBus final : public mcp::NotificationFanout,
                              public ::mcpmesh::v1::Bus::CallbackService {
 public:
  NotificationBus(mcp::Server& server, registry::ClusterView& view, PeerChannels& channels,
                  ClusterAuth& auth, InterestTracker& interest, BusConfig config);

  /// This node's epoch (a new one restarts its sequence).
  void set_epoch(std::uint64_t epoch) { epoch_.store(epoch, std::memory_order_relaxed); }

  // mcp::NotificationFanout: raised by this node's app.
  void resource_updated(std::string_view uri) override;
  void list_changed(mcp::ListKind kind) override;

  // ::mcpmesh::v1::Bus
  grpc::ServerUnaryReactor* Publish(grpc::CallbackServerContext* context,
                                    const ::mcpmesh::v1::BusMessage* request,
                                    ::mcpmesh::v1::BusAck* response) override;
  grpc::ServerUnaryReactor* Interest(grpc::CallbackServerContext* context,
                                     const ::mcpmesh::v1::InterestRequest* request,
                                     ::mcpmesh::v1::InterestSet* response) override;
  grpc::ServerUnaryReactor* Interested(grpc::CallbackServerContext* context,
                                       const ::mcpmesh::v1::InterestDelta* request,
                                       ::mcpmesh::v1::BusAck* response) override;

  /// Pushes this node's interest change to every live node and calls `done` (any thread, once)
  /// when each has answered or failed; at once when there is nobody to tell.
  void push_interest(const InterestTracker::Delta& delta, std::function<void()> done);

  /// Asks `node` (at `address`) for its whole interest set and applies it to the view; then
  /// `done` (any thread), also when the fetch failed.
  void fetch_interest(const std::string& node, const std::string& address,
                      std::function<void()> done = {});

  struct Stats {
    std::uint64_t published = 0;   // messages sent to other nodes
    std::uint64_t failed = 0;      // sends that failed (after the retry to an heir)
    std::uint64_t delivered = 0;   // messages from other nodes delivered here
    std::uint64_t duplicates = 0;  // messages from other nodes dropped as already delivered
    std::uint64_t fetches = 0;     // whole interest sets fetched after a missed delta
  };
  [[nodiscard]] Stats stats() const;

  static constexpr std::string_view kPublishMethod = "/mcpmesh.v1.Bus/Publish";
  static constexpr std::string_view kInterestMethod = "/mcpmesh.v1.Bus/Interest";
  static constexpr std::string_view kInterestedMethod = "/mcpmesh.v1.Bus/Interested";

 private:
  void publish(::mcpmesh::v1::BusMessage message, std::vector<std::string> targets);
  void send(const ::mcpmesh::v1::BusMessage& message, const std::string& target, bool retried);
  /// True the first time (origin, epoch, seq) is seen.
  bool first_delivery(const std::string& origin, std::uint64_t epoch, std::uint64_t seq);

  mcp::Server& server_;
  registry::ClusterView& view_;
  PeerChannels& channels_;
  ClusterAuth& auth_;
  InterestTracker& interest_;
  BusConfig config_;
  std::atomic<std::uint64_t> epoch_{0};
  std::atomic<std::uint64_t> seq_{0};

  struct Window {
    std::uint64_t epoch = 0;
    std::uint64_t max_seq = 0;
    std::bitset<1024> seen;  // bit i: max_seq - i was delivered
  };
  std::mutex dedupe_mutex_;
  std::unordered_map<std::string, Window> windows_;  // by origin; guarded by dedupe_mutex_

  std::mutex fetch_mutex_;
  // Nodes whose set is being fetched (one fetch at a time per node), and what waits for it.
  std::map<std::string, std::vector<std::function<void()>>> fetching_;  // guarded by fetch_mutex_

  std::atomic<std::uint64_t> published_{0}, failed_{0}, delivered_{0}, duplicates_{0}, fetches_{0};
};

}  // namespace mcpmesh::cluster
