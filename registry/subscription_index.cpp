#include "registry/subscription_index.hpp"

#include <atomic>
#include <cassert>
#include <functional>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <unordered_set>

#include "registry/sharded_registry.hpp"

namespace mcpmesh::registry {
namespace {

using StringSet = std::unordered_set<std::string, detail::TransparentStringHash, std::equal_to<>>;
using SetMap =
    std::unordered_map<std::string, StringSet, detail::TransparentStringHash, std::equal_to<>>;

}  // namespace

/// One shard of either index: key → non-empty set of members.
struct alignas(detail::kCacheLineSize) SubscriptionIndex::Shard {
  mutable std::shared_mutex mutex;
  SetMap sets;                       // guarded by mutex; never holds an empty set
  std::atomic<std::size_t> size{0};  // sets.size(); written under mutex, read without it

  // Caller holds mutex (any mode).
  bool contains(std::string_view key, std::string_view member) const {
    auto it = sets.find(key);
    return it != sets.end() && it->second.find(member) != it->second.end();
  }

  // Caller holds mutex exclusively. Returns whether `member` was added.
  bool add(std::string_view key, std::string_view member) {
    auto it = sets.find(key);
    if (it == sets.end()) {
      it = sets.emplace(std::string(key), StringSet{}).first;
    }
    const bool added = it->second.emplace(member).second;
    size.store(sets.size(), std::memory_order_relaxed);
    return added;
  }

  // Caller holds mutex exclusively. Returns whether `member` was present; drops an emptied set.
  bool remove(std::string_view key, std::string_view member) {
    auto it = sets.find(key);
    if (it == sets.end()) {
      return false;
    }
    auto member_it = it->second.find(member);
    if (member_it == it->second.end()) {
      return false;
    }
    it->second.erase(member_it);
    if (it->second.empty()) {
      sets.erase(it);
    }
    size.store(sets.size(), std::memory_order_relaxed);
    return true;
  }
};

SubscriptionIndex::SubscriptionIndex(std::size_t shard_count)
    : mask_(detail::round_shard_count(shard_count) - 1),
      uri_shards_(std::make_unique<Shard[]>(mask_ + 1)),
      subscriber_shards_(std::make_unique<Shard[]>(mask_ + 1)) {}

SubscriptionIndex::~SubscriptionIndex() = default;

SubscriptionIndex::Shard& SubscriptionIndex::uri_shard(std::string_view uri) const {
  return uri_shards_[detail::shard_of(uri, mask_)];
}

SubscriptionIndex::Shard& SubscriptionIndex::subscriber_shard(std::string_view subscriber) const {
  return subscriber_shards_[detail::shard_of(subscriber, mask_)];
}

// Lock order, everywhere: URI shard, then subscriber shard. The two are distinct mutexes
// (separate arrays), and no path takes a URI shard while holding a subscriber shard.

bool SubscriptionIndex::subscribe(std::string_view uri, std::string_view subscriber) {
  Shard& by_uri = uri_shard(uri);
  Shard& by_subscriber = subscriber_shard(subscriber);
  std::unique_lock uri_lock(by_uri.mutex);
  if (by_uri.contains(uri, subscriber)) {
    return false;
  }
  std::unique_lock subscriber_lock(by_subscriber.mutex);
  by_uri.add(uri, subscriber);
  [[maybe_unused]] const bool added = by_subscriber.add(subscriber, uri);
  assert(added && "subscription indexes out of step");
  return true;
}

bool SubscriptionIndex::unsubscribe(std::string_view uri, std::string_view subscriber) {
  Shard& by_uri = uri_shard(uri);
  Shard& by_subscriber = subscriber_shard(subscriber);
  std::unique_lock uri_lock(by_uri.mutex);
  if (!by_uri.contains(uri, subscriber)) {
    return false;
  }
  std::unique_lock subscriber_lock(by_subscriber.mutex);
  by_uri.remove(uri, subscriber);
  [[maybe_unused]] const bool removed = by_subscriber.remove(subscriber, uri);
  assert(removed && "subscription indexes out of step");
  return true;
}

std::size_t SubscriptionIndex::unsubscribe_all(std::string_view subscriber) {
  Shard& by_subscriber = subscriber_shard(subscriber);
  // Copy the URIs out first: removing a pair needs the URI shard lock, which may not be taken
  // while a subscriber shard lock is held.
  std::vector<std::string> uris;
  {
    std::shared_lock lock(by_subscriber.mutex);
    auto it = by_subscriber.sets.find(subscriber);
    if (it == by_subscriber.sets.end()) {
      return 0;
    }
    uris.assign(it->second.begin(), it->second.end());
  }
  std::size_t removed = 0;
  for (const std::string& uri : uris) {
    // Re-checked under both locks: a concurrent unsubscribe may have removed the pair already.
    Shard& by_uri = uri_shard(uri);
    std::unique_lock uri_lock(by_uri.mutex);
    std::unique_lock subscriber_lock(by_subscriber.mutex);
    if (by_uri.remove(uri, subscriber)) {
      [[maybe_unused]] const bool ok = by_subscriber.remove(subscriber, uri);
      assert(ok && "subscription indexes out of step");
      ++removed;
    }
  }
  return removed;
}

std::vector<std::string> SubscriptionIndex::subscribers(std::string_view uri) const {
  const Shard& by_uri = uri_shard(uri);
  std::shared_lock lock(by_uri.mutex);
  auto it = by_uri.sets.find(uri);
  if (it == by_uri.sets.end()) {
    return {};
  }
  return {it->second.begin(), it->second.end()};
}

bool SubscriptionIndex::has_subscribers(std::string_view uri) const {
  const Shard& by_uri = uri_shard(uri);
  std::shared_lock lock(by_uri.mutex);
  return by_uri.sets.find(uri) != by_uri.sets.end();  // empty sets are removed
}

std::size_t SubscriptionIndex::uri_count() const {
  std::size_t total = 0;
  for (std::size_t i = 0; i <= mask_; ++i) {
    total += uri_shards_[i].size.load(std::memory_order_relaxed);
  }
  return total;
}

}  // namespace mcpmesh::registry
