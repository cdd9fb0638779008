#include "registry/cluster_view.hpp"

#include "registry/sharded_registry.hpp"

#include <algorithm>
#include <mutex>

namespace mcpmesh::registry {

namespace {

bool live(ClusterView::NodeState s) {
  return s == ClusterView::NodeState::kAlive || s == ClusterView::NodeState::kSuspect;
}

/// Rendezvous score of `candidate` for `key`: a 64-bit mix of both, so every node ranks the
/// candidates the same way without talking to anyone.
std::uint64_t score(std::string_view key, std::string_view candidate) {
  std::uint64_t h = detail::mix_hash(std::hash<std::string_view>{}(key));
  h ^= detail::mix_hash(std::hash<std::string_view>{}(candidate) + 0x9e3779b97f4a7c15ULL);
  return detail::mix_hash(h);
}

/// Hops followed from an adoption to the node holding a session now (an heir that died in
/// turn, and its heir): more means the table is inconsistent, and the request is retried.
constexpr int kMaxHolderHops = 4;

}  // namespace

ClusterView::ClusterView(std::string self, ClusterViewLimits limits)
    : self_(std::move(self)), limits_(limits) {}

void ClusterView::set_self_epoch(std::uint64_t epoch) {
  std::unique_lock lock(mutex_);
  self_epoch_ = epoch;
}

std::uint64_t ClusterView::self_epoch() const {
  std::shared_lock lock(mutex_);
  return self_epoch_;
}

void ClusterView::set_converged(bool converged) {
  std::unique_lock lock(mutex_);
  converged_ = converged;
}

bool ClusterView::set_member(Member member) {
  if (member.id.empty() || member.replicas.size() > limits_.max_replicas) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  std::unique_lock lock(mutex_);
  auto it = members_.find(member.id);
  if (it == members_.end()) {
    if (members_.size() >= limits_.max_members) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    auto id = member.id;
    members_.emplace(std::move(id), std::move(member));
  } else {
    if (it->second.epoch != 0 && member.epoch > it->second.epoch) {
      // A restart: remember the life before (see resolve).
      previous_[member.id] = {it->second.epoch, std::move(it->second.replicas)};
    }
    it->second = std::move(member);
  }
  return true;
}

void ClusterView::remove_member(std::string_view id) {
  std::unique_lock lock(mutex_);
  if (auto it = members_.find(id); it != members_.end()) members_.erase(it);
  if (auto it = previous_.find(id); it != previous_.end()) previous_.erase(it);
}

std::optional<ClusterView::Member> ClusterView::member(std::string_view id) const {
  std::shared_lock lock(mutex_);
  auto it = members_.find(id);
  if (it == members_.end()) return std::nullopt;
  return it->second;
}

std::vector<ClusterView::Member> ClusterView::members() const {
  std::shared_lock lock(mutex_);
  std::vector<Member> out;
  out.reserve(members_.size());
  for (auto& [id, m] : members_) out.push_back(m);
  std::sort(out.begin(), out.end(), [](const Member& a, const Member& b) { return a.id < b.id; });
  return out;
}

std::array<std::size_t, 4> ClusterView::member_counts() const {
  std::shared_lock lock(mutex_);
  std::array<std::size_t, 4> counts{};
  for (auto& [id, m] : members_) ++counts[static_cast<std::size_t>(m.state)];
  return counts;
}

bool ClusterView::quorate(const std::vector<std::string>* answered) const {
  auto up = [&](const std::string& id, const Member& m) {
    if (id == self_) return true;
    if (m.state != NodeState::kAlive) return false;
    return !answered || std::find(answered->begin(), answered->end(), id) != answered->end();
  };
  std::shared_lock lock(mutex_);
  std::size_t members = 0, alive = 0;
  const Member* lowest = nullptr;
  for (auto& [id, m] : members_) {
    if (m.state == NodeState::kLeft) continue;
    ++members;
    if (up(id, m)) ++alive;
    if (!lowest || id < lowest->id) lowest = &m;
  }
  if (members == 0 || 2 * alive > members) return true;
  return 2 * alive == members && up(lowest->id, *lowest);
}

std::vector<std::string> ClusterView::rendezvous(std::string_view key,
                                                 std::vector<std::string> candidates,
                                                 std::size_t n) {
  std::sort(candidates.begin(), candidates.end(),
            [key](const std::string& a, const std::string& b) {
              auto sa = score(key, a), sb = score(key, b);
              return sa != sb ? sa > sb : a < b;
            });
  if (candidates.size() > n) candidates.resize(n);
  return candidates;
}

std::optional<std::string> ClusterView::heir_locked(std::string_view node) const {
  auto it = members_.find(node);
  static const std::vector<std::string> kNone;
  return heir_locked(node, it == members_.end() ? kNone : it->second.replicas);
}

std::optional<std::string> ClusterView::heir_locked(
    std::string_view node, const std::vector<std::string>& replicas) const {
  for (auto& r : replicas) {
    if (r == node) continue;
    auto m = members_.find(r);
    if (m != members_.end() && live(m->second.state)) return r;
  }
  if (!replicas.empty()) return std::nullopt;  // its replicas are all gone too
  // No announcement heard: the rendezvous choice, which is where the node replicates first.
  std::vector<std::string> candidates;
  for (auto& [id, m] : members_) {
    if (id != node && m.state == NodeState::kAlive) candidates.push_back(id);
  }
  auto top = rendezvous(node, std::move(candidates), 1);
  if (top.empty()) return std::nullopt;
  return top.front();
}

std::optional<std::string> ClusterView::heir_of(std::string_view node) const {
  std::shared_lock lock(mutex_);
  return heir_locked(node);
}

bool ClusterView::apply_adoption(const Adoption& a) {
  if (a.node.empty() || a.holder.empty() || a.node.size() > 256 || a.holder.size() > 256) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  std::unique_lock lock(mutex_);
  AdoptionKey key{a.node, a.epoch};
  auto it = adoptions_.find(key);
  if (it != adoptions_.end()) {
    if (a.version <= it->second.version) return false;
    it->second = {a.holder, a.version};
  } else {
    if (adoptions_.size() >= limits_.max_adoptions) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    adoptions_.emplace(std::move(key), AdoptionEntry{a.holder, a.version});
  }
  max_version_ = std::max(max_version_, a.version);
  return true;
}

std::vector<ClusterView::Adoption> ClusterView::adoptions() const {
  std::shared_lock lock(mutex_);
  std::vector<Adoption> out;
  out.reserve(adoptions_.size());
  for (auto& [key, e] : adoptions_) out.push_back({key.first, key.second, e.holder, e.version});
  return out;
}

std::optional<ClusterView::Adoption> ClusterView::adoption(std::string_view node,
                                                           std::uint64_t epoch) const {
  std::shared_lock lock(mutex_);
  auto it = adoptions_.find(AdoptionKey{std::string(node), epoch});
  if (it == adoptions_.end()) return std::nullopt;
  return Adoption{std::string(node), epoch, it->second.holder, it->second.version};
}

std::uint64_t ClusterView::max_adoption_version() const {
  std::shared_lock lock(mutex_);
  return max_version_;
}

void ClusterView::mark_adopted_here(std::string_view node, std::uint64_t epoch) {
  std::unique_lock lock(mutex_);
  adopted_here_.emplace(std::string(node), epoch);
}

ClusterView::Route ClusterView::resolve(std::string_view owner, std::uint64_t epoch) const {
  using Kind = Route::Kind;
  std::shared_lock lock(mutex_);
  std::string holder(owner);
  // Whether `holder` is known to hold the set (an adoption named it, or it inherited it), as
  // opposed to being the owner by default.
  bool inherited = false;
  if (auto it = adoptions_.find(AdoptionKey{std::string(owner), epoch}); it != adoptions_.end()) {
    // Continued elsewhere: also this node's own sessions once it handed them over (a drain).
    holder = it->second.holder;
    inherited = true;
  } else if (owner == self_) {
    return {Kind::kHere, {}, {}};  // ours and not here (closed), or an earlier epoch: gone
  }
  const Member* failed = nullptr;  // the failed holder whose heir `holder` is
  for (int hop = 0; hop < kMaxHolderHops; ++hop) {
    if (holder == self_) {
      // Not found here although this node holds it: gone, unless this node is the heir of a
      // failed holder and has not finished taking its sessions over.
      if (!failed) return {Kind::kHere, {}, {}};
      bool done = adopted_here_.contains(AdoptionKey{failed->id, failed->epoch});
      return {done ? Kind::kHere : Kind::kUnavailable, {}, {}};
    }
    auto it = members_.find(holder);
    if (it == members_.end()) {
      return {converged_ ? Kind::kHere : Kind::kUnavailable, {}, {}};
    }
    const Member& m = it->second;
    if (live(m.state)) {
      // (A restarted owner may hold its earlier sessions again if it inherited them.)
      if (inherited || m.epoch <= epoch) return {Kind::kRemote, holder, m.address, m.http_address};
      // The owner restarted since this session's life. Its sessions of the life just before
      // live on if that life's heir continued them, and the news of it (an adoption) may not
      // have reached this node yet: the heir is asked, and answers or says they are gone.
      // Without an heir other than this node (which does not hold it), or of an earlier life:
      // gone.
      auto prev = previous_.find(holder);
      if (prev == previous_.end() || prev->second.epoch != epoch) return {Kind::kHere, {}, {}};
      auto heir = heir_locked(holder, prev->second.replicas);
      if (!heir || *heir == self_) return {Kind::kHere, {}, {}};
      const Member& h = members_.find(*heir)->second;
      return {Kind::kRemote, *heir, h.address, h.http_address};
    }
    auto heir = heir_locked(holder);
    if (!heir) return {Kind::kHere, {}, {}};  // nobody holds a copy: gone
    failed = &m;
    holder = *heir;
    inherited = true;
  }
  return {Kind::kUnavailable, {}, {}};
}

// -- interest ---------------------------------------------------------------------------------

bool ClusterView::uri_ok(std::string_view uri) const {
  return !uri.empty() && uri.size() <= limits_.max_uri_bytes;
}

void ClusterView::index_add_locked(const std::string& node, const std::string& uri) {
  auto& nodes = by_uri_[uri];
  if (std::find(nodes.begin(), nodes.end(), node) == nodes.end()) nodes.push_back(node);
}

void ClusterView::index_remove_locked(const std::string& node, const std::string& uri) {
  auto it = by_uri_.find(uri);
  if (it == by_uri_.end()) return;
  auto& nodes = it->second;
  nodes.erase(std::remove(nodes.begin(), nodes.end(), node), nodes.end());
  if (nodes.empty()) by_uri_.erase(it);
}

ClusterView::DeltaResult ClusterView::apply_interest_delta(std::string_view node,
                                                           std::uint64_t from, std::uint64_t to,
                                                           const std::vector<std::string>& add,
                                                           const std::vector<std::string>& remove) {
  if (node.empty() || node == self_ || to <= from) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    return DeltaResult::kRefused;
  }
  for (auto& u : add) {
    if (!uri_ok(u)) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      return DeltaResult::kRefused;
    }
  }
  std::unique_lock lock(interest_mutex_);
  auto it = interest_.find(node);
  std::uint64_t held = it == interest_.end() ? 0 : it->second.version;
  if (to <= held) return DeltaResult::kStale;
  if (from != held) return DeltaResult::kGap;
  if (it == interest_.end()) it = interest_.emplace(std::string(node), Interest{}).first;
  auto& set = it->second;
  if (set.uris.size() + add.size() > limits_.max_interest_uris + remove.size()) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    return DeltaResult::kRefused;
  }
  for (auto& u : remove) {
    if (set.uris.erase(u)) index_remove_locked(it->first, u);
  }
  for (auto& u : add) {
    if (set.uris.insert(u).second) index_add_locked(it->first, u);
  }
  set.version = to;
  return DeltaResult::kApplied;
}

