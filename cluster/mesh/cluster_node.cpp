#include "cluster/mesh/cluster_node.hpp"

#include "cluster/mesh/node_admin.hpp"

#include "cluster/bus/notification_bus.hpp"
#include "cluster/event_loop.hpp"
#include "cluster/forward/forward_client.hpp"
#include "cluster/forward/forward_service.hpp"
#include "cluster/grpc_transport.hpp"
#include "cluster/membership.hpp"
#include "cluster/mesh/mesh_delegate.hpp"
#include "cluster/mesh/peer_channels.hpp"
#include "cluster/replication/replica_store.hpp"
#include "cluster/replication/replication_service.hpp"
#include "cluster/replication/replicator.hpp"
#include "mcp/server.hpp"
#include "registry/cluster_view.hpp"
#include "transport/http_server.hpp"
#include "transport/io_pool.hpp"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <future>
#include <random>
#include <set>
#include <thread>

namespace mcpmesh::cluster {

namespace asio = boost::asio;
namespace pb = ::mcpmesh::v1;
using registry::ClusterView;

namespace {

std::pair<std::string, std::string> split_host_port(const std::string& addr) {
  auto colon = addr.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("expected HOST:PORT: " + addr);
  return {addr.substr(0, colon), addr.substr(colon + 1)};
}

bool wildcard(std::string_view host) {
  return host.empty() || host == "0.0.0.0" || host == "[::]" || host == "::";
}

ClusterView::NodeState to_view(MemberState s) {
  switch (s) {
    case MemberState::kAlive:
      return ClusterView::NodeState::kAlive;
    case MemberState::kSuspect:
      return ClusterView::NodeState::kSuspect;
    case MemberState::kDead:
      return ClusterView::NodeState::kDead;
    case MemberState::kLeft:
      return ClusterView::NodeState::kLeft;
  }
  return ClusterView::NodeState::kDead;
}

bool live(ClusterView::NodeState s) {
  return s == ClusterView::NodeState::kAlive || s == ClusterView::NodeState::kSuspect;
}

std::uint64_t wall_ms() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

ClusterView::Member to_member(const MemberView& v) {
  ClusterView::Member m;
  m.id = v.meta.node_id;
  m.state = to_view(v.state);
  m.address = v.meta.grpc_addr;
  m.http_address = v.meta.http_addr;
  pb::NodeMeta meta;
  if (!v.meta.app.empty() && meta.ParseFromString(v.meta.app)) {
    m.epoch = meta.epoch();
    for (const auto& r : meta.replicas()) {
      if (m.replicas.size() >= registry::ClusterViewLimits{}.max_replicas) break;
      m.replicas.push_back(r);
    }
  }
  return m;
}

/// The session observer the server calls: replication, and changes of the interest set.
class Observer final : public mcp::SessionObserver {
 public:
  /// `publish(done)`: publishes the interest set's pending change now, then `done`;
  /// `schedule()`: publishes it soon (changes made in a burst go out as one).
  Observer(Replicator& replicator, InterestTracker& interest,
           std::function<void(std::function<void()>)> publish, std::function<void()> schedule)
      : replicator_(replicator),
        interest_(interest),
        publish_(std::move(publish)),
        schedule_(std::move(schedule)) {}
  void on_record(const mcp::SessionRecord& record) override { replicator_.on_record(record); }
  void on_standalone_event(const std::string& id, std::uint64_t seq,
                           const mcp::Payload& message) override {
    replicator_.on_standalone_event(id, seq, message);
  }
  void on_closed(const std::string& id) override { replicator_.on_closed(id); }
  void on_subscription_changed(std::string_view uri) override {
    if (interest_.hint(uri)) schedule_();
  }
  void on_subscribed(std::string_view uri, std::function<void()> published) override {
    if (interest_.hint(uri)) {
      publish_(std::move(published));
    } else {
      published();  // this node cared already: the others know
    }
  }

 private:
  Replicator& replicator_;
  InterestTracker& interest_;
  std::function<void(std::function<void()>)> publish_;
  std::function<void()> schedule_;
};

/// What the HTTP endpoint asks about a session it does not hold.
class Locator final : public transport::SessionLocator {
 public:
  Locator(ClusterView& view, ForwardClient& client) : view_(view), client_(client) {}
  Location locate(std::string_view session_id) override {
    std::string_view owner;
    std::uint64_t epoch = 0;
    if (!mcp::parse_session_id(session_id, owner, epoch)) return {};
    auto route = view_.resolve(owner, epoch);
    switch (route.kind) {
      case ClusterView::Route::Kind::kHere:
        return {};
      case ClusterView::Route::Kind::kUnavailable:
        return {Verdict::kUnavailable, nullptr};
      case ClusterView::Route::Kind::kRemote:
        return {Verdict::kElsewhere, client_.target(route.node, route.http_address)};
    }
    return {};
  }

 private:
  ClusterView& view_;
  ForwardClient& client_;
};

/// Which sessions this node may give notifications to (mcp::DeliveryGate). A session whose set
/// the adoption table gives to another live node is a stale copy: none. And a node that may have
/// been declared dead without knowing it (its membership loop stalled past `stall`, or a member
/// that could have declared it dead came back) is *fenced*: notifications wait until it has
/// heard from the members that could have continued its sessions (ClusterNode::Impl::fence).
class Gate final : public mcp::DeliveryGate {
 public:
  Gate(ClusterView& view, std::string self, Duration stall)
      : view_(view), self_(std::move(self)), stall_(stall.count()), beat_(now_ns()) {}

  bool open() override {
    // The time first: a heartbeat read after it is at most as recent, so a stall not yet seen
    // by the loop still shows; one the loop saw set the fence before its heartbeat.
    auto now = now_ns();
    auto beat = beat_.load();
    return fence_.load() == 0 && now - beat <= stall_;
  }
  bool holds(std::string_view owner, std::uint64_t epoch) override {
    auto a = view_.adoption(owner, epoch);
    if (!a || a->holder == self_) return true;
    // Another node continues it; unless that node is gone: this one may be taking the set over
    // from it right now (restored, not yet announced).
    auto holder = view_.member(a->holder);
    return !holder || !live(holder->state);
  }

  /// Membership loop, each heartbeat: when the loop did not run for longer than `stall` (the
  /// node was stopped or starved and may have been declared dead meanwhile), closes the gate
  /// as fence `id` and returns true.
  bool beat(std::uint64_t id) {
    auto now = now_ns();
    bool stalled = now - beat_.load() > stall_;
    if (stalled) fence_.store(id);  // before the heartbeat that would open the gate again
    beat_.store(now);
    return stalled;
  }
  /// Closes the gate until lift(id).
  void fence(std::uint64_t id) { fence_.store(id); }
  /// Opens it, unless a later fence closed it again.
  void lift(std::uint64_t id) { fence_.compare_exchange_strong(id, 0); }
  [[nodiscard]] bool fenced() const { return fence_.load() != 0; }

