// Microbenchmarks for the local registry: session lookup (hit and miss) at 1K and 100K
// sessions, single-threaded and with two threads sharing the registry, insert+erase churn,
// and listing a URI's subscribers.

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "registry/sharded_registry.hpp"
#include "registry/subscription_index.hpp"

namespace mcpmesh::registry {
namespace {

struct FakeSession {
  std::uint64_t id = 0;
};

// "n1." + 32 hex chars, as a session id owned by node n1 (DESIGN.md §5).
std::vector<std::string> make_session_ids(std::size_t count, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  static constexpr char kHex[] = "0123456789abcdef";
  std::vector<std::string> ids;
  ids.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    std::string id = "n1.";
    for (int half = 0; half < 2; ++half) {
      std::uint64_t bits = rng();
      for (int nibble = 0; nibble < 16; ++nibble, bits >>= 4) {
        id.push_back(kHex[bits & 0xf]);
      }
    }
    ids.push_back(std::move(id));
  }
  return ids;
}

// A populated registry plus the ids in it and ids that are not. Built once per size and
// shared by all benchmark threads (function-local statics are initialised thread-safely).
struct Population {
  explicit Population(std::size_t count)
      : present(make_session_ids(count, 1)), absent(make_session_ids(count, 2)) {
    for (std::size_t i = 0; i < present.size(); ++i) {
      (void)sessions.insert(present[i], std::make_shared<FakeSession>(FakeSession{i}));
    }
  }
  ShardedRegistry<FakeSession> sessions;
  std::vector<std::string> present;
  std::vector<std::string> absent;
};

const Population& population(std::size_t count) {
  static const Population small(1'000);
  static const Population large(100'000);
  return count <= 1'000 ? small : large;
}

void bm_find_hit(benchmark::State& state) {
  const Population& pop = population(static_cast<std::size_t>(state.range(0)));
  // Threads start at different offsets so they do not walk the same keys in lockstep.
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * 7919 % pop.present.size();
  for (auto _ : state) {
    auto session = pop.sessions.find(pop.present[i]);
    benchmark::DoNotOptimize(session);
    if (++i == pop.present.size()) {
      i = 0;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(bm_find_hit)->Arg(1'000)->Arg(100'000)->Threads(1)->Threads(2)->UseRealTime();

void bm_find_miss(benchmark::State& state) {
  const Population& pop = population(static_cast<std::size_t>(state.range(0)));
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * 7919 % pop.absent.size();
  for (auto _ : state) {
    auto session = pop.sessions.find(pop.absent[i]);
    benchmark::DoNotOptimize(session);
    if (++i == pop.absent.size()) {
      i = 0;
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(bm_find_miss)->Arg(1'000)->Arg(100'000)->Threads(1)->Threads(2)->UseRealTime();

// One session created and closed per iteration, against a registry of 1K live sessions.
void bm_insert_erase(benchmark::State& state) {
  static ShardedRegistry<FakeSession> sessions;
  static const bool populated = [] {
    for (const std::string& id : make_session_ids(1'000, 3)) {
      (void)sessions.insert(id, std::make_shared<FakeSession>());
    }
    return true;
  }();
  benchmark::DoNotOptimize(populated);
  // Each thread churns its own ids: inserts never collide across threads.
  const std::vector<std::string> ids =
      make_session_ids(1'024, 100 + static_cast<std::uint64_t>(state.thread_index()));
  auto value = std::make_shared<FakeSession>();
  std::size_t i = 0;
  for (auto _ : state) {
    const std::string& id = ids[i++ & 1023];
    bool inserted = sessions.insert(id, value);
    bool erased = sessions.erase(id);
    benchmark::DoNotOptimize(inserted);
    benchmark::DoNotOptimize(erased);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(bm_insert_erase)->Threads(1)->Threads(2)->UseRealTime();

// Listing the subscribers of one URI with N subscribers (a resources/updated fan-out).
void bm_subscribers(benchmark::State& state) {
  const auto count = static_cast<std::size_t>(state.range(0));
  SubscriptionIndex index;
  for (const std::string& id : make_session_ids(count, 4)) {
    (void)index.subscribe("file:///project/README.md", id);
    (void)index.subscribe("file:///project/other.md", id);
  }
  for (auto _ : state) {
    auto list = index.subscribers("file:///project/README.md");
    benchmark::DoNotOptimize(list);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(bm_subscribers)->Arg(1)->Arg(16)->Arg(256);

}  // namespace
}  // namespace mcpmesh::registry

BENCHMARK_MAIN();