bool ClusterView::set_interest(std::string_view node, std::uint64_t version,
                               std::vector<std::string> uris) {
  if (node.empty() || node == self_ || uris.size() > limits_.max_interest_uris) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  for (auto& u : uris) {
    if (!uri_ok(u)) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
  }
  std::unique_lock lock(interest_mutex_);
  auto it = interest_.find(node);
  if (it != interest_.end() && version <= it->second.version) return false;
  if (it == interest_.end()) it = interest_.emplace(std::string(node), Interest{}).first;
  for (auto& u : it->second.uris) index_remove_locked(it->first, u);
  it->second.uris.clear();
  for (auto& u : uris) {
    if (it->second.uris.insert(u).second) index_add_locked(it->first, u);
  }
  it->second.version = version;
  return true;
}

void ClusterView::drop_interest(std::string_view node) {
  std::unique_lock lock(interest_mutex_);
  auto it = interest_.find(node);
  if (it == interest_.end()) return;
  for (auto& u : it->second.uris) index_remove_locked(it->first, u);
  interest_.erase(it);
}

std::uint64_t ClusterView::interest_version(std::string_view node) const {
  std::shared_lock lock(interest_mutex_);
  auto it = interest_.find(node);
  return it == interest_.end() ? 0 : it->second.version;
}

