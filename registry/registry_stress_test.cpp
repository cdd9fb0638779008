// Many-thread stress test for ShardedRegistry and SubscriptionIndex, built with
// -fsanitize=thread and run with TSAN_OPTIONS=halt_on_error=1: any data race fails it. Eight
// threads hammer overlapping keys with every operation; at the end, counts each thread kept
// of its own successful operations must add up to exactly what the containers hold.
// No GoogleTest: everything in this binary is TSan-instrumented.

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "registry/sharded_registry.hpp"
#include "registry/subscription_index.hpp"

#define STRESS_CHECK(cond)                                                          \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                 \
    }                                                                               \
  } while (false)

namespace mcpmesh::registry {
namespace {

constexpr int kThreads = 8;
constexpr int kIterations = 100000;
constexpr int kSharedKeys = 256;
constexpr int kPrivateEvery = 100;  // one thread-private key per this many iterations
constexpr int kUris = 64;
constexpr int kSubscribersPerThread = 4;

struct Value {
  explicit Value(std::string k) : key(std::move(k)) {}
  const std::string key;  // immutable: read by erase_if predicates and readers alike
  std::atomic<int> reads{0};
};

struct Tally {
  long inserted = 0;
  long removed = 0;
  long subscribed = 0;
  long unsubscribed = 0;
};

std::string shared_key(unsigned n) { return "n1.shared." + std::to_string(n % kSharedKeys); }
std::string private_key(int thread, int n) {
  return "p" + std::to_string(thread) + "." + std::to_string(n);
}
std::string uri(unsigned n) { return "file:///r/" + std::to_string(n % kUris); }
std::string subscriber(int thread, unsigned n) {
  if (n % 8 == 0) {
    return "shared-subscriber";  // contended by every thread
  }
  return "s" + std::to_string(thread) + "." + std::to_string(n % kSubscribersPerThread);
}

void run_thread(int t, ShardedRegistry<Value>& reg, SubscriptionIndex& subs, Tally& tally) {
  std::mt19937 rng(static_cast<unsigned>(t) * 7919u + 1u);
  for (int iter = 0; iter < kIterations; ++iter) {
    if (iter % kPrivateEvery == 0) {
      // Private keys: every thread inserts them and erases the odd ones, so the surviving
      // set is known exactly.
      const int n = iter / kPrivateEvery;
      const std::string key = private_key(t, n);
      STRESS_CHECK(reg.insert(key, std::make_shared<Value>(key)));
      ++tally.inserted;
      if (n % 2 == 1) {
        STRESS_CHECK(reg.erase(key));
        ++tally.removed;
      }
    }
    const unsigned r = rng();
    const unsigned op = r % 16;
    const unsigned arg = r >> 4;
    switch (op) {
      case 0:
      case 1:
      case 2:
      case 3: {
        std::string key = shared_key(arg);
        auto value = std::make_shared<Value>(key);
        if (reg.insert(std::move(key), std::move(value))) {
          ++tally.inserted;
        }
        break;
      }
      case 4:
      case 5:
      case 6:
      case 7: {
        const std::string key = shared_key(arg);
        if (auto v = reg.find(key)) {
          STRESS_CHECK(v->key == key);
          v->reads.fetch_add(1, std::memory_order_relaxed);
        }
        break;
      }
      case 8:
      case 9:
        if (reg.erase(shared_key(arg))) {
          ++tally.removed;
        }
        break;
      case 10: {
        const std::string key = shared_key(arg);
        if (auto v = reg.extract(key)) {
          STRESS_CHECK(v->key == key);
          ++tally.removed;
        }
        break;
      }
      case 11:
        if (iter % 64 == 0) {
          reg.for_each([](const std::string& key, const std::shared_ptr<Value>& v) {
            STRESS_CHECK(v != nullptr && v->key == key);
          });
        } else if (iter % 64 == 1) {
          const std::string suffix = std::to_string(arg % 10);
          tally.removed +=
              static_cast<long>(reg.erase_if([&](const std::string& key, const Value& v) {
                STRESS_CHECK(v.key == key);
                return key.rfind("n1.shared.", 0) == 0 && key.back() == suffix[0];
              }));
        } else {
          (void)reg.size();
        }
        break;
      case 12:
      case 13:
        if (subs.subscribe(uri(arg), subscriber(t, arg >> 8))) {
          ++tally.subscribed;
        }
        break;
      case 14:
        if (arg % 32 == 0) {
          tally.unsubscribed += static_cast<long>(subs.unsubscribe_all(subscriber(t, arg >> 8)));
        } else if (subs.unsubscribe(uri(arg), subscriber(t, arg >> 8))) {
          ++tally.unsubscribed;
        }
        break;
      case 15: {
        const auto list = subs.subscribers(uri(arg));
        const std::set<std::string> unique(list.begin(), list.end());
        STRESS_CHECK(unique.size() == list.size());
        (void)subs.uri_count();
        break;
      }
    }
  }
}

int run() {
  ShardedRegistry<Value> reg(16);  // few shards: more contention per lock
  SubscriptionIndex subs(8);
  std::vector<Tally> tallies(kThreads);
  {
    std::vector<std::thread> threads;
    threads.reserve(kThreads);
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back(run_thread, t, std::ref(reg), std::ref(subs), std::ref(tallies[t]));
    }
    for (auto& th : threads) {
      th.join();
    }
  }
  Tally total;
  for (const Tally& t : tallies) {
    total.inserted += t.inserted;
    total.removed += t.removed;
    total.subscribed += t.subscribed;
    total.unsubscribed += t.unsubscribed;
  }

