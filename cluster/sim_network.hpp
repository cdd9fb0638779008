#pragma once
// In-process simulated network with virtual time for the membership protocol. Deterministic
// for a seed: one event queue ordered by (time, sequence), no threads, no wall clock.
// Supports per-link loss and delay, symmetric and asymmetric partitions, pausing, killing and
// restarting nodes, and (optionally) the reconnect backoff of a real client channel.
//
// Thread-safety: single-threaded; everything (including Membership callbacks) runs inside
// run_until()/run_for() on the caller's thread.

#include <cstdint>
#include <functional>
#include <memory>
#include <queue>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "cluster/config.hpp"
#include "cluster/env.hpp"
#include "cluster/membership.hpp"

namespace mcpmesh::cluster {

class SimNetwork {
 public:
  /// Virtual wall-clock at time zero (so incarnations look like real ones).
  static constexpr int64_t kEpochMs = 1'700'000'000'000;

  explicit SimNetwork(uint64_t seed);
  ~SimNetwork();
  SimNetwork(const SimNetwork&) = delete;
  SimNetwork& operator=(const SimNetwork&) = delete;

  /// Adds a node (address == id) and creates its Membership; not started yet.
  int add_node(const std::string& id, const MembershipConfig& cfg);
  /// Starts node `i`, joining through `seeds` (node ids).
  void start(int i, const std::vector<std::string>& seeds);
  /// Every node learns every other as alive without messages (fast bootstrap for big runs).
  void bootstrap_full_mesh();

  void kill(int i);    // process gone: messages to it vanish, timers die
  void pause(int i);   // SIGSTOP: timers and deliveries wait until resume
  void resume(int i);  // SIGCONT
  void restart(int i, const std::vector<std::string>& seeds);  // new process, same address
  void leave(int i);  // graceful leave, the process keeps answering

  void set_loss(double p) { loss_ = p; }
  void set_link_loss(int from, int to, double p);
  void set_delay(Duration lo, Duration hi) { delay_lo_ = lo, delay_hi_ = hi; }
  void set_link_delay(int from, int to, Duration lo, Duration hi);
  /// Models a gRPC channel's reconnect backoff (off, 0, by default): a message from a to b
  /// while b is down fails at once and leaves the a -> b link failing fast for `d` (renewed by
  /// every failure), even once b is back, until a's transport is reset() for b.
  void set_reconnect_backoff(Duration d) { backoff_ = d; }
  /// Cuts a from b; symmetric cuts both directions, asymmetric only a -> b.
  void partition(const std::vector<int>& a, const std::vector<int>& b, bool symmetric = true);
  void heal();

  void run_until(TimePoint t);
  void run_for(Duration d) { run_until(TimePoint(now_) + d); }
  [[nodiscard]] TimePoint now() const { return TimePoint(now_); }

  [[nodiscard]] int size() const { return static_cast<int>(nodes_.size()); }
  [[nodiscard]] bool is_up(int i) const;
  [[nodiscard]] bool is_paused(int i) const;
  [[nodiscard]] Membership* membership(int i);
  [[nodiscard]] const std::string& id(int i) const;
  [[nodiscard]] int index_of(const std::string& id) const;
  [[nodiscard]] uint64_t messages() const { return messages_; }
  [[nodiscard]] uint64_t events() const { return events_; }
  /// Transport::reset calls made by node `i` (over all its lives).
  [[nodiscard]] uint64_t transport_resets(int i) const;

  /// Observer for every node's membership changes: (observer index, member, old state).
  using ChangeFn = std::function<void(int observer, const MemberView&, MemberState)>;
  void set_on_change(ChangeFn fn) { on_change_ = std::move(fn); }

  /// Injects a raw message into node `to` as if it came from the network (bad-input tests).
  /// Returns the reply if the message was a request and the node answered synchronously.
  void inject(int to, Message msg, bool expect_reply);

 private:
  struct Node;
  class NodeClock;
  class NodeTransport;
  enum class EventKind : uint8_t { kTimer, kDeliver, kReply };
  struct Event {
    int64_t time;
    uint64_t seq;
    uint32_t node;
    EventKind kind;
    uint64_t arg;  // timer id or in-flight slot
    bool operator>(const Event& o) const { return time != o.time ? time > o.time : seq > o.seq; }
  };
  struct InFlight {
    Message msg;
    uint32_t from = 0;
    uint64_t req_id = 0;  // 0 = one-way
  };

  void push(int64_t time, uint32_t node, EventKind kind, uint64_t arg);
  void dispatch(const Event& e);
  bool dropped(uint32_t from, uint32_t to);
  Duration delay(uint32_t from, uint32_t to);
  void transmit(uint32_t from, uint32_t to, Message msg, uint64_t req_id, EventKind kind);
  uint64_t alloc_slot();
  void create_membership(int i);
  bool fails_fast(uint32_t from, uint32_t to);

  std::mt19937_64 rng_;
  uint64_t seed_;
  int64_t now_ = 0;
  uint64_t event_seq_ = 0;
  uint64_t next_timer_ = 0;
  uint64_t next_req_ = 0;
  uint64_t messages_ = 0;
  uint64_t events_ = 0;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> queue_;
  std::vector<InFlight> slots_;
  std::vector<uint64_t> free_slots_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::unordered_map<std::string, int> by_id_;

  double loss_ = 0.0;
  Duration delay_lo_ = std::chrono::microseconds(300);
  Duration delay_hi_ = std::chrono::microseconds(1500);
  std::unordered_map<uint64_t, double> link_loss_;
  std::unordered_map<uint64_t, std::pair<Duration, Duration>> link_delay_;
  Duration backoff_{0};
  std::unordered_map<uint64_t, int64_t> backoff_until_;  // link -> virtual ns
  std::vector<uint8_t> group_;
  bool blocked_[4][4] = {};
  ChangeFn on_change_;
};

}  // namespace mcpmesh::cluster
