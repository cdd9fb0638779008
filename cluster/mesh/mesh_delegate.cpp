#include "cluster/mesh/mesh_delegate.hpp"

#include "proto/mesh.pb.h"

namespace mcpmesh::cluster {

namespace pb = ::mcpmesh::v1;

namespace {

std::string adoption_key(const registry::ClusterView::Adoption& a) {
  return "a/" + a.node + "/" + std::to_string(a.epoch);
}

std::string interest_key(const std::string& node, std::uint64_t to) {
  return "i/" + node + "/" + std::to_string(to);
}

}  // namespace

registry::ClusterView::Adoption adoption_from_proto(const pb::Adoption& a) {
  return {a.node(), a.epoch(), a.holder(), a.version()};
}

void adoption_to_proto(const registry::ClusterView::Adoption& a, pb::Adoption* out) {
  out->set_node(a.node);
  out->set_epoch(a.epoch);
  out->set_holder(a.holder);
  out->set_version(a.version);
}

MeshDelegate::MeshDelegate(std::string self, registry::ClusterView& view, InterestTracker& interest,
                           const Membership& membership, Hooks hooks)
    : self_(std::move(self)),
      view_(view),
      interest_(interest),
      membership_(membership),
      hooks_(std::move(hooks)) {}

void MeshDelegate::broadcast_adoption(const registry::ClusterView::Adoption& adoption) {
  pb::MeshBroadcast b;
  adoption_to_proto(adoption, b.mutable_adoption());
  queue_.queue(adoption_key(adoption), b.SerializeAsString());
}

void MeshDelegate::broadcast_interest(const InterestTracker::Delta& delta) {
  pb::MeshBroadcast b;
  auto* d = b.mutable_interest();
  d->set_node(self_);
  d->set_from(delta.from);
  d->set_to(delta.to);
  for (auto& u : delta.add) d->add_add(u);
  for (auto& u : delta.remove) d->add_remove(u);
  queue_.queue(interest_key(self_, delta.to), b.SerializeAsString());
}

std::vector<std::string> MeshDelegate::broadcasts(size_t max_bytes) {
  int limit = membership_.config().retransmit_limit(membership_.live_count());
  return queue_.get(max_bytes, limit);
}

void MeshDelegate::on_broadcast(std::string_view data, const std::string& from) {
  pb::MeshBroadcast b;
  if (data.size() > kMaxBroadcastBytes ||
      !b.ParseFromArray(data.data(), static_cast<int>(data.size()))) {
    ++malformed_;
    return;
  }
  if (b.has_adoption()) {
    auto a = adoption_from_proto(b.adoption());
    if (view_.apply_adoption(a)) {
      queue_.queue(adoption_key(a), std::string(data));
      if (hooks_.on_adoption) hooks_.on_adoption(a);
    }
    return;
  }
  if (b.has_interest()) {
    const auto& d = b.interest();
    using R = registry::ClusterView::DeltaResult;
    switch (view_.apply_interest_delta(d.node(), d.from(), d.to(), {d.add().begin(), d.add().end()},
                                       {d.remove().begin(), d.remove().end()})) {
      case R::kApplied:
        queue_.queue(interest_key(d.node(), d.to()), std::string(data));
        break;
      case R::kGap:
        if (hooks_.on_interest_gap) hooks_.on_interest_gap(d.node());
        break;
      case R::kRefused:
        if (d.node() != self_) ++malformed_;
        break;
      case R::kStale:
        break;
    }
    return;
  }
  ++malformed_;
}

std::string MeshDelegate::local_state(bool) {
  pb::MeshState state;
  for (auto& a : view_.adoptions()) adoption_to_proto(a, state.add_adoptions());
  auto [version, uris] = interest_.full();
  auto* own = state.mutable_interest();
  own->set_node(self_);
  own->set_version(version);
  for (auto& u : uris) own->add_uris(std::move(u));
  for (auto& [node, v] : view_.interest_versions()) {
    auto* k = state.add_known();
    k->set_node(node);
    k->set_version(v);
  }
  return state.SerializeAsString();
}

void MeshDelegate::merge_remote_state(std::string_view data, bool, const std::string& from) {
  pb::MeshState state;
  if (data.size() > kMaxStateBytes ||
      !state.ParseFromArray(data.data(), static_cast<int>(data.size()))) {
    ++malformed_;
    return;
  }
  for (const auto& wire : state.adoptions()) {
    auto a = adoption_from_proto(wire);
    if (view_.apply_adoption(a) && hooks_.on_adoption) hooks_.on_adoption(a);
  }
  if (state.has_interest()) {
    const auto& set = state.interest();
    // A node speaks for its own interest only.
    if (set.node() == from) {
      view_.set_interest(from, set.version(), {set.uris().begin(), set.uris().end()});
    } else {
      ++malformed_;
    }
  }
  for (const auto& k : state.known()) {
    if (k.node() == self_ || k.node().empty()) continue;
    if (k.version() > view_.interest_version(k.node()) && hooks_.on_interest_gap) {
      hooks_.on_interest_gap(k.node());
    }
  }
}

}  // namespace mcpmesh::cluster
