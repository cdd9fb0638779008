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

// The session era (2025-11-25).

TEST(TaskStore, ASessionTaskIsSeenByItsSessionOnly) {
  TaskStore store(10, milliseconds(60000), milliseconds(500));
  bool full = false;
  auto task = store.create_for_session("n1.1.20", "s1", std::nullopt, 4, full);
  ASSERT_TRUE(task);
  EXPECT_EQ(store.find_for_session("n1.1.20", "s1"), task);
  EXPECT_FALSE(store.find_for_session("n1.1.20", "s2"));
  EXPECT_FALSE(store.find_for_session("n1.1.20", ""));
  EXPECT_FALSE(store.find("n1.1.20"));  // the extension's tasks/get does not see it either
  auto stateless = store.create("n1.1.21");
  EXPECT_FALSE(store.find_for_session("n1.1.21", "s1"));
  EXPECT_EQ(store.find("n1.1.21"), stateless);
}

TEST(TaskStore, TheSessionBoundCountsUnfinishedTasks) {
  TaskStore store(10, milliseconds(60000), milliseconds(500));
  bool full = false;
  auto a = store.create_for_session("n1.1.22", "s1", std::nullopt, 2, full);
  auto b = store.create_for_session("n1.1.23", "s1", std::nullopt, 2, full);
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(store.create_for_session("n1.1.24", "s1", std::nullopt, 2, full));
  EXPECT_TRUE(full);
  EXPECT_TRUE(store.create_for_session("n1.1.25", "s2", std::nullopt, 2, full));  // another's
  EXPECT_FALSE(full);
  EXPECT_TRUE(store.settle(*a, make_result(1, json::object{})));
  EXPECT_TRUE(store.create_for_session("n1.1.26", "s1", std::nullopt, 2, full));
  store.cancel(*b);
  EXPECT_TRUE(store.create_for_session("n1.1.27", "s1", std::nullopt, 2, full));
  EXPECT_EQ(store.size(), 5u);  // finished ones stay until their ttl ends
}

TEST(TaskStore, TheNodeBoundCountsSessionTasksToo) {
  TaskStore store(2, milliseconds(60000), milliseconds(500));
  bool full = false;
  EXPECT_TRUE(store.create("n1.1.28"));
  EXPECT_TRUE(store.create_for_session("n1.1.29", "s1", std::nullopt, 8, full));
  EXPECT_FALSE(store.create_for_session("n1.1.30", "s1", std::nullopt, 8, full));
  EXPECT_FALSE(full);
  EXPECT_FALSE(store.create("n1.1.31"));
}

TEST(TaskStore, TheClientsTtlIsCappedAtTheStores) {
  TaskStore store(10, milliseconds(60000), milliseconds(500));
  bool full = false;
  auto asked = store.create_for_session("n1.1.32", "s1", milliseconds(1000), 8, full);
  auto greedy = store.create_for_session("n1.1.33", "s1", milliseconds(1000000000), 8, full);
  auto none = store.create_for_session("n1.1.34", "s1", std::nullopt, 8, full);
  EXPECT_EQ(asked->ttl, milliseconds(1000));
  EXPECT_EQ(greedy->ttl, milliseconds(60000));
  EXPECT_EQ(none->ttl, milliseconds(60000));
}

TEST(TaskStore, SessionWireFormIsTheTaskObject) {
  TaskStore store(10, milliseconds(60000), milliseconds(500));
  bool full = false;
  auto task = store.create_for_session("n1.1.35", "s1", milliseconds(30000), 8, full);
  auto wire = store.session_json(*task);
  EXPECT_EQ(wire.at("taskId"), "n1.1.35");
  EXPECT_EQ(wire.at("status"), "working");
  EXPECT_EQ(wire.at("ttl").as_int64(), 30000);
  EXPECT_EQ(wire.at("pollInterval").as_int64(), 500);
  EXPECT_TRUE(std::string_view(wire.at("createdAt").as_string()).ends_with("Z"));
  EXPECT_TRUE(wire.contains("lastUpdatedAt"));
  EXPECT_FALSE(wire.contains("ttlMs"));
  EXPECT_FALSE(wire.contains("statusMessage"));
}

