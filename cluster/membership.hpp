#pragma once
// SWIM membership with the Lifeguard extensions, written against Clock and Transport so the
// same code runs in the simulator and over gRPC.
//
// Thread-safety: a Membership is not thread-safe. Every public function, every Clock timer
// callback and every Transport reply callback must run on one executor (the simulator's event
// loop or the node's membership thread). Nothing here blocks.

#include <absl/container/flat_hash_map.h>
#include <absl/container/node_hash_map.h>

#include <bitset>
#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cluster/config.hpp"
#include "cluster/delegate.hpp"
#include "cluster/env.hpp"
#include "cluster/types.hpp"

namespace mcpmesh::cluster {

/// A snapshot of one member as this node sees it.
struct MemberView {
  MemberMeta meta;
  MemberState state = MemberState::kAlive;
  uint64_t incarnation = 0;
  TimePoint last_change{};
  int64_t last_change_wall_ms = 0;
  bool is_self = false;
};

class Membership {
 public:
  /// Called on the executor after every state change of any member (including self), and when
  /// a live member's metadata changes without a state change (then old_state == member.state).
  /// May read the Membership (members(), counters(), ...); must not block.
  using ChangeFn = std::function<void(const MemberView& member, MemberState old_state)>;
  using ListenerId = uint64_t;

  Membership(MembershipConfig cfg, MemberMeta self, Clock& clock, Transport& transport,
             uint64_t rng_seed);
  ~Membership();
  Membership(const Membership&) = delete;
  Membership& operator=(const Membership&) = delete;

  /// Starts probing, gossip and anti-entropy, and joins through `seeds` (addresses), retrying
  /// with capped exponential backoff until one answers or someone else reaches us.
  void start(std::vector<std::string> seeds);
  /// Sets the advertised gRPC address (known only after binding); call before start().
  void set_self_addr(const std::string& addr);
  /// Test/simulator bootstrap: learn these members as alive without any message.
  void seed_members(const std::vector<MemberMeta>& members, uint64_t incarnation);
  /// Graceful leave: marks self `left`, tells up to all live members directly and through
  /// gossip, and stops probing. Keeps answering until destroyed.
  void leave();
  /// Stops all timers; incoming messages are still answered (used before destruction).
  void stop();

  /// Entry point for every incoming message. `respond` is empty for one-way messages and must
  /// otherwise be called exactly once (this function guarantees it).
  void handle(Message msg, Responder respond);

  /// Adds a change listener; listeners are called in the order they were added. One added
  /// from inside a listener hears the next change, not the current one.
  ListenerId add_listener(ChangeFn fn);
  /// Removes a listener (also safe from inside a listener); unknown ids are ignored.
  void remove_listener(ListenerId id);

  /// Application state riding on membership traffic; nullptr (the default) for none. The
  /// delegate must outlive the Membership or be unset first.
  void set_delegate(Delegate* delegate) { delegate_ = delegate; }
  /// Replaces our own MemberMeta::app, bumps our incarnation by one and gossips the new `alive`
  /// (as a refutation does, without its local-health penalty), and tells the listeners. Peers
  /// replace our metadata when that `alive` reaches them. Refused (and logged) if larger than
  /// max_app_meta_bytes, since every peer would reject the update as malformed. After leave()
  /// only the local copy changes. Meant for occasional changes, not a stream of them.
  void update_app_meta(std::string app);
  /// Exchanges the whole state (a push-pull, with the delegate's) with live member `node_id`,
  /// now. `done(alive_there)` once its reply is applied here: true when it lists us alive;
  /// false when it lists us otherwise (we refute it by then), or on no answer or an unknown or
  /// dead member (then at once).
  void exchange_state(const std::string& node_id, std::function<void(bool alive_there)> done);

