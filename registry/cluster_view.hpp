#pragma once
/// \file
/// The cluster level of the registry: which node holds which sessions, answered in O(1) with no
/// network call (DESIGN.md §5).
///
/// A session id names its owner and the owner's epoch (`<owner>.<epoch>.<random>`). This view
/// holds what resolving one needs: the members (state, epoch, in-sync replicas, fed from
/// membership), the adoption table (node X's sessions of epoch E are now held by node H; fed
/// from gossip) and the interest sets (URI → nodes with a subscriber; fed from gossip, as
/// versioned deltas). The node-local level (sessions, subscriptions) is ShardedRegistry and
/// SubscriptionIndex; a session found there never reaches this view.
///
/// Knows no sockets, JSON, protobuf or MCP: ids, epochs and URIs are strings and numbers.
/// Thread-safety: every member may be called from any thread. Two std::shared_mutex (members
/// and adoptions; interest), each held for one bounded map operation, never while calling out.

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace mcpmesh::registry {

struct ClusterViewLimits {
  std::size_t max_members = 4096;
  std::size_t max_adoptions = 4096;
  std::size_t max_interest_uris = 100000;  // per node
  std::size_t max_uri_bytes = 4096;
  std::size_t max_replicas = 8;  // per member's announced list
};

class ClusterView {
 public:
  enum class NodeState { kAlive, kSuspect, kDead, kLeft };

  struct Member {
    std::string id;
    NodeState state = NodeState::kAlive;
    std::uint64_t epoch = 0;
    std::string address;                // cluster (gRPC) address
    std::vector<std::string> replicas;  // in-sync replicas the member announced, heir first
    std::string http_address;           // MCP HTTP address (relay links go there)
  };

  struct Adoption {
    std::string node;
    std::uint64_t epoch = 0;
    std::string holder;
    std::uint64_t version = 0;
  };

  /// Where the requests of a session not held here go.
  struct Route {
    enum class Kind {
      kHere,         // nobody else holds it: answer here (it is gone: 404)
      kRemote,       // `node` (at `address`) holds it, or is the one to ask
      kUnavailable,  // its holder is failing and its heir has not taken it over yet
    };
    Kind kind = Kind::kHere;
    std::string node;
    std::string address;
    std::string http_address;
  };

  explicit ClusterView(std::string self, ClusterViewLimits limits = {});

  [[nodiscard]] const std::string& self() const { return self_; }
  /// This node's current epoch (sessions it creates carry it).
  void set_self_epoch(std::uint64_t epoch);
  [[nodiscard]] std::uint64_t self_epoch() const;
  /// Until this is set, a session whose owner this node has never heard of is "unavailable"
  /// (retry), not gone: a node that just started may not know every member yet.
  void set_converged(bool converged);

  // -- members --------------------------------------------------------------------------------
  /// Adds or replaces a member (self included). False when refused (too many members, too many
  /// replicas).
  bool set_member(Member member);
  void remove_member(std::string_view id);
  [[nodiscard]] std::optional<Member> member(std::string_view id) const;
  [[nodiscard]] std::vector<Member> members() const;
  /// Members per state, in NodeState order.
  [[nodiscard]] std::array<std::size_t, 4> member_counts() const;
  /// Whether this node is on the side of the cluster that may continue failed members'
  /// sessions: it sees more than half of the members that did not leave alive (itself
  /// included), or exactly half with the lowest such id among them. Two sides of a partition
  /// can never both hold it, so they never both take a set of sessions over (a member that
  /// is merely suspect does not count: in a partition the far side is suspect first).
  /// With `answered`, a member counts only if it is alive and among them too (the members that
  /// answered a ping just now): a node cut off from the others suspects them one probe at a
  /// time, and its view still holds alive the members it has not probed since the cut.
  [[nodiscard]] bool quorate(const std::vector<std::string>* answered = nullptr) const;

  /// The node that continues `node`'s sessions if it fails now: the first live member of its
  /// announced replicas; without an announcement, the rendezvous-hash choice among live members.
  [[nodiscard]] std::optional<std::string> heir_of(std::string_view node) const;
  /// The `n` members of `candidates` that rank highest for `key` (rendezvous hashing).
  [[nodiscard]] static std::vector<std::string> rendezvous(std::string_view key,
                                                           std::vector<std::string> candidates,
                                                           std::size_t n);

  // -- adoptions ------------------------------------------------------------------------------
  /// Records an adoption; true when it is news (no entry, or a lower version). Refused (false)
  /// when the table is full or the entry is malformed.
  bool apply_adoption(const Adoption& adoption);
  [[nodiscard]] std::vector<Adoption> adoptions() const;
  [[nodiscard]] std::optional<Adoption> adoption(std::string_view node, std::uint64_t epoch) const;
  /// The highest version recorded for any entry (a new one should exceed it).
  [[nodiscard]] std::uint64_t max_adoption_version() const;
  /// This node finished continuing the sessions of failed holder `node` (whose epoch was
  /// `epoch`): a session of it not found here now is gone, not on its way.
  void mark_adopted_here(std::string_view node, std::uint64_t epoch);

  /// Where requests for a session of `owner` created in `epoch` go.
  [[nodiscard]] Route resolve(std::string_view owner, std::uint64_t epoch) const;

  // -- interest sets --------------------------------------------------------------------------
  enum class DeltaResult { kApplied, kStale, kGap, kRefused };
  /// Applies `node`'s change from version `from` to `to`. kGap: this view holds an older
  /// version than `from` (fetch the whole set); kStale: nothing new.
  DeltaResult apply_interest_delta(std::string_view node, std::uint64_t from, std::uint64_t to,
                                   const std::vector<std::string>& add,
                                   const std::vector<std::string>& remove);
  /// Replaces `node`'s set if `version` is newer than the one held; false otherwise (or
  /// refused).
  bool set_interest(std::string_view node, std::uint64_t version, std::vector<std::string> uris);
  void drop_interest(std::string_view node);
  [[nodiscard]] std::uint64_t interest_version(std::string_view node) const;
  [[nodiscard]] std::vector<std::pair<std::string, std::uint64_t>> interest_versions() const;
  struct InterestSummary {
    std::string node;
    std::uint64_t version = 0;
    std::size_t uris = 0;
  };
  /// Every other node's interest set: its version and how many URIs it holds.
  [[nodiscard]] std::vector<InterestSummary> interest_summary() const;
  /// Nodes (other than this one) with a subscriber to `uri`.
  [[nodiscard]] std::vector<std::string> interested(std::string_view uri) const;
  [[nodiscard]] std::size_t interest_uri_count() const;

  /// Refusals of untrusted input (oversized, malformed, over a bound).
  [[nodiscard]] std::uint64_t refused() const;

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  struct AdoptionEntry {
    std::string holder;
    std::uint64_t version = 0;
  };
  struct Interest {
    std::uint64_t version = 0;
    std::set<std::string, std::less<>> uris;
  };
  using AdoptionKey = std::pair<std::string, std::uint64_t>;

  std::optional<std::string> heir_locked(std::string_view node) const;
  /// The first live member of `replicas` (other than `node`); without any announced, the
  /// rendezvous choice among the other alive members.
  std::optional<std::string> heir_locked(std::string_view node,
                                         const std::vector<std::string>& replicas) const;
  void index_add_locked(const std::string& node, const std::string& uri);
  void index_remove_locked(const std::string& node, const std::string& uri);
  bool uri_ok(std::string_view uri) const;

  const std::string self_;
  const ClusterViewLimits limits_;

  mutable std::shared_mutex mutex_;  // members, adoptions, self epoch, converged
  std::uint64_t self_epoch_ = 0;
  bool converged_ = false;
  std::unordered_map<std::string, Member, Hash, std::equal_to<>> members_;
  std::map<AdoptionKey, AdoptionEntry> adoptions_;
  std::uint64_t max_version_ = 0;
  std::set<AdoptionKey> adopted_here_;
  /// The life before the current one of members seen restarting: its epoch and the replicas
  /// it announced. One per member, so bounded with the members.
  struct PreviousLife {
    std::uint64_t epoch = 0;
    std::vector<std::string> replicas;
  };
  std::unordered_map<std::string, PreviousLife, Hash, std::equal_to<>> previous_;

  mutable std::shared_mutex interest_mutex_;
  std::unordered_map<std::string, Interest, Hash, std::equal_to<>> interest_;
  std::unordered_map<std::string, std::vector<std::string>, Hash, std::equal_to<>> by_uri_;

  mutable std::atomic<std::uint64_t> refused_{0};
};

}  // namespace mcpmesh::registry
