#include "cluster/membership.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cassert>
#include <unordered_set>

namespace mcpmesh::cluster {

namespace {
enum TimerSlot : size_t {
  kProbeTimer,
  kGossipTimer,
  kPushPullTimer,
  kReconnectTimer,
  kJoinTimer,
  kTimerSlots
};

bool is_live(MemberState s) { return s == MemberState::kAlive || s == MemberState::kSuspect; }
}  // namespace

Membership::Membership(MembershipConfig cfg, MemberMeta self, Clock& clock, Transport& transport,
                       uint64_t rng_seed)
    : cfg_(std::move(cfg)),
      self_meta_(std::make_shared<const MemberMeta>(std::move(self))),
      clock_(clock),
      transport_(transport),
      rng_(rng_seed),
      timers_(kTimerSlots, 0) {
  // The boot epoch doubles as the first incarnation: a restarted node starts above anything
  // its previous life could have reached (one refutation per millisecond at most).
  boot_epoch_ = static_cast<uint64_t>(std::max<int64_t>(1, clock_.wall_ms()));
  Member& m = members_[self_meta_->node_id];
  m.id = self_meta_->node_id;
  m.state = MemberState::kAlive;
  m.incarnation = boot_epoch_;
  m.meta = self_meta_;
  m.last_change = clock_.now();
  m.last_change_wall_ms = clock_.wall_ms();
  self_ = &m;
  live_add(m);
}

Membership::~Membership() { stop(); }

void Membership::stop() {
  running_ = false;
  for (auto& t : timers_) {
    if (t) clock_.cancel(t);
    t = 0;
  }
  for (auto& [id, m] : members_) {
    if (m.suspicion) {
      clock_.cancel(m.suspicion->timer);
      m.suspicion.reset();
    }
  }
}

void Membership::set_self_addr(const std::string& addr) {
  MemberMeta meta = *self_meta_;
  meta.grpc_addr = addr;
  self_meta_ = std::make_shared<const MemberMeta>(std::move(meta));
  self_->meta = self_meta_;
}

void Membership::update_app_meta(std::string app) {
  if (app.size() > cfg_.max_app_meta_bytes) {
    spdlog::error("{}: application metadata of {} bytes refused (max_app_meta_bytes {})", self_->id,
                  app.size(), cfg_.max_app_meta_bytes);
    return;
  }
  MemberMeta meta = *self_meta_;
  meta.app = std::move(app);
  self_meta_ = std::make_shared<const MemberMeta>(std::move(meta));
  self_->meta = self_meta_;
  if (leaving_) return;  // `left` is final: no new alive
  // Peers replace a member's metadata only with a newer incarnation; no health penalty, since
  // nobody doubted us.
  self_->incarnation++;
  enqueue(update_of(*self_));
  notify(*self_, self_->state);
}

Membership::ListenerId Membership::add_listener(ChangeFn fn) {
  ListenerId id = ++next_listener_;
  listeners_.push_back(Listener{id, std::make_shared<const ChangeFn>(std::move(fn))});
  return id;
}

void Membership::remove_listener(ListenerId id) {
  for (auto& l : listeners_)
    if (l.id == id) l.fn.reset();
  // Inside a notification the vector is being walked: it is compacted when that ends.
  if (notifying_ == 0) std::erase_if(listeners_, [](const Listener& l) { return !l.fn; });
}

uint64_t Membership::incarnation() const { return self_->incarnation; }

const MemberState* Membership::state_of(const std::string& node_id) const {
  auto it = members_.find(node_id);
  return it == members_.end() ? nullptr : &it->second.state;
}

void Membership::seed_members(const std::vector<MemberMeta>& metas, uint64_t incarnation) {
  for (const auto& meta : metas) {
    if (meta.node_id == self_->id || members_.count(meta.node_id)) continue;
    Member& m = members_[meta.node_id];
    m.id = meta.node_id;
    m.state = MemberState::kAlive;
    m.incarnation = incarnation;
    m.meta = std::make_shared<const MemberMeta>(meta);
    m.last_change = clock_.now();
    m.last_change_wall_ms = clock_.wall_ms();
    live_add(m);
    probe_order_.push_back(m.id);
  }
  std::shuffle(probe_order_.begin(), probe_order_.end(), rng_);
  probe_pos_ = 0;
  joined_ = joined_ || live_.size() > 1;
}

void Membership::start(std::vector<std::string> seeds) {
  running_ = true;
  seeds_.clear();
  for (auto& s : seeds)
    if (s != self_meta_->grpc_addr) seeds_.push_back(std::move(s));
  enqueue(update_of(*self_));
  // Desynchronise nodes: the first tick of each loop lands at a random phase.
  std::uniform_int_distribution<int64_t> phase(0, cfg_.probe_interval.count());
  timers_[kProbeTimer] = clock_.schedule(Duration(phase(rng_)), [this] { probe_tick(); });
  std::uniform_int_distribution<int64_t> gphase(0, cfg_.gossip_interval.count());
  timers_[kGossipTimer] = clock_.schedule(Duration(gphase(rng_)), [this] { gossip_tick(); });
  std::uniform_int_distribution<int64_t> pphase(cfg_.push_pull_interval.count() / 2,
                                                cfg_.push_pull_interval.count());
  timers_[kPushPullTimer] = clock_.schedule(Duration(pphase(rng_)), [this] { push_pull_tick(); });
  std::uniform_int_distribution<int64_t> rphase(0, cfg_.reconnect_interval.count());
  timers_[kReconnectTimer] = clock_.schedule(Duration(rphase(rng_)), [this] { reconnect_tick(); });
  if (!seeds_.empty() && !joined_) {
    join_backoff_ = cfg_.join_retry_min;
    timers_[kJoinTimer] = clock_.schedule(Duration(0), [this] { join_attempt(0); });
  } else {
    joined_ = true;
  }
}

// ---------------------------------------------------------------------------------------------
// Join, leave.

void Membership::join_attempt(size_t seed_index) {
  timers_[kJoinTimer] = 0;
  if (!running_ || joined_ || leaving_) return;
  if (seed_index >= seeds_.size()) {
    // Every seed failed this round: back off (capped) and start over.
    timers_[kJoinTimer] = clock_.schedule(join_backoff_, [this] { join_attempt(0); });
    join_backoff_ = std::min(cfg_.join_retry_max, join_backoff_ * 2);
    return;
  }
  Message msg = make_push_pull(/*join=*/true);
  std::weak_ptr<bool> token = alive_token_;
  send_request(seeds_[seed_index], std::move(msg), cfg_.join_timeout,
               [this, token, seed_index](const Message* reply) {
                 if (token.expired() || !running_) return;
                 if (reply && reply->type == MsgType::kPushPull) {
                   joined_ = true;
                   counters_.push_pulls++;
                   if (ingest_capped_ > 0) pull_again_soon();
                   std::vector<std::string> unverified = unverified_addresses(*reply);
                   announce_self(unverified);
                   // Once more a little later: a lost announcement would otherwise leave
                   // that member to the epidemic's tail.
                   clock_.schedule(cfg_.join_timeout, [this, token, unverified] {
                     if (!token.expired() && running_ && !leaving_) announce_self(unverified);
                   });
                   spdlog::debug("{} joined through {}", self_->id, seeds_[seed_index]);
                   return;
                 }
                 if (!joined_) join_attempt(seed_index + 1);
               });
}

std::vector<std::string> Membership::unverified_addresses(const Message& reply) {
  // The seed's answer names members we cannot count yet (unverified, or beyond what one peer
  // may introduce at once); they still hear our announcement, which carries nothing but our
  // own `alive`, creates no state here, and makes us first-hand news for them.
  std::vector<std::string> out;
  for (const auto& u : reply.updates)
    if (u.state == MemberState::kAlive && u.meta && u.node_id != self_->id &&
        !members_.count(u.node_id) && u.meta->grpc_addr != self_meta_->grpc_addr)
      out.push_back(u.meta->grpc_addr);
  std::shuffle(out.begin(), out.end(), rng_);
  if (out.size() > cfg_.max_join_announce) out.resize(cfg_.max_join_announce);
  return out;
}

void Membership::announce_self(const std::vector<std::string>& also) {
  // Epidemic dissemination reaches each member with probability ~1 - e^-retransmits; a join
  // is rare, so also tell (up to) every member directly and the tail closes at once.
  Update me = update_of(*self_);
  std::vector<std::string> targets;
  for (Member* m : live_)
    if (m != self_ && m->meta) targets.push_back(m->meta->grpc_addr);
  if (!also.empty()) {
    std::unordered_set<std::string> known(targets.begin(), targets.end());
    for (const auto& a : also)
      if (known.insert(a).second) targets.push_back(a);
  }
  std::shuffle(targets.begin(), targets.end(), rng_);
  if (targets.size() > cfg_.max_join_announce) targets.resize(cfg_.max_join_announce);
  for (const auto& addr : targets) {
    Message msg = make_msg(MsgType::kGossip);
    msg.updates.push_back(me);
    send_oneway(addr, std::move(msg));
  }
}

void Membership::pull_again_soon() {
  // The last exchange named more unknown members than one peer may introduce at once: fetch the
  // rest once this batch is verified, not a whole push-pull period later (a joiner of a big
  // cluster learns it ~max_unverified_per_peer members per probe interval).
  if (!running_) return;
  if (timers_[kPushPullTimer]) clock_.cancel(timers_[kPushPullTimer]);
  timers_[kPushPullTimer] = clock_.schedule(cfg_.probe_interval, [this] { push_pull_tick(); });
}

void Membership::leave() {
  if (leaving_) return;
  leaving_ = true;
  uint64_t old_inc = self_->incarnation;
  set_state(*self_, MemberState::kLeft, old_inc + 1);
  Update u = update_of(*self_);
  enqueue(u);
  // Tell everyone directly so `left` shows at once; gossip covers losses.
  std::vector<Member*> targets(live_.begin(), live_.end());
  for (Member* m : targets) {
    if (m == self_ || !m->meta) continue;
    Message msg = make_msg(MsgType::kLeave);
    msg.updates.push_back(u);
    attach_gossip(msg, nullptr);
    send_oneway(m->meta->grpc_addr, std::move(msg));
  }
  if (timers_[kProbeTimer]) clock_.cancel(timers_[kProbeTimer]);
  timers_[kProbeTimer] = 0;
  if (timers_[kJoinTimer]) clock_.cancel(timers_[kJoinTimer]);
  timers_[kJoinTimer] = 0;
}

// ---------------------------------------------------------------------------------------------
// Probing.

void Membership::schedule_probe_tick() {
  timers_[kProbeTimer] = clock_.schedule(scaled(cfg_.probe_interval), [this] { probe_tick(); });
}

void Membership::probe_tick() {
  timers_[kProbeTimer] = 0;
  if (!running_ || leaving_) return;
  if (probe_.active) finish_probe();
  schedule_probe_tick();
  Member* target = next_probe_target();
  if (!target) return;
  probe_.active = true;
  probe_.target = target->id;
  probe_.incarnation = target->incarnation;
  probe_.seq = ++probe_seq_;
  probe_.acked = false;
  probe_.nacks_expected = 0;
  probe_.nacks = 0;
  counters_.probes++;

  Message msg = make_msg(MsgType::kPing);
  msg.probe_seq = probe_.seq;
  msg.target_id = target->id;
  // Buddy system: a suspect target hears about its suspicion first, so it can refute.
  Update buddy;
  bool has_buddy = target->state == MemberState::kSuspect;
  if (has_buddy) {
    buddy = update_of(*target);
    buddy.from = self_->id;
  }
  attach_gossip(msg, has_buddy ? &buddy : nullptr);
  uint64_t seq = probe_.seq;
  std::weak_ptr<bool> token = alive_token_;
  send_request(target->meta->grpc_addr, std::move(msg), scaled(cfg_.probe_timeout),
               [this, token, seq](const Message* reply) {
                 if (!token.expired()) on_direct_reply(seq, reply);
               });
}

void Membership::on_direct_reply(uint64_t seq, const Message* reply) {
  if (!probe_.active || probe_.seq != seq) return;
  if (reply && reply->type == MsgType::kAck && reply->ack) {
    probe_.acked = true;
    if (reply->nack) introduce_to(probe_.target);
    return;
  }
  start_indirect(seq);
}

void Membership::introduce_to(const std::string& id) {
  // The target answered but does not know us (it missed our join): tell it directly.
  auto it = members_.find(id);
  if (it == members_.end() || !it->second.meta || leaving_) return;
  Message msg = make_msg(MsgType::kGossip);
  Update me = update_of(*self_);
  attach_gossip(msg, &me);
  send_oneway(it->second.meta->grpc_addr, std::move(msg));
}

void Membership::pull_from_unknown(const std::string& addr) {
  // A member we never heard of talks to us: we missed its join. Exchange state with it, at
  // most once per half probe interval so that made-up senders cannot make us flood anyone.
  TimePoint now = clock_.now();
  if (now < next_unknown_pull_) return;
  next_unknown_pull_ = now + cfg_.probe_interval / 2;
  Message msg = make_push_pull(/*join=*/false);
  send_request(addr, std::move(msg), cfg_.bulk_timeout, [](const Message*) {});
}

void Membership::start_indirect(uint64_t seq) {
  auto it = members_.find(probe_.target);
  if (it == members_.end() || !it->second.meta) return;
  const Member& target = it->second;
  // Helpers get the rest of the probe interval.
  Duration budget = scaled(cfg_.probe_interval) - scaled(cfg_.probe_timeout);
  budget = std::max(budget, cfg_.probe_timeout);
  std::vector<Member*> helpers;
  for (int tries = 0;
       tries < cfg_.indirect_checks * 4 && static_cast<int>(helpers.size()) < cfg_.indirect_checks;
       ++tries) {
    Member* h = random_live_other(target.id);
    if (!h || std::find(helpers.begin(), helpers.end(), h) != helpers.end()) continue;
    helpers.push_back(h);
  }
  std::weak_ptr<bool> token = alive_token_;
  // Alongside the helpers, one more direct ping over the rest of the interval: a single lost
  // packet should not make a suspicion (memberlist uses a TCP ping for the same purpose).
  {
    Message retry = make_msg(MsgType::kPing);
    retry.probe_seq = seq;
    retry.target_id = target.id;
    attach_gossip(retry, nullptr);
    send_request(target.meta->grpc_addr, std::move(retry), budget,
                 [this, token, seq](const Message* reply) {
                   if (token.expired() || !probe_.active || probe_.seq != seq || !reply) return;
                   if (reply->type == MsgType::kAck && reply->ack) probe_.acked = true;
                 });
  }
  for (Member* h : helpers) {
    Message msg = make_msg(MsgType::kPingReq);
    msg.probe_seq = seq;
    msg.target_id = target.id;
    msg.target_addr = target.meta->grpc_addr;
    msg.timeout_ms = static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(budget).count());
    attach_gossip(msg, nullptr);
    probe_.nacks_expected++;
    counters_.indirect_probes++;
    send_request(h->meta->grpc_addr, std::move(msg), budget,
                 [this, token, seq](const Message* reply) {
                   if (token.expired() || !probe_.active || probe_.seq != seq || !reply) return;
                   if (reply->type != MsgType::kPingReqReply) return;
                   if (reply->ack) probe_.acked = true;
                   if (reply->nack) {
                     probe_.nacks++;
                     counters_.nacks_received++;
                   }
                 });
  }
}

