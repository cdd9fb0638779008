// Tasks of the 2025-11-25 session era, through Session and the router, with the io_context run
// by the test thread.

#include "mcp/session_tasks.hpp"
#include "mcp/server.hpp"
#include "mcp/testing/session_harness.hpp"

#include <gtest/gtest.h>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>

namespace mcpmesh::mcp {
namespace {

using testing::error_code_of;
using testing::RecordingChannel;
using testing::result_of;
using testing::SessionHarness;
using testing::TestClient;
using namespace std::chrono_literals;

struct Observed {
  std::atomic<int> hold_started{0};
  std::atomic<int> hold_cancelled{0};
};

using ToolCo = asio::awaitable<Result<ToolResult>>;

/// Waits `ms` (an argument) and answers; a tool error with `fail`.
ToolCo work(HandlerContext& ctx, json::object args) {
  auto ms = args.contains("ms") ? args.at("ms").to_number<std::int64_t>() : 0;
  ctx.report_progress(0, 1);
  asio::steady_timer timer(ctx.executor(), std::chrono::milliseconds(ms));
  boost::system::error_code ec;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  if (ctx.is_cancelled()) co_return ToolResult::error("cancelled");
  if (args.contains("fail")) co_return ToolResult::error("it did not work");
  co_return ToolResult::text("worked " + std::to_string(ms) + " ms");
}

class TaskApp {
 public:
  TaskApp() {
    app.add_tool({.name = "work",
                  .input_schema = object_schema({{"ms", "integer"}, {"fail", "boolean"}}),
                  .task_support = TaskSupport::kOptional},
                 work);
    app.add_tool({.name = "must", .task_support = TaskSupport::kRequired}, work);
    app.add_tool({.name = "plain"}, work);
    app.add_tool({.name = "quick", .task_support = TaskSupport::kOptional},
                 [](HandlerContext&, json::object) -> Result<ToolResult> {
                   return ToolResult::text("quick");
                 });
    app.add_tool({.name = "broken", .task_support = TaskSupport::kOptional},
                 [](HandlerContext&, json::object) -> ToolCo {
                   co_return RpcError(-32050, "it broke", json::object{{"part", "gear"}});
                 });
    app.add_tool({.name = "hold", .task_support = TaskSupport::kOptional},
                 [o = observed](HandlerContext& ctx, json::object) -> ToolCo {
                   ++o->hold_started;
                   asio::steady_timer timer(ctx.executor(), std::chrono::minutes(5));
                   boost::system::error_code ec;
                   co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
                   if (ctx.is_cancelled()) ++o->hold_cancelled;
                   co_return ToolResult::text("held");
                 });
    app.add_tool({.name = "ask",
                  .input_schema = object_schema({{"ms", "integer"}}),
                  .task_support = TaskSupport::kOptional},
                 [](HandlerContext& ctx, json::object args) -> ToolCo {
                   std::chrono::milliseconds deadline = 10s;
                   if (args.contains("ms")) {
                     deadline = std::chrono::milliseconds(args.at("ms").to_number<std::int64_t>());
                   }
                   json::object params;
                   params["message"] = "Name?";
                   params["requestedSchema"] = object_schema({{"name", "string"}}, {"name"});
                   ctx.log(LogLevel::kInfo, "asking", "test");
                   auto r = co_await ctx.request_client("elicitation/create", std::move(params),
                                                        deadline);
                   if (!r) co_return r.error();
                   co_return ToolResult::text("hello " +
                                              std::string(r->at("content").at("name").as_string()));
                 });
  }

  std::shared_ptr<Observed> observed = std::make_shared<Observed>();
  App app;
};

class SessionTasksTest : public ::testing::Test {
 protected:
  explicit SessionTasksTest(ServerConfig config = {}) : harness_(fixture_.app, std::move(config)) {}

  std::unique_ptr<TestClient> connect(json::object capabilities = {},
                                      std::string_view version = "2025-11-25") {
    auto client = harness_.connect();
    client->initialize(std::move(capabilities), version);
    return client;
  }

  /// tools/call of `tool` with `params.task`; returns the response.
  json::object call_as_task(TestClient& client, std::string_view tool, json::object args = {},
                            json::object task = {}, json::object meta = {}) {
    json::object params{{"name", tool}, {"arguments", std::move(args)}, {"task", std::move(task)}};
    if (!meta.empty()) params["_meta"] = std::move(meta);
    return client.call("tools/call", std::move(params));
  }

