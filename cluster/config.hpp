#pragma once
// Membership timings. Every knob is here, with a LAN default and a fast profile; the derived
// values follow the formulas below (also in docs/CLUSTER.md).
//
//   n                    = number of known non-dead members (including self)
//   LHM                  = local health score, 0 .. max_local_health-1 (Lifeguard)
//   probe interval       = probe_interval * (1 + LHM)
//   probe timeout        = probe_timeout  * (1 + LHM)
//   suspicion min        = suspicion_alpha * max(1, log10(n)) * probe_interval
//   suspicion max        = suspicion_beta * suspicion min
//   expected confirms K  = min(suspicion_confirmations, n - 2)
//   suspicion timeout(C) = max(min, max - (max - min) * log(C + 1) / log(K + 1))
//   verify period        = verify_fraction * suspicion min
//   retransmits          = max(min_retransmits, ceil(retransmit_mult * log10(n + 1)))  (λ·log n)
//   push-pull interval   = push_pull_interval * max(1, 1 + log2(n / 32))
//   stale epoch after    = max(1 s, 3 * probe_interval)    (a field; both profiles set it so)
// Thread-safety: plain value.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "cluster/types.hpp"

namespace mcpmesh::cluster {

struct MembershipConfig {
  std::string cluster_name = "mcpmesh";

  Duration probe_interval = std::chrono::milliseconds(1000);
  Duration probe_timeout = std::chrono::milliseconds(400);
  int indirect_checks = 3;     // k helpers for ping-req
  double nack_fraction = 0.8;  // helper nacks after this share of its timeout
  int max_local_health = 8;    // Lifeguard S

  double suspicion_alpha = 1.0;
  double suspicion_beta = 5.0;
  int suspicion_confirmations = 3;  // Lifeguard K
  double verify_fraction = 0.25;    // a suspicion holder re-checks every fraction * min

  Duration gossip_interval = std::chrono::milliseconds(200);
  int gossip_fanout = 3;
  double retransmit_mult = 4.0;       // λ
  int min_retransmits = 10;           // floor: a node misses an update w.p. ~e^-retransmits
  int max_piggyback = 32;             // updates per message (~3 KB at most)
  size_t max_broadcast_queue = 4096;  // oldest-most-sent dropped beyond this (counted)

  Duration push_pull_interval = std::chrono::seconds(30);
  Duration reconnect_interval = std::chrono::seconds(2);  // ping one dead member
  Duration reconnect_window = std::chrono::hours(24);     // stop trying dead members after
  Duration dead_reap_after = std::chrono::hours(24);      // forget dead/left members after

  size_t max_join_announce = 1024;  // members told directly about a join
  Duration join_retry_min = std::chrono::milliseconds(200);
  Duration join_retry_max = std::chrono::seconds(5);
  Duration join_timeout = std::chrono::milliseconds(500);  // one join attempt's deadline
  Duration bulk_timeout = std::chrono::seconds(5);         // push-pull deadline
  /// A push-pull/join stream served for longer than this is cancelled, so a peer that sets no
  /// deadline cannot hold one of the few state-exchange slots.
  Duration state_exchange_limit = std::chrono::seconds(10);
  Duration oneway_timeout = std::chrono::milliseconds(500);

  /// Inbound RPCs (ping, ping-req, gossip, leave) waiting for the membership's loop; more are
  /// refused with RESOURCE_EXHAUSTED and counted (`inbound_rejected`), so a flood cannot grow
  /// the node's memory or delay its own probes without bound.
  size_t max_inbound_tasks = 4096;
  size_t max_updates_per_message = 64;  // more is malformed (piggyback)
  size_t max_state_members = 1u << 16;  // push-pull state bigger than this is malformed
  /// Incarnations start at the boot time in wall ms and grow by one per refutation; one further
  /// ahead of the receiver's wall clock than this is malformed (a forged huge incarnation would
  /// otherwise shut a member id out for good).
  int64_t max_incarnation_ahead_ms = 24 * 3600 * 1000;
  size_t max_id_bytes = 128;
  /// A boot epoch (the sender's start, wall ms) further ahead of our wall clock than this is
  /// malformed: a forged huge epoch would otherwise outrank every real message of that member.
  Duration max_clock_skew = std::chrono::seconds(60);
  /// A message from an older boot epoch than the one stored for its sender is a replay, unless
  /// the stored epoch has not been heard from for this long: then it is accepted and the
  /// anti-replay window restarts (`epoch_resets`), so one forged epoch slightly ahead shuts a
  /// member out for this long at most. Several probe intervals, so a real restart's stray
  /// in-flight messages from the old life are still refused.
  Duration stale_epoch_after = std::chrono::seconds(3);

  /// Application data (Delegate, MemberMeta::app). Larger input is malformed; our own delegate
  /// output beyond them is left out and counted (`app_oversized`).
  size_t max_app_broadcast_bytes = 16 * 1024;     // total piggybacked broadcast bytes per message
  size_t max_app_broadcasts_per_message = 64;     // piggybacked broadcasts per message
  size_t max_app_state_bytes = 8u * 1024 * 1024;  // one push-pull/join application state
  size_t max_app_meta_bytes = 512;                // MemberMeta::app

  /// Second-hand members (an `alive` about X from a sender that is not X) are verified before
  /// they count: a ping to X, one retry, both with the probe timeout; only X's own message or
  /// ack makes it a member. Verification pings in flight at once:
  size_t max_pending_verifications = 64;
  /// Unverified members one sender may have introduced and still waiting; more are ignored
  /// (`rejected_unverified`), so one forged state cannot queue thousands of ghosts.
  size_t max_unverified_per_peer = 128;
  /// Unverified members waiting in all (forged sender ids must not multiply the above).
  size_t max_unverified = 1024;

  /// LAN default: detects a crash in ~3-6 s at 4..1000 nodes, tolerates 10% loss.
  static MembershipConfig lan() { return {}; }
  /// Fast profile for loopback/same-rack: ~5x quicker, same formulas.
  static MembershipConfig fast();
  /// "lan" or "fast"; throws std::invalid_argument otherwise (start-up only).
  static MembershipConfig profile(std::string_view name);

  // Derived values.
  [[nodiscard]] Duration suspicion_min(size_t n) const;
  [[nodiscard]] Duration suspicion_max(size_t n) const;
  [[nodiscard]] int expected_confirmations(size_t n) const;
  [[nodiscard]] Duration suspicion_timeout(size_t n, int confirmations) const;
  [[nodiscard]] int retransmit_limit(size_t n) const;
  [[nodiscard]] Duration verify_period(size_t n) const {
    return Duration(static_cast<int64_t>(verify_fraction * suspicion_min(n).count()));
  }
  [[nodiscard]] Duration push_pull_period(size_t n) const;
};

}  // namespace mcpmesh::cluster
