#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mcpmesh::registry {

/// Thread-safe: every member may be called from any thread; none calls user code or blocks on
/// anything but a shard lock held for one short hash-set operation.
///
/// Which subscribers (opaque strings, in practice session ids) are subscribed to which resource
/// URI (MCP `resources/subscribe`). Two sharded indexes: URI → subscribers, the one fan-out
/// reads, and subscriber → URIs, so a closing session can drop all of its subscriptions
/// without scanning every URI. A (URI, subscriber) pair is always added to or removed from
/// both indexes while holding both shard locks (URI shard first, then subscriber shard, the
/// only order ever taken), so the two never disagree once a call has returned. Empty sets are
/// removed, so memory is proportional to the number of live subscriptions.
class SubscriptionIndex {
 public:
  /// Thread-safe (construction). `shard_count` applies to each of the two indexes and is
  /// rounded up to a power of two.
  explicit SubscriptionIndex(std::size_t shard_count = 64);
  ~SubscriptionIndex();

  SubscriptionIndex(const SubscriptionIndex&) = delete;
  SubscriptionIndex& operator=(const SubscriptionIndex&) = delete;

  /// Thread-safe. Subscribes `subscriber` to `uri`; false if it already was.
  bool subscribe(std::string_view uri, std::string_view subscriber);

  /// Thread-safe. Unsubscribes `subscriber` from `uri`; false if it was not subscribed.
  bool unsubscribe(std::string_view uri, std::string_view subscriber);

  /// Thread-safe. Removes every subscription of `subscriber`; returns how many were removed.
  /// Subscriptions this subscriber adds concurrently with the call may survive it (they are
  /// ordered after it); call it again after the subscriber can no longer subscribe.
  std::size_t unsubscribe_all(std::string_view subscriber);

  /// Thread-safe. The subscribers of `uri`, in unspecified order (a copy: the caller may fan
  /// out without holding any lock). Empty if none.
  [[nodiscard]] std::vector<std::string> subscribers(std::string_view uri) const;

  /// Thread-safe. Whether `uri` has at least one subscriber. No allocation.
  [[nodiscard]] bool has_subscribers(std::string_view uri) const;

  /// Thread-safe, lock-free. Number of URIs with at least one subscriber; exact when quiescent,
  /// approximate under concurrent changes.
  [[nodiscard]] std::size_t uri_count() const;

 private:
  struct Shard;

  Shard& uri_shard(std::string_view uri) const;
  Shard& subscriber_shard(std::string_view subscriber) const;

  const std::size_t mask_;
  const std::unique_ptr<Shard[]> uri_shards_;         // uri → subscribers
  const std::unique_ptr<Shard[]> subscriber_shards_;  // subscriber → uris
};

}  // namespace mcpmesh::registry