  [[nodiscard]] std::vector<MemberView> members() const;
  /// Pings each of `ids` now (one try each, the probe timeout); `done(answered)` once every
  /// ping was answered or timed out, with the members that answered (at once when none could be
  /// pinged: unknown, self, no address). Not called once the membership is destroyed.
  void ping_members(const std::vector<std::string>& ids,
                    std::function<void(std::vector<std::string> answered)> done);
  [[nodiscard]] const MemberMeta& self() const { return *self_meta_; }
  [[nodiscard]] uint64_t incarnation() const;
  [[nodiscard]] int local_health() const { return lhm_; }
  [[nodiscard]] const MembershipCounters& counters() const { return counters_; }
  [[nodiscard]] bool joined() const { return joined_; }
  /// Number of alive + suspect members including self (the `n` of the formulas). Unverified
  /// second-hand members are not members yet and do not count.
  [[nodiscard]] size_t live_count() const { return live_.size(); }
  /// Second-hand members waiting for (or in) verification.
  [[nodiscard]] size_t unverified_count() const { return unverified_.size(); }
  [[nodiscard]] const MembershipConfig& config() const { return cfg_; }
  /// State of `node_id` as seen here, or nullptr if unknown.
  [[nodiscard]] const MemberState* state_of(const std::string& node_id) const;

 private:
  struct Suspicion {
    TimePoint start{};
    std::vector<std::string> confirmers;  // distinct declarers, first is the originator
    TimerId timer = 0;
  };
  struct Member {
    std::string id;
    MemberState state = MemberState::kAlive;
    uint64_t incarnation = 0;
    MetaPtr meta;
    TimePoint last_change{};
    int64_t last_change_wall_ms = 0;
    std::unique_ptr<Suspicion> suspicion;
    size_t live_index = SIZE_MAX;
    size_t dead_index = SIZE_MAX;
    // Anti-replay window over (boot_epoch, seq).
    uint64_t boot_epoch = 0;
    uint64_t max_seq = 0;
    std::bitset<256> seen;
    TimePoint epoch_heard{};  // last accepted message with `boot_epoch`
    TimePoint transport_reset_at{-1};
  };
  /// A member learned second-hand, kept apart until it reaches us itself.
  struct Unverified {
    Update update;             // the `alive` rumour: its address is the one we verify
    std::string introducer;    // who told us (for max_unverified_per_peer)
    bool spread = false;       // re-gossip once reached (learned by gossip, not push-pull)
    bool in_flight = false;    // a verification ping of this entry is out
    bool heard_again = false;  // the rumour came again during the current attempt
  };
  struct Listener {
    ListenerId id = 0;
    std::shared_ptr<const ChangeFn> fn;  // null once removed during a notification
  };
  struct Broadcast {
    Update update;
    int transmits = 0;
    uint64_t order = 0;
  };
  struct Probe {
    bool active = false;
    std::string target;
    uint64_t incarnation = 0;  // the target's when the probe began
    uint64_t seq = 0;
    bool acked = false;
    int nacks_expected = 0;
    int nacks = 0;
  };

  // Timers.
  void probe_tick();
  void gossip_tick();
  void push_pull_tick();
  void reconnect_tick();
  void join_attempt(size_t seed_index);
  void announce_self(const std::vector<std::string>& also);
  std::vector<std::string> unverified_addresses(const Message& reply);
  void pull_again_soon();
  void schedule_probe_tick();

  // Probing.
  void finish_probe();
  void on_direct_reply(uint64_t seq, const Message* reply);
  void start_indirect(uint64_t seq);
  Member* next_probe_target();

  // Incoming.
  bool ingest(const Message& msg);  // envelope checks + gossip; false = rejected
  bool valid_update(const Update& u) const;
  bool valid_app(const Message& msg) const;
  bool accept_sequence(Member& m, const Message& msg);  // anti-replay; false = replay
  void handle_ping(const Message& msg, Responder& respond);
  void handle_ping_req(const Message& msg, Responder respond);
  void handle_push_pull(const Message& msg, Responder& respond);

