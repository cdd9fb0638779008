#include "cluster/replication/replica_store.hpp"

namespace mcpmesh::cluster {

ReplicaStore::Outcome ReplicaStore::apply(const ::mcpmesh::v1::ReplicationBatch& batch) {
  Outcome out;
  auto refuse = [&](std::string why) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    out.refused = std::move(why);
    return out;
  };
  if (batch.holder().empty() || batch.holder().size() > mcp::kMaxRecordIdBytes) {
    return refuse("bad holder");
  }
  // Parse and check everything before touching the store: a bad batch changes nothing.
  struct Parsed {
    const ::mcpmesh::v1::ReplicatedSession* wire;
    std::optional<mcp::SessionRecord> record;
  };
  std::vector<Parsed> parsed;
  parsed.reserve(static_cast<std::size_t>(batch.sessions_size()));
  for (const auto& s : batch.sessions()) {
    if (s.id().empty() || s.id().size() > mcp::kMaxRecordIdBytes) return refuse("bad session id");
    Parsed p{&s, std::nullopt};
    if (!s.deleted() && !s.record().empty()) {
      auto r = mcp::SessionRecord::parse(s.record());
      if (!r) return refuse(r.error().message);
      if (r->id != s.id()) return refuse("record id differs from its session id");
      p.record = std::move(*r);
    }
    for (const auto& e : s.events()) {
      if (e.data().size() > limits_.max_event_bytes || e.seq() == 0) return refuse("bad event");
    }
    parsed.push_back(std::move(p));
  }
  std::lock_guard lock(mutex_);
  auto it = holders_.find(batch.holder());
  if (it == holders_.end()) {
    if (holders_.size() >= limits_.max_holders) return refuse("too many holders");
    it = holders_.emplace(batch.holder(), HolderCopies{}).first;
  }
  auto& h = it->second;
  if (batch.full()) {
    total_ -= h.sessions.size();
    h.sessions.clear();
    h.epoch = batch.holder_epoch();
    h.next_seq = 1;
    h.synced = true;
  } else if (!h.synced || batch.holder_epoch() != h.epoch || batch.seq() != h.next_seq) {
    // A batch after one this store missed (or from a holder it has no full copy of): applying
    // it would leave a copy that looks complete and is not.
    out.need_full = true;
    out.held = h.sessions.size();
    return out;
  }
  if (batch.seq() != h.next_seq) {
    out.need_full = true;
    return out;
  }
  for (auto& p : parsed) {
    const auto& s = *p.wire;
    auto found = h.sessions.find(s.id());
    if (s.deleted()) {
      if (found != h.sessions.end()) {
        h.sessions.erase(found);
        --total_;
      }
      continue;
    }
    if (found == h.sessions.end()) {
      if (!p.record) continue;  // events of a session whose record never came: nothing to keep
      if (h.sessions.size() >= limits_.max_sessions_per_holder || total_ >= limits_.max_sessions) {
        refused_.fetch_add(1, std::memory_order_relaxed);
        continue;  // counted; the holder's other sessions are still copied
      }
      found = h.sessions.emplace(s.id(), Held{}).first;
      ++total_;
    }
    auto& held = found->second;
    if (p.record && p.record->revision >= held.record.revision) held.record = std::move(*p.record);
    for (const auto& e : s.events()) {
      if (!held.events.empty() && e.seq() <= held.events.back().first) continue;  // seen
      held.events.emplace_back(e.seq(), e.data());
      if (held.events.size() > limits_.max_events) held.events.pop_front();
    }
  }
  h.next_seq = batch.seq() + 1;
  out.applied = true;
  out.held = h.sessions.size();
  return out;
}

std::vector<ReplicaStore::Copy> ReplicaStore::take(const std::string& holder,
                                                   std::uint64_t* epoch) {
  std::vector<Copy> out;
  std::lock_guard lock(mutex_);
  auto it = holders_.find(holder);
  if (epoch) *epoch = it == holders_.end() ? 0 : it->second.epoch;
  if (it == holders_.end()) return out;
  out.reserve(it->second.sessions.size());
  for (auto& [id, held] : it->second.sessions) {
    Copy c;
    c.record = std::move(held.record);
    c.events.reserve(held.events.size());
    for (auto& [seq, data] : held.events) {
      c.events.emplace_back(seq, std::make_shared<const std::string>(std::move(data)));
    }
    out.push_back(std::move(c));
  }
  total_ -= it->second.sessions.size();
  holders_.erase(it);
  return out;
}

void ReplicaStore::drop(const std::string& holder) {
  std::lock_guard lock(mutex_);
  auto it = holders_.find(holder);
  if (it == holders_.end()) return;
  total_ -= it->second.sessions.size();
  holders_.erase(it);
}

std::optional<std::uint64_t> ReplicaStore::epoch_of(const std::string& holder) const {
  std::lock_guard lock(mutex_);
  auto it = holders_.find(holder);
  if (it == holders_.end()) return std::nullopt;
  return it->second.epoch;
}

bool ReplicaStore::holds(const std::string& holder) const {
  std::lock_guard lock(mutex_);
  return holders_.contains(holder);
}

std::vector<std::string> ReplicaStore::holders() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> out;
  for (auto& [holder, h] : holders_) out.push_back(holder);
  return out;
}

std::size_t ReplicaStore::session_count() const {
  std::lock_guard lock(mutex_);
  return total_;
}

}  // namespace mcpmesh::cluster
