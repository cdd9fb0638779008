#include "cluster/bus/notification_bus.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace mcpmesh::cluster {

namespace pb = ::mcpmesh::v1;

// -- InterestTracker --------------------------------------------------------------------------

bool InterestTracker::hint(std::string_view uri) {
  // Read the truth after the change: hints from racing subscribe/unsubscribe calls may arrive
  // in any order, but the last one reads the final state.
  bool wanted = index_.has_subscribers(uri);
  std::lock_guard lock(mutex_);
  bool held = uris_.contains(uri);
  if (wanted == held) return false;
  std::string key(uri);
  if (wanted) {
    uris_.insert(key);
    if (!removed_.erase(key)) added_.insert(key);
  } else {
    uris_.erase(key);
    if (!added_.erase(key)) removed_.insert(key);
  }
  return true;
}

std::optional<InterestTracker::Delta> InterestTracker::take_delta() {
  std::lock_guard lock(mutex_);
  if (added_.empty() && removed_.empty()) return std::nullopt;
  Delta d;
  d.from = version_;
  d.to = ++version_;
  d.add.assign(added_.begin(), added_.end());
  d.remove.assign(removed_.begin(), removed_.end());
  added_.clear();
  removed_.clear();
  return d;
}

std::pair<std::uint64_t, std::vector<std::string>> InterestTracker::full() const {
  std::lock_guard lock(mutex_);
  // Changes not yet taken as a delta are left out, with the version they belong after: the
  // whole set and the deltas stay consistent.
  std::vector<std::string> uris;
  for (auto& u : uris_) {
    if (!added_.contains(u)) uris.push_back(u);
  }
  for (auto& u : removed_) uris.push_back(u);
  std::sort(uris.begin(), uris.end());
  return {version_, std::move(uris)};
}

// -- NotificationBus --------------------------------------------------------------------------

NotificationBus::NotificationBus(mcp::Server& server, registry::ClusterView& view,
                                 PeerChannels& channels, ClusterAuth& auth,
                                 InterestTracker& interest, BusConfig config)
    : server_(server),
      view_(view),
      channels_(channels),
      auth_(auth),
      interest_(interest),
      config_(std::move(config)) {}

void NotificationBus::resource_updated(std::string_view uri) {
  std::vector<std::string> targets;
  for (auto& node : view_.interested(uri)) {
    auto m = view_.member(node);
    if (m && (m->state == registry::ClusterView::NodeState::kAlive ||
              m->state == registry::ClusterView::NodeState::kSuspect)) {
      targets.push_back(node);
    } else if (auto heir = view_.heir_of(node)) {
      // The interested node failed: its heir continues (or is about to continue) its sessions.
      targets.push_back(*heir);
    }
  }
  if (targets.empty()) return;
  pb::BusMessage m;
  m.set_resource_updated(std::string(uri));
  publish(std::move(m), std::move(targets));
}

void NotificationBus::list_changed(mcp::ListKind kind) {
  std::vector<std::string> targets;
  for (auto& m : view_.members()) {
    if (m.state == registry::ClusterView::NodeState::kAlive ||
        m.state == registry::ClusterView::NodeState::kSuspect) {
      targets.push_back(m.id);
    }
  }
  pb::BusMessage m;
  m.set_list_changed(static_cast<std::uint32_t>(kind));
  publish(std::move(m), std::move(targets));
}

void NotificationBus::publish(pb::BusMessage message, std::vector<std::string> targets) {
  std::sort(targets.begin(), targets.end());
  targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
  std::erase(targets, config_.self_id);
  if (targets.empty()) return;
  message.set_origin(config_.self_id);
  message.set_origin_epoch(epoch_.load(std::memory_order_relaxed));
  message.set_seq(seq_.fetch_add(1, std::memory_order_relaxed) + 1);
  for (auto& t : targets) send(message, t, false);
}