  /// The task id of a CreateTaskResult response (empty, with a failure, if it is none).
  static std::string task_id(const json::object& response) {
    auto result = result_of(response);
    auto* task = result.if_contains("task");
    if (!task || !task->is_object()) {
      ADD_FAILURE() << "no CreateTaskResult: " << json::serialize(response);
      return {};
    }
    return std::string(task->at("taskId").as_string());
  }

  std::string status_of(TestClient& client, const std::string& id) {
    return std::string(
        result_of(client.call("tasks/get", {{"taskId", id}})).at("status").as_string());
  }

  /// Runs until the standalone stream announced `status` for task `id`.
  bool wait_status(TestClient& client, const std::string& id, std::string_view status) {
    return harness_.run_until([&] {
      for (auto& n : client.standalone().with_method("notifications/tasks/status")) {
        auto& p = n.at("params").as_object();
        if (p.at("taskId").as_string() == id && p.at("status").as_string() == status) return true;
      }
      return false;
    });
  }

  Observed& observed() { return *fixture_.observed; }

  TaskApp fixture_;
  SessionHarness harness_;
};

TEST_F(SessionTasksTest, InitializeDeclaresTasksFrom2025_11_25On) {
  auto client = harness_.connect();
  auto caps = client->initialize({}, "2025-11-25").at("capabilities").as_object();
  ASSERT_TRUE(caps.contains("tasks"));
  auto& tasks = caps.at("tasks").as_object();
  EXPECT_TRUE(tasks.contains("list"));
  EXPECT_TRUE(tasks.contains("cancel"));
  EXPECT_TRUE(tasks.at("requests").at("tools").as_object().contains("call"));
  auto older = harness_.connect();
  EXPECT_FALSE(
      older->initialize({}, "2025-06-18").at("capabilities").as_object().contains("tasks"));
}

TEST_F(SessionTasksTest, ToolsListShowsTaskSupport) {
  auto client = connect();
  auto tools = result_of(client->call("tools/list")).at("tools").as_array();
  std::map<std::string, std::string> support;
  for (auto& t : tools) {
    auto& o = t.as_object();
    support[std::string(o.at("name").as_string())] =
        o.contains("execution") ? std::string(o.at("execution").at("taskSupport").as_string())
                                : "absent";
  }
  EXPECT_EQ(support["work"], "optional");
  EXPECT_EQ(support["must"], "required");
  EXPECT_EQ(support["plain"], "absent");  // forbidden is the default
}

TEST_F(SessionTasksTest, ATaskAugmentedCallAnswersACreateTaskResultAtOnce) {
  auto client = connect();
  auto response = call_as_task(*client, "work", {{"ms", 30}}, {{"ttl", 5000}});
  auto result = result_of(response);
  ASSERT_TRUE(result.contains("task"));
  EXPECT_FALSE(result.contains("content"));
  auto& task = result.at("task").as_object();
  auto id = std::string(task.at("taskId").as_string());
  EXPECT_EQ(task.at("status"), "working");
  EXPECT_EQ(task.at("ttl").as_int64(), 5000);
  EXPECT_EQ(task.at("pollInterval").as_int64(), 500);
  EXPECT_TRUE(task.contains("createdAt"));
  EXPECT_TRUE(task.contains("lastUpdatedAt"));
  EXPECT_EQ(status_of(*client, id), "working");  // the handler goes on
  ASSERT_TRUE(wait_status(*client, id, "completed"));
  auto done = result_of(client->call("tasks/get", {{"taskId", id}}));
  EXPECT_EQ(done.at("status"), "completed");
  EXPECT_FALSE(done.contains("_meta"));  // tasks/get carries no related-task
  auto payload = result_of(client->call("tasks/result", {{"taskId", id}}));
  EXPECT_EQ(payload.at("content").at(0).at("text"), "worked 30 ms");
  EXPECT_EQ(payload.at("_meta").at(kRelatedTaskMeta).at("taskId").as_string(), id);
  EXPECT_EQ(harness_.metrics().tasks_created_total.load(), 1u);
  // The task no longer counts against the session's in-flight requests.
  EXPECT_EQ(client->session().outstanding.load(), 0u);
}

TEST_F(SessionTasksTest, TheClientsTtlIsCappedAtTheNodes) {
  auto client = connect();
  auto response = call_as_task(*client, "work", {}, {{"ttl", 1000000000000}});
  EXPECT_EQ(result_of(response).at("task").at("ttl").as_int64(),
            harness_.server().config().task_ttl.count());
  auto unasked = call_as_task(*client, "work");
  EXPECT_EQ(result_of(unasked).at("task").at("ttl").as_int64(),
            harness_.server().config().task_ttl.count());
}

TEST_F(SessionTasksTest, TaskSupportDecidesWhatACallMayBe) {
  auto client = connect();
  // forbidden + task: -32601 (SHOULD); required without a task: -32601 (MUST).
  EXPECT_EQ(error_code_of(call_as_task(*client, "plain")), -32601);
  EXPECT_EQ(error_code_of(client->call_tool("must")), -32601);
  EXPECT_FALSE(task_id(call_as_task(*client, "must")).empty());
  // optional: either way.
  EXPECT_EQ(result_of(client->call_tool("work")).at("content").at(0).at("text"), "worked 0 ms");
  // A malformed task.
  EXPECT_EQ(error_code_of(client->call("tools/call", {{"name", "work"}, {"task", "soon"}})),
            -32602);
  EXPECT_EQ(error_code_of(call_as_task(*client, "work", {}, {{"ttl", -1}})), -32602);
  EXPECT_EQ(error_code_of(call_as_task(*client, "nope")), -32602);  // unknown tool first
}

TEST_F(SessionTasksTest, SessionsOfEarlierRevisionsIgnoreTasks) {
  auto client = connect({}, "2025-06-18");
  // The task param is ignored; a required tool runs as an ordinary call.
  EXPECT_EQ(result_of(call_as_task(*client, "work", {{"ms", 1}})).at("content").at(0).at("text"),
            "worked 1 ms");
  EXPECT_EQ(result_of(client->call_tool("must")).at("content").at(0).at("text"), "worked 0 ms");
  EXPECT_EQ(error_code_of(client->call("tasks/get", {{"taskId", "x"}})), -32601);
  EXPECT_EQ(error_code_of(client->call("tasks/list")), -32601);
  EXPECT_EQ(error_code_of(client->call("tasks/result", {{"taskId", "x"}})), -32601);
}

TEST_F(SessionTasksTest, ASynchronousToolRunsAsATaskToo) {
  auto client = connect();
  auto id = task_id(call_as_task(*client, "quick"));
  auto payload = result_of(client->call("tasks/result", {{"taskId", id}}));
  EXPECT_EQ(payload.at("content").at(0).at("text"), "quick");
}

TEST_F(SessionTasksTest, TasksResultWaitsForTheEnd) {
  auto client = connect();
  auto id = task_id(call_as_task(*client, "work", {{"ms", 50}}));
  auto first = client->start("tasks/result", {{"taskId", id}});
  auto second = client->start("tasks/result", {{"taskId", id}});
  harness_.settle();
  EXPECT_FALSE(first->completion().has_value());
  auto a = result_of(client->wait_response(*first));
  auto b = result_of(client->wait_response(*second));
  EXPECT_EQ(a.at("content").at(0).at("text"), "worked 50 ms");
  EXPECT_EQ(a, b);
  EXPECT_EQ(status_of(*client, id), "completed");
}

TEST_F(SessionTasksTest, AToolErrorFailsTheTaskAndTasksResultGivesItsResult) {
  auto client = connect();
  auto id = task_id(call_as_task(*client, "work", {{"fail", true}}));
  auto payload = result_of(client->call("tasks/result", {{"taskId", id}}));
  EXPECT_TRUE(payload.at("isError").as_bool());
  EXPECT_EQ(payload.at("_meta").at(kRelatedTaskMeta).at("taskId").as_string(), id);
  auto task = result_of(client->call("tasks/get", {{"taskId", id}}));
  EXPECT_EQ(task.at("status"), "failed");
  EXPECT_EQ(task.at("statusMessage"), "it did not work");
}

TEST_F(SessionTasksTest, AProtocolErrorIsWhatTasksResultAnswers) {
  auto client = connect();
  auto id = task_id(call_as_task(*client, "broken"));
  auto r = client->call("tasks/result", {{"taskId", id}});
  EXPECT_EQ(error_code_of(r), -32050);
  EXPECT_EQ(r.at("error").at("message"), "it broke");
  EXPECT_EQ(r.at("error").at("data").at("part"), "gear");
  auto task = result_of(client->call("tasks/get", {{"taskId", id}}));
  EXPECT_EQ(task.at("status"), "failed");
  EXPECT_EQ(task.at("statusMessage"), "it broke");
}

TEST_F(SessionTasksTest, CancelStopsARunningTaskAndRefusesAFinishedOne) {
  auto client = connect();
  auto id = task_id(call_as_task(*client, "hold"));
  ASSERT_TRUE(harness_.run_until([&] { return observed().hold_started.load() == 1; }));
  auto waiting = client->start("tasks/result", {{"taskId", id}});
  auto cancelled = result_of(client->call("tasks/cancel", {{"taskId", id}}));
  EXPECT_EQ(cancelled.at("taskId").as_string(), id);
  EXPECT_EQ(cancelled.at("status"), "cancelled");
  EXPECT_TRUE(cancelled.contains("statusMessage"));
  ASSERT_TRUE(harness_.run_until([&] { return observed().hold_cancelled.load() == 1; }));
  harness_.settle();
  EXPECT_EQ(status_of(*client, id), "cancelled");  // it stays so, whatever the handler answered
  EXPECT_EQ(error_code_of(client->wait_response(*waiting)), -32603);  // a cancelled call has none
  EXPECT_TRUE(wait_status(*client, id, "cancelled"));
  // Terminal tasks cannot be cancelled: -32602.
  EXPECT_EQ(error_code_of(client->call("tasks/cancel", {{"taskId", id}})), -32602);
  auto done = task_id(call_as_task(*client, "work"));
  ASSERT_TRUE(wait_status(*client, done, "completed"));
  EXPECT_EQ(error_code_of(client->call("tasks/cancel", {{"taskId", done}})), -32602);
  EXPECT_EQ(status_of(*client, done), "completed");
}

TEST_F(SessionTasksTest, CancellingTheCallThatMadeATaskDoesNotCancelTheTask) {
  auto client = connect();
  auto reply = client->start("tools/call", {{"name", "hold"}, {"task", json::object{}}}, 77);
  auto id = task_id(client->wait_response(*reply));
  ASSERT_TRUE(harness_.run_until([&] { return observed().hold_started.load() == 1; }));
  client->notify("notifications/cancelled", {{"requestId", 77}});
  harness_.settle();
  EXPECT_EQ(status_of(*client, id), "working");
  EXPECT_EQ(observed().hold_cancelled.load(), 0);
}

TEST_F(SessionTasksTest, ATaskIsSeenByItsSessionOnly) {
  auto owner = connect();
  auto other = connect();
  auto id = task_id(call_as_task(*owner, "hold"));
  for (std::string_view method : {"tasks/get", "tasks/result", "tasks/cancel"}) {
    auto r = other->call(method, {{"taskId", id}});
    EXPECT_EQ(error_code_of(r), -32602) << method;
  }
  EXPECT_TRUE(result_of(other->call("tasks/list")).at("tasks").as_array().empty());
  EXPECT_EQ(result_of(owner->call("tasks/list")).at("tasks").as_array().size(), 1u);
  EXPECT_EQ(error_code_of(owner->call("tasks/get", {{"taskId", "n1.0.nonexistent"}})), -32602);
  EXPECT_EQ(error_code_of(owner->call("tasks/get")), -32602);
  EXPECT_EQ(status_of(*owner, id), "working");
}

TEST_F(SessionTasksTest, TheTaskIdParamIsTheSourceOfTruth) {
  auto client = connect();
  auto id = task_id(call_as_task(*client, "hold"));
  json::object meta{{kRelatedTaskMeta, json::object{{"taskId", "n1.0.elsewhere"}}}};
  auto got = result_of(client->call("tasks/get", {{"taskId", id}, {"_meta", meta}}));
  EXPECT_EQ(got.at("taskId").as_string(), id);
  EXPECT_EQ(
      error_code_of(client->call("tasks/get", {{"_meta", {{kRelatedTaskMeta, {{"taskId", id}}}}}})),
      -32602);
}

TEST_F(SessionTasksTest, AnExpiredTaskIsGone) {
  auto client = connect();
  auto id = task_id(call_as_task(*client, "work", {{"ms", 5}}, {{"ttl", 0}}));
  ASSERT_TRUE(wait_status(*client, id, "completed"));
  // Its ttl (0) ran out when it finished: not found, and not listed.
  EXPECT_EQ(error_code_of(client->call("tasks/get", {{"taskId", id}})), -32602);
  EXPECT_EQ(error_code_of(client->call("tasks/result", {{"taskId", id}})), -32602);
  EXPECT_TRUE(result_of(client->call("tasks/list")).at("tasks").as_array().empty());
}

TEST_F(SessionTasksTest, ClosingTheSessionCancelsItsTasks) {
  auto client = connect();
  auto id = task_id(call_as_task(*client, "hold"));
  ASSERT_TRUE(harness_.run_until([&] { return observed().hold_started.load() == 1; }));
  ASSERT_TRUE(harness_.server().close_session(client->id()));
  ASSERT_TRUE(harness_.run_until([&] { return observed().hold_cancelled.load() == 1; }));
  EXPECT_EQ(harness_.server().tasks().size(), 0u);
}

TEST_F(SessionTasksTest, InputGoesOutOnTasksResultWithTheRelatedTask) {
  auto client = connect({{"elicitation", json::object{}}});
  client->call("logging/setLevel", {{"level", "debug"}});
  auto id = task_id(call_as_task(*client, "ask"));
  // The handler asked: the task waits in input_required, its request waits for tasks/result.
  ASSERT_TRUE(wait_status(*client, id, "input_required"));
  EXPECT_EQ(status_of(*client, id), "input_required");
  EXPECT_TRUE(client->standalone().with_method("elicitation/create").empty());
  // Its log line went to the standalone stream (nobody waited on tasks/result), tagged.
  auto logs = client->standalone().with_method("notifications/message");
  ASSERT_EQ(logs.size(), 1u);
  EXPECT_EQ(logs[0].at("params").at("_meta").at(kRelatedTaskMeta).at("taskId").as_string(), id);

  auto result = client->start("tasks/result", {{"taskId", id}});
  ASSERT_TRUE(
      harness_.run_until([&] { return !result->with_method("elicitation/create").empty(); }));
  auto request = result->with_method("elicitation/create").front();
  EXPECT_EQ(request.at("params").at("_meta").at(kRelatedTaskMeta).at("taskId").as_string(), id);
  EXPECT_EQ(request.at("params").at("message"), "Name?");
  client->send({{"jsonrpc", "2.0"},
                {"id", request.at("id")},
                {"result", {{"action", "accept"}, {"content", {{"name", "Ada"}}}}}});
  auto payload = result_of(client->wait_response(*result));
  EXPECT_EQ(payload.at("content").at(0).at("text"), "hello Ada");
  EXPECT_EQ(payload.at("_meta").at(kRelatedTaskMeta).at("taskId").as_string(), id);
  EXPECT_TRUE(wait_status(*client, id, "working"));  // once answered, before it completed
  EXPECT_EQ(status_of(*client, id), "completed");
}

TEST_F(SessionTasksTest, InputGoesOutOnATasksResultAlreadyWaiting) {
  auto client = connect({{"elicitation", json::object{}}});
  auto reply = client->start("tools/call", {{"name", "ask"}, {"task", json::object{}}});
  // The task's id comes with the CreateTaskResult; tasks/result is sent before the handler asks.
  auto id = task_id(client->wait_response(*reply));
  auto result = client->start("tasks/result", {{"taskId", id}});
  ASSERT_TRUE(
      harness_.run_until([&] { return !result->with_method("elicitation/create").empty(); }));
  auto request = result->with_method("elicitation/create").front();
  client->send({{"jsonrpc", "2.0"},
                {"id", request.at("id")},
                {"result", {{"action", "accept"}, {"content", {{"name", "Bo"}}}}}});
  EXPECT_EQ(result_of(client->wait_response(*result)).at("content").at(0).at("text"), "hello Bo");
}

TEST_F(SessionTasksTest, AnUnansweredRequestOfATaskTimesOutNamingTheTask) {
  auto client = connect({{"elicitation", json::object{}}});
  auto reply = client->start(
      "tools/call", {{"name", "ask"}, {"arguments", {{"ms", 30}}}, {"task", json::object{}}});
  auto id = task_id(client->wait_response(*reply));
  auto result = client->start("tasks/result", {{"taskId", id}});
  auto r = client->wait_response(*result);
  EXPECT_EQ(error_code_of(r), -32001);  // what the call would have answered
  auto cancelled = result->with_method("notifications/cancelled");
  ASSERT_EQ(cancelled.size(), 1u);
  EXPECT_EQ(cancelled[0].at("params").at("_meta").at(kRelatedTaskMeta).at("taskId").as_string(),
            id);
  EXPECT_EQ(cancelled[0].at("params").at("requestId"),
            result->with_method("elicitation/create").at(0).at("id"));
  EXPECT_EQ(status_of(*client, id), "failed");
}

TEST_F(SessionTasksTest, ProgressOfATaskKeepsItsTokenAndCarriesTheRelatedTask) {
  auto client = connect();
  auto id = task_id(call_as_task(*client, "work", {{"ms", 20}}, {}, {{"progressToken", "p1"}}));
  ASSERT_TRUE(wait_status(*client, id, "completed"));
  auto progress = client->standalone().with_method("notifications/progress");
  ASSERT_EQ(progress.size(), 1u);
  EXPECT_EQ(progress[0].at("params").at("progressToken"), "p1");
  EXPECT_EQ(progress[0].at("params").at("_meta").at(kRelatedTaskMeta).at("taskId").as_string(), id);
}

class PagedSessionTasksTest : public SessionTasksTest {
 protected:
  PagedSessionTasksTest() : SessionTasksTest(ServerConfig{.page_size = 2}) {}
};

TEST_F(PagedSessionTasksTest, TasksListPagesWithACursor) {
  auto client = connect();
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(task_id(call_as_task(*client, "hold")));
  auto first = result_of(client->call("tasks/list"));
  ASSERT_EQ(first.at("tasks").as_array().size(), 2u);
  EXPECT_EQ(first.at("tasks").at(0).at("taskId").as_string(), ids[0]);
  EXPECT_EQ(first.at("tasks").at(1).at("taskId").as_string(), ids[1]);
  ASSERT_TRUE(first.contains("nextCursor"));
  auto second = result_of(client->call("tasks/list", {{"cursor", first.at("nextCursor")}}));
  ASSERT_EQ(second.at("tasks").as_array().size(), 1u);
  EXPECT_EQ(second.at("tasks").at(0).at("taskId").as_string(), ids[2]);
  EXPECT_FALSE(second.contains("nextCursor"));
  EXPECT_EQ(error_code_of(client->call("tasks/list", {{"cursor", "not-a-cursor"}})), -32602);
  EXPECT_EQ(error_code_of(client->call("tasks/list", {{"cursor", "99999999"}})), -32602);
}

class BoundedSessionTasksTest : public SessionTasksTest {
 protected:
  BoundedSessionTasksTest()
      : SessionTasksTest(ServerConfig{.max_tasks = 3, .max_tasks_per_session = 2}) {}
};

TEST_F(BoundedSessionTasksTest, TasksAreBoundedPerSessionAndPerNode) {
  auto client = connect();
  auto a = task_id(call_as_task(*client, "hold"));
  task_id(call_as_task(*client, "hold"));
  EXPECT_EQ(error_code_of(call_as_task(*client, "hold")), -32000);
  EXPECT_EQ(harness_.metrics().tasks_per_session_rejected_total.load(), 1u);
  EXPECT_EQ(client->session().outstanding.load(), 0u);
  // An ordinary call still runs.
  EXPECT_EQ(result_of(client->call_tool("work")).at("content").at(0).at("text"), "worked 0 ms");
  // Once one is cancelled, there is room again.
  result_of(client->call("tasks/cancel", {{"taskId", a}}));
  task_id(call_as_task(*client, "hold"));
  // The node holds 3 tasks (the cancelled one until its ttl ends): another session is refused.
  auto other = connect();
  EXPECT_EQ(error_code_of(call_as_task(*other, "hold")), -32000);
  EXPECT_EQ(harness_.metrics().tasks_rejected_total.load(), 1u);
}

}  // namespace
}  // namespace mcpmesh::mcp
