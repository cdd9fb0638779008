#pragma once
// Plain value types shared by the membership logic, its transports and the simulator.
// Thread-safety: values only; no shared state.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mcpmesh::cluster {

using Duration = std::chrono::nanoseconds;
/// Time since an arbitrary epoch chosen by the Clock (virtual in the simulator).
using TimePoint = std::chrono::nanoseconds;

enum class MemberState : uint8_t { kAlive = 0, kSuspect = 1, kDead = 2, kLeft = 3 };

[[nodiscard]] std::string_view to_string(MemberState s);

/// What a member advertises about itself. Immutable once shared.
struct MemberMeta {
  std::string node_id;
  std::string grpc_addr;
  std::string http_addr;
  std::string version;
  uint32_t load = 0;
  /// Opaque application bytes (Membership::update_app_meta); at most max_app_meta_bytes.
  std::string app;

  bool operator==(const MemberMeta&) const = default;
};
using MetaPtr = std::shared_ptr<const MemberMeta>;

/// One fact about a member, piggybacked on messages or sent in push-pull state.
struct Update {
  std::string node_id;
  MemberState state = MemberState::kAlive;
  uint64_t incarnation = 0;
  std::string from;  // declarer of suspect/dead; empty otherwise
  MetaPtr meta;      // required for alive
};

enum class MsgType : uint8_t {
  kPing,
  kAck,
  kPingReq,
  kPingReqReply,  // ack or nack from a ping-req helper
  kGossip,        // one-way
  kPushPull,      // request and reply; full state in `updates`
  kLeave,         // one-way
};

/// A membership message. The simulator passes it by value; gRPC maps it to proto/.
struct Message {
  MsgType type = MsgType::kPing;
  // Envelope.
  std::string cluster;
  std::string sender_id;
  std::string sender_addr;
  uint64_t boot_epoch = 0;
  uint64_t seq = 0;
  // Body.
  uint64_t probe_seq = 0;
  std::string target_id;
  std::string target_addr;
  uint32_t timeout_ms = 0;
  bool ack = false;
  bool nack = false;
  bool join = false;
  std::vector<Update> updates;  // piggybacked gossip, or full state for push-pull
  // Application data (Delegate): broadcasts piggybacked on gossip-carrying messages, and the
  // full application state on push-pull/join requests and replies.
  std::vector<std::string> app_broadcasts;
  std::string app_state;
};

/// Counters exported by a Membership. Monotonic.
struct MembershipCounters {
  uint64_t msgs_sent = 0;
  uint64_t msgs_received = 0;
  uint64_t probes = 0;
  uint64_t probe_failures = 0;
  uint64_t indirect_probes = 0;
  uint64_t nacks_received = 0;
  uint64_t suspicions_started = 0;
  uint64_t declared_dead = 0;
  uint64_t refutations = 0;
  uint64_t push_pulls = 0;
  uint64_t updates_applied = 0;
  uint64_t updates_stale = 0;
  uint64_t rejected_malformed = 0;
  uint64_t rejected_replay = 0;
  uint64_t rejected_cluster = 0;
  uint64_t rejected_id_conflict = 0;
  uint64_t gossip_dropped = 0;  // broadcast queue overflow
  /// A lower boot epoch accepted from a member whose stored epoch went unheard for
  /// stale_epoch_after (a forged or stepped-back epoch must not shut a member out for good).
  uint64_t epoch_resets = 0;
  /// Second-hand members ignored because their introducer (or everyone together) already had
  /// max_unverified_per_peer (max_unverified) of them waiting for verification.
  uint64_t rejected_unverified = 0;
  /// Second-hand members forgotten because they never answered their verification pings.
  uint64_t unverified_dropped = 0;
  /// Second-hand members that reached us (a message of their own or an ack) and became members.
  uint64_t unverified_reached = 0;
  /// Delegate output beyond the per-message bounds, left out of what we sent.
  uint64_t app_oversized = 0;
  /// Transport connections dropped because a peer came back (new life or alive after dead).
  uint64_t transport_resets = 0;
};

}  // namespace mcpmesh::cluster
