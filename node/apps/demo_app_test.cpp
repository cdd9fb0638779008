// The demo app, called through a real Session.

#include "mcp/testing/session_harness.hpp"
#include "node/apps/apps.hpp"

#include <gtest/gtest.h>

#include <time.h>

#include <chrono>

namespace mcpmesh::node {
namespace {

using mcp::json::array;
using mcp::json::object;
using mcp::testing::error_code_of;
using mcp::testing::result_of;

class DemoAppTest : public ::testing::Test {
 protected:
  DemoAppTest() : state_(install_demo_app(app_)), harness_(app_), client_(harness_.connect()) {
    client_->initialize({{"sampling", object{}}});
  }

  mcp::App app_;
  std::shared_ptr<void> state_;
  mcp::testing::SessionHarness harness_;
  std::unique_ptr<mcp::testing::TestClient> client_;
};

TEST_F(DemoAppTest, ListsItsTools) {
  auto tools = result_of(client_->call("tools/list")).at("tools").as_array();
  std::vector<std::string> names;
  for (auto& t : tools) names.emplace_back(t.at("name").as_string());
  for (std::string expected :
       {"echo", "add", "slow", "job", "burn", "note_set", "whoami", "log", "ask_llm", "ask_user"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end()) << expected;
  }
}

TEST_F(DemoAppTest, Add) {
  auto result = result_of(client_->call_tool("add", {{"a", 2}, {"b", 3}}));
  EXPECT_EQ(mcp::json::serialize(result.at("structuredContent")), R"({"sum":5})");
  EXPECT_EQ(result.at("content").at(0).at("text"), "5");
  auto fraction = result_of(client_->call_tool("add", {{"a", 0.5}, {"b", 0.25}}));
  EXPECT_EQ(fraction.at("structuredContent").at("sum").to_number<double>(), 0.75);
  EXPECT_EQ(fraction.at("content").at(0).at("text"), "0.75");
  EXPECT_EQ(result_of(client_->call_tool("add", {{"a", "2"}, {"b", 3}})).at("isError"), true);
}

TEST_F(DemoAppTest, Echo) {
  auto result = result_of(client_->call_tool("echo", {{"text", "héllo"}}));
  EXPECT_EQ(result.at("content").at(0).at("text"), "héllo");
  EXPECT_EQ(result_of(client_->call_tool("echo")).at("isError"), true);
}

TEST_F(DemoAppTest, NoteSetThenRead) {
  EXPECT_EQ(error_code_of(client_->call("resources/read", {{"uri", "note://x"}})), -32002);
  ASSERT_TRUE(result_of(client_->call("resources/subscribe", {{"uri", "note://x"}})).empty());

  auto set = result_of(client_->call_tool("note_set", {{"name", "x"}, {"text", "remember"}}));
  EXPECT_FALSE(set.contains("isError"));
  auto read = result_of(client_->call("resources/read", {{"uri", "note://x"}}));
  EXPECT_EQ(read.at("contents").at(0).at("text"), "remember");
  EXPECT_EQ(read.at("contents").at(0).at("mimeType"), "text/plain");

  auto list = result_of(client_->call("resources/list"));
  ASSERT_EQ(list.at("resources").as_array().size(), 1u);
  EXPECT_EQ(list.at("resources").at(0).at("uri"), "note://x");
  EXPECT_EQ(list.at("resources").at(0).at("size"), 8);

  // The subscriber heard about the update, and everyone about the new resource.
  ASSERT_TRUE(harness_.run_until([&] {
    return !client_->standalone().with_method("notifications/resources/updated").empty() &&
           !client_->standalone().with_method("notifications/resources/list_changed").empty();
  }));
  EXPECT_EQ(client_->standalone().with_method("notifications/resources/updated")[0].at("params").at(
                "uri"),
            "note://x");

  EXPECT_EQ(
      result_of(client_->call_tool("note_set", {{"name", "a/b"}, {"text", "t"}})).at("isError"),
      true);
}

TEST_F(DemoAppTest, BurnSpendsCpuOnTheWorkerPool) {
  // CPU time, not wall time: the process spends the 50 ms asked for, this thread (which runs
  // the session, as an I/O thread would) almost none of it: the work went to the worker pool.
  auto cpu = [](clockid_t clock) {
    timespec ts{};
    ::clock_gettime(clock, &ts);
    return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
  };
  auto process_before = cpu(CLOCK_PROCESS_CPUTIME_ID);
  auto thread_before = cpu(CLOCK_THREAD_CPUTIME_ID);
  auto r = result_of(client_->call_tool("burn", {{"micros", 50000}}));
  EXPECT_GE(cpu(CLOCK_PROCESS_CPUTIME_ID) - process_before, std::chrono::milliseconds(50));
  EXPECT_LT(cpu(CLOCK_THREAD_CPUTIME_ID) - thread_before, std::chrono::milliseconds(25));
  EXPECT_FALSE(r.contains("isError"));
  EXPECT_EQ(r.at("structuredContent").at("micros"), 50000);
  auto digest = r.at("structuredContent").at("digest").as_string();
  EXPECT_EQ(digest.size(), 16u);
  EXPECT_EQ(r.at("content").at(0).at("text"), digest);
  // 0 µs is one fixed chunk of rounds: the same digest every time.
  EXPECT_EQ(result_of(client_->call_tool("burn", {{"micros", 0}})).at("structuredContent"),
            result_of(client_->call_tool("burn", {{"micros", 0}})).at("structuredContent"));
  EXPECT_EQ(result_of(client_->call_tool("burn", {{"micros", 100001}})).at("isError"), true);
  EXPECT_EQ(result_of(client_->call_tool("burn", {{"micros", -1}})).at("isError"), true);
  EXPECT_EQ(result_of(client_->call_tool("burn", {{"micros", 1.5}})).at("isError"), true);
  EXPECT_EQ(result_of(client_->call_tool("burn")).at("isError"), true);
}

TEST_F(DemoAppTest, SummarizePrompt) {
  auto prompts = result_of(client_->call("prompts/list"));
  EXPECT_EQ(prompts.at("prompts").at(0).at("name"), "summarize");
  auto r = result_of(
      client_->call("prompts/get", {{"name", "summarize"}, {"arguments", {{"topic", "mcp"}}}}));
  EXPECT_EQ(r.at("messages").at(0).at("role"), "user");
  EXPECT_EQ(r.at("messages").at(0).at("content").at("text"), "Summarize mcp.");
  EXPECT_EQ(error_code_of(client_->call("prompts/get", {{"name", "summarize"}})), -32602);
}

TEST_F(DemoAppTest, Completion) {
  auto r = result_of(client_->call("completion/complete",
                                   {{"ref", {{"type", "ref/prompt"}, {"name", "summarize"}}},
                                    {"argument", {{"name", "topic"}, {"value", "me"}}}}));
  EXPECT_EQ(r.at("completion").at("values"), (array{"mesh", "membership", "metrics"}));
  EXPECT_EQ(r.at("completion").at("total"), 3);
}

TEST_F(DemoAppTest, WhoAmI) {
  auto r = result_of(client_->call_tool("whoami"));
  EXPECT_EQ(r.at("structuredContent").at("node_id"), "n1");
  EXPECT_EQ(r.at("structuredContent").at("session_id").as_string(), client_->id());
}

TEST_F(DemoAppTest, AskLlmUsesSampling) {
  auto reply =
      client_->start("tools/call", {{"name", "ask_llm"}, {"arguments", {{"prompt", "hi"}}}});
  ASSERT_TRUE(
      harness_.run_until([&] { return !reply->with_method("sampling/createMessage").empty(); }));
  auto request = reply->with_method("sampling/createMessage")[0];
  client_->send({{"jsonrpc", "2.0"},
                 {"id", request.at("id")},
                 {"result",
                  {{"role", "assistant"},
                   {"content", {{"type", "text"}, {"text", "hello"}}},
                   {"model", "m"}}}});
  auto r = result_of(client_->wait_response(*reply));
  EXPECT_EQ(r.at("content").at(0).at("text"), "sampled: hello");
}

TEST_F(DemoAppTest, SlowReportsProgressAndStopsOnCancel) {
  auto quick = client_->start("tools/call", {{"name", "slow"},
                                             {"arguments", {{"seconds", 0}, {"steps", 3}}},
                                             {"_meta", {{"progressToken", 5}}}});
  auto r = result_of(client_->wait_response(*quick));
  EXPECT_EQ(r.at("content").at(0).at("text"), "completed 3 steps");
  EXPECT_EQ(quick->with_method("notifications/progress").size(), 3u);

  auto long_call = client_->start(
      "tools/call", {{"name", "slow"}, {"arguments", {{"seconds", 600}, {"steps", 1}}}}, "long");
  client_->notify("notifications/cancelled", {{"requestId", "long"}});
  ASSERT_TRUE(harness_.run_until([&] { return long_call->completion().has_value(); }));
  EXPECT_EQ(long_call->completion()->message, nullptr);
}

TEST_F(DemoAppTest, JobRunsAsATaskWhenAsked) {
  auto created = result_of(client_->call(
      "tools/call",
      {{"name", "job"}, {"arguments", {{"seconds", 0}, {"steps", 2}}}, {"task", object{}}}));
  auto id = created.at("task").at("taskId");
  auto r = result_of(client_->call("tasks/result", {{"taskId", id}}));
  EXPECT_EQ(r.at("content").at(0).at("text"), "job done: 2 steps");
  auto failed = result_of(client_->call(
      "tools/call",
      {{"name", "job"}, {"arguments", {{"seconds", 0}, {"fail", true}}}, {"task", object{}}}));
  auto failed_id = failed.at("task").at("taskId");
  EXPECT_TRUE(
      result_of(client_->call("tasks/result", {{"taskId", failed_id}})).at("isError").as_bool());
  EXPECT_EQ(result_of(client_->call("tasks/get", {{"taskId", failed_id}})).at("status"), "failed");
  // Without a task it is an ordinary call.
  EXPECT_EQ(result_of(client_->call_tool("job", {{"seconds", 0}})).at("content").at(0).at("text"),
            "job done: 1 steps");
}

TEST_F(DemoAppTest, JobAsksBeforeStartingWhenToldTo) {
  auto client = harness_.connect();
  client->initialize({{"elicitation", object{}}});
  auto created = result_of(client->call(
      "tools/call",
      {{"name", "job"}, {"arguments", {{"seconds", 0}, {"confirm", true}}}, {"task", object{}}}));
  auto id = created.at("task").at("taskId");
  auto result = client->start("tasks/result", {{"taskId", id}});
  ASSERT_TRUE(
      harness_.run_until([&] { return !result->with_method("elicitation/create").empty(); }));
  auto request = result->with_method("elicitation/create")[0];
  client->send({{"jsonrpc", "2.0"}, {"id", request.at("id")}, {"result", {{"action", "decline"}}}});
  EXPECT_EQ(result_of(client->wait_response(*result)).at("content").at(0).at("text"),
            "not started");
}

}  // namespace
}  // namespace mcpmesh::node
