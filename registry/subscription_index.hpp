#pragma once

#include <compare>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mcpmesh::registry {

/// A subscribed URI's text, stored once per node: the index and every session subscribed to the
/// URI hold the same immutable string, so a subscription costs a pointer, not the URI's bytes.
/// Compares (and converts to `std::string_view`) by its text.
/// Thread-safety: a value; copies may be used and dropped on any thread.
class SharedUri {
 public:
  SharedUri() = default;
  /// A URI with a string of its own (not, or not yet, the index's).
  SharedUri(std::string_view uri) : text_(std::make_shared<const std::string>(uri)) {}
  SharedUri(const char* uri) : SharedUri(std::string_view(uri)) {}
  SharedUri(const std::string& uri) : SharedUri(std::string_view(uri)) {}

  [[nodiscard]] std::string_view view() const {
    return text_ ? std::string_view(*text_) : std::string_view();
  }
  operator std::string_view() const { return view(); }
  /// Whether both hold the very same string (not merely equal text).
  [[nodiscard]] bool shares_text_with(const SharedUri& other) const {
    return text_ && text_ == other.text_;
  }

  friend bool operator==(const SharedUri& a, std::string_view b) { return a.view() == b; }
  friend std::strong_ordering operator<=>(const SharedUri& a, std::string_view b) {
    return a.view() <=> b;
  }

 private:
  friend class SubscriptionIndex;
  explicit SharedUri(std::shared_ptr<const std::string> text) : text_(std::move(text)) {}

  std::shared_ptr<const std::string> text_;
};

/// Thread-safe: every member may be called from any thread; none calls user code or blocks on
/// anything but a shard lock held for one short hash-set operation.
///
/// Which subscribers (opaque strings, in practice session ids) are subscribed to which resource
/// URI (MCP `resources/subscribe`). Two sharded indexes: URI → subscribers, the one fan-out
/// reads, and subscriber → URIs, so a closing session can drop all of its subscriptions
/// without scanning every URI. A (URI, subscriber) pair is always added to or removed from
/// both indexes while holding both shard locks (URI shard first, then subscriber shard, the
/// only order ever taken), so the two never disagree once a call has returned. Empty sets are
/// removed, so memory is proportional to the number of live subscriptions. Each URI's text is
/// stored once (a `SharedUri`), however many subscribers and indexes refer to it.
class SubscriptionIndex {
 public:
  /// Thread-safe (construction). `shard_count` applies to each of the two indexes and is
  /// rounded up to a power of two.
  explicit SubscriptionIndex(std::size_t shard_count = 64);
  ~SubscriptionIndex();

  SubscriptionIndex(const SubscriptionIndex&) = delete;
  SubscriptionIndex& operator=(const SubscriptionIndex&) = delete;

  /// What subscribe did: the URI as the index stores it (to hold instead of a copy), and
  /// whether the pair is new (also the value as a bool).
  struct Subscribed {
    SharedUri uri;
    bool added = false;
    explicit operator bool() const { return added; }
  };

  /// Thread-safe. Subscribes `subscriber` to `uri`; `added` false if it already was.
  Subscribed subscribe(std::string_view uri, std::string_view subscriber);

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
  struct UriShard;
  struct SubscriberShard;

  UriShard& uri_shard(std::string_view uri) const;
  SubscriberShard& subscriber_shard(std::string_view subscriber) const;

  const std::size_t mask_;
  const std::unique_ptr<UriShard[]> uri_shards_;                // uri → subscribers
  const std::unique_ptr<SubscriberShard[]> subscriber_shards_;  // subscriber → uris
};

}  // namespace mcpmesh::registry
