#pragma once
/// \file
/// The holding side of session replication. Every change of a session's record and every event
/// of its standalone stream reaches the replicator (it is the server's SessionObserver); it
/// keeps the newest state per session and streams it to each replica in batches: one
/// `Replication.Replicate` call in flight per replica, the changes that arrive meanwhile coalesce
/// into the next batch. A replica that is new, restarted or missed a batch gets a full sync
/// (every session, in bounded batches). Replicas are the `replicas` live members that rank
/// highest for this node (rendezvous hashing); those whose full sync was acknowledged are *in
/// sync*, and only those are announced as heirs, so a node that just joined never inherits
/// sessions it has not received yet.
///
/// Thread-safety: the SessionObserver calls come from session strands on any thread and only
/// take a short mutex; batches are built and sent from the replicator's executor (one thread),
/// and gRPC completions are posted back to it.

#include "cluster/auth.hpp"
#include "cluster/mesh/peer_channels.hpp"
#include "mcp/server.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace mcpmesh::cluster {

struct ReplicatorConfig {
  std::string self_id;
  std::size_t replicas = 1;
  std::chrono::milliseconds call_timeout{3000};
  /// Bound of one batch message (gRPC's default limit is 4 MiB).
  std::size_t max_batch_bytes = 2 * 1024 * 1024;
  /// Standalone events kept per session for a full sync (as the stream's resumption buffer).
  std::size_t max_events = 256;
  std::chrono::milliseconds retry_min{100};
  std::chrono::milliseconds retry_max{2000};
};

class Replicator final {
 public:
  struct Peer {
    std::string id;
    std::string address;
    std::uint64_t epoch = 0;  // a new one (the peer restarted) means it holds nothing of ours
  };
  /// `announce(in_sync)`: the ordered in-sync replicas changed (to be gossiped). Called on the
  /// replicator's executor.
  Replicator(mcp::Server& server, PeerChannels& channels, const ClusterAuth& auth,
             boost::asio::any_io_executor executor, ReplicatorConfig config,
             std::function<void(std::vector<std::string>)> announce);
  ~Replicator();

  // The server's SessionObserver calls (any thread).
  void on_record(const mcp::SessionRecord& record);
  void on_standalone_event(const std::string& session_id, std::uint64_t seq,
                           const mcp::Payload& message);
  void on_closed(const std::string& session_id);

  /// Any thread. The live members other than this node changed; the replica set follows.
  void set_candidates(std::vector<Peer> candidates);
  /// Any thread. This node's epoch; a new one starts every replica afresh (full sync).
  void set_epoch(std::uint64_t epoch);
  /// Any thread. Stops replicating: nothing more is sent (a node handing its sessions over).
  void stop();

  /// Any thread. Calls `done(ok)` on the executor once every change made before this call has
  /// been acknowledged by every in-sync replica (ok), or after `deadline` (not ok).
  void flush(std::chrono::milliseconds deadline, std::function<void(bool ok)> done);

  /// Any thread.
  [[nodiscard]] std::vector<std::string> in_sync() const;
  struct Stats {
    std::uint64_t batches = 0;
    std::uint64_t failures = 0;
    std::uint64_t full_syncs = 0;
    std::uint64_t sessions_sent = 0;
    double last_lag_ms = 0;  // oldest change in the last acknowledged batch → its ack
    double max_lag_ms = 0;
    std::size_t pending = 0;  // sessions with changes not yet acknowledged by every replica
  };
  [[nodiscard]] Stats stats() const;

  static constexpr std::string_view kReplicateMethod = "/mcpmesh.v1.Replication/Replicate";

 private:
  using Clock = std::chrono::steady_clock;
  struct Change {
    bool deleted = false;
    bool record_changed = false;
    std::vector<std::pair<std::uint64_t, mcp::Payload>> events;
  };
  struct Link;

  void mark_locked(const std::string& id, const std::function<void(Change&)>& edit);
  void schedule_pump();
  void pump();
  void send(Link& link);
  void on_ack(const std::string& peer, std::uint64_t generation, std::uint64_t seq, bool ok,
              bool need_full, Clock::time_point oldest);
  void update_links_locked();
  /// Tells a replica that left the set to drop its copies.
  void release(const Peer& peer);
  void announce_if_changed_locked(std::vector<std::string>& out, bool& changed);
  void check_flushes_locked();

  mcp::Server& server_;
  PeerChannels& channels_;
  const ClusterAuth& auth_;
  boost::asio::any_io_executor executor_;
  ReplicatorConfig config_;
  std::function<void(std::vector<std::string>)> announce_;

  mutable std::mutex mutex_;
  // Newest serialized record per live session (full syncs send these).
  std::unordered_map<std::string, std::string> records_;
  std::vector<Peer> candidates_;
  std::map<std::string, std::unique_ptr<Link>> links_;  // by peer id
  std::vector<std::string> announced_;
  std::uint64_t epoch_ = 0;
  std::uint64_t generation_ = 0;  // bumped by set_epoch: stale acks are ignored
  bool pump_scheduled_ = false;
  bool stopped_ = false;
  struct Flush {
    std::uint64_t mark;
    Clock::time_point deadline;
    std::function<void(bool)> done;
  };
  std::vector<Flush> flushes_;
  std::uint64_t change_counter_ = 0;
  Stats stats_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace mcpmesh::cluster