TEST(TaskStore, AToolErrorFailsASessionTaskAndKeepsItsResult) {
  TaskStore store(10, milliseconds(60000), milliseconds(500));
  bool full = false;
  auto task = store.create_for_session("n1.1.36", "s1", std::nullopt, 8, full);
  json::array content{json::object{{"type", "text"}, {"text", "no"}}};
  store.settle(*task, make_result(1, json::object{{"content", content}, {"isError", true}}));
  EXPECT_EQ(task->status, TaskStatus::kFailed);
  EXPECT_EQ(store.session_json(*task).at("statusMessage"), "no");
  auto answer = store.final_answer(*task);
  ASSERT_TRUE(answer);
  EXPECT_TRUE(answer->at("isError").as_bool());
  EXPECT_EQ(answer->at("_meta").at(kRelatedTaskMeta).at("taskId"), "n1.1.36");
}

TEST(TaskStore, FinalAnswerIsWhatTheCallWouldHaveAnswered) {
  TaskStore store(10, milliseconds(60000), milliseconds(500));
  bool full = false;
  auto done = store.create_for_session("n1.1.37", "s1", std::nullopt, 8, full);
  store.settle(*done, make_result(1, json::object{{"content", json::array()},
                                                  {"_meta", json::object{{"mine", 1}}}}));
  auto result = store.final_answer(*done);
  ASSERT_TRUE(result);
  EXPECT_EQ(result->at("_meta").at("mine"), 1);  // the tool's own _meta stays
  EXPECT_EQ(result->at("_meta").at(kRelatedTaskMeta).at("taskId"), "n1.1.37");
  auto broken = store.create_for_session("n1.1.38", "s1", std::nullopt, 8, full);
  store.settle(*broken, make_error(1, RpcError(-32050, "broke", json::object{{"why", "because"}})));
  EXPECT_EQ(broken->status, TaskStatus::kFailed);
  auto error = store.final_answer(*broken);
  ASSERT_FALSE(error);
  EXPECT_EQ(error.error().code, -32050);
  EXPECT_EQ(error.error().message, "broke");
  EXPECT_EQ(error.error().data.at("why"), "because");
  auto cancelled = store.create_for_session("n1.1.39", "s1", std::nullopt, 8, full);
  store.cancel(*cancelled, "stopped");
  EXPECT_EQ(store.session_json(*cancelled).at("statusMessage"), "stopped");
  EXPECT_EQ(store.final_answer(*cancelled).error().code, -32603);
}

TEST(TaskStore, ListPagesInCreationOrderAndLeavesExpiredOnesOut) {
  TaskStore store(10, milliseconds(60000), milliseconds(500));
  bool full = false;
  std::vector<std::shared_ptr<Task>> tasks;
  for (int i = 0; i < 4; ++i) {
    tasks.push_back(
        store.create_for_session("n1.2." + std::to_string(i), "s1", milliseconds(50), 8, full));
  }
  store.create_for_session("n1.2.other", "s2", std::nullopt, 8, full);
  std::uint64_t next = 0;
  auto page = store.list_for_session("s1", 1, 3, next);
  ASSERT_EQ(page.size(), 3u);
  EXPECT_EQ(page[0], tasks[0]);
  EXPECT_EQ(page[2], tasks[2]);
  EXPECT_EQ(next, tasks[3]->seq);
  EXPECT_TRUE(store.issued(next));
  EXPECT_FALSE(store.issued(next + 100));
  page = store.list_for_session("s1", next, 3, next);
  ASSERT_EQ(page.size(), 1u);
  EXPECT_EQ(next, 0u);
  store.settle(*tasks[1], make_result(1, json::object{}));
  tasks[1]->created -= milliseconds(100);  // finished and its ttl passed
  page = store.list_for_session("s1", 1, 10, next);
  EXPECT_EQ(page.size(), 3u);
  EXPECT_FALSE(store.find_for_session(tasks[1]->id, "s1"));
}

