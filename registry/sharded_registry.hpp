#pragma once

#include <atomic>
#include <bit>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mcpmesh::registry {

namespace detail {

/// Shards are padded to this size so that two shards' locks never share a cache line.
/// A constant rather than std::hardware_destructive_interference_size: that one varies with
/// compiler flags (GCC warns about it in headers), this one must not.
inline constexpr std::size_t kCacheLineSize = 64;

/// Thread-safe (stateless). Hashes std::string, std::string_view and const char* alike, so
/// maps keyed by std::string can be searched with a std::string_view without allocating.
struct TransparentStringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

/// Thread-safe (pure). The 64-bit finaliser of MurmurHash3. Shard selection must not reuse
/// the raw bits the per-shard map uses for its buckets (libc++ masks low bits too, and some
/// std::hash implementations are close to identity), or every key in a shard would crowd
/// into the same few buckets.
constexpr std::uint64_t mix_hash(std::uint64_t h) noexcept {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb53a11f5d2c3ULL;
  h ^= h >> 33;
  return h;
}

/// Thread-safe (pure). Rounds a requested shard count up to a power of two, at least 1.
constexpr std::size_t round_shard_count(std::size_t requested) noexcept {
  return requested <= 1 ? 1 : std::bit_ceil(requested);
}

/// Thread-safe (pure). Shard of `key` among `mask + 1` shards (a power of two).
inline std::size_t shard_of(std::string_view key, std::size_t mask) noexcept {
  return static_cast<std::size_t>(mix_hash(TransparentStringHash{}(key))) & mask;
}

}  // namespace detail
}  // namespace mcpmesh::registry

#if defined(__GLIBCXX__)
// libstdc++ stores each node's hash code only for hashers it deems slow. Ours forwards to
// std::hash<std::string_view>, which libstdc++ itself marks slow; without the cached code,
// walking a bucket rehashes every neighbouring key (registry_bench, miss at 100K entries:
// 310 ns without, 115 ns with).
template <>
struct std::__is_fast_hash<mcpmesh::registry::detail::TransparentStringHash> : std::false_type {};
#endif

namespace mcpmesh::registry {

/// Thread-safe: every member may be called from any thread. Mutexes are per shard and never
/// held while calling user code (callbacks, and destructors of V, which run after the shard
/// lock is released).
///
/// A string-keyed map of shared_ptr<V>, split into a power-of-two number of shards, each a
/// std::unordered_map behind its own std::shared_mutex. Lookups take one shared lock and do
/// not allocate. Values must be non-null (a null value would be indistinguishable from a
/// miss in find()). Never blocks on anything but a shard lock, which is only ever held for a
/// bounded, short hash-map operation.
///
/// ```
///   ShardedRegistry<Session> sessions;
///   if (!sessions.insert(id, std::make_shared<Session>())) { /* id collision */ }
///   if (auto s = sessions.find(id)) { /* use s; it stays alive even if erased meanwhile */ }
/// ```
///
/// `KeyOf` (optional): a function `std::string_view(const V&)` giving the key each value
/// carries. Then the map keeps a view of that text instead of a copy of its own (a session id
/// is ~48 bytes: a heap block per entry saved), insert() takes the key from the value, and
/// callbacks get the key as a std::string_view (valid while they hold the value).
template <class V, auto KeyOf = nullptr>
class ShardedRegistry {
  static constexpr bool kKeyInValue = !std::is_null_pointer_v<decltype(KeyOf)>;

 public:
  /// std::string, or std::string_view into the value with a KeyOf.
  using Key = std::conditional_t<kKeyInValue, std::string_view, std::string>;

  /// Thread-safe (construction). `shard_count` is rounded up to a power of two (minimum 1).
  explicit ShardedRegistry(std::size_t shard_count = 64)
      : mask_(detail::round_shard_count(shard_count) - 1),
        shards_(std::make_unique<Shard[]>(mask_ + 1)) {}

  ShardedRegistry(const ShardedRegistry&) = delete;
  ShardedRegistry& operator=(const ShardedRegistry&) = delete;

  /// Thread-safe. Adds `key` → `value`; returns false (and leaves the registry unchanged) if
  /// `key` is already present. `value` must not be null.
  [[nodiscard]] bool insert(std::string key, std::shared_ptr<V> value) {
    assert(value != nullptr);
    Shard& shard = shard_for(key);
    // Build the node outside the lock so the critical section does not allocate it; a
    // rejected node is destroyed after the lock is released (its value may be user code).
    Map staging;
    if constexpr (kKeyInValue) {
      assert(KeyOf(*value) == key);
      Key view = KeyOf(*value);
      staging.emplace(view, std::move(value));
    } else {
      staging.emplace(std::move(key), std::move(value));
    }
    typename Map::node_type node = staging.extract(staging.begin());
    typename Map::insert_return_type result;
    {
      std::unique_lock lock(shard.mutex);
      result = shard.map.insert(std::move(node));
      if (result.inserted) {
        shard.size.store(shard.map.size(), std::memory_order_relaxed);
      }
    }
    return result.inserted;
  }

