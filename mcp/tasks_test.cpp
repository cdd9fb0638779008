#include "mcp/tasks.hpp"

#include <gtest/gtest.h>

namespace mcpmesh::mcp {
namespace {

using std::chrono::milliseconds;

TEST(TaskStore, ATaskIsFoundUntilItsTtlAfterItFinished) {
  TaskStore store(10, milliseconds(50), milliseconds(5));
  auto task = store.create("n1.1.1");
  ASSERT_TRUE(task);
  EXPECT_EQ(task->id, "n1.1.1");
  EXPECT_EQ(store.find(task->id), task);
  store.settle(*task, make_result(1, json::object{{"content", json::array()}}));
  EXPECT_EQ(task->status, TaskStatus::kCompleted);
  EXPECT_EQ(store.find(task->id), task);
  task->created -= milliseconds(100);  // its ttl has passed
  EXPECT_FALSE(store.find(task->id));
  EXPECT_FALSE(store.find("n1.unknown"));
}

TEST(TaskStore, ARunningTaskOutlivesItsTtl) {
  TaskStore store(10, milliseconds(1), milliseconds(5));
  auto task = store.create("n1.1.2");
  task->created -= milliseconds(100);
  EXPECT_EQ(store.find(task->id), task);
}

TEST(TaskStore, BoundedLiveTasks) {
  TaskStore store(2, milliseconds(1000), milliseconds(5));
  auto a = store.create("n1.1.3");
  auto b = store.create("n1.1.4");
  EXPECT_TRUE(a && b);
  EXPECT_FALSE(store.create("n1.1.5"));
  store.settle(*a, make_result(1, json::object{}));
  a->created -= milliseconds(2000);  // finished and expired: its place is free again
  EXPECT_TRUE(store.create("n1.1.6"));
}

TEST(TaskStore, SettlesFromTheAnswer) {
  TaskStore store(10, milliseconds(1000), milliseconds(5));
  auto failed = store.create("n1.1.7");
  store.settle(*failed, make_error(1, RpcError(ErrorCode::kInternalError, "broke")));
  EXPECT_EQ(failed->status, TaskStatus::kFailed);
  auto wire = store.to_json(*failed, true);
  EXPECT_EQ(wire.at("error").at("message"), "broke");
  EXPECT_FALSE(wire.contains("result"));
  auto cancelled = store.create("n1.1.8");
  store.settle(*cancelled, nullptr);
  EXPECT_EQ(cancelled->status, TaskStatus::kCancelled);
  auto done = store.create("n1.1.9");
  store.settle(*done, make_result(1, json::object{{"content", json::array{}}, {"isError", true}}));
  EXPECT_EQ(done->status, TaskStatus::kCompleted);  // a tool error is a completed task
  EXPECT_TRUE(store.to_json(*done, true).at("result").at("isError").as_bool());
}

TEST(TaskStore, WireFormHasIntegerMillisecondsAndNoLegacyKeys) {
  TaskStore store(10, milliseconds(60000), milliseconds(500));
  auto task = store.create("n1.1.10");
  auto created = store.to_json(*task, false);
  EXPECT_EQ(created.at("ttlMs").as_int64(), 60000);
  EXPECT_EQ(created.at("pollIntervalMs").as_int64(), 500);
  EXPECT_EQ(created.at("status"), "working");
  EXPECT_FALSE(created.contains("ttl"));
  EXPECT_FALSE(created.contains("pollInterval"));
  EXPECT_FALSE(created.contains("requestState"));
  EXPECT_TRUE(std::string_view(created.at("createdAt").as_string()).ends_with("Z"));
}

TEST(TaskStore, PartialAnswersKeepItWaitingUntilTheLastOne) {
  asio::io_context io;
  TaskStore store(10, milliseconds(60000), milliseconds(500));
  auto task = store.create("n1.1.11");
  auto wake = std::make_shared<asio::steady_timer>(io);
  store.with(*task, [&](Task& t) {
    t.input_requests = {{"a", json::object()}, {"b", json::object()}};
    t.status = TaskStatus::kInputRequired;
    t.wake = wake;
  });
  EXPECT_FALSE(store.answer(*task, {{"a", {{"action", "accept"}}}, {"zzz", json::object()}}));
  EXPECT_EQ(task->status, TaskStatus::kInputRequired);
  auto pending = store.to_json(*task, true).at("inputRequests").as_object();
  EXPECT_EQ(pending.size(), 1u);
  EXPECT_TRUE(pending.contains("b"));
  EXPECT_FALSE(task->answers.contains("zzz"));  // never asked for
  EXPECT_EQ(store.answer(*task, {{"b", {{"action", "decline"}}}}), wake);
  EXPECT_EQ(task->status, TaskStatus::kWorking);
  EXPECT_EQ(task->answers.size(), 2u);
}

TEST(TaskStore, CancelIsIdempotentAndLeavesAFinishedTaskAlone) {
  TaskStore store(10, milliseconds(60000), milliseconds(500));
  auto task = store.create("n1.1.12");
  store.cancel(*task);
  EXPECT_EQ(task->status, TaskStatus::kCancelled);
  store.settle(*task, make_result(1, json::object{}));  // its handler ended anyway
  EXPECT_EQ(task->status, TaskStatus::kCancelled);
  auto done = store.create("n1.1.13");
  store.settle(*done, make_result(1, json::object{}));
  EXPECT_FALSE(store.cancel(*done));
  EXPECT_EQ(done->status, TaskStatus::kCompleted);
}

}  // namespace
}  // namespace mcpmesh::mcp