  // Registry: size agrees with the operation log, with for_each, and private keys are exact.
  const long expected_size = total.inserted - total.removed;
  STRESS_CHECK(static_cast<long>(reg.size()) == expected_size);
  long visited = 0;
  long private_seen = 0;
  reg.for_each([&](const std::string& key, const std::shared_ptr<Value>& v) {
    STRESS_CHECK(v->key == key);
    ++visited;
    if (key[0] == 'p') {
      ++private_seen;
    }
  });
  STRESS_CHECK(visited == expected_size);
  constexpr int kPrivatePerThread = kIterations / kPrivateEvery;
  STRESS_CHECK(private_seen == static_cast<long>(kThreads) * ((kPrivatePerThread + 1) / 2));
  for (int t = 0; t < kThreads; ++t) {
    for (int n = 0; n < kPrivatePerThread; ++n) {
      STRESS_CHECK((reg.find(private_key(t, n)) != nullptr) == (n % 2 == 0));
    }
  }

  // Subscriptions: pairs held agree with the log; the reverse index agrees with the forward
  // one (each subscriber's unsubscribe_all removes exactly the URIs listing it).
  std::vector<std::string> all_subscribers = {"shared-subscriber"};
  all_subscribers.reserve(1 + kThreads * kSubscribersPerThread);
  for (int t = 0; t < kThreads; ++t) {
    for (int k = 0; k < kSubscribersPerThread; ++k) {
      all_subscribers.push_back("s" + std::to_string(t) + "." + std::to_string(k));
    }
  }
  long pairs = 0;
  std::vector<long> per_subscriber(all_subscribers.size(), 0);
  for (unsigned u = 0; u < kUris; ++u) {
    for (const std::string& s : subs.subscribers(uri(u))) {
      ++pairs;
      bool known = false;
      for (std::size_t i = 0; i < all_subscribers.size(); ++i) {
        if (all_subscribers[i] == s) {
          ++per_subscriber[i];
          known = true;
        }
      }
      STRESS_CHECK(known);
    }
  }
  STRESS_CHECK(pairs == total.subscribed - total.unsubscribed);
  for (std::size_t i = 0; i < all_subscribers.size(); ++i) {
    STRESS_CHECK(static_cast<long>(subs.unsubscribe_all(all_subscribers[i])) == per_subscriber[i]);
  }
  STRESS_CHECK(subs.uri_count() == 0);

  std::printf(
      "ok: %ld inserted, %ld removed, %ld left; %ld subscribed, %ld unsubscribed, %ld left\n",
      total.inserted, total.removed, expected_size, total.subscribed, total.unsubscribed, pairs);
  return 0;
}

}  // namespace
}  // namespace mcpmesh::registry

int main() { return mcpmesh::registry::run(); }
