#include "cluster/sim_network.hpp"

#include <absl/container/flat_hash_map.h>

#include <cassert>

namespace mcpmesh::cluster {

namespace {
uint64_t link_key(uint32_t a, uint32_t b) { return (uint64_t{a} << 32) | b; }
}  // namespace

class SimNetwork::NodeClock final : public Clock {
 public:
  NodeClock(SimNetwork& net, uint32_t index) : net_(net), index_(index) {}
  TimePoint now() const override { return TimePoint(net_.now_); }
  TimerId schedule(Duration delay, std::function<void()> fn) override;
  void cancel(TimerId id) override;
  int64_t wall_ms() const override { return kEpochMs + net_.now_ / 1'000'000; }

 private:
  SimNetwork& net_;
  uint32_t index_;
};

class SimNetwork::NodeTransport final : public Transport {
 public:
  NodeTransport(SimNetwork& net, uint32_t index) : net_(net), index_(index) {}
  void request(const std::string& addr, Message msg, Duration timeout, ReplyFn fn) override;
  void send(const std::string& addr, Message msg, Duration timeout) override;
  void reset(const std::string& addr) override;

 private:
  SimNetwork& net_;
  uint32_t index_;
};

struct SimNetwork::Node {
  std::string id;
  MembershipConfig cfg;
  bool up = false;
  bool paused = false;
  uint64_t generation = 0;
  uint64_t transport_resets = 0;
  std::unique_ptr<NodeClock> clock;
  std::unique_ptr<NodeTransport> transport;
  std::unique_ptr<Membership> membership;
  absl::flat_hash_map<TimerId, std::function<void()>> timers;
  struct Pending {
    Transport::ReplyFn fn;
    TimerId timer;
  };
  absl::flat_hash_map<uint64_t, Pending> pending;
  std::vector<Event> deferred;  // events that arrived while paused
};

TimerId SimNetwork::NodeClock::schedule(Duration delay, std::function<void()> fn) {
  TimerId id = ++net_.next_timer_;
  net_.nodes_[index_]->timers.emplace(id, std::move(fn));
  net_.push(net_.now_ + std::max<int64_t>(0, delay.count()), index_, EventKind::kTimer, id);
  return id;
}

void SimNetwork::NodeClock::cancel(TimerId id) { net_.nodes_[index_]->timers.erase(id); }

void SimNetwork::NodeTransport::request(const std::string& addr, Message msg, Duration timeout,
                                        ReplyFn fn) {
  Node& self = *net_.nodes_[index_];
  uint64_t req = ++net_.next_req_;
  int to = net_.index_of(addr);
  // A channel in reconnect backoff fails the call at once instead of at its deadline.
  const bool fail_fast = to >= 0 && net_.fails_fast(index_, static_cast<uint32_t>(to));
  TimerId timer = self.clock->schedule(fail_fast ? Duration(0) : timeout, [this, req] {
    Node& n = *net_.nodes_[index_];
    auto it = n.pending.find(req);
    if (it == n.pending.end()) return;
    auto cb = std::move(it->second.fn);
    n.pending.erase(it);
    cb(nullptr);
  });
  self.pending.emplace(req, Node::Pending{std::move(fn), timer});
  if (to < 0 || fail_fast) return;  // unknown address: the request simply times out
  net_.transmit(index_, static_cast<uint32_t>(to), std::move(msg), req, EventKind::kDeliver);
}

void SimNetwork::NodeTransport::send(const std::string& addr, Message msg, Duration) {
  int to = net_.index_of(addr);
  if (to < 0 || net_.fails_fast(index_, static_cast<uint32_t>(to))) return;
  net_.transmit(index_, static_cast<uint32_t>(to), std::move(msg), 0, EventKind::kDeliver);
}

void SimNetwork::NodeTransport::reset(const std::string& addr) {
  net_.nodes_[index_]->transport_resets++;
  int to = net_.index_of(addr);
  if (to >= 0) net_.backoff_until_.erase(link_key(index_, static_cast<uint32_t>(to)));
}

bool SimNetwork::fails_fast(uint32_t from, uint32_t to) {
  if (backoff_.count() <= 0) return false;
  uint64_t key = link_key(from, to);
  if (!nodes_[to]->up) {
    backoff_until_[key] = now_ + backoff_.count();  // connection refused: back off
    return true;
  }
  auto it = backoff_until_.find(key);
  if (it == backoff_until_.end()) return false;
  if (now_ < it->second) return true;
  backoff_until_.erase(it);
  return false;
}

uint64_t SimNetwork::transport_resets(int i) const { return nodes_[i]->transport_resets; }

SimNetwork::SimNetwork(uint64_t seed) : rng_(seed), seed_(seed) {}

SimNetwork::~SimNetwork() {
  // Memberships cancel their timers through their clocks; destroy them first.
  for (auto& n : nodes_) n->membership.reset();
}

int SimNetwork::add_node(const std::string& id, const MembershipConfig& cfg) {
  auto n = std::make_unique<Node>();
  n->id = id;
  n->cfg = cfg;
  auto index = static_cast<uint32_t>(nodes_.size());
  n->clock = std::make_unique<NodeClock>(*this, index);
  n->transport = std::make_unique<NodeTransport>(*this, index);
  nodes_.push_back(std::move(n));
  by_id_[id] = static_cast<int>(index);
  group_.push_back(0);
  create_membership(static_cast<int>(index));
  return static_cast<int>(index);
}

void SimNetwork::create_membership(int i) {
  Node& n = *nodes_[i];
  MemberMeta meta;
  meta.node_id = n.id;
  meta.grpc_addr = n.id;
  meta.http_addr = n.id + ":http";
  meta.version = "sim";
  // Each life gets its own stream of randomness, derived only from the seed.
  uint64_t node_seed = seed_ * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(i) * 1000003ull +
                       n.generation * 7919ull;
  n.membership = std::make_unique<Membership>(n.cfg, meta, *n.clock, *n.transport, node_seed);
  n.membership->add_listener([this, i](const MemberView& v, MemberState old) {
    if (on_change_) on_change_(i, v, old);
  });
}

void SimNetwork::start(int i, const std::vector<std::string>& seeds) {
  Node& n = *nodes_[i];
  n.up = true;
  n.membership->start(seeds);
}

void SimNetwork::bootstrap_full_mesh() {
  std::vector<MemberMeta> metas;
  for (auto& n : nodes_) metas.push_back(n->membership->self());
  for (auto& n : nodes_) n->membership->seed_members(metas, n->membership->incarnation());
}

void SimNetwork::kill(int i) {
  Node& n = *nodes_[i];
  n.up = false;
  n.paused = false;
  for (const auto& e : n.deferred)
    if (e.kind != EventKind::kTimer) free_slots_.push_back(e.arg);
  n.deferred.clear();
  n.membership.reset();  // cancels its timers
  n.timers.clear();
  n.pending.clear();
}

void SimNetwork::pause(int i) { nodes_[i]->paused = true; }

void SimNetwork::resume(int i) {
  Node& n = *nodes_[i];
  if (!n.paused) return;
  n.paused = false;
  // Everything that piled up happens now, in its original order.
  for (auto& e : n.deferred) push(now_, e.node, e.kind, e.arg);
  n.deferred.clear();
}

void SimNetwork::restart(int i, const std::vector<std::string>& seeds) {
  kill(i);
  nodes_[i]->generation++;
  // A new process has no channels yet, so none in backoff.
  for (auto it = backoff_until_.begin(); it != backoff_until_.end();)
    it = (it->first >> 32) == static_cast<uint64_t>(i) ? backoff_until_.erase(it) : std::next(it);
  create_membership(i);
  start(i, seeds);
}

void SimNetwork::leave(int i) {
  if (nodes_[i]->membership) nodes_[i]->membership->leave();
}

void SimNetwork::set_link_loss(int from, int to, double p) {
  link_loss_[link_key(static_cast<uint32_t>(from), static_cast<uint32_t>(to))] = p;
}

void SimNetwork::set_link_delay(int from, int to, Duration lo, Duration hi) {
  link_delay_[link_key(static_cast<uint32_t>(from), static_cast<uint32_t>(to))] = {lo, hi};
}

void SimNetwork::partition(const std::vector<int>& a, const std::vector<int>& b, bool symmetric) {
  for (int i : a) group_[i] = 1;
  for (int i : b) group_[i] = 2;
  blocked_[1][2] = true;
  if (symmetric) blocked_[2][1] = true;
}

void SimNetwork::heal() {
  std::fill(group_.begin(), group_.end(), 0);
  for (auto& row : blocked_)
    for (bool& b : row) b = false;
}

bool SimNetwork::is_up(int i) const { return nodes_[i]->up; }
bool SimNetwork::is_paused(int i) const { return nodes_[i]->paused; }
Membership* SimNetwork::membership(int i) { return nodes_[i]->membership.get(); }
const std::string& SimNetwork::id(int i) const { return nodes_[i]->id; }

int SimNetwork::index_of(const std::string& id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? -1 : it->second;
}

void SimNetwork::push(int64_t time, uint32_t node, EventKind kind, uint64_t arg) {
  queue_.push(Event{time, ++event_seq_, node, kind, arg});
}

uint64_t SimNetwork::alloc_slot() {
  if (!free_slots_.empty()) {
    uint64_t s = free_slots_.back();
    free_slots_.pop_back();
    return s;
  }
  slots_.emplace_back();
  return slots_.size() - 1;
}

bool SimNetwork::dropped(uint32_t from, uint32_t to) {
  if (blocked_[group_[from]][group_[to]]) return true;
  double p = loss_;
  if (!link_loss_.empty()) {
    auto it = link_loss_.find(link_key(from, to));
    if (it != link_loss_.end()) p = it->second;
  }
  if (p <= 0.0) return false;
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng_) < p;
}