void NotificationBus::send(const pb::BusMessage& message, const std::string& target, bool retried) {
  auto m = view_.member(target);
  if (!m || m->address.empty()) {
    failed_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  published_.fetch_add(1, std::memory_order_relaxed);
  call_unary<pb::BusMessage, pb::BusAck>(
      auth_, kPublishMethod, channels_.get(m->address), message, config_.timeout,
      [](PeerStubs& stubs, grpc::ClientContext* ctx, const pb::BusMessage* req, pb::BusAck* resp,
         auto cb) { stubs.bus->async()->Publish(ctx, req, resp, std::move(cb)); },
      [this, message, target, retried](grpc::Status status, const pb::BusAck&) {
        if (status.ok()) return;
        // The target failed: its heir continues its sessions. Receivers drop what they already
        // delivered, so sending the same message there cannot deliver it twice.
        auto heir = view_.heir_of(target);
        if (!retried && heir && *heir != target && *heir != config_.self_id) {
          send(message, *heir, true);
          return;
        }
        failed_.fetch_add(1, std::memory_order_relaxed);
        spdlog::debug("bus: {} did not take a notification: {}", target, status.error_message());
      });
}

bool NotificationBus::first_delivery(const std::string& origin, std::uint64_t epoch,
                                     std::uint64_t seq) {
  std::lock_guard lock(dedupe_mutex_);
  auto it = windows_.find(origin);
  if (it == windows_.end()) {
    if (windows_.size() >= registry::ClusterViewLimits{}.max_members) windows_.clear();
    it = windows_.emplace(origin, Window{}).first;
  }
  auto& w = it->second;
  if (epoch > w.epoch) w = Window{epoch, 0, {}};
  if (epoch < w.epoch) return false;  // an earlier life of the origin: stale
  constexpr std::uint64_t kWindow = 1024;
  if (seq > w.max_seq) {
    auto shift = seq - w.max_seq;
    w.seen = shift >= kWindow ? std::bitset<1024>() : (w.seen << shift);
    w.seen.set(0);
    w.max_seq = seq;
    return true;
  }
  auto back = w.max_seq - seq;
  if (back >= kWindow || w.seen.test(back)) return false;
  w.seen.set(back);
  return true;
}

grpc::ServerUnaryReactor* NotificationBus::Publish(grpc::CallbackServerContext* context,
                                                   const pb::BusMessage* request,
                                                   pb::BusAck* response) {
  if (auto* refused = auth_.refuse_unary(context, kPublishMethod)) return refused;
  auto* reactor = context->DefaultReactor();
  if (request->origin().empty() || request->origin().size() > mcp::kMaxRecordIdBytes ||
      request->seq() == 0 || request->kind_case() == pb::BusMessage::KIND_NOT_SET ||
      (request->has_list_changed() && request->list_changed() > 2) ||
      (request->has_resource_updated() &&
       (request->resource_updated().empty() || request->resource_updated().size() > 8192))) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "malformed bus message"));
    return reactor;
  }
  if (!first_delivery(request->origin(), request->origin_epoch(), request->seq())) {
    duplicates_.fetch_add(1, std::memory_order_relaxed);
    response->set_duplicate(true);
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  delivered_.fetch_add(1, std::memory_order_relaxed);
  if (request->has_resource_updated()) {
    server_.deliver_resource_updated(request->resource_updated());
  } else {
    server_.deliver_list_changed(static_cast<mcp::ListKind>(request->list_changed()));
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* NotificationBus::Interest(grpc::CallbackServerContext* context,
                                                    const pb::InterestRequest*,
                                                    pb::InterestSet* response) {
  if (auto* refused = auth_.refuse_unary(context, kInterestMethod)) return refused;
  auto* reactor = context->DefaultReactor();
  auto [version, uris] = interest_.full();
  response->set_node(config_.self_id);
  response->set_version(version);
  for (auto& u : uris) response->add_uris(std::move(u));
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* NotificationBus::Interested(grpc::CallbackServerContext* context,
                                                      const pb::InterestDelta* request,
                                                      pb::BusAck*) {
  if (auto* refused = auth_.refuse_unary(context, kInterestedMethod)) return refused;
  auto* reactor = context->DefaultReactor();
  using R = registry::ClusterView::DeltaResult;
  auto result = view_.apply_interest_delta(request->node(), request->from(), request->to(),
                                           {request->add().begin(), request->add().end()},
                                           {request->remove().begin(), request->remove().end()});
  if (result == R::kRefused) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "refused interest delta"));
    return reactor;
  }
  if (result == R::kGap) {
    // Missed deltas, or the sender restarted: its whole set, before answering, so that the
    // subscribe waiting for this answer is not answered before this node knows the URI.
    if (auto m = view_.member(request->node())) {
      fetch_interest(request->node(), m->address, [reactor] { reactor->Finish(grpc::Status::OK); });
      return reactor;
    }
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

void NotificationBus::push_interest(const InterestTracker::Delta& delta,
                                    std::function<void()> done) {
  pb::InterestDelta wire;
  wire.set_node(config_.self_id);
  wire.set_from(delta.from);
  wire.set_to(delta.to);
  for (auto& u : delta.add) wire.add_add(u);
  for (auto& u : delta.remove) wire.add_remove(u);
  std::vector<std::string> addresses;
  for (auto& m : view_.members()) {
    if (m.id != config_.self_id && m.state == registry::ClusterView::NodeState::kAlive) {
      addresses.push_back(m.address);
    }
  }
  if (addresses.empty()) {
    if (done) done();
    return;
  }
  struct Pending {
    std::atomic<std::size_t> left;
    std::function<void()> done;
  };
  auto pending = std::make_shared<Pending>();
  pending->left = addresses.size();
  pending->done = std::move(done);
  for (auto& address : addresses) {
    call_unary<pb::InterestDelta, pb::BusAck>(
        auth_, kInterestedMethod, channels_.get(address), wire, config_.timeout,
        [](PeerStubs& stubs, grpc::ClientContext* ctx, const pb::InterestDelta* req,
           pb::BusAck* resp,
           auto cb) { stubs.bus->async()->Interested(ctx, req, resp, std::move(cb)); },
        [pending](grpc::Status, const pb::BusAck&) {
          // A node that did not take it learns the change from gossip or a fetch.
          if (pending->left.fetch_sub(1) == 1 && pending->done) pending->done();
        });
  }
}

void NotificationBus::fetch_interest(const std::string& node, const std::string& address,
                                     std::function<void()> done) {
  {
    std::lock_guard lock(fetch_mutex_);
    auto [it, first] = fetching_.try_emplace(node);
    if (done) it->second.push_back(std::move(done));
    if (!first) return;  // one at a time per node: this one waits for it
  }
  fetches_.fetch_add(1, std::memory_order_relaxed);
  call_unary<pb::InterestRequest, pb::InterestSet>(
      auth_, kInterestMethod, channels_.get(address), pb::InterestRequest{}, config_.timeout,
      [](PeerStubs& stubs, grpc::ClientContext* ctx, const pb::InterestRequest* req,
         pb::InterestSet* resp,
         auto cb) { stubs.bus->async()->Interest(ctx, req, resp, std::move(cb)); },
      [this, node](grpc::Status status, const pb::InterestSet& set) {
        if (status.ok() && set.node() == node) {
          view_.set_interest(node, set.version(), {set.uris().begin(), set.uris().end()});
        }
        std::vector<std::function<void()>> waiting;
        {
          std::lock_guard lock(fetch_mutex_);
          auto it = fetching_.find(node);
          if (it != fetching_.end()) {
            waiting = std::move(it->second);
            fetching_.erase(it);
          }
        }
        for (auto& w : waiting) w();
      });
}

NotificationBus::Stats NotificationBus::stats() const {
  return {published_.load(), failed_.load(), delivered_.load(), duplicates_.load(),
          fetches_.load()};
}

}  // namespace mcpmesh::cluster