void Membership::finish_probe() {
  probe_.active = false;
  if (probe_.acked) {
    health_delta(-1);
    return;
  }
  counters_.probe_failures++;
  // Lifeguard: a missing nack means our own links or CPU may be the problem.
  int missed = probe_.nacks_expected - probe_.nacks;
  health_delta(probe_.nacks_expected == 0 ? 1 : std::max(0, missed));
  auto it = members_.find(probe_.target);
  if (it == members_.end() || !is_live(it->second.state)) return;
  // A probe that began before the target refuted, or before it died and came back as a new
  // process (a probe of a suspect can outlast its death and restart), says nothing about the
  // newer incarnation: suspecting that would be a false alarm about a fresh life.
  if (it->second.incarnation != probe_.incarnation) return;
  suspect_locally(it->second);
}

Membership::Member* Membership::next_probe_target() {
  for (int pass = 0; pass < 2; ++pass) {
    while (probe_pos_ < probe_order_.size()) {
      auto it = members_.find(probe_order_[probe_pos_++]);
      if (it != members_.end() && &it->second != self_ && is_live(it->second.state) &&
          it->second.meta)
        return &it->second;
    }
    // Round finished: a fresh random permutation of the live members.
    probe_order_.clear();
    for (Member* m : live_)
      if (m != self_) probe_order_.push_back(m->id);
    std::shuffle(probe_order_.begin(), probe_order_.end(), rng_);
    probe_pos_ = 0;
  }
  return nullptr;
}