  // State machine.
  void apply(const Update& u, bool from_push_pull, const std::string& sender);
  void apply_alive(const Update& u, bool spread, const std::string& sender);
  void add_member(const Update& u, bool spread);
  void apply_suspect(const Update& u);
  void apply_dead(const Update& u);
  void refute(uint64_t seen_incarnation);
  void correct_stale(Member& m);
  void set_state(Member& m, MemberState s, uint64_t incarnation);
  void start_suspicion(Member& m, const std::string& from);
  void add_confirmation(Member& m, const std::string& from);
  void reschedule_suspicion(Member& m);
  void suspicion_expired(const std::string& id, uint64_t incarnation);
  void suspect_locally(Member& m);
  void verify_suspect(const std::string& id, uint64_t incarnation);
  void verify_with_helpers(const std::string& id, uint64_t incarnation);
  void introduce_to(const std::string& id);
  void pull_from_unknown(const std::string& addr);
  void reset_transport(Member& m);

  // Second-hand members (no ghosts): verified by a ping before they count.
  void learn_second_hand(const Update& u, const std::string& introducer, bool spread);
  bool reach_unverified(const Message& msg);  // true: msg's sender was verified by it
  void promote_unverified(const std::string& id);
  void forget_unverified(const std::string& id);
  void pump_verifications();
  void send_verification(const std::string& id, int attempt);
  void on_verification_reply(const std::string& id, int attempt, const Message* reply);

  // Dissemination.
  void enqueue(Update u);
  void attach_gossip(Message& msg, const Update* priority, const Update* priority2 = nullptr);
  void attach_app_broadcasts(Message& msg);
  Message make_msg(MsgType type);
  Message make_push_pull(bool join);
  std::vector<Update> full_state() const;
  Update update_of(const Member& m) const;
  void send_request(const std::string& addr, Message msg, Duration timeout, Transport::ReplyFn fn);
  void send_oneway(const std::string& addr, Message msg);

  // Bookkeeping.
  void live_add(Member& m);
  void live_remove(Member& m);
  void dead_add(Member& m);
  void dead_remove(Member& m);
  Member* random_live_other(const std::string& exclude);
  void notify(const Member& m, MemberState old_state);
  MemberView view_of(const Member& m) const;
  Duration scaled(Duration d) const { return d * (1 + lhm_); }
  void health_delta(int delta);

  MembershipConfig cfg_;
  MetaPtr self_meta_;
  Clock& clock_;
  Transport& transport_;
  std::mt19937_64 rng_;
  std::vector<Listener> listeners_;
  ListenerId next_listener_ = 0;
  int notifying_ = 0;  // nesting depth of notify(); removal only compacts at depth 0
  Delegate* delegate_ = nullptr;

  // Pointer-stable (live_/dead_ hold Member*), and much kinder to caches than std::unordered_map
  // when a simulator holds a thousand of these tables.
  absl::node_hash_map<std::string, Member> members_;
  Member* self_ = nullptr;
  std::vector<Member*> live_;  // alive + suspect, including self
  std::vector<Member*> dead_;  // dead (not left)
  std::vector<std::string> probe_order_;
  size_t probe_pos_ = 0;
  Probe probe_;
  uint64_t probe_seq_ = 0;

  std::vector<Broadcast> queue_;
  absl::flat_hash_map<std::string, size_t> queue_index_;
  uint64_t broadcast_order_ = 0;

  absl::flat_hash_map<std::string, Unverified> unverified_;  // bounded by max_unverified
  absl::flat_hash_map<std::string, size_t> unverified_by_peer_;
  std::deque<std::string> verify_waiting_;  // ids; stale ones are skipped when popped
  size_t verify_in_flight_ = 0;             // <= max_pending_verifications
  size_t ingest_capped_ = 0;  // second-hand members the last ingest() ignored for the bounds

  uint64_t boot_epoch_ = 0;
  uint64_t msg_seq_ = 0;
  int lhm_ = 0;
  TimePoint next_unknown_pull_{};
  bool running_ = false;
  bool leaving_ = false;
  bool joined_ = false;
  std::vector<std::string> seeds_;
  Duration join_backoff_{};
  std::vector<TimerId> timers_;  // probe, gossip, push-pull, reconnect, join
  MembershipCounters counters_;
  std::shared_ptr<bool> alive_token_ = std::make_shared<bool>(true);
};

}  // namespace mcpmesh::cluster