std::vector<std::pair<std::string, std::uint64_t>> ClusterView::interest_versions() const {
  std::shared_lock lock(interest_mutex_);
  std::vector<std::pair<std::string, std::uint64_t>> out;
  out.reserve(interest_.size());
  for (auto& [node, i] : interest_) out.emplace_back(node, i.version);
  return out;
}

std::vector<ClusterView::InterestSummary> ClusterView::interest_summary() const {
  std::shared_lock lock(interest_mutex_);
  std::vector<InterestSummary> out;
  out.reserve(interest_.size());
  for (auto& [node, i] : interest_) out.push_back({node, i.version, i.uris.size()});
  std::sort(out.begin(), out.end(),
            [](const InterestSummary& a, const InterestSummary& b) { return a.node < b.node; });
  return out;
}

std::vector<std::string> ClusterView::interested(std::string_view uri) const {
  std::shared_lock lock(interest_mutex_);
  auto it = by_uri_.find(uri);
  if (it == by_uri_.end()) return {};
  return it->second;
}

std::size_t ClusterView::interest_uri_count() const {
  std::shared_lock lock(interest_mutex_);
  return by_uri_.size();
}

std::uint64_t ClusterView::refused() const { return refused_.load(std::memory_order_relaxed); }

}  // namespace mcpmesh::registry