void Membership::health_delta(int delta) {
  lhm_ = std::clamp(lhm_ + delta, 0, cfg_.max_local_health - 1);
}

// ---------------------------------------------------------------------------------------------
// Periodic dissemination.

void Membership::gossip_tick() {
  timers_[kGossipTimer] = clock_.schedule(cfg_.gossip_interval, [this] { gossip_tick(); });
  // With a delegate there may be application broadcasts even when our own queue is empty; it
  // is asked per message below, and an empty message is not sent.
  if (!running_ || (queue_.empty() && !delegate_)) return;
  std::vector<Member*> targets;
  for (int tries = 0;
       tries < cfg_.gossip_fanout * 3 && static_cast<int>(targets.size()) < cfg_.gossip_fanout;
       ++tries) {
    Member* t = random_live_other("");
    if (!t || std::find(targets.begin(), targets.end(), t) != targets.end()) continue;
    targets.push_back(t);
  }
  for (Member* t : targets) {
    if (queue_.empty() && !delegate_) break;
    Message msg = make_msg(MsgType::kGossip);
    attach_gossip(msg, nullptr);
    if (msg.updates.empty() && msg.app_broadcasts.empty()) break;
    send_oneway(t->meta->grpc_addr, std::move(msg));
  }
}

void Membership::push_pull_tick() {
  timers_[kPushPullTimer] =
      clock_.schedule(cfg_.push_pull_period(live_.size()), [this] { push_pull_tick(); });
  if (!running_) return;
  Member* peer = random_live_other("");
  if (!peer) return;
  Message msg = make_push_pull(/*join=*/false);
  std::weak_ptr<bool> token = alive_token_;
  send_request(peer->meta->grpc_addr, std::move(msg), cfg_.bulk_timeout,
               [this, token](const Message* reply) {
                 if (token.expired() || !reply) return;
                 counters_.push_pulls++;
                 if (ingest_capped_ > 0) pull_again_soon();
               });
}

void Membership::exchange_state(const std::string& node_id,
                                std::function<void(bool alive_there)> done) {
  auto it = members_.find(node_id);
  if (!running_ || it == members_.end() || &it->second == self_ || !it->second.meta ||
      !is_live(it->second.state)) {
    done(false);
    return;
  }
  std::weak_ptr<bool> token = alive_token_;
  send_request(it->second.meta->grpc_addr, make_push_pull(/*join=*/false), cfg_.bulk_timeout,
               [this, token, done = std::move(done)](const Message* reply) {
                 if (token.expired()) return;
                 if (!reply) {
                   done(false);
                   return;
                 }
                 counters_.push_pulls++;
                 bool alive = false;
                 for (const auto& u : reply->updates) {
                   if (u.node_id == self_->id) alive = u.state == MemberState::kAlive;
                 }
                 done(alive);
               });
}

void Membership::ping_members(const std::vector<std::string>& ids,
                              std::function<void(std::vector<std::string> answered)> done) {
  struct Round {
    std::vector<std::string> answered;
    std::size_t waiting = 0;
    std::function<void(std::vector<std::string>)> done;
  };
  auto round = std::make_shared<Round>();
  round->done = std::move(done);
  std::weak_ptr<bool> token = alive_token_;
  for (const auto& id : ids) {
    auto it = members_.find(id);
    if (!running_ || it == members_.end() || &it->second == self_ || !it->second.meta) continue;
    Message ping = make_msg(MsgType::kPing);
    ping.probe_seq = ++probe_seq_;
    ping.target_id = id;
    ++round->waiting;
    send_request(it->second.meta->grpc_addr, std::move(ping), scaled(cfg_.probe_timeout),
                 [token, round, id](const Message* reply) {
                   if (token.expired()) return;
                   if (reply && reply->type == MsgType::kAck && reply->ack) {
                     round->answered.push_back(id);
                   }
                   if (--round->waiting == 0) round->done(std::move(round->answered));
                 });
  }
  if (round->waiting == 0) round->done({});
}

void Membership::reconnect_tick() {
  timers_[kReconnectTimer] = clock_.schedule(cfg_.reconnect_interval, [this] { reconnect_tick(); });
  if (!running_) return;
  TimePoint now = clock_.now();
  // Forget members that left long enough ago: they are never probed, so nothing else would.
  for (auto it = members_.begin(); it != members_.end();) {
    const Member& m = it->second;
    if (m.state == MemberState::kLeft && &m != self_ &&
        now - m.last_change > cfg_.dead_reap_after) {
      members_.erase(it++);
    } else {
      ++it;
    }
  }
  if (dead_.empty()) return;
  // Forget members dead for long enough.
  for (size_t i = 0; i < dead_.size();) {
    Member* m = dead_[i];
    if (now - m->last_change > cfg_.dead_reap_after) {
      std::string id = m->id;
      dead_remove(*m);
      members_.erase(id);
      continue;
    }
    ++i;
  }
  if (dead_.empty()) return;
  std::uniform_int_distribution<size_t> pick(0, dead_.size() - 1);
  Member* m = dead_[pick(rng_)];
  if (!m->meta || now - m->last_change > cfg_.reconnect_window) return;
  // A dead member that answers is partitioned or paused, not dead: exchange state so both
  // sides refute what they believe about each other.
  Message ping = make_msg(MsgType::kPing);
  ping.probe_seq = ++probe_seq_;
  ping.target_id = m->id;
  std::string addr = m->meta->grpc_addr;
  std::weak_ptr<bool> token = alive_token_;
  send_request(addr, std::move(ping), scaled(cfg_.probe_timeout),
               [this, token, addr](const Message* reply) {
                 if (token.expired() || !running_ || !reply || !reply->ack) return;
                 Message msg = make_push_pull(/*join=*/false);
                 send_request(addr, std::move(msg), cfg_.bulk_timeout, [](const Message*) {});
               });
}

// ---------------------------------------------------------------------------------------------
// Incoming messages.