Duration SimNetwork::delay(uint32_t from, uint32_t to) {
  Duration lo = delay_lo_, hi = delay_hi_;
  if (!link_delay_.empty()) {
    auto it = link_delay_.find(link_key(from, to));
    if (it != link_delay_.end()) std::tie(lo, hi) = it->second;
  }
  if (hi <= lo) return lo;
  return Duration(std::uniform_int_distribution<int64_t>(lo.count(), hi.count())(rng_));
}

void SimNetwork::transmit(uint32_t from, uint32_t to, Message msg, uint64_t req_id,
                          EventKind kind) {
  messages_++;
  if (dropped(from, to)) return;
  uint64_t slot = alloc_slot();
  slots_[slot].msg = std::move(msg);
  slots_[slot].from = from;
  slots_[slot].req_id = req_id;
  push(now_ + delay(from, to).count(), to, kind, slot);
}

void SimNetwork::dispatch(const Event& e) {
  Node& n = *nodes_[e.node];
  if (n.paused && n.up) {
    n.deferred.push_back(e);
    return;
  }
  switch (e.kind) {
    case EventKind::kTimer: {
      auto it = n.timers.find(e.arg);
      if (it == n.timers.end()) return;
      auto fn = std::move(it->second);
      n.timers.erase(it);
      fn();
      return;
    }
    case EventKind::kDeliver: {
      InFlight f = std::move(slots_[e.arg]);
      free_slots_.push_back(e.arg);
      if (!n.up || !n.membership) return;
      Responder respond;
      if (f.req_id) {
        uint32_t to = e.node, back = f.from;
        uint64_t req = f.req_id;
        respond = [this, to, back, req](Message reply) {
          transmit(to, back, std::move(reply), req, EventKind::kReply);
        };
      }
      n.membership->handle(std::move(f.msg), std::move(respond));
      return;
    }
    case EventKind::kReply: {
      InFlight f = std::move(slots_[e.arg]);
      free_slots_.push_back(e.arg);
      if (!n.up) return;
      auto it = n.pending.find(f.req_id);
      if (it == n.pending.end()) return;  // timed out already
      auto cb = std::move(it->second.fn);
      n.timers.erase(it->second.timer);
      n.pending.erase(it);
      cb(&f.msg);
      return;
    }
  }
}

void SimNetwork::run_until(TimePoint t) {
  while (!queue_.empty() && queue_.top().time <= t.count()) {
    Event e = queue_.top();
    queue_.pop();
    now_ = e.time;
    events_++;
    dispatch(e);
  }
  now_ = std::max(now_, t.count());
}

void SimNetwork::inject(int to, Message msg, bool expect_reply) {
  Node& n = *nodes_[to];
  if (!n.membership) return;
  Responder respond;
  if (expect_reply) respond = [](Message) {};
  n.membership->handle(std::move(msg), std::move(respond));
}

}  // namespace mcpmesh::cluster