 private:
  static std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  ClusterView& view_;
  const std::string self_;
  const std::int64_t stall_;
  std::atomic<std::int64_t> beat_;
  std::atomic<std::uint64_t> fence_{0};  // the fence in force, 0 = none
};

}  // namespace

struct ClusterNode::Impl {
  ClusterNodeConfig cfg;
  ClusterNodeServices svc;
  std::string bound;
  std::unique_ptr<ClusterAuth> auth;
  std::unique_ptr<EventLoop> loop;
  std::unique_ptr<GrpcTransport> transport;
  std::unique_ptr<Membership> membership;
  std::unique_ptr<MembershipService> membership_service;
  std::unique_ptr<AdminService> admin_service;
  std::unique_ptr<grpc::Server> server;

  std::unique_ptr<ClusterView> view;
  asio::io_context mesh_io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> mesh_work;
  std::thread mesh_thread;
  std::unique_ptr<PeerChannels> channels;
  std::unique_ptr<ForwardClient> forward_client;
  std::unique_ptr<ForwardService> forward_service;
  std::unique_ptr<ReplicaStore> store;
  std::unique_ptr<Replicator> replicator;
  std::unique_ptr<ReplicationService> replication_service;
  std::unique_ptr<NodeAdminService> node_admin_service;
  std::unique_ptr<InterestTracker> interest;
  std::unique_ptr<NotificationBus> bus;
  std::unique_ptr<MeshDelegate> delegate;
  std::unique_ptr<Observer> observer;
  std::unique_ptr<Locator> locator;

  // Mesh thread only: each member as last seen (restarts show as a new epoch).
  std::map<std::string, ClusterView::Member> known;

  std::mutex meta_mu;
  std::uint64_t epoch = 0;       // guarded by meta_mu
  std::vector<std::string> isr;  // guarded by meta_mu
  // The adoption that made this node renew its epoch, announced with the new one.
  std::optional<ClusterView::Adoption> renewal;  // guarded by meta_mu

  mutable std::mutex snap_mu;
  MembershipCounters counters;  // guarded by snap_mu
  int local_health = 0;         // guarded by snap_mu
  std::size_t unverified = 0;   // guarded by snap_mu
  TimerId snapshot_timer = 0;   // loop thread

  std::atomic<bool> draining{false};
  std::atomic<bool> interest_flush_scheduled{false};
  std::atomic<std::uint64_t> adopted_sessions{0}, adoptions{0}, adopt_failures{0},
      epoch_renewals{0}, adoptions_deferred{0};
  // Mesh thread: failed holders whose sessions wait for this node's side to hold the quorum.
  std::set<std::string> deferred;
  std::set<std::string> confirming;  // mesh thread: failed holders whose heir pings for quorum
  bool retry_scheduled = false;      // mesh thread
  // How long a regained quorum must last before the deferred holders are looked at again: the
  // time a member back from a cut needs to refute its death (set at start).
  std::chrono::steady_clock::duration retry_after{};
  bool stopped = false;

  // The delivery fence (see Gate and fence()). Loop thread, but the gate and the counters.
  std::unique_ptr<Gate> gate;
  std::set<std::string> fence_waits_for;  // members to exchange state with before it lifts
  std::uint64_t fence_id = 0;             // the last fence set
  TimePoint fence_limit{};                // lifted then, whoever did not answer
  TimerId heartbeat_timer = 0;
  std::atomic<std::uint64_t> fences_stall{0}, fences_rejoin{0}, fence_timeouts{0};

  bool mcp() const { return svc.server != nullptr; }

  /// Runs `fn` on the membership loop and waits for it (bounded).
  template <typename Fn>
  void run_on_loop(Fn fn) {
    auto done = std::make_shared<std::promise<void>>();
    auto fut = done->get_future();
    loop->post([fn = std::move(fn), done]() mutable {
      fn();
      done->set_value();
    });
    fut.wait_for(std::chrono::seconds(5));
  }

  std::string node_meta() {
    std::lock_guard lock(meta_mu);
    pb::NodeMeta meta;
    meta.set_epoch(epoch);
    for (auto& r : isr) meta.add_replicas(r);
    if (renewal) {
      adoption_to_proto(*renewal, meta.mutable_continued());
      // Never at the cost of the metadata itself (long node ids): the adoption's own gossip
      // still brings it.
      if (membership && meta.ByteSizeLong() > membership->config().max_app_meta_bytes) {
        meta.clear_continued();
      }
    }
    return meta.SerializeAsString();
  }

  /// Gossips this node's epoch and in-sync replicas (its heirs).
  void announce_meta() {
    auto bytes = node_meta();
    loop->post([this, bytes = std::move(bytes)]() mutable {
      if (!stopped) membership->update_app_meta(std::move(bytes));
    });
  }

  /// Any thread: sends this node's interest change to every node directly (`done` when each
  /// answered) and on gossip.
  void publish_interest(std::function<void()> done) {
    auto delta = interest->take_delta();
    if (!delta) {
      if (done) done();
      return;
    }
    loop->post([this, d = *delta] {
      if (!stopped) delegate->broadcast_interest(d);
    });
    bus->push_interest(*delta, std::move(done));
  }

  /// Membership loop: every change of every member.
  void on_change(const MemberView& v, MemberState old) {
    auto m = to_member(v);
    if (v.is_self) {
      view->set_member(m);
      return;
    }
    if (v.state != old) {
      spdlog::info("cluster {}: {} is {} (was {}, incarnation {}, {})", cfg.node_id, v.meta.node_id,
                   to_string(v.state), to_string(old), v.incarnation, v.meta.grpc_addr);
    }
    if (mcp()) {
      // A renewed epoch comes with the adoption that made it, applied before the epoch itself:
      // the renewal is never taken for a restart (on_member), whichever reaches us first.
      if (auto a = continued_of(v); a && view->apply_adoption(*a)) {
        if (!stopped) delegate->broadcast_adoption(*a);
        asio::post(mesh_io, [this, a = *a] { on_adoption(a); });
      }
      // Back from dead in the same life (it was paused or cut off, not restarted): it may have
      // declared this node dead meanwhile and continued its sessions.
      auto prev = view->member(m.id);
      if (old == MemberState::kDead && live(m.state) && prev && prev->epoch == m.epoch) {
        gate->fence(++fence_id);
        fence({m.id}, fences_rejoin);
      }
    }
    view->set_member(m);
    if (mcp()) {
      asio::post(mesh_io, [this, m, old] { on_member(m, to_view(old)); });
    }
  }