bool Membership::valid_update(const Update& u) const {
  if (u.node_id.empty() || u.node_id.size() > cfg_.max_id_bytes) return false;
  if (u.from.size() > cfg_.max_id_bytes) return false;
  if (static_cast<uint8_t>(u.state) > static_cast<uint8_t>(MemberState::kLeft)) return false;
  if (u.incarnation == 0) return false;
  int64_t horizon = std::max<int64_t>(clock_.wall_ms(), 0) + cfg_.max_incarnation_ahead_ms;
  if (u.incarnation > static_cast<uint64_t>(horizon)) return false;
  if (u.state == MemberState::kAlive) {
    if (!u.meta || u.meta->node_id != u.node_id || u.meta->grpc_addr.empty()) return false;
  }
  if (u.meta && u.meta->app.size() > cfg_.max_app_meta_bytes) return false;
  return true;
}

bool Membership::valid_app(const Message& msg) const {
  if (msg.app_broadcasts.size() > cfg_.max_app_broadcasts_per_message) return false;
  size_t bytes = 0;
  for (const auto& b : msg.app_broadcasts) bytes += b.size();
  if (bytes > cfg_.max_app_broadcast_bytes) return false;
  return msg.app_state.size() <= cfg_.max_app_state_bytes;
}

bool Membership::accept_sequence(Member& m, const Message& msg) {
  const TimePoint now = clock_.now();
  if (msg.boot_epoch < m.boot_epoch) {
    // An older life: normally a replay. But a stored epoch can itself be forged (a little ahead
    // of the real one, within max_clock_skew), and a member whose clock stepped back restarts
    // below it: once the stored epoch has gone unheard for a while, the lower one wins.
    if (now - m.epoch_heard < cfg_.stale_epoch_after) return false;
    counters_.epoch_resets++;
    m.boot_epoch = msg.boot_epoch;
    m.max_seq = 0;
    m.seen.reset();
    reset_transport(m);
  } else if (msg.boot_epoch > m.boot_epoch) {
    // A new life of a member we had heard from: a restart.
    const bool restarted = m.boot_epoch != 0;
    m.boot_epoch = msg.boot_epoch;
    m.max_seq = 0;
    m.seen.reset();
    if (restarted) reset_transport(m);
  }
  // (boot_epoch, seq) must be new; a sliding window tolerates reordering.
  constexpr uint64_t kWindow = 256;
  if (msg.seq > m.max_seq) {
    uint64_t shift = msg.seq - m.max_seq;
    m.seen = shift >= kWindow ? std::bitset<256>() : (m.seen << shift);
    m.seen.set(0);
    m.max_seq = msg.seq;
  } else {
    uint64_t back = m.max_seq - msg.seq;
    if (back >= kWindow || m.seen.test(back)) return false;
    m.seen.set(back);
  }
  m.epoch_heard = now;
  return true;
}

bool Membership::ingest(const Message& msg) {
  counters_.msgs_received++;
  ingest_capped_ = 0;
  if (msg.cluster != cfg_.cluster_name) {
    counters_.rejected_cluster++;
    return false;
  }
  if (msg.sender_id.empty() || msg.sender_id.size() > cfg_.max_id_bytes || msg.boot_epoch == 0 ||
      msg.seq == 0) {
    counters_.rejected_malformed++;
    return false;
  }
  // A boot epoch is a wall-clock start time: one far ahead of ours is forged (or a broken
  // clock), and accepted it would outrank every real message of that member.
  int64_t skew_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(cfg_.max_clock_skew).count();
  if (msg.boot_epoch > static_cast<uint64_t>(std::max<int64_t>(clock_.wall_ms(), 0) + skew_ms)) {
    counters_.rejected_malformed++;
    return false;
  }
  size_t limit =
      msg.type == MsgType::kPushPull ? cfg_.max_state_members : cfg_.max_updates_per_message;
  if (msg.updates.size() > limit || !valid_app(msg)) {
    counters_.rejected_malformed++;
    return false;
  }
  for (const auto& u : msg.updates) {
    if (!valid_update(u)) {
      counters_.rejected_malformed++;
      return false;
    }
  }
  if (msg.sender_id == self_->id) {
    // Only we speak for ourselves; an echo of our own message is a replay too.
    counters_.rejected_id_conflict++;
    return false;
  }
  auto it = members_.find(msg.sender_id);
  const bool sender_known = it != members_.end();
  if (sender_known) {
    Member& m = it->second;
    if (m.meta && is_live(m.state) && m.meta->grpc_addr != msg.sender_addr) {
      counters_.rejected_id_conflict++;
      return false;
    }
    if (!accept_sequence(m, msg)) {
      counters_.rejected_replay++;
      return false;
    }
  } else if (reach_unverified(msg)) {
    // A second-hand member spoke for itself from the address we were told: it is real now.
    // Its first message starts its anti-replay window.
    accept_sequence(members_.find(msg.sender_id)->second, msg);
  }
  bool push_pull = msg.type == MsgType::kPushPull;
  for (const auto& u : msg.updates) apply(u, push_pull, msg.sender_id);
  if (delegate_) {
    for (const auto& b : msg.app_broadcasts) delegate_->on_broadcast(b, msg.sender_id);
    if (push_pull && !msg.app_state.empty())
      delegate_->merge_remote_state(msg.app_state, msg.join, msg.sender_id);
  }
  // (`it` may be invalid here: applying updates can insert members.)
  if (!sender_known && !push_pull && !msg.sender_addr.empty() && running_ &&
      !members_.count(msg.sender_id))
    pull_from_unknown(msg.sender_addr);
  return true;
}

void Membership::handle(Message msg, Responder respond) {
  bool ok = ingest(msg);
  if (!ok) {
    if (respond) {
      // Answer with an empty, non-acking reply so the caller does not wait for its deadline.
      // An empty envelope tells the caller "rejected" without revealing anything.
      Message r;
      r.type = msg.type == MsgType::kPingReq    ? MsgType::kPingReqReply
               : msg.type == MsgType::kPushPull ? MsgType::kPushPull
                                                : MsgType::kAck;
      counters_.msgs_sent++;
      respond(std::move(r));
    }
    return;
  }
  switch (msg.type) {
    case MsgType::kPing:
      handle_ping(msg, respond);
      break;
    case MsgType::kPingReq:
      handle_ping_req(msg, std::move(respond));
      break;
    case MsgType::kPushPull:
      handle_push_pull(msg, respond);
      break;
    case MsgType::kGossip:
    case MsgType::kLeave:
    case MsgType::kAck:
    case MsgType::kPingReqReply:
      if (respond) {
        Message r = make_msg(MsgType::kAck);
        counters_.msgs_sent++;
        respond(std::move(r));
      }
      break;
  }
}

void Membership::handle_ping(const Message& msg, Responder& respond) {
  if (!respond) return;
  Message r = make_msg(MsgType::kAck);
  r.probe_seq = msg.probe_seq;
  r.ack = msg.target_id == self_->id && !leaving_;
  // A sender we believe dead learns it at once and can refute (heals pauses and partitions).
  Update about_sender, about_self;
  const Update* prio = nullptr;
  const Update* prio2 = nullptr;
  auto it = members_.find(msg.sender_id);
  if (it == members_.end()) {
    r.nack = true;  // on an ack: "I do not know you", the sender then introduces itself
  } else if (!is_live(it->second.state) && it->second.state != MemberState::kLeft) {
    about_sender = update_of(it->second);
    prio = &about_sender;
  }
  // A pinger that suspects us (buddy system) gets our current alive update first.
  for (const auto& u : msg.updates) {
    if (u.node_id == self_->id && u.state != MemberState::kAlive && !leaving_) {
      about_self = update_of(*self_);
      prio2 = &about_self;
      break;
    }
  }
  attach_gossip(r, prio, prio2);
  counters_.msgs_sent++;
  respond(std::move(r));
}

