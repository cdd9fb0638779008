#include "registry/subscription_index.hpp"

#include <algorithm>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace mcpmesh::registry {
namespace {

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

using Strings = std::vector<std::string>;

TEST(SubscriptionIndexTest, SubscribeAndList) {
  SubscriptionIndex index;
  EXPECT_TRUE(index.subscribers("file:///a").empty());
  EXPECT_EQ(index.uri_count(), 0u);

  EXPECT_TRUE(index.subscribe("file:///a", "s1"));
  EXPECT_TRUE(index.subscribe("file:///a", "s2"));
  EXPECT_FALSE(index.subscribe("file:///a", "s1"));  // already subscribed
  EXPECT_TRUE(index.subscribe("file:///b", "s1"));

  EXPECT_EQ(sorted(index.subscribers("file:///a")), (Strings{"s1", "s2"}));
  EXPECT_EQ(index.subscribers("file:///b"), (Strings{"s1"}));
  EXPECT_TRUE(index.subscribers("file:///c").empty());
  EXPECT_EQ(index.uri_count(), 2u);
}

TEST(SubscriptionIndexTest, UnsubscribeRemovesEmptySets) {
  SubscriptionIndex index;
  ASSERT_TRUE(index.subscribe("u", "s1"));
  ASSERT_TRUE(index.subscribe("u", "s2"));
  EXPECT_FALSE(index.unsubscribe("u", "s3"));
  EXPECT_FALSE(index.unsubscribe("v", "s1"));
  EXPECT_TRUE(index.unsubscribe("u", "s1"));
  EXPECT_FALSE(index.unsubscribe("u", "s1"));
  EXPECT_EQ(index.subscribers("u"), (Strings{"s2"}));
  EXPECT_EQ(index.uri_count(), 1u);
  EXPECT_TRUE(index.unsubscribe("u", "s2"));
  EXPECT_TRUE(index.subscribers("u").empty());
  EXPECT_EQ(index.uri_count(), 0u);
  // The reverse index was cleaned too: nothing left to unsubscribe.
  EXPECT_EQ(index.unsubscribe_all("s1"), 0u);
  EXPECT_EQ(index.unsubscribe_all("s2"), 0u);
  // And a re-subscription works from scratch.
  EXPECT_TRUE(index.subscribe("u", "s1"));
  EXPECT_EQ(index.subscribers("u"), (Strings{"s1"}));
}

TEST(SubscriptionIndexTest, UnsubscribeAllLeavesOtherSubscribers) {
  SubscriptionIndex index(4);
  for (int i = 0; i < 50; ++i) {
    const std::string uri = "res://" + std::to_string(i);
    ASSERT_TRUE(index.subscribe(uri, "gone"));
    if (i % 2 == 0) {
      ASSERT_TRUE(index.subscribe(uri, "stays"));
    }
  }
  EXPECT_EQ(index.uri_count(), 50u);
  EXPECT_EQ(index.unsubscribe_all("gone"), 50u);
  EXPECT_EQ(index.unsubscribe_all("gone"), 0u);
  EXPECT_EQ(index.uri_count(), 25u);
  for (int i = 0; i < 50; ++i) {
    const auto subs = index.subscribers("res://" + std::to_string(i));
    if (i % 2 == 0) {
      EXPECT_EQ(subs, (Strings{"stays"}));
    } else {
      EXPECT_TRUE(subs.empty());
    }
  }
  EXPECT_EQ(index.unsubscribe_all("stays"), 25u);
  EXPECT_EQ(index.uri_count(), 0u);
}

TEST(SubscriptionIndexTest, AUriIsStoredOnceForAllItsSubscribers) {
  SubscriptionIndex index;
  const std::string uri = "file:///" + std::string(200, 'u');
  auto first = index.subscribe(uri, "s1");
  auto second = index.subscribe(uri, "s2");
  auto again = index.subscribe(uri, "s1");
  ASSERT_TRUE(first.added);
  ASSERT_TRUE(second.added);
  ASSERT_FALSE(again.added);
  EXPECT_EQ(first.uri, uri);
  // One text for the URI, whoever subscribed and whichever index holds it.
  EXPECT_TRUE(first.uri.shares_text_with(second.uri));
  EXPECT_TRUE(first.uri.shares_text_with(again.uri));
  EXPECT_FALSE(first.uri.shares_text_with(SharedUri(uri)));
  // A holder's handle outlives the index's entry, and a new entry gets a new text.
  EXPECT_EQ(index.unsubscribe_all("s1"), 1u);
  EXPECT_TRUE(index.unsubscribe(first.uri, "s2"));
  EXPECT_EQ(index.uri_count(), 0u);
  EXPECT_EQ(first.uri.view(), uri);
  auto fresh = index.subscribe(uri, "s3");
  EXPECT_FALSE(fresh.uri.shares_text_with(first.uri));
  EXPECT_EQ(index.subscribers(uri), (Strings{"s3"}));
}

TEST(SubscriptionIndexTest, SharedUrisCompareByText) {
  std::set<SharedUri, std::less<>> uris{"b://2", "a://1"};
  EXPECT_TRUE(uris.contains(std::string_view("a://1")));
  EXPECT_FALSE(uris.contains(std::string_view("c://3")));
  EXPECT_EQ(uris.begin()->view(), "a://1");
  EXPECT_TRUE(SharedUri("x") == SharedUri(std::string("x")));
  EXPECT_TRUE(SharedUri("x") < std::string_view("y"));
  EXPECT_EQ(SharedUri().view(), "");
}

TEST(SubscriptionIndexTest, SingleShardStillWorks) {
  SubscriptionIndex index(1);  // URI and subscriber shards are still distinct locks
  ASSERT_TRUE(index.subscribe("same", "same"));
  EXPECT_EQ(index.subscribers("same"), (Strings{"same"}));
  EXPECT_EQ(index.unsubscribe_all("same"), 1u);
  EXPECT_EQ(index.uri_count(), 0u);
}

TEST(SubscriptionIndexTest, ConcurrentSubscribersOnOneUri) {
  SubscriptionIndex index(8);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&index, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string subscriber = std::to_string(t) + "." + std::to_string(i);
        EXPECT_TRUE(index.subscribe("hot", subscriber));
        EXPECT_TRUE(index.subscribe("cold." + std::to_string(i), subscriber));
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(index.subscribers("hot").size(), static_cast<std::size_t>(kThreads * kPerThread));
  EXPECT_EQ(index.uri_count(), static_cast<std::size_t>(1 + kPerThread));
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      EXPECT_EQ(index.unsubscribe_all(std::to_string(t) + "." + std::to_string(i)), 2u);
    }
  }
  EXPECT_EQ(index.uri_count(), 0u);
}

}  // namespace
}  // namespace mcpmesh::registry