TEST(TaskStore, InputRequiredWhileARequestToTheClientIsOpen) {
  TaskStore store(10, milliseconds(60000), milliseconds(500));
  bool full = false;
  auto task = store.create_for_session("n1.1.40", "s1", std::nullopt, 8, full);
  EXPECT_TRUE(store.begin_input(*task));
  EXPECT_EQ(task->status, TaskStatus::kInputRequired);
  EXPECT_FALSE(store.begin_input(*task));  // a second one: no change
  EXPECT_FALSE(store.end_input(*task));
  EXPECT_EQ(task->status, TaskStatus::kInputRequired);
  EXPECT_TRUE(store.end_input(*task));
  EXPECT_EQ(task->status, TaskStatus::kWorking);
  store.begin_input(*task);
  store.cancel(*task);
  EXPECT_FALSE(store.end_input(*task));  // a cancelled task stays cancelled
  EXPECT_EQ(task->status, TaskStatus::kCancelled);
}

/// A channel that keeps what it is handed.
struct KeptChannel final : ClientChannel {
  std::vector<Payload> messages;
  void deliver(Payload message, bool) override { messages.push_back(std::move(message)); }
};

TEST(TaskStore, MessagesWaitBoundedForATasksResultAndGoToTheNewest) {
  asio::io_context io;
  TaskStore store(10, milliseconds(60000), milliseconds(500));
  bool full = false;
  auto task = store.create_for_session("n1.1.41", "s1", std::nullopt, 8, full);
  bool dropped = false;
  for (std::size_t i = 0; i < kMaxTaskOutbox + 2; ++i) {
    auto message = std::make_shared<const std::string>(std::to_string(i));
    EXPECT_FALSE(store.route(*task, message, true, dropped));
    EXPECT_EQ(dropped, i >= kMaxTaskOutbox);
  }
  EXPECT_FALSE(store.route(*task, std::make_shared<const std::string>("n"), false, dropped));
  auto older = std::make_shared<KeptChannel>();
  auto newer = std::make_shared<KeptChannel>();
  auto wake = std::make_shared<asio::steady_timer>(io);
  std::deque<Payload> queued;
  EXPECT_FALSE(store.wait_for_result(*task, older, wake, queued));
  ASSERT_EQ(queued.size(), kMaxTaskOutbox);
  EXPECT_EQ(*queued.front(), "2");  // the two oldest made room
  std::deque<Payload> none;
  EXPECT_FALSE(store.wait_for_result(*task, newer, wake, none));
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(store.route(*task, nullptr, true, dropped), newer);
  store.stop_waiting(*task, newer.get());
  EXPECT_EQ(store.route(*task, nullptr, true, dropped), older);
  store.settle(*task, make_result(1, json::object{}));
  std::deque<Payload> after;
  auto answer = store.wait_for_result(*task, newer, wake, after);
  ASSERT_TRUE(answer && *answer);  // it ended: the answer, no waiting
}

TEST(TaskStore, DroppingASessionCancelsItsUnfinishedTasks) {
  TaskStore store(10, milliseconds(60000), milliseconds(500));
  bool full = false;
  auto running = store.create_for_session("n1.1.42", "s1", std::nullopt, 8, full);
  auto done = store.create_for_session("n1.1.43", "s1", std::nullopt, 8, full);
  store.settle(*done, make_result(1, json::object{}));
  auto other = store.create_for_session("n1.1.44", "s2", std::nullopt, 8, full);
  EXPECT_TRUE(store.drop_session("s1").empty());  // no handler to cancel in this test
  EXPECT_EQ(running->status, TaskStatus::kCancelled);
  EXPECT_EQ(done->status, TaskStatus::kCompleted);
  EXPECT_FALSE(store.find_for_session(running->id, "s1"));
  EXPECT_EQ(store.find_for_session(other->id, "s2"), other);
  EXPECT_EQ(store.size(), 1u);
  EXPECT_TRUE(store.create_for_session("n1.1.45", "s1", std::nullopt, 1, full));
}

}  // namespace
}  // namespace mcpmesh::mcp
