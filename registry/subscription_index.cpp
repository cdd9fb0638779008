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
using Text = std::shared_ptr<const std::string>;
/// URIs by their text; each key views its own value's string (stable on the heap).
using UriSet =
    std::unordered_map<std::string_view, Text, detail::TransparentStringHash, std::equal_to<>>;

}  // namespace

/// One shard of the URI index: URI → its text and non-empty set of subscribers.
struct alignas(detail::kCacheLineSize) SubscriptionIndex::UriShard {
  struct Entry {
    Text text;  // the one copy of the URI's text on this node
    StringSet subscribers;
  };
  using Map =
      std::unordered_map<std::string_view, Entry, detail::TransparentStringHash, std::equal_to<>>;

  mutable std::shared_mutex mutex;
  Map entries;                       // guarded by mutex; keys view their entry's text
  std::atomic<std::size_t> size{0};  // entries.size(); written under mutex, read without it

  // Caller holds mutex (any mode).
  bool contains(std::string_view uri, std::string_view subscriber) const {
    auto it = entries.find(uri);
    return it != entries.end() && it->second.subscribers.contains(subscriber);
  }

  // Caller holds mutex (any mode). The stored text of `uri`, or null.
  Text text_of(std::string_view uri) const {
    auto it = entries.find(uri);
    return it == entries.end() ? nullptr : it->second.text;
  }

  // Caller holds mutex exclusively; the pair is not there yet. Returns the URI's stored text.
  Text add(std::string_view uri, std::string_view subscriber) {
    auto it = entries.find(uri);
    if (it == entries.end()) {
      auto text = std::make_shared<const std::string>(uri);
      it = entries.emplace(std::string_view(*text), Entry{text, {}}).first;
    }
    it->second.subscribers.emplace(subscriber);
    size.store(entries.size(), std::memory_order_relaxed);
    return it->second.text;
  }

  // Caller holds mutex exclusively. Returns whether the pair was present; drops an emptied
  // entry.
  bool remove(std::string_view uri, std::string_view subscriber) {
    auto it = entries.find(uri);
    if (it == entries.end()) return false;
    auto member = it->second.subscribers.find(subscriber);
    if (member == it->second.subscribers.end()) return false;
    it->second.subscribers.erase(member);
    if (it->second.subscribers.empty()) entries.erase(it);
    size.store(entries.size(), std::memory_order_relaxed);
    return true;
  }
};

/// One shard of the reverse index: subscriber → the (shared) texts of its URIs.
struct alignas(detail::kCacheLineSize) SubscriptionIndex::SubscriberShard {
  using Map =
      std::unordered_map<std::string, UriSet, detail::TransparentStringHash, std::equal_to<>>;

  mutable std::shared_mutex mutex;
  Map uris;  // guarded by mutex; never holds an empty set

  // Caller holds mutex exclusively. Returns whether the pair was added.
  bool add(std::string_view subscriber, Text text) {
    auto it = uris.find(subscriber);
    if (it == uris.end()) it = uris.emplace(std::string(subscriber), UriSet{}).first;
    std::string_view key(*text);
    return it->second.emplace(key, std::move(text)).second;
  }

  // Caller holds mutex exclusively. Returns whether the pair was present; drops an emptied set.
  bool remove(std::string_view subscriber, std::string_view uri) {
    auto it = uris.find(subscriber);
    if (it == uris.end()) return false;
    if (it->second.erase(uri) == 0) return false;
    if (it->second.empty()) uris.erase(it);
    return true;
  }
};

SubscriptionIndex::SubscriptionIndex(std::size_t shard_count)
    : mask_(detail::round_shard_count(shard_count) - 1),
      uri_shards_(std::make_unique<UriShard[]>(mask_ + 1)),
      subscriber_shards_(std::make_unique<SubscriberShard[]>(mask_ + 1)) {}

SubscriptionIndex::~SubscriptionIndex() = default;

SubscriptionIndex::UriShard& SubscriptionIndex::uri_shard(std::string_view uri) const {
  return uri_shards_[detail::shard_of(uri, mask_)];
}