  /// Thread-safe. The value stored under `key`, or null. Takes a shared lock; no allocation.
  [[nodiscard]] std::shared_ptr<V> find(std::string_view key) const {
    const Shard& shard = shard_for(key);
    std::shared_lock lock(shard.mutex);
    auto it = shard.map.find(key);
    return it == shard.map.end() ? nullptr : it->second;
  }

  /// Thread-safe. Removes `key`; returns whether it was present. The value's destructor (if
  /// this was the last reference) runs after the shard lock is released.
  bool erase(std::string_view key) { return extract(key) != nullptr; }

  /// Thread-safe. Removes `key` and returns its value, or null if it was absent.
  std::shared_ptr<V> extract(std::string_view key) {
    Shard& shard = shard_for(key);
    typename Map::node_type node;  // destroyed after `lock`: frees the key outside it
    {
      std::unique_lock lock(shard.mutex);
      auto it = shard.map.find(key);
      if (it == shard.map.end()) {
        return nullptr;
      }
      node = shard.map.extract(it);
      shard.size.store(shard.map.size(), std::memory_order_relaxed);
    }
    return std::move(node.mapped());
  }

  /// Thread-safe, lock-free. Number of entries: exact when quiescent, approximate while other
  /// threads insert or erase. O(shard count).
  [[nodiscard]] std::size_t size() const {
    std::size_t total = 0;
    for (std::size_t i = 0; i <= mask_; ++i) {
      total += shards_[i].size.load(std::memory_order_relaxed);
    }
    return total;
  }

  /// Thread-safe. Number of shards (a power of two).
  [[nodiscard]] std::size_t shard_count() const noexcept { return mask_ + 1; }

  /// Thread-safe. Calls f(const std::string& key, const std::shared_ptr<V>& value) for every
  /// entry. Each shard is copied out under its shared lock and f is called with no lock held,
  /// so f may use this registry (including erase). Not a snapshot of the whole registry:
  /// entries added or removed concurrently may or may not be visited.
  template <class F>
  void for_each(F&& f) const {
    std::vector<std::pair<Key, std::shared_ptr<V>>> entries;
    for (std::size_t i = 0; i <= mask_; ++i) {
      const Shard& shard = shards_[i];
      {
        std::shared_lock lock(shard.mutex);
        entries.reserve(shard.map.size());
        for (const auto& [key, value] : shard.map) {
          entries.emplace_back(key, value);
        }
      }
      for (const auto& [key, value] : entries) {
        f(key, value);
      }
      entries.clear();  // drops our references outside the lock
    }
  }

  /// Thread-safe. The values for which pred(const std::string& key, const V& value) returns
  /// true. pred runs UNDER THE SHARD'S SHARED LOCK: it must be short, must not block, and must
  /// not call into this registry (deadlock). Unlike for_each, nothing is copied for entries
  /// pred refuses: a scan that selects few allocates little.
  template <class Pred>
  [[nodiscard]] std::vector<std::shared_ptr<V>> select(Pred&& pred) const {
    std::vector<std::shared_ptr<V>> selected;
    for (std::size_t i = 0; i <= mask_; ++i) {
      const Shard& shard = shards_[i];
      std::shared_lock lock(shard.mutex);
      for (const auto& [key, value] : shard.map) {
        if (pred(key, std::as_const(*value))) selected.push_back(value);
      }
    }
    return selected;
  }

  /// Thread-safe. Erases every entry for which pred(const std::string& key, const V& value)
  /// returns true; returns how many were erased. pred runs UNDER THE SHARD'S EXCLUSIVE LOCK:
  /// it must be short, must not block, and must not call into this registry (deadlock).
  /// Erased values are released after the lock is dropped.
  template <class Pred>
  std::size_t erase_if(Pred&& pred) {
    std::size_t erased = 0;
    std::vector<std::shared_ptr<V>> doomed;
    for (std::size_t i = 0; i <= mask_; ++i) {
      Shard& shard = shards_[i];
      {
        std::unique_lock lock(shard.mutex);
        for (auto it = shard.map.begin(); it != shard.map.end();) {
          if (pred(std::as_const(it->first), std::as_const(*it->second))) {
            doomed.push_back(std::move(it->second));
            it = shard.map.erase(it);
          } else {
            ++it;
          }
        }
        shard.size.store(shard.map.size(), std::memory_order_relaxed);
      }
      erased += doomed.size();
      doomed.clear();  // V destructors run here, with no lock held
    }
    return erased;
  }

 private:
  using Map =
      std::unordered_map<Key, std::shared_ptr<V>, detail::TransparentStringHash, std::equal_to<>>;

  struct alignas(detail::kCacheLineSize) Shard {
    mutable std::shared_mutex mutex;
    Map map;                           // guarded by mutex
    std::atomic<std::size_t> size{0};  // written under mutex, read without it
  };

  Shard& shard_for(std::string_view key) { return shards_[detail::shard_of(key, mask_)]; }
  const Shard& shard_for(std::string_view key) const {
    return shards_[detail::shard_of(key, mask_)];
  }

  const std::size_t mask_;
  const std::unique_ptr<Shard[]> shards_;
};

}  // namespace mcpmesh::registry