void Membership::handle_ping_req(const Message& msg, Responder respond) {
  if (!respond) return;
  if (msg.target_addr.empty() || msg.target_id.empty()) {
    counters_.rejected_malformed++;
    Message r = make_msg(MsgType::kPingReqReply);
    r.probe_seq = msg.probe_seq;
    counters_.msgs_sent++;
    respond(std::move(r));
    return;
  }
  // The caller's budget is what is left of its probe interval: never honour more than ours,
  // so a peer cannot hold our calls (and our shutdown) for long.
  Duration budget =
      std::min<Duration>(std::chrono::milliseconds(msg.timeout_ms), scaled(cfg_.probe_interval));
  Duration ping_timeout = Duration(static_cast<int64_t>(budget.count() * cfg_.nack_fraction));
  // Ping the target at the address we know for it, never at one the request names: a peer
  // must not make us dial arbitrary addresses. A target we do not know gets a nack.
  auto known = members_.find(msg.target_id);
  if (known == members_.end() || !known->second.meta || !is_live(known->second.state)) {
    Message r = make_msg(MsgType::kPingReqReply);
    r.probe_seq = msg.probe_seq;
    r.nack = true;
    counters_.msgs_sent++;
    respond(std::move(r));
    return;
  }
  const std::string target_addr = known->second.meta->grpc_addr;
  Message ping = make_msg(MsgType::kPing);
  ping.probe_seq = ++probe_seq_;
  ping.target_id = msg.target_id;
  attach_gossip(ping, nullptr);
  uint64_t their_seq = msg.probe_seq;
  std::weak_ptr<bool> token = alive_token_;
  send_request(target_addr, std::move(ping), ping_timeout,
               [this, token, their_seq, respond = std::move(respond)](const Message* reply) {
                 Message r;
                 if (!token.expired()) r = make_msg(MsgType::kPingReqReply);
                 r.type = MsgType::kPingReqReply;
                 r.probe_seq = their_seq;
                 r.ack = reply && reply->type == MsgType::kAck && reply->ack;
                 r.nack = !r.ack;
                 if (!token.expired()) {
                   attach_gossip(r, nullptr);
                   counters_.msgs_sent++;
                 }
                 respond(std::move(r));
               });
}

void Membership::handle_push_pull(const Message& msg, Responder& respond) {
  counters_.push_pulls++;
  if (msg.join) joined_ = true;  // someone reached us: we are part of a cluster
  if (!respond) return;
  // The reply keeps the request's join flag, so the caller's delegate merges our state as a
  // join's too.
  Message r = make_push_pull(msg.join);
  counters_.msgs_sent++;
  respond(std::move(r));
}

// ---------------------------------------------------------------------------------------------
// Second-hand members. An `alive` about an unknown X from a sender that is not X is a rumour:
// believed as is, one forged state would list thousands of live ghosts on every node, drag the
// probe rotation through them and ruin every node's local health. So X is kept apart (not a
// member: not counted in n, probed, used as a helper or gossip target, listed or re-gossiped)
// until X reaches us itself: a message of its own, or an ack to a verification ping. Failed
// verifications change nothing but forget the rumour.

void Membership::learn_second_hand(const Update& u, const std::string& introducer, bool spread) {
  auto it = unverified_.find(u.node_id);
  if (it != unverified_.end()) {
    // A newer rumour about the same member replaces the one waiting (same introducer slot).
    if (u.incarnation > it->second.update.incarnation) it->second.update = u;
    it->second.spread = it->second.spread || spread;
    it->second.heard_again = it->second.heard_again || it->second.in_flight;
    return;
  }
  if (u.meta->grpc_addr == self_meta_->grpc_addr) {
    counters_.rejected_id_conflict++;  // another id at our own address
    return;
  }
  auto peer = unverified_by_peer_.find(introducer);
  size_t from_peer = peer == unverified_by_peer_.end() ? 0 : peer->second;
  if (from_peer >= cfg_.max_unverified_per_peer || unverified_.size() >= cfg_.max_unverified) {
    counters_.rejected_unverified++;
    ingest_capped_++;
    return;
  }
  unverified_by_peer_[introducer] = from_peer + 1;
  unverified_.emplace(u.node_id, Unverified{u, introducer, spread, false, false});
  verify_waiting_.push_back(u.node_id);
  pump_verifications();
}

bool Membership::reach_unverified(const Message& msg) {
  auto it = unverified_.find(msg.sender_id);
  // From another address than we were told, the rumour is not what is confirmed: the sender
  // is then an unknown member like any other (we pull its state).
  if (it == unverified_.end() || it->second.update.meta->grpc_addr != msg.sender_addr) return false;
  promote_unverified(msg.sender_id);
  return true;
}

void Membership::promote_unverified(const std::string& id) {
  auto it = unverified_.find(id);
  if (it == unverified_.end()) return;
  Update u = std::move(it->second.update);
  bool spread = it->second.spread;
  forget_unverified(id);
  counters_.unverified_reached++;
  add_member(u, spread);
}

void Membership::forget_unverified(const std::string& id) {
  auto it = unverified_.find(id);
  if (it == unverified_.end()) return;
  auto peer = unverified_by_peer_.find(it->second.introducer);
  if (peer != unverified_by_peer_.end() && --peer->second == 0) unverified_by_peer_.erase(peer);
  unverified_.erase(it);
}

void Membership::pump_verifications() {
  while (verify_in_flight_ < cfg_.max_pending_verifications && !verify_waiting_.empty()) {
    std::string id = std::move(verify_waiting_.front());
    verify_waiting_.pop_front();
    auto it = unverified_.find(id);
    if (it == unverified_.end() || it->second.in_flight) continue;  // reached, or a stale entry
    it->second.in_flight = true;
    verify_in_flight_++;
    send_verification(id, 1);
  }
}

void Membership::send_verification(const std::string& id, int attempt) {
  Unverified& v = unverified_.at(id);
  v.heard_again = false;  // this attempt answers every rumour heard so far
  Message ping = make_msg(MsgType::kPing);
  ping.probe_seq = ++probe_seq_;
  ping.target_id = id;
  // Only our own `alive` rides along: X learns us first-hand (verification is mutual, which is
  // how a joiner and the members its seed told it about find each other), and the gossip
  // queue's transmissions are not spent on an address that may lead nowhere.
  if (!leaving_) ping.updates.push_back(update_of(*self_));
  send_request(
      v.update.meta->grpc_addr, std::move(ping), scaled(cfg_.probe_timeout),
      [this, id, attempt](const Message* reply) { on_verification_reply(id, attempt, reply); });
}

void Membership::on_verification_reply(const std::string& id, int attempt, const Message* reply) {
  // (send_request only calls back while this Membership lives.)
  const bool acked = reply && reply->type == MsgType::kAck && reply->ack && reply->sender_id == id;
  auto it = unverified_.find(id);
  if (it != unverified_.end() && it->second.in_flight) {
    if (acked) {
      // The ack came from the rumoured address (ingesting it usually promoted it already).
      promote_unverified(id);
    } else if (attempt < 2) {
      send_verification(id, attempt + 1);  // keeps the slot
      return;
    } else if (it->second.heard_again) {
      // The rumour came again while the last attempt ran: had it come a moment later, it would
      // start a new verification after the drop; do just that, without losing it to timing
      // (otherwise, at the tail of an epidemic under loss, a member can stay unknown here for
      // minutes after two lost round trips).
      send_verification(id, 1);
      return;
    } else {
      forget_unverified(id);
      counters_.unverified_dropped++;
    }
  }
  if (acked && reply->nack) introduce_to(id);  // it does not know us (we were leaving)
  verify_in_flight_--;
  pump_verifications();
}

// ---------------------------------------------------------------------------------------------
// State machine.