SubscriptionIndex::SubscriberShard& SubscriptionIndex::subscriber_shard(
    std::string_view subscriber) const {
  return subscriber_shards_[detail::shard_of(subscriber, mask_)];
}

// Lock order, everywhere: URI shard, then subscriber shard. The two are distinct mutexes
// (separate arrays), and no path takes a URI shard while holding a subscriber shard.

SubscriptionIndex::Subscribed SubscriptionIndex::subscribe(std::string_view uri,
                                                           std::string_view subscriber) {
  UriShard& by_uri = uri_shard(uri);
  SubscriberShard& by_subscriber = subscriber_shard(subscriber);
  std::unique_lock uri_lock(by_uri.mutex);
  if (by_uri.contains(uri, subscriber)) return {SharedUri(by_uri.text_of(uri)), false};
  std::unique_lock subscriber_lock(by_subscriber.mutex);
  auto text = by_uri.add(uri, subscriber);
  [[maybe_unused]] const bool added = by_subscriber.add(subscriber, text);
  assert(added && "subscription indexes out of step");
  return {SharedUri(std::move(text)), true};
}

bool SubscriptionIndex::unsubscribe(std::string_view uri, std::string_view subscriber) {
  UriShard& by_uri = uri_shard(uri);
  SubscriberShard& by_subscriber = subscriber_shard(subscriber);
  std::unique_lock uri_lock(by_uri.mutex);
  if (!by_uri.contains(uri, subscriber)) return false;
  std::unique_lock subscriber_lock(by_subscriber.mutex);
  // The reverse index first: removing the URI's last subscriber frees the entry whose text
  // `uri` may view.
  [[maybe_unused]] const bool removed = by_subscriber.remove(subscriber, uri);
  assert(removed && "subscription indexes out of step");
  by_uri.remove(uri, subscriber);
  return true;
}

std::size_t SubscriptionIndex::unsubscribe_all(std::string_view subscriber) {
  SubscriberShard& by_subscriber = subscriber_shard(subscriber);
  // Take the URIs out first (shared texts, no copies): removing a pair needs the URI shard
  // lock, which may not be taken while a subscriber shard lock is held.
  std::vector<Text> uris;
  {
    std::shared_lock lock(by_subscriber.mutex);
    auto it = by_subscriber.uris.find(subscriber);
    if (it == by_subscriber.uris.end()) return 0;
    uris.reserve(it->second.size());
    for (const auto& [view, text] : it->second) uris.push_back(text);
  }
  std::size_t removed = 0;
  for (const Text& uri : uris) {
    // Re-checked under both locks: a concurrent unsubscribe may have removed the pair already.
    UriShard& by_uri = uri_shard(*uri);
    std::unique_lock uri_lock(by_uri.mutex);
    std::unique_lock subscriber_lock(by_subscriber.mutex);
    if (by_uri.remove(*uri, subscriber)) {
      [[maybe_unused]] const bool ok = by_subscriber.remove(subscriber, *uri);
      assert(ok && "subscription indexes out of step");
      ++removed;
    }
  }
  return removed;
}

std::vector<std::string> SubscriptionIndex::subscribers(std::string_view uri) const {
  const UriShard& by_uri = uri_shard(uri);
  std::shared_lock lock(by_uri.mutex);
  auto it = by_uri.entries.find(uri);
  if (it == by_uri.entries.end()) return {};
  return {it->second.subscribers.begin(), it->second.subscribers.end()};
}

bool SubscriptionIndex::has_subscribers(std::string_view uri) const {
  const UriShard& by_uri = uri_shard(uri);
  std::shared_lock lock(by_uri.mutex);
  return by_uri.entries.find(uri) != by_uri.entries.end();  // emptied entries are removed
}

std::size_t SubscriptionIndex::uri_count() const {
  std::size_t total = 0;
  for (std::size_t i = 0; i <= mask_; ++i) {
    total += uri_shards_[i].size.load(std::memory_order_relaxed);
  }
  return total;
}

}  // namespace mcpmesh::registry