  /// The adoption member `v` announced with its renewed epoch (NodeMeta.continued), if any.
  static std::optional<ClusterView::Adoption> continued_of(const MemberView& v) {
    pb::NodeMeta meta;
    if (v.meta.app.empty() || !meta.ParseFromString(v.meta.app) || !meta.has_continued()) {
      return std::nullopt;
    }
    auto c = adoption_from_proto(meta.continued());
    // A member speaks for its own earlier lives only.
    if (c.node != v.meta.node_id || c.holder.empty() || c.holder == c.node) return std::nullopt;
    return c;
  }

  // -- The delivery fence (membership loop) ---------------------------------------------------
  // A node declared dead while it was not (stopped, starved, cut off) learns only from its
  // peers that another node continued its sessions. Until then it would go on giving
  // notifications to its stale copies while that node gives the same ones to the sessions it
  // took: the client, whose stream moves there, gets them twice. So whenever this node may
  // have been declared dead, notifications wait (Gate) until it has exchanged state with the
  // members that could have continued its sessions; what they hold arrives with their answer
  // (the adoptions close the stale copies, on the mesh thread, before the gate opens).

  /// Every heartbeat: a stall fences the gate (Gate::beat) until the heirs are heard from.
  void heartbeat() {
    if (gate->beat(fence_id + 1)) {
      ++fence_id;
      auto members = heirs();
      spdlog::info("cluster {}: the membership loop stalled; notifications wait for {} heir(s)",
                   cfg.node_id, members.size());
      fence(members, fences_stall);
    } else if (!fence_waits_for.empty() && loop->now() >= fence_limit) {
      fence_timeouts.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("cluster {}: {} member(s) did not answer; notifications go again", cfg.node_id,
                   fence_waits_for.size());
      lift_fence();
    } else if (!gate->fenced() && svc.server->held_notifications() > 0) {
      // Held by a thread that saw the stall before this loop did, which found none.
      asio::post(mesh_io, [this] { svc.server->release_held_notifications(); });
    }
    heartbeat_timer = loop->schedule(membership->config().probe_interval / 4, [this] {
      if (!stopped) heartbeat();
    });
  }

  /// The members that would continue this node's sessions: its live announced heirs (without
  /// any, the one the view names).
  std::vector<std::string> heirs() {
    std::vector<std::string> announced, out;
    {
      std::lock_guard lock(meta_mu);
      announced = isr;
    }
    for (auto& r : announced) {
      if (auto m = view->member(r); m && live(m->state)) out.push_back(r);
    }
    if (out.empty()) {
      if (auto h = view->heir_of(cfg.node_id)) out.push_back(*h);
    }
    return out;
  }

  /// The gate is fenced: waits for `members` too (counted in `why`), until the limit.
  void fence(const std::vector<std::string>& members, std::atomic<std::uint64_t>& why) {
    why.fetch_add(1, std::memory_order_relaxed);
    fence_limit = loop->now() + 2 * membership->config().bulk_timeout;
    for (const auto& m : members) {
      if (fence_waits_for.insert(m).second) exchange_with(m);
    }
    if (fence_waits_for.empty()) lift_fence();
  }

  void exchange_with(const std::string& id) {
    membership->exchange_state(id, [this, id](bool alive_there) {
      if (stopped || !fence_waits_for.contains(id)) return;
      if (alive_there) {
        fence_waits_for.erase(id);
        if (fence_waits_for.empty()) lift_fence();
        return;
      }
      // It holds this node dead (refuted by now) or did not answer: again shortly, so that an
      // adoption it makes after its verdict (on its mesh thread) comes with a later answer.
      loop->schedule(membership->config().gossip_interval, [this, id] {
        if (!stopped && fence_waits_for.contains(id)) exchange_with(id);
      });
    });
  }

  void lift_fence() {
    fence_waits_for.clear();
    // On the mesh thread, behind the adoptions the answers brought: the stale copies are closed
    // by then, and what waited goes to the sessions still held here.
    asio::post(mesh_io, [this, id = fence_id] {
      gate->lift(id);
      svc.server->release_held_notifications();
    });
  }

  /// Mesh thread: a member changed.
  void on_member(const ClusterView::Member& m, ClusterView::NodeState old) {
    auto prev = known.find(m.id);
    bool new_epoch = prev != known.end() && prev->second.epoch != 0 && m.epoch != 0 &&
                     prev->second.epoch != m.epoch;
    bool restarted = new_epoch || (!live(old) && live(m.state));
    if (restarted) {
      // Streams and channels to its previous life must not hold up (or fail) the new one.
      forward_client->reset(m.http_address);
      channels->reset(m.address);
    }
    std::optional<ClusterView::Member> before;
    if (prev != known.end()) before = prev->second;
    known[m.id] = m;
    update_candidates();
    svc.server->set_quorate(cfg.adopt_without_quorum || view->quorate());
    if (!live(m.state)) {
      // Exchanges relayed to it end now (503: they may or may not have run), not after the
      // link's silence: their clients retry and reach the heir.
      if (live(old)) forward_client->reset(m.http_address);
      maybe_adopt(m.id);
      return;
    }
    deferred.erase(m.id);
    retry_deferred();
    // A member whose previous life was continued by another node renewed its epoch (it was
    // declared dead and was not), or restarted after that node took its sessions over: either
    // way what it held then is where the adoptions say, not here.
    auto continued = before ? view->adoption(m.id, before->epoch) : std::nullopt;
    if (new_epoch && before && continued && continued->holder != m.id) return;
    if (new_epoch && before && store->epoch_of(m.id) == before->epoch) {
      // It restarted before anyone saw it die: its previous life's sessions are not in the new
      // one. Its heir then was whoever it announced; if that is this node, continue them here.
      continue_previous_life(*before);
      return;
    }
    // (A live holder that stops listing this node among its replicas releases it itself, with
    // an empty full sync: metadata can arrive late, and dropping copies on an old list would
    // lose sessions the holder believes replicated here.)
  }

  void update_candidates() {
    std::vector<Replicator::Peer> peers;
    for (auto& m : view->members()) {
      if (m.id != cfg.node_id && m.state == ClusterView::NodeState::kAlive) {
        peers.push_back({m.id, m.address, m.epoch});
      }
    }
    replicator->set_candidates(std::move(peers));
  }

  /// Mesh thread: `before` (a member as it was) restarted and this node holds copies of the
  /// sessions of that life. Its first live announced replica continues them.
  void continue_previous_life(const ClusterView::Member& before) {
    std::optional<std::string> heir;
    for (auto& r : before.replicas) {
      auto m = view->member(r);
      if (r != before.id && m && live(m->state)) {
        heir = r;
        break;
      }
    }
    if (heir == cfg.node_id) {
      adopt(before.id, before.epoch);
    } else {
      store->drop(before.id);  // the heir named then has them, or nobody was in sync
    }
  }

