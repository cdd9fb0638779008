#include "registry/sharded_registry.hpp"

#include <atomic>
#include <cstdlib>
#include <map>
#include <new>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

// Counts every allocation made through the global operator new, to prove find() makes none.
// noinline: GCC's -Wmismatched-new-delete misfires when these replacements are inlined.
namespace {
std::atomic<std::size_t> g_allocations{0};
}  // namespace

[[gnu::noinline]] void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) {
    return p;
  }
  throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace mcpmesh::registry {
namespace {

struct Item {
  explicit Item(int v) : value(v) {}
  int value;
};

TEST(ShardedRegistryTest, ShardCountIsRoundedUpToPowerOfTwo) {
  EXPECT_EQ(ShardedRegistry<Item>(0).shard_count(), 1u);
  EXPECT_EQ(ShardedRegistry<Item>(1).shard_count(), 1u);
  EXPECT_EQ(ShardedRegistry<Item>(3).shard_count(), 4u);
  EXPECT_EQ(ShardedRegistry<Item>(64).shard_count(), 64u);
  EXPECT_EQ(ShardedRegistry<Item>(65).shard_count(), 128u);
  EXPECT_EQ(ShardedRegistry<Item>().shard_count(), 64u);
}

TEST(ShardedRegistryTest, InsertFindEraseExtract) {
  ShardedRegistry<Item> reg;
  EXPECT_EQ(reg.size(), 0u);
  EXPECT_EQ(reg.find("a"), nullptr);

  EXPECT_TRUE(reg.insert("a", std::make_shared<Item>(1)));
  EXPECT_TRUE(reg.insert("b", std::make_shared<Item>(2)));
  EXPECT_FALSE(reg.insert("a", std::make_shared<Item>(3)));  // duplicate keeps the original
  EXPECT_EQ(reg.size(), 2u);
  ASSERT_NE(reg.find("a"), nullptr);
  EXPECT_EQ(reg.find("a")->value, 1);
  EXPECT_EQ(reg.find(std::string_view("b"))->value, 2);

  EXPECT_TRUE(reg.erase("a"));
  EXPECT_FALSE(reg.erase("a"));
  EXPECT_EQ(reg.find("a"), nullptr);
  EXPECT_EQ(reg.size(), 1u);

  auto b = reg.extract("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->value, 2);
  EXPECT_EQ(reg.extract("b"), nullptr);
  EXPECT_EQ(reg.size(), 0u);
}

TEST(ShardedRegistryTest, FoundValueOutlivesErase) {
  ShardedRegistry<Item> reg;
  ASSERT_TRUE(reg.insert("k", std::make_shared<Item>(7)));
  auto held = reg.find("k");
  EXPECT_TRUE(reg.erase("k"));
  EXPECT_EQ(held->value, 7);
  EXPECT_EQ(held.use_count(), 1);
}

TEST(ShardedRegistryTest, ManyKeysSpreadOverShards) {
  ShardedRegistry<Item> reg(16);
  constexpr int kCount = 10000;
  for (int i = 0; i < kCount; ++i) {
    ASSERT_TRUE(reg.insert("n1." + std::to_string(i), std::make_shared<Item>(i)));
  }
  EXPECT_EQ(reg.size(), static_cast<std::size_t>(kCount));
  for (int i = 0; i < kCount; ++i) {
    auto v = reg.find("n1." + std::to_string(i));
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(v->value, i);
  }
  // Every shard gets a fair share: each holds within 2x of the mean.
  std::map<std::size_t, int> per_shard;
  for (int i = 0; i < kCount; ++i) {
    ++per_shard[detail::shard_of("n1." + std::to_string(i), reg.shard_count() - 1)];
  }
  EXPECT_EQ(per_shard.size(), reg.shard_count());
  for (const auto& [shard, n] : per_shard) {
    EXPECT_GT(n, kCount / 16 / 2) << "shard " << shard;
    EXPECT_LT(n, kCount / 16 * 2) << "shard " << shard;
  }
}

TEST(ShardedRegistryTest, FindDoesNotAllocate) {
  ShardedRegistry<Item> reg;
  const std::string key = "n1.0123456789abcdef0123456789abcdef";  // longer than SSO
  ASSERT_TRUE(reg.insert(key, std::make_shared<Item>(1)));
  const std::string missing = "n1.ffffffffffffffffffffffffffffffff";
  const std::size_t before = g_allocations.load();
  auto hit = reg.find(std::string_view(key));
  auto miss = reg.find(std::string_view(missing));
  const std::size_t after = g_allocations.load();
  EXPECT_EQ(after, before);
  EXPECT_NE(hit, nullptr);
  EXPECT_EQ(miss, nullptr);
}

TEST(ShardedRegistryTest, ForEachVisitsEveryEntryAndMayReenter) {
  ShardedRegistry<Item> reg(4);
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(reg.insert(std::to_string(i), std::make_shared<Item>(i)));
  }
  std::set<std::string> seen;
  int sum = 0;
  // The callback erases from the registry: would deadlock if the shard lock were held.
  reg.for_each([&](const std::string& key, const std::shared_ptr<Item>& value) {
    seen.insert(key);
    sum += value->value;
    EXPECT_TRUE(reg.erase(key));
  });
  EXPECT_EQ(seen.size(), 100u);
  EXPECT_EQ(sum, 99 * 100 / 2);
  EXPECT_EQ(reg.size(), 0u);
}

TEST(ShardedRegistryTest, EraseIfRemovesMatchingOnly) {
  ShardedRegistry<Item> reg;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(reg.insert(std::to_string(i), std::make_shared<Item>(i)));
  }
  const std::size_t erased =
      reg.erase_if([](const std::string&, const Item& item) { return item.value % 3 == 0; });
  EXPECT_EQ(erased, 34u);
  EXPECT_EQ(reg.size(), 66u);
  EXPECT_EQ(reg.find("3"), nullptr);
  EXPECT_NE(reg.find("4"), nullptr);
  EXPECT_EQ(reg.erase_if([](const std::string& key, const Item&) { return key == "4"; }), 1u);
  EXPECT_EQ(reg.size(), 65u);
}

TEST(ShardedRegistryTest, SelectCopiesOnlyWhatItSelects) {
  ShardedRegistry<Item> reg;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(reg.insert(std::to_string(i), std::make_shared<Item>(i)));
  }
  const std::size_t before = g_allocations.load();
  auto none = reg.select([](const std::string&, const Item& item) { return item.value < 0; });
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(g_allocations.load(), before) << "a scan selecting nothing allocates nothing";
  auto some =
      reg.select([](const std::string&, const Item& item) { return item.value % 100 == 7; });
  std::set<int> values;
  for (auto& item : some) values.insert(item->value);
  EXPECT_EQ(values, (std::set<int>{7, 107, 207, 307, 407, 507, 607, 707, 807, 907}));
  EXPECT_EQ(reg.size(), 1000u);  // nothing removed
}