void Membership::apply(const Update& u, bool from_push_pull, const std::string& sender) {
  switch (u.state) {
    case MemberState::kAlive:
      // A push-pull reply lists every member: re-gossiping all of them would bury the news.
      // Only the sender's own record is news worth spreading (that is how a join spreads).
      apply_alive(u, !from_push_pull || u.node_id == sender, sender);
      break;
    case MemberState::kSuspect:
      apply_suspect(u);
      break;
    case MemberState::kDead:
      if (from_push_pull) {
        // Someone else's belief that a node is dead only makes us suspect it.
        Update s = u;
        s.state = MemberState::kSuspect;
        s.from = sender;
        apply_suspect(s);
      } else {
        apply_dead(u);
      }
      break;
    case MemberState::kLeft:
      apply_dead(u);
      break;
  }
}

void Membership::apply_alive(const Update& u, bool spread, const std::string& sender) {
  if (u.node_id == self_->id) {
    if (leaving_) return;
    // An older fact about us is normal (it predates a refutation or a metadata change).
    if (u.incarnation < self_->incarnation) return;
    // Someone advertises us with other metadata or a newer incarnation: refute it.
    bool other_meta = *u.meta != *self_meta_;
    if (other_meta) counters_.rejected_id_conflict++;
    if (other_meta || u.incarnation > self_->incarnation) refute(u.incarnation);
    return;
  }
  auto it = members_.find(u.node_id);
  if (it == members_.end()) {
    if (u.node_id != sender) {
      // Second-hand: a rumour until the member itself reaches us (no ghosts).
      learn_second_hand(u, sender, spread);
      return;
    }
    // First-hand (the member announces itself): a member at once.
    if (unverified_.count(u.node_id)) {
      forget_unverified(u.node_id);
      counters_.unverified_reached++;
    }
    add_member(u, spread);
    return;
  }
  Member& m = it->second;
  if (u.incarnation <= m.incarnation) {
    counters_.updates_stale++;
    return;
  }
  if (is_live(m.state) && m.meta && m.meta->grpc_addr != u.meta->grpc_addr) {
    // A live member keeps its address; a different one is an impostor (or a stale id reuse).
    counters_.rejected_id_conflict++;
    return;
  }
  MetaPtr old_meta = m.meta;
  MemberState old_state = m.state;
  m.meta = u.meta;
  bool was_dead = !is_live(m.state);
  set_state(m, MemberState::kAlive, u.incarnation);
  if (was_dead) {
    std::uniform_int_distribution<size_t> pos(probe_pos_, probe_order_.size());
    probe_order_.insert(probe_order_.begin() + static_cast<std::ptrdiff_t>(pos(rng_)), m.id);
    // Back from dead or left: our connection to it may still be in reconnect backoff from its
    // downtime, which would fail our next probes at once and suspect it again.
    reset_transport(m);
  } else if (old_state == MemberState::kAlive && (!old_meta || *old_meta != *m.meta)) {
    notify(m, old_state);  // same state, new metadata
  }
  counters_.updates_applied++;
  enqueue(u);
}

void Membership::add_member(const Update& u, bool spread) {
  Member& m = members_[u.node_id];
  m.id = u.node_id;
  m.state = MemberState::kDead;  // placeholder, set_state below notifies alive
  m.incarnation = u.incarnation;
  m.meta = u.meta;
  set_state(m, MemberState::kAlive, u.incarnation);
  // New members join the probe order at a random position.
  std::uniform_int_distribution<size_t> pos(probe_pos_, probe_order_.size());
  probe_order_.insert(probe_order_.begin() + static_cast<std::ptrdiff_t>(pos(rng_)), m.id);
  counters_.updates_applied++;
  if (spread) enqueue(u);
}

void Membership::reset_transport(Member& m) {
  // Several rules may fire for one message (a new boot epoch and its alive): once is enough.
  if (!m.meta || m.transport_reset_at == clock_.now()) return;
  m.transport_reset_at = clock_.now();
  counters_.transport_resets++;
  transport_.reset(m.meta->grpc_addr);
}

void Membership::correct_stale(Member& m) {
  // Someone still relays an outdated suspicion: if our newer fact has already been fully
  // disseminated, start it again, so the correction overtakes the stale rumour.
  if (!queue_index_.count(m.id) && m.meta) enqueue(update_of(m));
}

void Membership::apply_suspect(const Update& u) {
  if (u.node_id == self_->id) {
    if (leaving_) return;
    if (u.incarnation >= self_->incarnation)
      refute(u.incarnation);
    else
      correct_stale(*self_);
    return;
  }
  auto it = members_.find(u.node_id);
  if (it == members_.end()) return;
  Member& m = it->second;
  if (u.incarnation < m.incarnation || !is_live(m.state)) {
    counters_.updates_stale++;
    if (u.incarnation < m.incarnation && m.state == MemberState::kAlive) correct_stale(m);
    return;
  }
  if (m.state == MemberState::kSuspect && u.incarnation == m.incarnation) {
    add_confirmation(m, u.from);
    return;
  }
  // Alive at <= incarnation, or suspect at an older one: (re)start suspicion.
  m.incarnation = u.incarnation;
  set_state(m, MemberState::kSuspect, u.incarnation);
  start_suspicion(m, u.from.empty() ? std::string("?") : u.from);
  counters_.updates_applied++;
  enqueue(u);
}

void Membership::apply_dead(const Update& u) {
  if (u.node_id == self_->id) {
    if (leaving_) return;
    if (u.incarnation >= self_->incarnation)
      refute(u.incarnation);
    else
      correct_stale(*self_);
    return;
  }
  auto it = members_.find(u.node_id);
  if (it == members_.end()) return;
  Member& m = it->second;
  if (u.incarnation < m.incarnation) {
    counters_.updates_stale++;
    if (m.state == MemberState::kAlive) correct_stale(m);
    return;
  }
  if (m.state == u.state || m.state == MemberState::kLeft ||
      (m.state == MemberState::kDead && u.incarnation == m.incarnation)) {
    counters_.updates_stale++;
    return;
  }
  set_state(m, u.state, u.incarnation);
  counters_.updates_applied++;
  enqueue(u);
}

void Membership::refute(uint64_t seen_incarnation) {
  counters_.refutations++;
  health_delta(1);
  uint64_t inc = std::max(seen_incarnation, self_->incarnation) + 1;
  self_->incarnation = inc;
  enqueue(update_of(*self_));
}

void Membership::set_state(Member& m, MemberState s, uint64_t incarnation) {
  MemberState old = m.state;
  bool old_live = is_live(old);
  m.incarnation = incarnation;
  if (s != MemberState::kSuspect && m.suspicion) {
    clock_.cancel(m.suspicion->timer);
    m.suspicion.reset();
  }
  if (old == s) return;
  m.state = s;
  m.last_change = clock_.now();
  m.last_change_wall_ms = clock_.wall_ms();
  bool new_live = is_live(s);
  if (new_live && m.live_index == SIZE_MAX) live_add(m);
  if (!new_live && old_live) live_remove(m);
  if (s == MemberState::kDead) {
    if (m.dead_index == SIZE_MAX) dead_add(m);
  } else if (m.dead_index != SIZE_MAX) {
    dead_remove(m);
  }
  if (old != s || new_live != old_live) notify(m, old);
}

void Membership::suspect_locally(Member& m) {
  Update u;
  u.node_id = m.id;
  u.state = MemberState::kSuspect;
  u.incarnation = m.incarnation;
  u.from = self_->id;
  if (m.state == MemberState::kSuspect) {
    // We failed it independently: a confirmation everyone else should count too, unless our
    // own health is in doubt (Lifeguard: an unhealthy node does not confirm).
    if (lhm_ == 0) add_confirmation(m, self_->id);
    return;
  }
  counters_.suspicions_started++;
  set_state(m, MemberState::kSuspect, m.incarnation);
  start_suspicion(m, self_->id);
  enqueue(u);
}