  /// Whether this node's side of the cluster holds the quorum as its view has it
  /// (ClusterView::quorate). A node cut off from the others sees them all dead; were it to
  /// continue their sessions, the nodes still holding them would give them up when the cut
  /// heals, and with them every session they made meanwhile.
  bool may_adopt() { return cfg.adopt_without_quorum || view->quorate(); }

  /// Mesh thread: `holder` failed or left; continue its sessions here if this node is its heir.
  void maybe_adopt(const std::string& holder) {
    auto heir = view->heir_of(holder);
    if (heir == cfg.node_id) {
      adopt_with_quorum(holder);
      return;
    }
    if (!store->holds(holder)) return;
    // Another node is the heir. Keep the copy a while: should that heir fail before it has
    // replicated what it took, this node may be next in line.
    auto timer = std::make_shared<asio::steady_timer>(mesh_io, std::chrono::seconds(30));
    timer->async_wait([this, timer, holder](boost::system::error_code ec) {
      if (ec || stopped) return;
      auto m = view->member(holder);
      if (m && live(m->state)) return;
      if (!may_adopt()) {
        defer(holder);  // nothing is dropped without the quorum: the cut may heal
      } else if (view->heir_of(holder) == cfg.node_id) {
        adopt_with_quorum(holder);
      } else {
        store->drop(holder);
      }
    });
  }

  /// Mesh thread: `holder` failed and this node is its heir. The view's quorum is not enough:
  /// a node cut off a moment ago still holds alive the members it has not probed since. So the
  /// members it counts are pinged, and only those that answer count (ClusterView::quorate with
  /// `answered`). Then `holder`'s sessions are continued here, or wait (defer).
  void adopt_with_quorum(const std::string& holder) {
    if (cfg.adopt_without_quorum) {
      adopt(holder);
      return;
    }
    if (!view->quorate()) {
      defer(holder);
      return;
    }
    if (!confirming.insert(holder).second) return;  // asked already; the answer decides
    std::vector<std::string> alive;
    for (auto& m : view->members()) {
      if (m.id != cfg.node_id && m.state == ClusterView::NodeState::kAlive) alive.push_back(m.id);
    }
    loop->post([this, holder, alive = std::move(alive)] {
      if (stopped) return;
      membership->ping_members(alive, [this, holder](std::vector<std::string> answered) {
        asio::post(mesh_io, [this, holder, answered = std::move(answered)] {
          confirming.erase(holder);
          if (stopped) return;
          auto m = view->member(holder);
          if (m && live(m->state)) return;  // back meanwhile: on_member saw to it
          if (view->heir_of(holder) != cfg.node_id) {
            deferred.erase(holder);
            maybe_adopt(holder);  // another heir now: keep the copy a while, as for any
            return;
          }
          if (!view->quorate(&answered)) {
            defer(holder);
            return;
          }
          deferred.erase(holder);
          adopt(holder);
        });
      });
    });
  }

  void defer(const std::string& holder) {
    if (deferred.insert(holder).second) {
      adoptions_deferred.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn(
          "cluster {}: {} failed, but this node does not reach more than half of the cluster: "
          "its sessions are not continued here until it does (or {} comes back)",
          cfg.node_id, holder, holder);
    }
    retry_deferred();
  }

  /// Mesh thread: while the view has the quorum, the failed holders whose sessions wait for it
  /// are looked at again every `retry_after` (first after it: when a cut heals, the members on
  /// its far side refute their deaths meanwhile and are not taken over). Without it, a member
  /// coming back (on_member) calls this again.
  void retry_deferred() {
    if (deferred.empty() || retry_scheduled || !may_adopt()) return;
    retry_scheduled = true;
    auto timer = std::make_shared<asio::steady_timer>(mesh_io, retry_after);
    timer->async_wait([this, timer](boost::system::error_code ec) {
      retry_scheduled = false;
      if (ec || stopped || !may_adopt()) return;
      for (const auto& holder : std::vector<std::string>(deferred.begin(), deferred.end())) {
        auto m = view->member(holder);
        if (m && live(m->state)) {
          deferred.erase(holder);
          continue;
        }
        // Not the heir any more: it waits no longer here (maybe_adopt keeps the copy a while).
        if (view->heir_of(holder) != cfg.node_id) deferred.erase(holder);
        maybe_adopt(holder);
      }
    });
  }

  /// Mesh thread: continues every session this node holds a copy of for `holder` (of its life
  /// `life`, when it is known to have restarted since).
  std::uint64_t adopt(const std::string& holder, std::optional<std::uint64_t> life = {}) {
    mcp::Span span;
    if (auto* tracer = svc.server->tracer()) {
      span = tracer->start("mcpmesh.adopt", mcp::SpanKind::kInternal);
      span.set_attribute("mcpmesh.adopt.holder", holder);
    }
    std::uint64_t store_epoch = 0;
    auto copies = store->take(holder, &store_epoch);
    auto hm = view->member(holder);
    std::uint64_t holder_epoch = life ? *life : hm ? hm->epoch : store_epoch;
    std::set<std::pair<std::string, std::uint64_t>> sets{{holder, holder_epoch}};
    std::uint64_t n = 0, skipped = 0, failed = 0;
    std::size_t contexts = svc.pool ? svc.pool->size() : 1;
    for (auto& c : copies) {
      // Another live node already continues this set (it adopted it first): leave it there.
      if (auto a = view->adoption(c.record.owner, c.record.epoch);
          a && a->holder != holder && a->holder != cfg.node_id) {
        auto h = view->member(a->holder);
        if (h && live(h->state)) {
          ++skipped;
          continue;
        }
      }
      auto owner = c.record.owner;
      auto owner_epoch = c.record.epoch;
      auto* context = svc.pool ? &svc.pool->at(n % contexts) : nullptr;
      auto restored =
          svc.server->restore_session(std::move(c.record), std::move(c.events), context);
      if (!restored) {
        adopt_failures.fetch_add(1, std::memory_order_relaxed);
        ++failed;
        continue;
      }
      ++n;
      sets.emplace(owner, owner_epoch);
    }
    auto version = view->max_adoption_version();
    for (auto& [node, e] : sets) {
      ClusterView::Adoption a{node, e, cfg.node_id, ++version};
      view->apply_adoption(a);
      loop->post([this, a] {
        if (!stopped) delegate->broadcast_adoption(a);
      });
    }
    view->mark_adopted_here(holder, holder_epoch);
    adopted_sessions.fetch_add(n, std::memory_order_relaxed);
    adoptions.fetch_add(1, std::memory_order_relaxed);
    spdlog::info(
        "cluster {}: continuing {} sessions of {} ({} copies, {} held elsewhere, {} failed)",
        cfg.node_id, n, holder, copies.size(), skipped, failed);
    if (span.recording()) {
      span.set_attribute("mcpmesh.adopt.sessions", static_cast<std::int64_t>(n));
      span.set_attribute("mcpmesh.adopt.held_elsewhere", static_cast<std::int64_t>(skipped));
      span.set_attribute("mcpmesh.adopt.failed", static_cast<std::int64_t>(failed));
      if (failed > 0) span.set_error(std::to_string(failed) + " sessions could not be restored");
    }
    return n;
  }

