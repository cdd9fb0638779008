#include "mcp/roaming_executor.hpp"

#include <gtest/gtest.h>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <thread>

namespace mcpmesh::mcp {
namespace {

using Strand = asio::strand<RoamingExecutor>;

/// Registers the calling thread as running `context` for the scope.
struct ThreadContext {
  explicit ThreadContext(asio::io_context* c) { RoamingExecutor::set_thread_context(c); }
  ~ThreadContext() { RoamingExecutor::set_thread_context(nullptr); }
};

TEST(RoamingExecutor, DispatchFromAnIoThreadRunsInlineThere) {
  asio::io_context home, mine;
  Strand strand{RoamingExecutor(home)};
  ThreadContext registered(&mine);
  bool ran = false;
  asio::dispatch(strand, [&] { ran = true; });
  EXPECT_TRUE(ran);  // before any context ran
}

TEST(RoamingExecutor, PostFromAnIoThreadQueuesOnThatThreadsContext) {
  asio::io_context home, mine;
  Strand strand{RoamingExecutor(home)};
  ThreadContext registered(&mine);
  bool ran = false;
  asio::post(strand, [&] { ran = true; });
  EXPECT_FALSE(ran);
  home.poll();
  EXPECT_FALSE(ran);  // not the home context
  mine.poll();
  EXPECT_TRUE(ran);
}

TEST(RoamingExecutor, DispatchFromAnUnregisteredThreadGoesHome) {
  asio::io_context home;
  Strand strand{RoamingExecutor(home)};
  bool ran = false;
  std::thread([&] { asio::dispatch(strand, [&] { ran = true; }); }).join();
  EXPECT_FALSE(ran);
  home.poll();
  EXPECT_TRUE(ran);
}

TEST(RoamingExecutor, WorkQueuedBehindARunningStrandRunsAfterItOnTheSameThread) {
  asio::io_context home, mine;
  Strand strand{RoamingExecutor(home)};
  ThreadContext registered(&mine);
  std::vector<int> order;
  asio::dispatch(strand, [&] {
    // Inside the strand: a nested post queues behind the running handler.
    asio::post(strand, [&] { order.push_back(2); });
    order.push_back(1);
  });
  mine.poll();
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

TEST(RoamingExecutor, StrandSerialisesDispatchesFromManyIoThreads) {
  asio::io_context home;
  Strand strand{RoamingExecutor(home)};
  constexpr int kThreads = 4;
  constexpr int kPerThread = 20000;
  long counter = 0;  // not atomic: the strand is the only guard
  std::atomic<int> inside{0};
  std::atomic<bool> overlapped{false};
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  for (int i = 0; i < kThreads; ++i) contexts.push_back(std::make_unique<asio::io_context>(1));
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      ThreadContext registered(contexts[static_cast<std::size_t>(i)].get());
      auto guard = asio::make_work_guard(*contexts[static_cast<std::size_t>(i)]);
      for (int n = 0; n < kPerThread; ++n) {
        asio::dispatch(strand, [&] {
          if (inside.fetch_add(1) != 0) overlapped = true;
          ++counter;
          inside.fetch_sub(1);
        });
        contexts[static_cast<std::size_t>(i)]->poll();
      }
      guard.reset();
      contexts[static_cast<std::size_t>(i)]->run();
    });
  }
  for (auto& t : threads) t.join();
  home.run();
  // Whatever was left queued when a thread stopped was handed to some context; drain them all.
  for (auto& c : contexts) {
    c->restart();
    c->run();
  }
  EXPECT_FALSE(overlapped.load());
  EXPECT_EQ(counter, static_cast<long>(kThreads) * kPerThread);
}

}  // namespace
}  // namespace mcpmesh::mcp