void Membership::start_suspicion(Member& m, const std::string& from) {
  if (m.suspicion) clock_.cancel(m.suspicion->timer);
  m.suspicion = std::make_unique<Suspicion>();
  m.suspicion->start = clock_.now();
  m.suspicion->confirmers.push_back(from);
  reschedule_suspicion(m);
  // Verification: while no refutation has reached us, ask the suspect directly (with the buddy
  // update) every half minimum timeout, instead of trusting dissemination alone.
  std::string id = m.id;
  uint64_t inc = m.incarnation;
  clock_.schedule(cfg_.verify_period(live_.size()), [this, id, inc] { verify_suspect(id, inc); });
}

void Membership::verify_suspect(const std::string& id, uint64_t incarnation) {
  if (!running_ || leaving_) return;
  auto it = members_.find(id);
  if (it == members_.end()) return;
  Member& m = it->second;
  if (m.state != MemberState::kSuspect || m.incarnation != incarnation || !m.meta) return;
  clock_.schedule(cfg_.verify_period(live_.size()),
                  [this, id, incarnation] { verify_suspect(id, incarnation); });
  Message msg = make_msg(MsgType::kPing);
  msg.probe_seq = ++probe_seq_;
  msg.target_id = id;
  Update buddy = update_of(m);
  attach_gossip(msg, &buddy);
  // An answer's gossip carries the refutation. Silence leads to a full probe of our own
  // (helpers + one more direct try); only its failure is independent evidence that counts as
  // a confirmation, and only while we are healthy ourselves.
  std::weak_ptr<bool> token = alive_token_;
  send_request(m.meta->grpc_addr, std::move(msg), scaled(cfg_.probe_timeout),
               [this, token, id, incarnation](const Message* reply) {
                 if (token.expired() || (reply && reply->ack) || lhm_ > 0) return;
                 verify_with_helpers(id, incarnation);
               });
}

void Membership::verify_with_helpers(const std::string& id, uint64_t incarnation) {
  auto it = members_.find(id);
  if (it == members_.end()) return;
  Member& target = it->second;
  if (target.state != MemberState::kSuspect || target.incarnation != incarnation) return;
  struct Round {
    int pending = 0;
    bool acked = false;
  };
  auto round = std::make_shared<Round>();
  std::weak_ptr<bool> token = alive_token_;
  auto done = [this, token, round, id, incarnation](bool ack) {
    if (token.expired()) return;
    round->acked = round->acked || ack;
    if (--round->pending > 0 || round->acked || lhm_ > 0) return;
    auto it = members_.find(id);
    if (it == members_.end()) return;
    Member& m = it->second;
    if (m.state == MemberState::kSuspect && m.incarnation == incarnation)
      add_confirmation(m, self_->id);
  };
  Duration budget =
      std::max(scaled(cfg_.probe_interval) - scaled(cfg_.probe_timeout), cfg_.probe_timeout);
  std::vector<Member*> helpers;
  for (int tries = 0;
       tries < cfg_.indirect_checks * 4 && static_cast<int>(helpers.size()) < cfg_.indirect_checks;
       ++tries) {
    Member* h = random_live_other(id);
    if (!h || std::find(helpers.begin(), helpers.end(), h) != helpers.end()) continue;
    helpers.push_back(h);
  }
  round->pending = static_cast<int>(helpers.size()) + 1;
  std::string addr = target.meta->grpc_addr;
  for (Member* h : helpers) {
    Message req = make_msg(MsgType::kPingReq);
    req.probe_seq = ++probe_seq_;
    req.target_id = id;
    req.target_addr = addr;
    req.timeout_ms = static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(budget).count());
    attach_gossip(req, nullptr);
    send_request(h->meta->grpc_addr, std::move(req), budget, [done](const Message* reply) {
      done(reply && reply->type == MsgType::kPingReqReply && reply->ack);
    });
  }
  Message retry = make_msg(MsgType::kPing);
  retry.probe_seq = ++probe_seq_;
  retry.target_id = id;
  attach_gossip(retry, nullptr);
  send_request(addr, std::move(retry), budget, [done](const Message* reply) {
    done(reply && reply->type == MsgType::kAck && reply->ack);
  });
}

void Membership::add_confirmation(Member& m, const std::string& from) {
  if (!m.suspicion) return;
  auto& c = m.suspicion->confirmers;
  if (from.empty() || std::find(c.begin(), c.end(), from) != c.end()) return;
  if (static_cast<int>(c.size()) > cfg_.expected_confirmations(live_.size())) return;
  c.push_back(from);
  reschedule_suspicion(m);
  // Re-gossip so others count this independent confirmation as well.
  Update u;
  u.node_id = m.id;
  u.state = MemberState::kSuspect;
  u.incarnation = m.incarnation;
  u.from = from;
  enqueue(std::move(u));
}

void Membership::reschedule_suspicion(Member& m) {
  Suspicion& s = *m.suspicion;
  if (s.timer) clock_.cancel(s.timer);
  int confirmations = static_cast<int>(s.confirmers.size()) - 1;
  Duration timeout = cfg_.suspicion_timeout(live_.size(), confirmations);
  Duration remaining = std::max(Duration(0), s.start + timeout - clock_.now());
  std::string id = m.id;
  uint64_t inc = m.incarnation;
  s.timer = clock_.schedule(remaining, [this, id, inc] { suspicion_expired(id, inc); });
}

void Membership::suspicion_expired(const std::string& id, uint64_t incarnation) {
  auto it = members_.find(id);
  if (it == members_.end()) return;
  Member& m = it->second;
  if (m.state != MemberState::kSuspect || m.incarnation != incarnation) return;
  if (m.suspicion) m.suspicion->timer = 0;
  counters_.declared_dead++;
  spdlog::debug("{} declares {} dead (incarnation {})", self_->id, id, incarnation);
  Update u;
  u.node_id = id;
  u.state = MemberState::kDead;
  u.incarnation = incarnation;
  u.from = self_->id;
  set_state(m, MemberState::kDead, incarnation);
  enqueue(std::move(u));
}

// ---------------------------------------------------------------------------------------------
// Dissemination.

Update Membership::update_of(const Member& m) const {
  Update u;
  u.node_id = m.id;
  u.state = m.state;
  u.incarnation = m.incarnation;
  u.meta = m.meta;
  if (m.state == MemberState::kSuspect && m.suspicion && !m.suspicion->confirmers.empty())
    u.from = m.suspicion->confirmers.front();
  else if (m.state == MemberState::kDead || m.state == MemberState::kSuspect)
    u.from = self_->id;
  return u;
}

std::vector<Update> Membership::full_state() const {
  // Sorted by id: hash-map iteration order is not deterministic (per-table salt), and the
  // order in which a receiver applies a state decides what it gossips first.
  std::vector<const Member*> sorted;
  sorted.reserve(members_.size());
  for (const auto& [id, m] : members_)
    if (m.meta) sorted.push_back(&m);
  std::sort(sorted.begin(), sorted.end(),
            [](const Member* a, const Member* b) { return a->id < b->id; });
  std::vector<Update> out;
  out.reserve(sorted.size());
  for (const Member* m : sorted) out.push_back(update_of(*m));
  return out;
}

