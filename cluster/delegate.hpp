#pragma once
// The application's hook into membership traffic (hashicorp/memberlist's Delegate is the model),
// and the retransmit-limited queue a delegate keeps its broadcasts in.
//
// Thread-safety: a Delegate is called only on the membership's executor. A TransmitQueue is not
// thread-safe; use it from one executor (normally the membership's, inside the delegate).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mcpmesh::cluster {

/// Application state that rides on membership traffic (memberlist's Delegate is the model).
/// Called only on the membership's executor; must not block, and must not call the
/// Membership's mutating functions (it may be in the middle of building or applying a message);
/// its const accessors are fine.
class Delegate {
 public:
  virtual ~Delegate() = default;
  /// Broadcasts to piggyback on an outgoing message, at most `max_bytes` in total (the
  /// delegate keeps its own retransmit counts; TransmitQueue below does that). The membership
  /// sends at most `max_app_broadcasts_per_message` of them and drops (and counts, as
  /// `app_oversized`) what does not fit, so returning more only loses broadcasts.
  virtual std::vector<std::string> broadcasts(size_t max_bytes) = 0;
  /// One broadcast piggybacked on an accepted message from member `from`.
  virtual void on_broadcast(std::string_view data, const std::string& from) = 0;
  /// Full application state sent with a push-pull or join (at most `max_app_state_bytes`; a
  /// larger one is left out of the message and counted as `app_oversized`).
  virtual std::string local_state(bool join) = 0;
  /// A peer's full application state from a push-pull or join (request or reply). Not called
  /// when the peer sent none (an empty state).
  virtual void merge_remote_state(std::string_view state, bool join, const std::string& from) = 0;
};

/// A retransmit-limited broadcast queue keyed by an application key: a newer broadcast with the
/// same key replaces the queued one (and starts its transmissions afresh). get() hands out the
/// fewest-transmitted broadcasts first, newest first among equals, and drops each after
/// `retransmit_limit` transmissions. Bounded: beyond `max_entries` the most-sent (then oldest)
/// broadcast is dropped and counted in dropped().
class TransmitQueue {
 public:
  explicit TransmitQueue(size_t max_entries = 4096)
      : max_entries_(std::max<size_t>(1, max_entries)) {}

  /// Queues `data` under `key`, replacing any broadcast queued under the same key.
  void queue(std::string key, std::string data) {
    auto it = index_.find(key);
    if (it != index_.end()) {
      Entry& e = entries_[it->second];
      e.data = std::move(data);
      e.transmits = 0;
      e.order = ++order_;
      return;
    }
    index_.emplace(key, entries_.size());
    entries_.push_back(Entry{std::move(key), std::move(data), 0, ++order_});
    if (entries_.size() > max_entries_) {
      size_t worst = 0;
      for (size_t i = 1; i < entries_.size(); ++i) {
        const Entry& a = entries_[i];
        const Entry& w = entries_[worst];
        if (a.transmits > w.transmits || (a.transmits == w.transmits && a.order < w.order))
          worst = i;
      }
      remove(worst);
      dropped_++;
    }
  }

  /// Broadcasts for one message: at most `max_bytes` of data in total and at most `max_count`
  /// entries, fewest transmissions first (newest first among equals); an entry too big for the
  /// room left is skipped, not split. Each returned entry counts one transmission and leaves
  /// the queue after `retransmit_limit` of them.
  std::vector<std::string> get(size_t max_bytes, int retransmit_limit,
                               size_t max_count = SIZE_MAX) {
    std::vector<size_t> idx(entries_.size());
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
    std::sort(idx.begin(), idx.end(), [this](size_t a, size_t b) {
      const Entry& x = entries_[a];
      const Entry& y = entries_[b];
      return x.transmits != y.transmits ? x.transmits < y.transmits : x.order > y.order;
    });
    std::vector<std::string> out;
    std::vector<size_t> spent;
    size_t room = max_bytes;
    for (size_t i : idx) {
      if (out.size() >= max_count || room == 0) break;
      Entry& e = entries_[i];
      if (e.data.size() > room) continue;
      room -= e.data.size();
      out.push_back(e.data);
      if (++e.transmits >= retransmit_limit) spent.push_back(i);
    }
    // Highest index first, so the swap-pop in remove() keeps the others valid.
    std::sort(spent.begin(), spent.end(), std::greater<>());
    for (size_t i : spent) remove(i);
    return out;
  }

  [[nodiscard]] size_t size() const { return entries_.size(); }
  /// Broadcasts dropped because the queue was full (not those spent by their transmissions).
  [[nodiscard]] uint64_t dropped() const { return dropped_; }

 private:
  struct Entry {
    std::string key;
    std::string data;
    int transmits = 0;
    uint64_t order = 0;
  };

  void remove(size_t i) {
    index_.erase(entries_[i].key);
    if (i != entries_.size() - 1) {
      entries_[i] = std::move(entries_.back());
      index_[entries_[i].key] = i;
    }
    entries_.pop_back();
  }

  size_t max_entries_;
  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t> index_;
  uint64_t order_ = 0;
  uint64_t dropped_ = 0;
};

}  // namespace mcpmesh::cluster
