#include "cluster/replication/replicator.hpp"

#include "registry/cluster_view.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include <algorithm>

namespace mcpmesh::cluster {

namespace asio = boost::asio;

struct Replicator::Link {
  Peer peer;
  bool desired = true;    // in the current replica set (else kept only while it is needed)
  bool in_sync = false;   // a full sync was acknowledged and every batch since
  bool need_full = true;  // the next batch starts a full sync
  bool in_flight = false;
  bool full_running = false;  // full_queue holds the rest of a full sync
  std::uint64_t seq = 0;
  std::unordered_map<std::string, Change> pending;
  Clock::time_point oldest{};  // when the oldest pending change was made
  std::deque<std::string> full_queue;
  std::uint64_t acked_mark = 0;  // every change up to this counter value is acknowledged
  std::chrono::milliseconds backoff{0};
  std::unique_ptr<asio::steady_timer> retry;
  bool retry_armed = false;
};

Replicator::Replicator(mcp::Server& server, PeerChannels& channels, const ClusterAuth& auth,
                       asio::any_io_executor executor, ReplicatorConfig config,
                       std::function<void(std::vector<std::string>)> announce)
    : server_(server),
      channels_(channels),
      auth_(auth),
      executor_(std::move(executor)),
      config_(std::move(config)),
      announce_(std::move(announce)) {}

Replicator::~Replicator() {
  std::lock_guard lock(mutex_);
  stopped_ = true;
  *alive_ = false;
  for (auto& [id, link] : links_) {
    if (link->retry) link->retry->cancel();
  }
}

void Replicator::mark_locked(const std::string& id, const std::function<void(Change&)>& edit) {
  if (stopped_) return;
  ++change_counter_;
  auto now = Clock::now();
  for (auto& [peer, link] : links_) {
    if (link->pending.empty()) link->oldest = now;
    edit(link->pending[id]);
  }
  schedule_pump();
}

void Replicator::on_record(const mcp::SessionRecord& record) {
  if (config_.replicas == 0) return;  // sessions die with their node: nothing to keep
  auto bytes = record.serialize();
  std::lock_guard lock(mutex_);
  records_[record.id] = std::move(bytes);
  mark_locked(record.id, [](Change& c) {
    c.record_changed = true;
    c.deleted = false;
  });
}

void Replicator::on_standalone_event(const std::string& session_id, std::uint64_t seq,
                                     const mcp::Payload& message) {
  if (config_.replicas == 0) return;
  std::lock_guard lock(mutex_);
  if (!records_.contains(session_id)) return;
  mark_locked(session_id, [&](Change& c) {
    c.events.emplace_back(seq, message);
    if (c.events.size() > config_.max_events) c.events.erase(c.events.begin());
  });
}

void Replicator::on_closed(const std::string& session_id) {
  std::lock_guard lock(mutex_);
  if (records_.erase(session_id) == 0) return;
  mark_locked(session_id, [](Change& c) {
    c.deleted = true;
    c.record_changed = false;
    c.events.clear();
  });
}

void Replicator::set_candidates(std::vector<Peer> candidates) {
  std::vector<std::string> announce;
  bool changed = false;
  {
    std::lock_guard lock(mutex_);
    candidates_ = std::move(candidates);
    update_links_locked();
    announce_if_changed_locked(announce, changed);
    schedule_pump();
  }
  if (changed) {
    asio::post(executor_, [this, announce, alive = std::weak_ptr<bool>(alive_)]() mutable {
      if (alive.lock()) announce_(std::move(announce));
    });
  }
}

void Replicator::update_links_locked() {
  std::vector<std::string> ids;
  for (auto& c : candidates_) ids.push_back(c.id);
  auto order = registry::ClusterView::rendezvous(config_.self_id, ids, ids.size());
  // The replicas that hold an in-sync copy stay: moving one to a node that has just (re)joined
  // would release the old copy while the others may still know only the old replica as the
  // heir, and a death in that window would lose the sessions. Free places go in rendezvous
  // order.
  std::vector<std::string> desired;
  for (auto& id : order) {
    if (desired.size() >= config_.replicas) break;
    auto it = links_.find(id);
    const Peer& peer = *std::find_if(candidates_.begin(), candidates_.end(),
                                     [&](const Peer& p) { return p.id == id; });
    if (it != links_.end() && it->second->in_sync && it->second->peer.epoch == peer.epoch &&
        it->second->peer.address == peer.address) {
      desired.push_back(id);
    }
  }
  for (auto& id : order) {
    if (desired.size() >= config_.replicas) break;
    if (std::find(desired.begin(), desired.end(), id) == desired.end()) desired.push_back(id);
  }
  for (auto& [id, link] : links_) link->desired = false;
  for (auto& id : desired) {
    const Peer& peer = *std::find_if(candidates_.begin(), candidates_.end(),
                                     [&](const Peer& p) { return p.id == id; });
    auto it = links_.find(id);
    if (it == links_.end()) {
      auto link = std::make_unique<Link>();
      link->peer = peer;
      it = links_.emplace(id, std::move(link)).first;
    } else if (it->second->peer.epoch != peer.epoch || it->second->peer.address != peer.address) {
      // The replica restarted: it holds nothing of ours any more.
      it->second->peer = peer;
      it->second->in_sync = false;
      it->second->need_full = true;
      channels_.reset(peer.address);
    }
    it->second->desired = true;
  }
  // A replica that left the set stays while it is the only in-sync copy, so that the sessions
  // always have an heir; once every desired replica is in sync it is let go.
  bool all_desired_in_sync = true;
  for (auto& [id, link] : links_) {
    if (link->desired && !link->in_sync) all_desired_in_sync = false;
  }
  for (auto it = links_.begin(); it != links_.end();) {
    auto& link = *it->second;
    bool candidate = std::any_of(candidates_.begin(), candidates_.end(),
                                 [&](const Peer& p) { return p.id == it->first; });
    if (!link.desired && (!link.in_sync || all_desired_in_sync || !candidate)) {
      if (link.retry) link.retry->cancel();
      if (candidate) release(link.peer);
      it = links_.erase(it);
    } else {
      ++it;
    }
  }
}

void Replicator::release(const Peer& peer) {
  // An empty full sync: the replica drops the copies it kept for this node. Best effort: if it
  // is lost, the copies only take memory there (this node no longer names it as heir).
  pb::ReplicationBatch batch;
  batch.set_holder(config_.self_id);
  batch.set_holder_epoch(epoch_);
  batch.set_seq(1);
  batch.set_full(true);
  call_unary<pb::ReplicationBatch, pb::ReplicationAck>(
      auth_, kReplicateMethod, channels_.get(peer.address), std::move(batch), config_.call_timeout,
      [](PeerStubs& stubs, grpc::ClientContext* ctx, const pb::ReplicationBatch* req,
         pb::ReplicationAck* resp,
         auto cb) { stubs.replication->async()->Replicate(ctx, req, resp, std::move(cb)); },
      [](grpc::Status, const pb::ReplicationAck&) {});
}

void Replicator::announce_if_changed_locked(std::vector<std::string>& out, bool& changed) {
  std::vector<std::string> ids;
  for (auto& c : candidates_) ids.push_back(c.id);
  auto order = registry::ClusterView::rendezvous(config_.self_id, ids, ids.size());
  std::vector<std::string> in_sync;
  for (auto& id : order) {
    auto it = links_.find(id);
    if (it != links_.end() && it->second->in_sync) in_sync.push_back(id);
  }
  if (in_sync != announced_) {
    announced_ = in_sync;
    out = in_sync;
    changed = true;
  }
}

void Replicator::set_epoch(std::uint64_t epoch) {
  std::lock_guard lock(mutex_);
  if (epoch == epoch_) return;
  epoch_ = epoch;
  ++generation_;
  for (auto& [id, link] : links_) {
    link->need_full = true;
    link->full_running = false;
    link->full_queue.clear();
    link->pending.clear();
    link->in_flight = false;
    link->seq = 0;
  }
  schedule_pump();
}

void Replicator::stop() {
  std::vector<Flush> flushes;
  {
    std::lock_guard lock(mutex_);
    stopped_ = true;
    for (auto& [id, link] : links_) {
      if (link->retry) link->retry->cancel();
      link->pending.clear();
    }
    flushes.swap(flushes_);
  }
  for (auto& f : flushes) {
    asio::post(executor_, [done = std::move(f.done)] { done(false); });
  }
}

std::vector<std::string> Replicator::in_sync() const {
  std::lock_guard lock(mutex_);
  return announced_;
}

Replicator::Stats Replicator::stats() const {
  std::lock_guard lock(mutex_);
  Stats s = stats_;
  for (auto& [id, link] : links_) s.pending = std::max(s.pending, link->pending.size());
  return s;
}

void Replicator::schedule_pump() {
  if (pump_scheduled_ || stopped_) return;
  pump_scheduled_ = true;
  asio::post(executor_, [this, alive = std::weak_ptr<bool>(alive_)] {
    if (alive.lock()) pump();
  });
}

void Replicator::pump() {
  std::lock_guard lock(mutex_);
  pump_scheduled_ = false;
  if (stopped_) return;
  for (auto& [id, link] : links_) {
    if (link->in_flight || link->retry_armed) continue;
    if (link->need_full || link->full_running || !link->pending.empty()) send(*link);
  }
}

void Replicator::send(Link& link) {
  pb::ReplicationBatch batch;
  batch.set_holder(config_.self_id);
  batch.set_holder_epoch(epoch_);
  std::size_t bytes = 0;
  std::size_t sessions = 0;
  if (link.need_full) {
    // The full sync covers the current state of every session; changes made from here on
    // are marked again and follow it.
    link.need_full = false;
    link.full_running = true;
    link.in_sync = false;
    link.seq = 0;
    link.pending.clear();
    link.full_queue.clear();
    for (auto& [id, record] : records_) link.full_queue.push_back(id);
    batch.set_full(true);
    ++stats_.full_syncs;
  }
  if (link.full_running) {
    while (!link.full_queue.empty() && bytes < config_.max_batch_bytes) {
      auto id = std::move(link.full_queue.front());
      link.full_queue.pop_front();
      auto it = records_.find(id);
      if (it == records_.end()) continue;  // closed meanwhile
      auto* s = batch.add_sessions();
      s->set_id(id);
      s->set_record(it->second);
      bytes += id.size() + it->second.size();
      if (auto session = server_.find_session(id); session && session->streams()) {
        auto events = session->streams()->standalone_events();
        std::size_t first =
            events.size() > config_.max_events ? events.size() - config_.max_events : 0;
        for (std::size_t i = first; i < events.size(); ++i) {
          auto* e = s->add_events();
          e->set_seq(events[i].first);
          e->set_data(*events[i].second);
          bytes += events[i].second->size();
        }
      }
      ++sessions;
    }
  } else {
    for (auto it = link.pending.begin();
         it != link.pending.end() && bytes < config_.max_batch_bytes;) {
      auto* s = batch.add_sessions();
      s->set_id(it->first);
      bytes += it->first.size();
      auto& change = it->second;
      if (change.deleted) {
        s->set_deleted(true);
      } else if (change.record_changed) {
        if (auto r = records_.find(it->first); r != records_.end()) {
          s->set_record(r->second);
          bytes += r->second.size();
        }
      }
      for (auto& [seq, data] : change.events) {
        auto* e = s->add_events();
        e->set_seq(seq);
        e->set_data(*data);
        bytes += data->size();
      }
      ++sessions;
      it = link.pending.erase(it);
    }
  }
  batch.set_seq(++link.seq);
  link.in_flight = true;
  ++stats_.batches;
  stats_.sessions_sent += sessions;
  // Everything marked so far is in this batch (or an earlier one) once the queue and the
  // pending set are empty: the ack then covers the counter's current value.
  bool covers_all = link.pending.empty() && link.full_queue.empty();
  std::uint64_t mark = covers_all ? change_counter_ : link.acked_mark;
  auto oldest = link.oldest;
  auto peer = link.peer.id;
  auto generation = generation_;
  auto seq = batch.seq();
  // Replication is its own trace (a batch carries the changes of many requests).
  auto span = std::make_shared<mcp::Span>();
  if (auto* tracer = server_.tracer()) {
    *span = tracer->start(std::string(kReplicateMethod.substr(1)), mcp::SpanKind::kClient);
    span->set_attribute("rpc.system", std::string("grpc"));
    span->set_attribute("mcpmesh.replication.peer", peer);
    span->set_attribute("mcpmesh.replication.sessions", static_cast<std::int64_t>(sessions));
    span->set_attribute("mcpmesh.replication.bytes", static_cast<std::int64_t>(bytes));
    span->set_attribute("mcpmesh.replication.full", batch.full());
  }
  const mcp::TraceContext* trace = span->recording() ? &span->context() : nullptr;
  call_unary<pb::ReplicationBatch, pb::ReplicationAck>(
      auth_, kReplicateMethod, channels_.get(link.peer.address), std::move(batch),
      config_.call_timeout,
      [](PeerStubs& stubs, grpc::ClientContext* ctx, const pb::ReplicationBatch* req,
         pb::ReplicationAck* resp,
         auto cb) { stubs.replication->async()->Replicate(ctx, req, resp, std::move(cb)); },
      [this, alive = std::weak_ptr<bool>(alive_), peer, generation, seq, mark, oldest, span](
          grpc::Status status, const pb::ReplicationAck& ack) {
        bool ok = status.ok() && ack.seq() == seq;
        bool need_full = ack.need_full();
        if (!status.ok()) {
          spdlog::debug("replication to {} failed: {}", peer, status.error_message());
          span->set_error(status.error_message());
        } else if (need_full) {
          span->set_attribute("mcpmesh.replication.need_full", true);
        }
        span->end();
        asio::post(executor_, [this, alive, peer, generation, seq, ok, need_full, mark, oldest] {
          if (!alive.lock()) return;
          on_ack(peer, generation, seq, ok, need_full, oldest);
          std::lock_guard lock(mutex_);
          if (auto it = links_.find(peer); it != links_.end() && ok && !need_full) {
            it->second->acked_mark = std::max(it->second->acked_mark, mark);
          }
          check_flushes_locked();
        });
      },
      trace);
}

void Replicator::on_ack(const std::string& peer, std::uint64_t generation, std::uint64_t seq,
                        bool ok, bool need_full, Clock::time_point oldest) {
  std::vector<std::string> announce;
  bool changed = false;
  {
    std::lock_guard lock(mutex_);
    if (generation != generation_ || stopped_) return;
    auto it = links_.find(peer);
    if (it == links_.end()) return;
    auto& link = *it->second;
    if (link.seq != seq) return;  // superseded
    link.in_flight = false;
    if (!ok || need_full) {
      // Whether a failed batch was applied is unknown: start over with everything.
      if (!ok) ++stats_.failures;
      link.need_full = true;
      link.full_running = false;
      link.full_queue.clear();
      if (link.in_sync && !ok) {
        // Still listed as heir until the next full sync fails too: a short outage of the
        // replica must not leave the sessions without one.
      }
      if (!ok) {
        link.backoff = std::clamp(link.backoff * 2, config_.retry_min, config_.retry_max);
        if (!link.retry) link.retry = std::make_unique<asio::steady_timer>(executor_);
        link.retry_armed = true;
        link.retry->expires_after(link.backoff);
        link.retry->async_wait(
            [this, alive = std::weak_ptr<bool>(alive_), peer](boost::system::error_code ec) {
              if (ec || !alive.lock()) return;
              std::lock_guard lock(mutex_);
              if (auto it = links_.find(peer); it != links_.end()) it->second->retry_armed = false;
              schedule_pump();
            });
      } else {
        schedule_pump();
      }
      return;
    }
    link.backoff = std::chrono::milliseconds(0);
    double lag = std::chrono::duration<double, std::milli>(Clock::now() - oldest).count();
    stats_.last_lag_ms = lag;
    stats_.max_lag_ms = std::max(stats_.max_lag_ms, lag);
    if (link.full_running && link.full_queue.empty()) {
      link.full_running = false;
      if (!link.in_sync) {
        link.in_sync = true;
        spdlog::info("replica {} is in sync ({} sessions)", peer, records_.size());
      }
    }
    update_links_locked();
    announce_if_changed_locked(announce, changed);
    schedule_pump();
  }
  if (changed) announce_(std::move(announce));
}

void Replicator::flush(std::chrono::milliseconds deadline, std::function<void(bool ok)> done) {
  std::lock_guard lock(mutex_);
  auto until = Clock::now() + deadline;
  flushes_.push_back({change_counter_, until, std::move(done)});
  auto timer = std::make_shared<asio::steady_timer>(executor_, deadline);
  timer->async_wait([this, timer, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code) {
    if (!alive.lock()) return;
    std::lock_guard lock(mutex_);
    check_flushes_locked();
  });
  schedule_pump();
  asio::post(executor_, [this, alive = std::weak_ptr<bool>(alive_)] {
    if (!alive.lock()) return;
    std::lock_guard lock(mutex_);
    check_flushes_locked();
  });
}

void Replicator::check_flushes_locked() {
  if (flushes_.empty()) return;
  auto now = Clock::now();
  for (auto it = flushes_.begin(); it != flushes_.end();) {
    bool covered = true;
    bool any = false;
    for (auto& [id, link] : links_) {
      if (!link->desired) continue;
      any = true;
      if (!link->in_sync || link->acked_mark < it->mark) covered = false;
    }
    bool ok = covered;  // no replica at all: nothing to wait for
    (void)any;
    if (ok || now >= it->deadline) {
      auto done = std::move(it->done);
      it = flushes_.erase(it);
      asio::post(executor_, [done = std::move(done), ok] { done(ok); });
    } else {
      ++it;
    }
  }
}

}  // namespace mcpmesh::cluster