  /// Mesh thread: an adoption this node had not heard of.
  void on_adoption(const ClusterView::Adoption& a) {
    // (Copies of that set kept for its previous holder are not dropped here: news can arrive out
    // of order, and a copy dropped on a stale adoption is a session lost when its holder dies.
    // The previous holder's copies go when it is confirmed dead and someone else continued
    // them, or when it restarted; see maybe_adopt and continue_previous_life.)
    if (a.holder == cfg.node_id || draining.load()) return;
    if (a.node != cfg.node_id || a.epoch != svc.server->epoch()) {
      // Sessions this node continued for another (a.node's life a.epoch; or for an earlier life
      // of its own, which came back to it through a chain of take-overs) are now continued by
      // a.holder: this node was declared dead while it held them, wrongly or not. Stop serving
      // them here, or two nodes would answer for them for good.
      std::size_t released = 0;
      for (auto& s : svc.server->sessions()) {
        std::string_view owner;
        std::uint64_t e = 0;
        if (mcp::parse_session_id(s->id(), owner, e) && owner == a.node && e == a.epoch) {
          svc.server->close_session(s->id());
          ++released;
        }
      }
      if (released > 0) {
        spdlog::warn(
            "cluster {}: {} continues the {} sessions of {} (epoch {:x}) held here; closed "
            "here",
            cfg.node_id, a.holder, released, a.node, a.epoch);
      }
      return;
    }
    // Our sessions of this epoch are continued elsewhere (we were declared dead, wrongly or
    // not): stop serving them here, and create new sessions under a new epoch.
    auto old_epoch = svc.server->epoch();
    auto new_epoch = std::max(wall_ms(), old_epoch + 1);
    svc.server->set_epoch(new_epoch);
    view->set_self_epoch(new_epoch);
    replicator->set_epoch(new_epoch);
    bus->set_epoch(new_epoch);
    {
      std::lock_guard lock(meta_mu);
      epoch = new_epoch;
      renewal = a;
    }
    announce_meta();
    std::size_t closed = 0;
    for (auto& s : svc.server->sessions()) {
      std::string_view owner;
      std::uint64_t e = 0;
      if (mcp::parse_session_id(s->id(), owner, e) && owner == cfg.node_id && e == old_epoch) {
        svc.server->close_session(s->id());
        ++closed;
      }
    }
    epoch_renewals.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn(
        "cluster {}: {} continues this node's sessions of epoch {:x}; {} closed here, new "
        "sessions use epoch {:x}",
        cfg.node_id, a.holder, old_epoch, closed, new_epoch);
  }

  /// Membership loop: figures for /metrics and convergence, once a second.
  void snapshot() {
    {
      std::lock_guard lock(snap_mu);
      counters = membership->counters();
      local_health = membership->local_health();
      unverified = membership->unverified_count();
    }
    if (membership->joined()) view->set_converged(true);
    snapshot_timer = loop->schedule(std::chrono::seconds(1), [this] {
      if (!stopped) snapshot();
    });
  }