// A value whose destructor re-enters the registry: proves destructors run with no lock held.
struct Reentrant {
  Reentrant(ShardedRegistry<Reentrant>* r, std::string k) : reg(r), key(std::move(k)) {}
  Reentrant(const Reentrant&) = delete;
  Reentrant& operator=(const Reentrant&) = delete;
  ShardedRegistry<Reentrant>* reg;
  std::string key;
  ~Reentrant() {
    if (reg != nullptr) {
      (void)reg->find(key);
      (void)reg->insert(key + ".reborn", std::make_shared<Reentrant>(nullptr, ""));
    }
  }
};

TEST(ShardedRegistryTest, ValueDestructorsRunOutsideTheLock) {
  ShardedRegistry<Reentrant> reg(1);  // one shard: any re-entry hits the same lock
  ASSERT_TRUE(reg.insert("a", std::make_shared<Reentrant>(&reg, "a")));
  ASSERT_TRUE(reg.insert("b", std::make_shared<Reentrant>(&reg, "b")));
  ASSERT_TRUE(reg.insert("c", std::make_shared<Reentrant>(&reg, "c")));
  EXPECT_TRUE(reg.erase("a"));
  EXPECT_NE(reg.find("a.reborn"), nullptr);
  EXPECT_EQ(reg.erase_if([](const std::string& key, const Reentrant&) { return key == "b"; }), 1u);
  EXPECT_NE(reg.find("b.reborn"), nullptr);
  // A rejected insert's value is also released outside the lock.
  EXPECT_FALSE(reg.insert("c", std::make_shared<Reentrant>(&reg, "c2")));
  EXPECT_NE(reg.find("c2.reborn"), nullptr);
  reg.extract("c")->reg = nullptr;  // the registry's own destructor must not re-enter it
}

TEST(ShardedRegistryTest, ConcurrentDisjointInserts) {
  ShardedRegistry<Item> reg(8);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&reg, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string key = std::to_string(t) + "." + std::to_string(i);
        EXPECT_TRUE(reg.insert(key, std::make_shared<Item>(i)));
        EXPECT_NE(reg.find(key), nullptr);
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(reg.size(), static_cast<std::size_t>(kThreads * kPerThread));
}

}  // namespace
}  // namespace mcpmesh::registry
