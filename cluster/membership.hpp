#pragma once
// SWIM membership with the Lifeguard extensions, written against Clock and Transport so the
// same code runs in the simulator and over gRPC.
//
// Thread-safety: a Membership is not thread-safe. Every public function, every Clock timer
// callback and every Transport reply callback must run on one executor (the simulator's event
// loop or the node's membership thread). Nothing here blocks.

#include <bitset>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>

#include <absl/container/flat_hash_map.h>
#include <absl/container/node_hash_map.h>
#include <vector>

#include "cluster/config.hpp"
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
  /// Called after every state change of any member (including self), on the executor.
  using ChangeFn = std::function<void(const MemberView& member, MemberState old_state)>;

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

  void set_on_change(ChangeFn fn) { on_change_ = std::move(fn); }

  [[nodiscard]] std::vector<MemberView> members() const;
  [[nodiscard]] const MemberMeta& self() const { return *self_meta_; }
  [[nodiscard]] uint64_t incarnation() const;
  [[nodiscard]] int local_health() const { return lhm_; }
  [[nodiscard]] const MembershipCounters& counters() const { return counters_; }
  [[nodiscard]] bool joined() const { return joined_; }
  /// Number of alive + suspect members including self (the `n` of the formulas).
  [[nodiscard]] size_t live_count() const { return live_.size(); }
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
  };
  struct Broadcast {
    Update update;
    int transmits = 0;
    uint64_t order = 0;
  };
  struct Probe {
    bool active = false;
    std::string target;
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
  void announce_self();
  void schedule_probe_tick();

  // Probing.
  void finish_probe();
  void on_direct_reply(uint64_t seq, const Message* reply);
  void start_indirect(uint64_t seq);
  Member* next_probe_target();

  // Incoming.
  bool ingest(const Message& msg);  // envelope checks + gossip; false = rejected
  bool valid_update(const Update& u) const;
  void handle_ping(const Message& msg, Responder& respond);
  void handle_ping_req(const Message& msg, Responder respond);
  void handle_push_pull(const Message& msg, Responder& respond);

  // State machine.
  void apply(const Update& u, bool from_push_pull, const std::string& sender);
  void apply_alive(const Update& u, bool spread);
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

  // Dissemination.
  void enqueue(Update u);
  void attach_gossip(Message& msg, const Update* priority, const Update* priority2 = nullptr);
  Message make_msg(MsgType type);
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
  ChangeFn on_change_;

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