void Membership::enqueue(Update u) {
  // Alive updates carry metadata; others may be sent without it.
  if (u.state != MemberState::kAlive) u.meta.reset();
  // The newest fact about a node supersedes whatever was queued for it, so a refutation
  // also stops the stale suspicion from being relayed any further.
  const std::string& key = u.node_id;
  auto it = queue_index_.find(key);
  if (it != queue_index_.end()) {
    Broadcast& b = queue_[it->second];
    b.update = std::move(u);
    b.transmits = 0;
    b.order = ++broadcast_order_;
  } else {
    queue_index_.emplace(u.node_id, queue_.size());
    queue_.push_back(Broadcast{std::move(u), 0, ++broadcast_order_});
  }
  if (queue_.size() > cfg_.max_broadcast_queue) {
    // Drop the most transmitted (then oldest) entry.
    size_t worst = 0;
    for (size_t i = 1; i < queue_.size(); ++i) {
      const auto& a = queue_[i];
      const auto& w = queue_[worst];
      if (a.transmits > w.transmits || (a.transmits == w.transmits && a.order < w.order)) worst = i;
    }
    queue_index_.erase(queue_[worst].update.node_id);
    if (worst != queue_.size() - 1) {
      queue_[worst] = std::move(queue_.back());
      queue_index_[queue_[worst].update.node_id] = worst;
    }
    queue_.pop_back();
    counters_.gossip_dropped++;
  }
}

void Membership::attach_gossip(Message& msg, const Update* priority, const Update* priority2) {
  if (priority) msg.updates.push_back(*priority);
  if (priority2) msg.updates.push_back(*priority2);
  size_t room = static_cast<size_t>(cfg_.max_piggyback) - msg.updates.size();
  if (queue_.empty() || room == 0) {
    attach_app_broadcasts(msg);
    return;
  }
  size_t take = std::min(room, queue_.size());
  // Fewest transmissions first, newest first among equals.
  thread_local std::vector<uint32_t> idx;
  idx.resize(queue_.size());
  for (uint32_t i = 0; i < idx.size(); ++i) idx[i] = i;
  auto better = [this](uint32_t a, uint32_t b) {
    const auto& x = queue_[a];
    const auto& y = queue_[b];
    return x.transmits != y.transmits ? x.transmits < y.transmits : x.order > y.order;
  };
  if (take < idx.size())
    std::partial_sort(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(take), idx.end(),
                      better);
  int limit = cfg_.retransmit_limit(live_.size());
  std::vector<uint32_t> spent;
  for (size_t i = 0; i < take; ++i) {
    Broadcast& b = queue_[idx[i]];
    if ((priority && b.update.node_id == priority->node_id) ||
        (priority2 && b.update.node_id == priority2->node_id))
      continue;
    msg.updates.push_back(b.update);
    if (++b.transmits >= limit) spent.push_back(idx[i]);
  }
  // Remove spent entries, highest index first so swap-pop keeps the others valid.
  std::sort(spent.begin(), spent.end(), std::greater<>());
  for (uint32_t i : spent) {
    queue_index_.erase(queue_[i].update.node_id);
    if (i != queue_.size() - 1) {
      queue_[i] = std::move(queue_.back());
      queue_index_[queue_[i].update.node_id] = i;
    }
    queue_.pop_back();
  }
  // Last: the delegate runs outside our walk over the queue.
  attach_app_broadcasts(msg);
}

void Membership::attach_app_broadcasts(Message& msg) {
  if (!delegate_) return;
  std::vector<std::string> out = delegate_->broadcasts(cfg_.max_app_broadcast_bytes);
  // Receivers reject a message beyond these bounds as malformed, and with it our gossip: keep
  // what fits, in the delegate's order, and count the rest.
  size_t bytes = 0;
  for (auto& b : out) {
    if (msg.app_broadcasts.size() >= cfg_.max_app_broadcasts_per_message ||
        bytes + b.size() > cfg_.max_app_broadcast_bytes) {
      counters_.app_oversized++;
      continue;
    }
    bytes += b.size();
    msg.app_broadcasts.push_back(std::move(b));
  }
}

Message Membership::make_push_pull(bool join) {
  Message msg = make_msg(MsgType::kPushPull);
  msg.join = join;
  msg.updates = full_state();
  if (delegate_) {
    std::string state = delegate_->local_state(join);
    if (state.size() > cfg_.max_app_state_bytes)
      counters_.app_oversized++;  // the receiver would reject the whole exchange
    else
      msg.app_state = std::move(state);
  }
  return msg;
}

Message Membership::make_msg(MsgType type) {
  Message m;
  m.type = type;
  m.cluster = cfg_.cluster_name;
  m.sender_id = self_->id;
  m.sender_addr = self_meta_->grpc_addr;
  m.boot_epoch = boot_epoch_;
  m.seq = ++msg_seq_;
  return m;
}

void Membership::send_request(const std::string& addr, Message msg, Duration timeout,
                              Transport::ReplyFn fn) {
  counters_.msgs_sent++;
  std::weak_ptr<bool> token = alive_token_;
  transport_.request(addr, std::move(msg), timeout,
                     [this, token, fn = std::move(fn)](const Message* reply) {
                       if (token.expired()) return;
                       if (reply && (reply->sender_id.empty() || !ingest(*reply))) reply = nullptr;
                       fn(reply);
                     });
}

void Membership::send_oneway(const std::string& addr, Message msg) {
  counters_.msgs_sent++;
  transport_.send(addr, std::move(msg), cfg_.oneway_timeout);
}

// ---------------------------------------------------------------------------------------------
// Bookkeeping.

void Membership::live_add(Member& m) {
  m.live_index = live_.size();
  live_.push_back(&m);
}

void Membership::live_remove(Member& m) {
  size_t i = m.live_index;
  assert(i < live_.size() && live_[i] == &m);
  live_[i] = live_.back();
  live_[i]->live_index = i;
  live_.pop_back();
  m.live_index = SIZE_MAX;
}

void Membership::dead_add(Member& m) {
  m.dead_index = dead_.size();
  dead_.push_back(&m);
}

void Membership::dead_remove(Member& m) {
  size_t i = m.dead_index;
  assert(i < dead_.size() && dead_[i] == &m);
  dead_[i] = dead_.back();
  dead_[i]->dead_index = i;
  dead_.pop_back();
  m.dead_index = SIZE_MAX;
}

Membership::Member* Membership::random_live_other(const std::string& exclude) {
  if (live_.size() <= 1) return nullptr;
  std::uniform_int_distribution<size_t> pick(0, live_.size() - 1);
  for (int tries = 0; tries < 8; ++tries) {
    Member* m = live_[pick(rng_)];
    if (m != self_ && m->id != exclude && m->meta) return m;
  }
  return nullptr;
}

MemberView Membership::view_of(const Member& m) const {
  MemberView v;
  if (m.meta) v.meta = *m.meta;
  v.meta.node_id = m.id;
  v.state = m.state;
  v.incarnation = m.incarnation;
  v.last_change = m.last_change;
  v.last_change_wall_ms = m.last_change_wall_ms;
  v.is_self = &m == self_;
  return v;
}

void Membership::notify(const Member& m, MemberState old_state) {
  if (listeners_.empty()) return;
  const MemberView v = view_of(m);
  notifying_++;
  // By index, up to the count at entry: a listener may add (appended, called from the next
  // change on) or remove (nulled) listeners; the shared_ptr keeps the running one alive.
  const size_t n = listeners_.size();
  for (size_t i = 0; i < n; ++i) {
    std::shared_ptr<const ChangeFn> fn = listeners_[i].fn;
    if (fn) (*fn)(v, old_state);
  }
  if (--notifying_ == 0) std::erase_if(listeners_, [](const Listener& l) { return !l.fn; });
}

std::vector<MemberView> Membership::members() const {
  std::vector<MemberView> out;
  out.reserve(members_.size());
  for (const auto& [id, m] : members_) out.push_back(view_of(m));
  std::sort(out.begin(), out.end(), [](const MemberView& a, const MemberView& b) {
    return a.meta.node_id < b.meta.node_id;
  });
  return out;
}

}  // namespace mcpmesh::cluster