  void stop() {
    if (stopped) return;
    if (server) server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
    run_on_loop([this] {
      stopped = true;
      if (snapshot_timer) loop->cancel(snapshot_timer);
      if (heartbeat_timer) loop->cancel(heartbeat_timer);
      membership->set_delegate(nullptr);
      membership->stop();
    });
    transport->shutdown();
    loop->join();
    if (mesh_work) {
      mesh_work.reset();
      mesh_io.stop();
      if (mesh_thread.joinable()) mesh_thread.join();
    }
  }
};

std::unique_ptr<ClusterNode> ClusterNode::start(const ClusterNodeConfig& cfg,
                                                ClusterNodeServices svc) {
  if (cfg.node_id.empty()) throw std::runtime_error("cluster: node id is required");
  MembershipConfig mcfg = MembershipConfig::profile(cfg.profile);
  mcfg.cluster_name = cfg.cluster_name;
  auto [host, port] = split_host_port(cfg.listen);
  std::string advertise = cfg.advertise;
  if (advertise.empty() && wildcard(host)) {
    throw std::runtime_error("cluster: bound to a wildcard address (" + cfg.listen +
                             "): give --advertise HOST:PORT, the address other nodes dial");
  }

  auto impl = std::make_unique<Impl>();
  impl->cfg = cfg;
  impl->svc = svc;
  impl->auth = std::make_unique<ClusterAuth>(cfg.secret, cfg.node_id);
  impl->loop = std::make_unique<EventLoop>();
  impl->transport = std::make_unique<GrpcTransport>(
      *impl->loop, 16, mcfg.max_state_members, mcfg.max_app_state_bytes, impl->auth.get(), cfg.tls);
  impl->view = std::make_unique<ClusterView>(cfg.node_id);
  if (svc.server) {
    impl->epoch = svc.server->epoch();
    impl->view->set_self_epoch(impl->epoch);
  }

  // The services need the Membership at registration; its advertised address needs the bound
  // port. So: create it with a provisional address, bind, then fix the address on the loop
  // before start() (nobody can know our port before that, so nobody has talked to us yet).
  MemberMeta self;
  self.node_id = cfg.node_id;
  self.grpc_addr = advertise.empty() ? cfg.listen : advertise;
  self.http_addr = cfg.http_advertise;
  self.version = cfg.version;
  self.app = impl->node_meta();
  impl->membership = std::make_unique<Membership>(mcfg, self, *impl->loop, *impl->transport,
                                                  std::random_device{}());
  impl->membership_service =
      std::make_unique<MembershipService>(*impl->loop, *impl->membership, mcfg, impl->auth.get());
  impl->admin_service = std::make_unique<AdminService>(
      *impl->loop, *impl->membership, impl->membership_service.get(), impl->auth.get(), cfg.tls);

  std::size_t max_message = std::max<std::size_t>(4 << 20, cfg.max_body_bytes + (1 << 20));
  grpc::ServerBuilder builder;
  int bound_port = 0;
  builder.AddListeningPort(cfg.listen, server_credentials(cfg.tls), &bound_port);
  // The port is this process's alone: with port sharing a second process could bind the same
  // address and answer for this node.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.SetMaxReceiveMessageSize(static_cast<int>(max_message));
  builder.RegisterService(impl->membership_service.get());
  builder.RegisterService(impl->admin_service.get());

  if (svc.server) {
    impl->channels = std::make_unique<PeerChannels>(cfg.tls, max_message);
    LinkSettings link{.heartbeat = std::max(cfg.relay_silence / 5, std::chrono::milliseconds(20)),
                      .silence = cfg.relay_silence};
    impl->forward_client = std::make_unique<ForwardClient>(
        *impl->auth, cfg.tls, impl->mesh_io.get_executor(),
        ForwardClientConfig{.self_id = cfg.node_id, .timeout = cfg.forward_timeout, .link = link});
    if (svc.http) {
      impl->forward_service = std::make_unique<ForwardService>(
          *impl->auth, *svc.http,
          ForwardServiceLimits{.max_body_bytes = cfg.max_body_bytes,
                               .max_header_bytes = cfg.max_header_bytes,
                               .max_hops = cfg.max_forward_hops,
                               .max_links = cfg.max_relay_links,
                               .link = link},
          cfg.tls);
    }
    impl->store = std::make_unique<ReplicaStore>(
        ReplicaLimits{.max_sessions_per_holder = svc.server->config().max_sessions,
                      .max_sessions = 4 * svc.server->config().max_sessions,
                      .max_events = svc.server->config().streams.buffer_events,
                      .max_event_bytes = cfg.max_body_bytes});
    Impl* raw = impl.get();
    impl->replicator = std::make_unique<Replicator>(
        *svc.server, *impl->channels, *impl->auth, impl->mesh_io.get_executor(),
        ReplicatorConfig{.self_id = cfg.node_id,
                         .replicas = cfg.replicas,
                         .max_events = svc.server->config().streams.buffer_events},
        [raw](std::vector<std::string> in_sync) {
          {
            std::lock_guard lock(raw->meta_mu);
            raw->isr = std::move(in_sync);
          }
          raw->announce_meta();
        });
    impl->replicator->set_epoch(impl->epoch);
    impl->replication_service = std::make_unique<ReplicationService>(
        *impl->auth, *impl->store, *impl->view,
        [raw](std::string holder, std::function<void(std::uint64_t)> done) {
          asio::post(raw->mesh_io, [raw, holder = std::move(holder), done = std::move(done)] {
            done(raw->adopt(holder));
          });
        });
    impl->replication_service->set_tracer(svc.server->tracer());
    builder.RegisterService(impl->replication_service.get());
    impl->node_admin_service = std::make_unique<NodeAdminService>(
        *impl->auth, NodeAdminSources{.node_id = cfg.node_id,
                                      .server = svc.server,
                                      .http = svc.http,
                                      .view = impl->view.get(),
                                      .store = impl->store.get(),
                                      .draining = [raw] { return raw->draining.load(); }});
    builder.RegisterService(impl->node_admin_service.get());
    impl->interest = std::make_unique<InterestTracker>(svc.server->subscriptions(), impl->epoch);
    impl->bus =
        std::make_unique<NotificationBus>(*svc.server, *impl->view, *impl->channels, *impl->auth,
                                          *impl->interest, BusConfig{.self_id = cfg.node_id});
    impl->bus->set_epoch(impl->epoch);
    // Half the shortest time in which the others can declare a stopped node dead (a probe
    // period and the least suspicion, see docs/CLUSTER.md §3): a stall that long may have.
    impl->gate = std::make_unique<Gate>(*impl->view, cfg.node_id,
                                        (mcfg.probe_interval + mcfg.suspicion_min(1)) / 2);
    impl->retry_after = 2 * (mcfg.probe_interval + mcfg.suspicion_min(1));
    builder.RegisterService(impl->bus.get());
    impl->delegate = std::make_unique<MeshDelegate>(
        cfg.node_id, *impl->view, *impl->interest, *impl->membership,
        MeshDelegate::Hooks{
            .on_adoption =
                [raw](const ClusterView::Adoption& a) {
                  asio::post(raw->mesh_io, [raw, a] { raw->on_adoption(a); });
                },
            .on_interest_gap =
                [raw](const std::string& node) {
                  if (auto m = raw->view->member(node)) raw->bus->fetch_interest(node, m->address);
                },
        });
    impl->observer = std::make_unique<Observer>(
        *impl->replicator, *impl->interest,
        [raw](std::function<void()> done) { raw->publish_interest(std::move(done)); },
        [raw] {
          if (raw->interest_flush_scheduled.exchange(true)) return;
          asio::post(raw->mesh_io, [raw] {
            raw->interest_flush_scheduled = false;
            raw->publish_interest({});
          });
        });
    impl->locator = std::make_unique<Locator>(*impl->view, *impl->forward_client);
  }

  impl->server = builder.BuildAndStart();
  if (!impl->server || bound_port == 0) {
    impl->transport->shutdown();
    throw std::runtime_error("cannot listen on " + cfg.listen +
                             " (--cluster): the address is in use or not this host's");
  }
  impl->bound = advertise.empty() ? host + ":" + std::to_string(bound_port) : advertise;

  if (svc.server) {
    // Sessions created from here on are replicated; the ones before (none, at start) are not.
    svc.server->set_observer(impl->observer.get());
    svc.server->set_fanout(impl->bus.get());
    svc.server->set_delivery_gate(impl->gate.get());
    if (svc.http) svc.http->set_locator(impl->locator.get());
    impl->mesh_work.emplace(impl->mesh_io.get_executor());
    impl->mesh_thread = std::thread([raw = impl.get()] { raw->mesh_io.run(); });
  }

  Impl* raw = impl.get();
  std::vector<std::string> seeds = cfg.seeds;
  std::string bound = impl->bound;
  impl->run_on_loop([raw, seeds, bound] {
    raw->membership->add_listener(
        [raw](const MemberView& v, MemberState old) { raw->on_change(v, old); });
    if (raw->delegate) raw->membership->set_delegate(raw->delegate.get());
    raw->membership->set_self_addr(bound);
    raw->membership->start(seeds);
    raw->snapshot();
    if (raw->gate) raw->heartbeat();
  });
  spdlog::info("cluster {} listening on {} (profile {}, {} seeds, {} replicas)", cfg.node_id,
               impl->bound, cfg.profile, cfg.seeds.size(), cfg.replicas);
  return std::unique_ptr<ClusterNode>(new ClusterNode(std::move(impl)));
}

ClusterNode::ClusterNode(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ClusterNode::~ClusterNode() {
  if (!impl_) return;
  if (impl_->svc.server) {
    impl_->svc.server->set_observer(nullptr);
    impl_->svc.server->set_fanout(nullptr);
    impl_->svc.server->set_delivery_gate(nullptr);
  }
  if (impl_->svc.http) impl_->svc.http->set_locator(nullptr);
  impl_->stop();
}

std::string ClusterNode::bound_address() const { return impl_->bound; }

transport::SessionLocator* ClusterNode::locator() { return impl_->locator.get(); }

void ClusterNode::set_drain_handler(std::function<bool()> start_drain) {
  impl_->admin_service->set_drain_handler(std::move(start_drain));
}

std::optional<std::uint64_t> ClusterNode::hand_over(std::chrono::milliseconds deadline) {
  auto& impl = *impl_;
  if (!impl.mcp()) return std::nullopt;
  impl.draining = true;
  auto until = std::chrono::steady_clock::now() + deadline;
  auto flushed = std::make_shared<std::promise<bool>>();
  auto flushed_f = flushed->get_future();
  impl.replicator->flush(deadline / 2, [flushed](bool ok) { flushed->set_value(ok); });
  if (flushed_f.wait_until(until) != std::future_status::ready || !flushed_f.get()) {
    spdlog::warn("cluster {}: replicas did not confirm every change before the hand-over",
                 impl.cfg.node_id);
  }
  auto in_sync = impl.replicator->in_sync();
  if (in_sync.empty()) {
    spdlog::warn("cluster {}: no in-sync replica to hand sessions to", impl.cfg.node_id);
    return std::nullopt;
  }
  auto heir = in_sync.front();
  auto member = impl.view->member(heir);
  if (!member) return std::nullopt;
  auto answer = std::make_shared<std::promise<std::optional<std::uint64_t>>>();
  auto answer_f = answer->get_future();
  pb::HandoffRequest request;
  request.set_holder(impl.cfg.node_id);
  request.set_holder_epoch(impl.svc.server->epoch());
  auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(
      until - std::chrono::steady_clock::now());
  call_unary<pb::HandoffRequest, pb::HandoffReply>(
      *impl.auth, ReplicationService::kHandoffMethod, impl.channels->get(member->address), request,
      std::max(remaining, std::chrono::milliseconds(100)),
      [](PeerStubs& stubs, grpc::ClientContext* ctx, const pb::HandoffRequest* req,
         pb::HandoffReply* resp,
         auto cb) { stubs.replication->async()->Handoff(ctx, req, resp, std::move(cb)); },
      [answer](grpc::Status status, const pb::HandoffReply& reply) {
        answer->set_value(status.ok() ? std::optional<std::uint64_t>(reply.adopted())
                                      : std::nullopt);
      });
  if (answer_f.wait_until(until + std::chrono::milliseconds(200)) != std::future_status::ready) {
    return std::nullopt;
  }
  auto adopted = answer_f.get();
  if (adopted) {
    impl.replicator->stop();
    // Route this node's own sessions to the heir at once, before gossip brings the news back.
    ClusterView::Adoption a{impl.cfg.node_id, impl.svc.server->epoch(), heir,
                            impl.view->max_adoption_version() + 1};
    impl.view->apply_adoption(a);
    spdlog::info("cluster {}: {} continues this node's {} sessions", impl.cfg.node_id, heir,
                 *adopted);
  }
  return adopted;
}

void ClusterNode::leave(std::chrono::milliseconds deadline) {
  auto& impl = *impl_;
  if (impl.stopped) return;
  auto until = std::chrono::steady_clock::now() + deadline;
  impl.run_on_loop([&impl] { impl.membership->leave(); });
  // The direct `left` notices are one-way RPCs with their own deadline: wait for them, and a
  // little gossip, but never past the caller's deadline.
  while (std::chrono::steady_clock::now() < until && impl.transport->oneway_in_flight() > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (impl.svc.server) {
    impl.svc.server->set_observer(nullptr);
    impl.svc.server->set_fanout(nullptr);
    impl.svc.server->set_delivery_gate(nullptr);
  }
  impl.stop();
}

void ClusterNode::render_metrics(std::string& out) const {
  auto& impl = *impl_;
  auto line = [&out](std::string_view name, std::string_view labels, double value) {
    out += "mcpmesh_cluster_";
    out += name;
    if (!labels.empty()) {
      out += '{';
      out += labels;
      out += '}';
    }
    out += ' ';
    out += std::to_string(static_cast<long long>(value));
    out += '\n';
  };
  auto counts = impl.view->member_counts();
  out += "# HELP mcpmesh_cluster_members cluster members by state, as this node sees them\n";
  out += "# TYPE mcpmesh_cluster_members gauge\n";
  const char* states[] = {"alive", "suspect", "dead", "left"};
  for (std::size_t i = 0; i < 4; ++i) {
    line("members", std::string("state=\"") + states[i] + "\"", static_cast<double>(counts[i]));
  }
  {
    std::lock_guard lock(impl.snap_mu);
    out += "# TYPE mcpmesh_cluster_local_health gauge\n";
    line("local_health", {}, impl.local_health);
    out += "# TYPE mcpmesh_cluster_membership_events_total counter\n";
    const auto& c = impl.counters;
    std::pair<const char*, std::uint64_t> events[] = {
        {"probes", c.probes},
        {"probe_failures", c.probe_failures},
        {"suspicions_started", c.suspicions_started},
        {"declared_dead", c.declared_dead},
        {"refutations", c.refutations},
        {"push_pulls", c.push_pulls},
        {"rejected_malformed", c.rejected_malformed},
        {"rejected_replay", c.rejected_replay},
        {"rejected_cluster", c.rejected_cluster},
        {"rejected_id_conflict", c.rejected_id_conflict},
        {"rejected_unverified", c.rejected_unverified},
        {"unverified_dropped", c.unverified_dropped},
        {"epoch_resets", c.epoch_resets},
        {"gossip_dropped", c.gossip_dropped},
    };
    for (auto& [name, v] : events) {
      line("membership_events_total", std::string("event=\"") + name + "\"",
           static_cast<double>(v));
    }
    out += "# TYPE mcpmesh_cluster_unverified_members gauge\n";
    line("unverified_members", {}, static_cast<double>(impl.unverified));
  }
  auto auth = impl.auth->counters();
  out += "# HELP mcpmesh_cluster_auth_refused_total cluster calls refused: no valid call token\n";
  out += "# TYPE mcpmesh_cluster_auth_refused_total counter\n";
  std::pair<const char*, std::uint64_t> refusals[] = {
      {"missing", auth.missing},
      {"malformed", auth.malformed},
      {"bad_signature", auth.bad_signature},
      {"skew", auth.skew},
      {"replay", auth.replay},
      {"cache_full", auth.cache_full},
  };
  for (auto& [reason, v] : refusals) {
    line("auth_refused_total", std::string("reason=\"") + reason + "\"", static_cast<double>(v));
  }
  if (!impl.mcp()) return;
  // Sessions by state: held here (created or continued), copies held for other nodes.
  std::size_t owned = 0, adopted = 0;
  for (auto& s : impl.svc.server->sessions()) {
    std::string_view owner;
    std::uint64_t e = 0;
    if (mcp::parse_session_id(s->id(), owner, e) && owner == impl.cfg.node_id) {
      ++owned;
    } else {
      ++adopted;
    }
  }
  out +=
      "# HELP mcpmesh_cluster_sessions sessions by state: created here, continued here "
      "after another node held them, copies held for other nodes\n";
  out += "# TYPE mcpmesh_cluster_sessions gauge\n";
  line("sessions", "state=\"owned\"", static_cast<double>(owned));
  line("sessions", "state=\"adopted\"", static_cast<double>(adopted));
  line("sessions", "state=\"replica\"", static_cast<double>(impl.store->session_count()));
  out += "# TYPE mcpmesh_cluster_adoptions_total counter\n";
  line("adoptions_total", {}, static_cast<double>(impl.adoptions.load()));
  out += "# TYPE mcpmesh_cluster_adopted_sessions_total counter\n";
  line("adopted_sessions_total", {}, static_cast<double>(impl.adopted_sessions.load()));
  out += "# TYPE mcpmesh_cluster_adoptions_deferred_total counter\n";
  line("adoptions_deferred_total", {}, static_cast<double>(impl.adoptions_deferred.load()));
  out += "# TYPE mcpmesh_cluster_quorate gauge\n";
  line("quorate", {}, impl.view->quorate() ? 1.0 : 0.0);
  out += "# TYPE mcpmesh_cluster_adopt_failures_total counter\n";
  line("adopt_failures_total", {}, static_cast<double>(impl.adopt_failures.load()));
  out += "# TYPE mcpmesh_cluster_epoch_renewals_total counter\n";
  line("epoch_renewals_total", {}, static_cast<double>(impl.epoch_renewals.load()));
  out +=
      "# HELP mcpmesh_cluster_delivery_fences_total notifications held until this node heard "
      "from the members that could have continued its sessions: after a stall of its loop, or "
      "a member back from dead\n";
  out += "# TYPE mcpmesh_cluster_delivery_fences_total counter\n";
  line("delivery_fences_total", "why=\"stall\"", static_cast<double>(impl.fences_stall.load()));
  line("delivery_fences_total", "why=\"rejoin\"", static_cast<double>(impl.fences_rejoin.load()));
  out += "# TYPE mcpmesh_cluster_delivery_fence_timeouts_total counter\n";
  line("delivery_fence_timeouts_total", {}, static_cast<double>(impl.fence_timeouts.load()));
  out += "# TYPE mcpmesh_cluster_delivery_fenced gauge\n";
  line("delivery_fenced", {}, impl.gate->fenced() ? 1 : 0);
  auto rs = impl.replicator->stats();
  out += "# TYPE mcpmesh_cluster_replication_batches_total counter\n";
  line("replication_batches_total", {}, static_cast<double>(rs.batches));
  out += "# TYPE mcpmesh_cluster_replication_failures_total counter\n";
  line("replication_failures_total", {}, static_cast<double>(rs.failures));
  out += "# TYPE mcpmesh_cluster_replication_full_syncs_total counter\n";
  line("replication_full_syncs_total", {}, static_cast<double>(rs.full_syncs));
  out +=
      "# HELP mcpmesh_cluster_replication_lag_ms from a change to its acknowledgement by "
      "the replica, last batch (and max since start)\n";
  out += "# TYPE mcpmesh_cluster_replication_lag_ms gauge\n";
  line("replication_lag_ms", "which=\"last\"", rs.last_lag_ms);
  line("replication_lag_ms", "which=\"max\"", rs.max_lag_ms);
  out += "# TYPE mcpmesh_cluster_replication_pending gauge\n";
  line("replication_pending", {}, static_cast<double>(rs.pending));
  out += "# TYPE mcpmesh_cluster_in_sync_replicas gauge\n";
  line("in_sync_replicas", {}, static_cast<double>(impl.replicator->in_sync().size()));
  out += "# TYPE mcpmesh_cluster_replica_refused_total counter\n";
  line("replica_refused_total", {},
       static_cast<double>(impl.store->refused() + impl.replication_service->refused()));
  out += "# TYPE mcpmesh_cluster_forward_calls_total counter\n";
  line("forward_calls_total", {}, static_cast<double>(impl.forward_client->calls()));
  out += "# TYPE mcpmesh_cluster_forward_batches_total counter\n";
  line("forward_batches_total", {}, static_cast<double>(impl.forward_client->batches()));
  out += "# TYPE mcpmesh_cluster_forward_streams_total counter\n";
  line("forward_streams_total", {}, static_cast<double>(impl.forward_client->streams()));
  out += "# TYPE mcpmesh_cluster_forward_failures_total counter\n";
  line("forward_failures_total", {}, static_cast<double>(impl.forward_client->failures()));
  if (impl.forward_service) {
    out += "# TYPE mcpmesh_cluster_forward_served_total counter\n";
    line("forward_served_total", {}, static_cast<double>(impl.forward_service->served()));
    out += "# TYPE mcpmesh_cluster_forward_refused_total counter\n";
    line("forward_refused_total", {}, static_cast<double>(impl.forward_service->refused()));
    out += "# TYPE mcpmesh_cluster_relay_links gauge\n";
    line("relay_links", {}, static_cast<double>(impl.forward_service->links()));
    out += "# TYPE mcpmesh_cluster_relay_links_refused_total counter\n";
    line("relay_links_refused_total", {},
         static_cast<double>(impl.forward_service->links_refused()));
  }
  auto bs = impl.bus->stats();
  out += "# TYPE mcpmesh_cluster_bus_messages_total counter\n";
  line("bus_messages_total", "outcome=\"published\"", static_cast<double>(bs.published));
  line("bus_messages_total", "outcome=\"failed\"", static_cast<double>(bs.failed));
  line("bus_messages_total", "outcome=\"delivered\"", static_cast<double>(bs.delivered));
  line("bus_messages_total", "outcome=\"duplicate\"", static_cast<double>(bs.duplicates));
  out += "# TYPE mcpmesh_cluster_interest_fetches_total counter\n";
  line("interest_fetches_total", {}, static_cast<double>(bs.fetches));
  out += "# TYPE mcpmesh_cluster_interest_uris gauge\n";
  line("interest_uris", {}, static_cast<double>(impl.view->interest_uri_count()));
  out += "# TYPE mcpmesh_cluster_adoption_entries gauge\n";
  line("adoption_entries", {}, static_cast<double>(impl.view->adoptions().size()));
  out += "# TYPE mcpmesh_cluster_gossip_refused_total counter\n";
  line("gossip_refused_total", {},
       static_cast<double>(impl.view->refused() + impl.delegate->malformed()));
}

}  // namespace mcpmesh::cluster
