#include "transport/io_pool.hpp"

#include <gtest/gtest.h>
#include <boost/asio/post.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <thread>
#include <vector>

namespace mcpmesh::transport {
namespace {

namespace asio = boost::asio;

/// A service that records when its context destroys it.
struct Probe : asio::execution_context::service {
  static inline asio::execution_context::id id;
  Probe(asio::execution_context& owner, std::shared_ptr<bool> destroyed)
      : service(owner), destroyed_(std::move(destroyed)) {}
  ~Probe() override { *destroyed_ = true; }
  void shutdown() override {}
  std::shared_ptr<bool> destroyed_;
};

/// Held by a handler that never runs: notes whether the other context's services were already
/// destroyed when the handler is.
struct Witness {
  std::shared_ptr<bool> other_destroyed;
  std::shared_ptr<int> late;
  ~Witness() {
    if (other_destroyed && *other_destroyed) ++*late;
  }
};

TEST(IoPool, PendingHandlersGoBeforeAnyContextsServices) {
  auto late = std::make_shared<int>(0);
  {
    IoPool pool(3);
    for (std::size_t i = 0; i < pool.size(); ++i) {
      auto destroyed = std::make_shared<bool>(false);
      asio::make_service<Probe>(pool.at(i), destroyed);
      // A handler on every other context refers to this context's services. The pool never
      // runs, so each handler is destroyed at teardown.
      for (std::size_t j = 0; j < pool.size(); ++j) {
        if (j == i) continue;
        asio::post(pool.at(j), [w = std::make_shared<Witness>(Witness{destroyed, late})] {});
      }
    }
  }
  EXPECT_EQ(*late, 0) << "handlers outlived another context's services";
}

/// A one-context pool running on its own thread, batching while `batching` is true.
struct BatchingPool {
  explicit BatchingPool(std::chrono::microseconds pause, bool on) : batching(on) {
    pool.set_batching(pause, [this] { return batching.load(); });
    thread = std::thread([this] { pool.run(); });
  }
  ~BatchingPool() {
    pool.stop();
    if (thread.joinable()) thread.join();
  }
  /// Waits (at most 5 s) until the thread has paused to batch at least once.
  bool wait_batching() {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (pool.batch_pauses() == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return pool.batch_pauses() > 0;
  }
  /// Posts `n` handlers 1 ms apart; each notes the pause count it ran after.
  std::vector<std::uint64_t> post_spread(int n) {
    auto rounds = std::make_shared<std::vector<std::uint64_t>>();
    auto done = std::make_shared<std::atomic<int>>(0);
    for (int i = 0; i < n; ++i) {
      asio::post(pool.at(0), [this, rounds, done] {
        rounds->push_back(pool.batch_pauses());
        ++*done;
      });
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (done->load() < n && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    EXPECT_EQ(done->load(), n) << "handlers did not run";
    pool.stop();
    thread.join();
    return *rounds;
  }
  IoPool pool{1};
  std::atomic<bool> batching;
  std::thread thread;
};

TEST(IoPool, BatchingRunsWhatArrivedDuringAPauseInOneRound) {
  // 20 handlers posted over ~20 ms, with a 50 ms pause: they run in a round or two (three if
  // the first arrives just before a pause ends), not one wake-up each.
  BatchingPool p(std::chrono::milliseconds(50), true);
  ASSERT_TRUE(p.wait_batching());  // the condition is looked at every 25 ms
  auto rounds = p.post_spread(20);
  ASSERT_EQ(rounds.size(), 20u);
  std::set<std::uint64_t> distinct(rounds.begin(), rounds.end());
  EXPECT_LE(distinct.size(), 3u);
}

TEST(IoPool, WithoutTheConditionNothingPauses) {
  BatchingPool p(std::chrono::milliseconds(50), false);
  auto rounds = p.post_spread(20);
  ASSERT_EQ(rounds.size(), 20u);
  EXPECT_EQ(p.pool.batch_pauses(), 0u);
}

TEST(IoPool, BatchingStartsWhenTheConditionTurnsAndStopEndsIt) {
  BatchingPool p(std::chrono::milliseconds(5), false);
  std::this_thread::sleep_for(std::chrono::milliseconds(60));  // checks that find it false
  EXPECT_EQ(p.pool.batch_pauses(), 0u);
  p.batching = true;
  EXPECT_TRUE(p.wait_batching());
  auto before = std::chrono::steady_clock::now();
  p.pool.stop();
  p.thread.join();
  EXPECT_LT(std::chrono::steady_clock::now() - before, std::chrono::seconds(2));
}

}  // namespace
}  // namespace mcpmesh::transport
