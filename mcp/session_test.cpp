// Drives mcp::Server and Session directly, with the io_context run by the test thread.

#include "mcp/server.hpp"
#include "mcp/testing/session_harness.hpp"

#include <gtest/gtest.h>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <filesystem>
#include <limits>
#include <set>
#include <thread>

namespace mcpmesh::mcp {
namespace {

using testing::error_code_of;
using testing::RecordingChannel;
using testing::result_of;
using testing::SessionHarness;
using testing::TestClient;
using namespace std::chrono_literals;

/// What the handlers of the test app observed. Touched from the io thread (the test thread) and,
/// for run_blocking, a worker thread: hence atomics.
struct Observed {
  std::atomic<bool> wait_started{false};
  std::atomic<bool> wait_saw_cancel{false};
  std::atomic<bool> wait_finished{false};
  std::thread::id blocking_ran_on;
  std::thread::id resumed_on;
};

/// Tools, resources and prompts covering every handler kind.
class TestApp {
 public:
  TestApp() {
    app.add_tool({.name = "echo", .input_schema = object_schema({{"text", "string"}}, {"text"})},
                 [](HandlerContext&, json::object args) -> asio::awaitable<Result<ToolResult>> {
                   co_return ToolResult::text(args.at("text").as_string());
                 });
    app.add_tool({.name = "typed",
                  .input_schema = object_schema({{"n", "integer"}, {"flag", "boolean"}}, {"n"})},
                 [](HandlerContext&, json::object) -> asio::awaitable<Result<ToolResult>> {
                   co_return ToolResult::text("typed ok");
                 });
    app.add_tool(
        {.name = "wait"},
        [o = observed](HandlerContext& ctx, json::object) -> asio::awaitable<Result<ToolResult>> {
          o->wait_started = true;
          asio::steady_timer timer(ctx.executor(), std::chrono::minutes(5));
          boost::system::error_code ec;
          co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
          o->wait_saw_cancel = ctx.is_cancelled() && ec == asio::error::operation_aborted;
          o->wait_finished = true;
          co_return ToolResult::text("waited");
        });
    app.add_tool({.name = "logs"},
                 [](HandlerContext& ctx, json::object) -> asio::awaitable<Result<ToolResult>> {
                   ctx.log(LogLevel::kInfo, "an info line", "test");
                   ctx.log(LogLevel::kError, "an error line", "test");
                   co_return ToolResult::text("logged");
                 });
    app.add_tool({.name = "progress"},
                 [](HandlerContext& ctx, json::object) -> asio::awaitable<Result<ToolResult>> {
                   ctx.report_progress(1, 2, "half");
                   ctx.report_progress(2, 2);
                   co_return ToolResult::text("done");
                 });
    app.add_tool({.name = "ask", .input_schema = object_schema({{"deadline_ms", "integer"}})},
                 [](HandlerContext& ctx, json::object args) -> asio::awaitable<Result<ToolResult>> {
                   std::chrono::milliseconds deadline = 10s;
                   if (auto* d = args.if_contains("deadline_ms")) {
                     deadline = std::chrono::milliseconds(d->to_number<std::int64_t>());
                   }
                   // Locals, not braced temporaries in the co_await: GCC rejects string literals
                   // inside braced initializers that live across a suspension point.
                   json::object params;
                   params["messages"] = json::array{};
                   params["maxTokens"] = 10;
                   auto r = co_await ctx.request_client("sampling/createMessage", std::move(params),
                                                        deadline);
                   if (!r) co_return r.error();
                   json::object out;
                   out["answer"] = std::move(*r);
                   co_return ToolResult::structured(std::move(out));
                 });
    app.add_tool(
        {.name = "blocking"},
        [o = observed](HandlerContext& ctx, json::object) -> asio::awaitable<Result<ToolResult>> {
          auto r = co_await ctx.run_blocking([] { return std::this_thread::get_id(); });
          if (!r) co_return r.error();
          o->blocking_ran_on = *r;
          o->resumed_on = std::this_thread::get_id();
          co_return ToolResult::text("blocked");
        });
    app.add_resource(
        {.uri = "mem://a", .name = "a", .mime_type = "text/plain"},
        [](HandlerContext&,
           std::string uri) -> asio::awaitable<Result<std::vector<ResourceContents>>> {
          co_return std::vector<ResourceContents>{{uri, "text/plain", "A", std::nullopt}};
        });
    app.add_resource_template(
        {.uri_template = "item://{id}/detail", .name = "item"},
        [](HandlerContext&, std::string uri, std::map<std::string, std::string> vars)
            -> asio::awaitable<Result<std::vector<ResourceContents>>> {
          co_return std::vector<ResourceContents>{
              {uri, "text/plain", "item " + vars["id"], std::nullopt}};
        });
    app.add_prompt(
        {.name = "greet", .arguments = {{.name = "name", .required = true}}},
        [](HandlerContext&,
           std::map<std::string, std::string> args) -> asio::awaitable<Result<PromptResult>> {
          PromptResult r;
          r.add_text("user", "Hello " + args["name"]);
          co_return r;
        });
    app.add_completion(
        "ref/prompt", "greet",
        [](HandlerContext&, const CompletionRequest& req) -> asio::awaitable<Result<Completion>> {
          Completion c;
          for (std::string_view n :
               std::initializer_list<std::string_view>{"alice", "alan", "bob"}) {
            if (n.starts_with(req.value)) c.values.emplace_back(n);
          }
          co_return c;
        });
  }

  std::shared_ptr<Observed> observed = std::make_shared<Observed>();
  App app;
};

class SessionTest : public ::testing::Test {
 protected:
  explicit SessionTest(ServerConfig config = {}) : harness_(fixture_.app, std::move(config)) {}

  Observed& observed() { return *fixture_.observed; }

  /// Starts the "wait" tool and runs until its handler is suspended in its timer.
  std::shared_ptr<RecordingChannel> start_wait(TestClient& client, json::value id) {
    auto reply = client.start("tools/call", {{"name", "wait"}}, std::move(id));
    EXPECT_TRUE(harness_.run_until([&] { return observed().wait_started.load(); }));
    return reply;
  }

  TestApp fixture_;
  SessionHarness harness_;
};

TEST_F(SessionTest, RequestBeforeInitializeIsRejected) {
  auto client = harness_.connect();
  auto r = client->call("tools/list");
  EXPECT_EQ(error_code_of(r), -32600);
  // ping is allowed at any time.
  EXPECT_TRUE(result_of(client->call("ping")).empty());
}

TEST_F(SessionTest, InitializeEchoesAKnownVersion) {
  auto client = harness_.connect();
  auto result = client->initialize({}, "2025-06-18");
  EXPECT_EQ(result.at("protocolVersion"), "2025-06-18");
  EXPECT_EQ(client->session().protocol_version(), "2025-06-18");
  EXPECT_TRUE(result.at("capabilities").as_object().contains("tools"));
  EXPECT_EQ(result.at("serverInfo").at("name"), "mcpmesh");
}

TEST_F(SessionTest, InitializeAnswersUnknownVersionWithLatest) {
  auto client = harness_.connect();
  auto result = client->initialize({}, "1999-01-01");
  EXPECT_EQ(result.at("protocolVersion"), "2025-11-25");
  EXPECT_EQ(client->session().protocol_version(), "2025-11-25");
}

TEST_F(SessionTest, InitializeTwiceIsRejected) {
  auto client = harness_.connect();
  client->initialize();
  EXPECT_EQ(error_code_of(client->call("initialize", {{"protocolVersion", "2025-11-25"}})), -32600);
}

TEST_F(SessionTest, Ping) {
  auto client = harness_.connect();
  client->initialize();
  auto r = client->call("ping");
  EXPECT_EQ(r.at("id"), 2);
  EXPECT_TRUE(result_of(r).empty());
}

TEST_F(SessionTest, UnknownMethod) {
  auto client = harness_.connect();
  client->initialize();
  EXPECT_EQ(error_code_of(client->call("no/such/method")), -32601);
}

class PagedSessionTest : public SessionTest {
 protected:
  PagedSessionTest() : SessionTest(ServerConfig{.page_size = 1}) {}
};

TEST_F(PagedSessionTest, ToolsListPagination) {
  auto client = harness_.connect();
  client->initialize();
  std::vector<std::string> names;
  json::value cursor = nullptr;
  for (int page = 0; page < 20; ++page) {
    json::object params;
    if (!cursor.is_null()) params["cursor"] = cursor;
    auto result = result_of(client->call("tools/list", params));
    auto& tools = result.at("tools").as_array();
    ASSERT_EQ(tools.size(), 1u);
    names.emplace_back(tools[0].at("name").as_string());
    if (!result.contains("nextCursor")) break;
    cursor = result.at("nextCursor");
  }
  EXPECT_EQ(names.size(), harness_.server().app().catalog()->tools.size());
  EXPECT_EQ(names.front(), "echo");

  EXPECT_EQ(error_code_of(client->call("tools/list", {{"cursor", "not-a-cursor"}})), -32602);
  EXPECT_EQ(error_code_of(client->call("tools/list", {{"cursor", "999"}})), -32602);
  EXPECT_EQ(error_code_of(client->call("tools/list", {{"cursor", 1}})), -32602);
}

TEST_F(SessionTest, ToolsCallUnknownToolIsInvalidParams) {
  auto client = harness_.connect();
  client->initialize();
  EXPECT_EQ(error_code_of(client->call_tool("nope")), -32602);
  EXPECT_EQ(error_code_of(client->call("tools/call", {{"arguments", json::object{}}})), -32602);
}

TEST_F(SessionTest, ToolsCallSucceeds) {
  auto client = harness_.connect();
  client->initialize();
  auto result = result_of(client->call_tool("echo", {{"text", "hi"}}));
  EXPECT_EQ(result.at("content").at(0).at("text"), "hi");
  EXPECT_FALSE(result.contains("isError"));
  EXPECT_EQ(harness_.metrics().tool_calls_total.load(), 1u);
}

TEST_F(SessionTest, ArgumentMismatchIsAToolErrorNotAProtocolError) {
  auto client = harness_.connect();
  client->initialize();
  for (json::object args : {json::object{{"n", "three"}}, json::object{{"n", 1.5}},
                            json::object{{"n", 1}, {"flag", 1}}, json::object{}}) {
    auto r = client->call_tool("typed", args);
    ASSERT_FALSE(r.contains("error")) << json::serialize(r);
    auto result = result_of(r);
    EXPECT_EQ(result.at("isError"), true) << json::serialize(args);
  }
  EXPECT_FALSE(result_of(client->call_tool("typed", {{"n", 3}})).contains("isError"));
  // Integral doubles pass; those no handler could convert to int64 do not.
  EXPECT_FALSE(result_of(client->call_tool("typed", {{"n", 3.0}})).contains("isError"));
  EXPECT_EQ(result_of(client->call_tool("typed", {{"n", 1e300}})).at("isError"), true);
}

TEST_F(SessionTest, ResourcesRead) {
  auto client = harness_.connect();
  client->initialize();
  auto fixed = result_of(client->call("resources/read", {{"uri", "mem://a"}}));
  EXPECT_EQ(fixed.at("contents").at(0).at("text"), "A");

  auto unknown = client->call("resources/read", {{"uri", "mem://zzz"}});
  EXPECT_EQ(error_code_of(unknown), -32002);
  EXPECT_EQ(unknown.at("error").at("data").at("uri"), "mem://zzz");

  auto templated = result_of(client->call("resources/read", {{"uri", "item://42/detail"}}));
  EXPECT_EQ(templated.at("contents").at(0).at("text"), "item 42");
  EXPECT_EQ(templated.at("contents").at(0).at("uri"), "item://42/detail");

  auto templates = result_of(client->call("resources/templates/list"));
  EXPECT_EQ(templates.at("resourceTemplates").at(0).at("uriTemplate"), "item://{id}/detail");
}

TEST_F(SessionTest, PromptsGet) {
  auto client = harness_.connect();
  client->initialize();
  auto missing = client->call("prompts/get", {{"name", "greet"}});
  EXPECT_EQ(error_code_of(missing), -32602);
  auto wrong_type = client->call("prompts/get", {{"name", "greet"}, {"arguments", {{"name", 1}}}});
  EXPECT_EQ(error_code_of(wrong_type), -32602);
  auto ok =
      result_of(client->call("prompts/get", {{"name", "greet"}, {"arguments", {{"name", "Ann"}}}}));
  EXPECT_EQ(ok.at("messages").at(0).at("content").at("text"), "Hello Ann");
  EXPECT_EQ(error_code_of(client->call("prompts/get", {{"name", "nope"}})), -32602);
}

TEST_F(SessionTest, CompletionComplete) {
  auto client = harness_.connect();
  client->initialize();
  auto result = result_of(
      client->call("completion/complete", {{"ref", {{"type", "ref/prompt"}, {"name", "greet"}}},
                                           {"argument", {{"name", "name"}, {"value", "al"}}}}));
  auto& c = result.at("completion");
  EXPECT_EQ(c.at("values"), (json::array{"alice", "alan"}));
  EXPECT_EQ(c.at("total"), 2);
  EXPECT_EQ(c.at("hasMore"), false);

  // No provider: an empty completion, not an error.
  auto none = result_of(client->call(
      "completion/complete", {{"ref", {{"type", "ref/resource"}, {"uri", "item://{id}/detail"}}},
                              {"argument", {{"name", "id"}, {"value", ""}}}}));
  EXPECT_TRUE(none.at("completion").at("values").as_array().empty());

  EXPECT_EQ(error_code_of(client->call("completion/complete",
                                       {{"ref", {{"type", "ref/prompt"}, {"name", "nope"}}},
                                        {"argument", {{"name", "x"}, {"value", ""}}}})),
            -32602);
  EXPECT_EQ(error_code_of(client->call("completion/complete", {{"ref", {{"type", "ref/other"}}},
                                                               {"argument", {{"name", "x"}}}})),
            -32602);
}

TEST_F(SessionTest, LoggingSetLevelFilters) {
  auto client = harness_.connect();
  client->initialize();

  // No level set: everything goes out, on the request's own channel.
  auto all = client->start("tools/call", {{"name", "logs"}});
  client->wait_response(*all);
  EXPECT_EQ(all->with_method("notifications/message").size(), 2u);

  ASSERT_TRUE(result_of(client->call("logging/setLevel", {{"level", "warning"}})).empty());
  auto filtered = client->start("tools/call", {{"name", "logs"}});
  client->wait_response(*filtered);
  auto logs = filtered->with_method("notifications/message");
  ASSERT_EQ(logs.size(), 1u);
  EXPECT_EQ(logs[0].at("params").at("level"), "error");
  EXPECT_EQ(logs[0].at("params").at("data"), "an error line");
  EXPECT_EQ(logs[0].at("params").at("logger"), "test");

  EXPECT_EQ(error_code_of(client->call("logging/setLevel", {{"level", "loud"}})), -32602);
  EXPECT_EQ(error_code_of(client->call("logging/setLevel")), -32602);
}

TEST_F(SessionTest, ProgressOnlyWithAProgressToken) {
  auto client = harness_.connect();
  client->initialize();

  auto without = client->start("tools/call", {{"name", "progress"}});
  client->wait_response(*without);
  EXPECT_TRUE(without->with_method("notifications/progress").empty());

  auto with =
      client->start("tools/call", {{"name", "progress"}, {"_meta", {{"progressToken", "tok-1"}}}});
  auto response = client->wait_response(*with);
  auto progress = with->with_method("notifications/progress");
  ASSERT_EQ(progress.size(), 2u);
  EXPECT_EQ(progress[0].at("params").at("progressToken"), "tok-1");
  EXPECT_EQ(progress[0].at("params").at("progress"), 1);
  EXPECT_EQ(progress[0].at("params").at("total"), 2);
  EXPECT_EQ(progress[0].at("params").at("message"), "half");
  EXPECT_EQ(progress[1].at("params").at("progress"), 2);
  // Progress precedes the response.
  auto deliveries = with->deliveries();
  ASSERT_EQ(deliveries.size(), 3u);
  EXPECT_TRUE(deliveries.back().completes_request);
  EXPECT_FALSE(deliveries.front().completes_request);
  EXPECT_EQ(result_of(response).at("content").at(0).at("text"), "done");

  auto numeric =
      client->start("tools/call", {{"name", "progress"}, {"_meta", {{"progressToken", 77}}}});
  client->wait_response(*numeric);
  ASSERT_EQ(numeric->with_method("notifications/progress").size(), 2u);
  EXPECT_EQ(numeric->with_method("notifications/progress")[0].at("params").at("progressToken"), 77);
}

TEST_F(SessionTest, CancelledRequestIsNeverAnswered) {
  auto client = harness_.connect();
  client->initialize();
  auto reply = start_wait(*client, "slow-1");
  client->notify("notifications/cancelled", {{"requestId", "slow-1"}, {"reason", "test"}});
  ASSERT_TRUE(harness_.run_until([&] { return reply->completion().has_value(); }));
  EXPECT_EQ(reply->completion()->message, nullptr) << "a cancelled request gets no response";
  EXPECT_TRUE(reply->messages().empty());
  EXPECT_TRUE(observed().wait_saw_cancel);
  EXPECT_EQ(harness_.metrics().cancelled_total.load(), 1u);

  // Cancelling something unknown or finished is ignored; the session goes on.
  client->notify("notifications/cancelled", {{"requestId", "slow-1"}});
  client->notify("notifications/cancelled", {{"requestId", 12345}});
  EXPECT_TRUE(result_of(client->call("ping")).empty());
  EXPECT_EQ(harness_.metrics().cancelled_total.load(), 1u);
}

TEST_F(SessionTest, RequestIdInUseIsRejected) {
  auto client = harness_.connect();
  client->initialize();
  auto first = start_wait(*client, "dup");
  auto second = client->start("tools/call", {{"name", "echo"}, {"arguments", {{"text", "x"}}}},
                              json::value("dup"));
  EXPECT_EQ(error_code_of(client->wait_response(*second)), -32600);
  EXPECT_FALSE(first->completion().has_value());
}

class ClientRequestTest : public SessionTest {
 protected:
  /// Runs until the server sent a request to the client on `reply`; returns it.
  json::object wait_client_request(const RecordingChannel& reply, std::string_view method) {
    EXPECT_TRUE(harness_.run_until([&] { return !reply.with_method(method).empty(); }));
    auto found = reply.with_method(method);
    return found.empty() ? json::object{} : found.front();
  }
};

TEST_F(ClientRequestTest, SamplingAnswerReachesTheTool) {
  auto client = harness_.connect();
  client->initialize({{"sampling", json::object{}}});
  auto reply = client->start("tools/call", {{"name", "ask"}});
  auto request = wait_client_request(*reply, "sampling/createMessage");
  ASSERT_TRUE(request.contains("id"));
  EXPECT_EQ(request.at("params").at("maxTokens"), 10);
  EXPECT_FALSE(reply->completion().has_value());

  json::object answer{{"role", "assistant"},
                      {"content", {{"type", "text"}, {"text", "hello from the model"}}},
                      {"model", "test-model"}};
  client->send({{"jsonrpc", "2.0"}, {"id", request.at("id")}, {"result", answer}});
  auto result = result_of(client->wait_response(*reply));
  EXPECT_EQ(result.at("structuredContent").at("answer").at("content").at("text"),
            "hello from the model");
  EXPECT_EQ(harness_.metrics().client_requests_total.load(), 1u);
}

TEST_F(ClientRequestTest, ClientErrorIsPassedOn) {
  auto client = harness_.connect();
  client->initialize({{"sampling", json::object{}}});
  auto reply = client->start("tools/call", {{"name", "ask"}});
  auto request = wait_client_request(*reply, "sampling/createMessage");
  client->send({{"jsonrpc", "2.0"},
                {"id", request.at("id")},
                {"error", {{"code", -1}, {"message", "user rejected"}}}});
  auto r = client->wait_response(*reply);
  EXPECT_EQ(error_code_of(r), -1);
  EXPECT_EQ(r.at("error").at("message"), "user rejected");
}

TEST_F(ClientRequestTest, WithoutTheCapabilityFails) {
  auto client = harness_.connect();
  client->initialize();
  EXPECT_EQ(error_code_of(client->call_tool("ask")), -32602);
  EXPECT_EQ(harness_.metrics().client_requests_total.load(), 0u);
}

TEST_F(ClientRequestTest, UnansweredRequestTimesOutAndIsCancelled) {
  auto client = harness_.connect();
  client->initialize({{"sampling", json::object{}}});
  auto reply = client->start("tools/call", {{"name", "ask"}, {"arguments", {{"deadline_ms", 50}}}});
  auto r = client->wait_response(*reply);
  EXPECT_EQ(error_code_of(r), -32001);
  auto request = reply->with_method("sampling/createMessage");
  auto cancelled = reply->with_method("notifications/cancelled");
  ASSERT_EQ(request.size(), 1u);
  ASSERT_EQ(cancelled.size(), 1u);
  EXPECT_EQ(cancelled[0].at("params").at("requestId"), request[0].at("id"));
  EXPECT_EQ(harness_.metrics().client_request_timeouts_total.load(), 1u);

  // A late answer is ignored.
  client->send({{"jsonrpc", "2.0"}, {"id", request[0].at("id")}, {"result", json::object{}}});
  EXPECT_TRUE(result_of(client->call("ping")).empty());
}

TEST_F(SessionTest, ListChangesReachInitializedSessions) {
  auto ready = harness_.connect();
  ready->initialize();
  auto fresh = harness_.connect();  // never initialized: gets nothing
  harness_.server().app().add_tool(
      {.name = "late"}, [](HandlerContext&, json::object) -> asio::awaitable<Result<ToolResult>> {
        co_return ToolResult::text("late");
      });
  ASSERT_TRUE(harness_.run_until([&] {
    return !ready->standalone().with_method("notifications/tools/list_changed").empty();
  }));
  harness_.settle();
  EXPECT_EQ(fresh->standalone().size(), 0u);
  EXPECT_EQ(result_of(ready->call_tool("late")).at("content").at(0).at("text"), "late");

  EXPECT_TRUE(harness_.server().app().remove_tool("late"));
  ASSERT_TRUE(harness_.run_until([&] {
    return ready->standalone().with_method("notifications/tools/list_changed").size() == 2;
  }));
  harness_.server().app().add_prompt(
      {.name = "p2"}, [](HandlerContext&, auto) -> asio::awaitable<Result<PromptResult>> {
        co_return PromptResult{};
      });
  ASSERT_TRUE(harness_.run_until([&] {
    return !ready->standalone().with_method("notifications/prompts/list_changed").empty();
  }));
}

TEST_F(SessionTest, ResourceUpdatesReachOnlySubscribers) {
  auto subscriber = harness_.connect();
  subscriber->initialize();
  auto bystander = harness_.connect();
  bystander->initialize();
  ASSERT_TRUE(result_of(subscriber->call("resources/subscribe", {{"uri", "mem://a"}})).empty());

  harness_.server().app().notify_resource_updated("mem://a");
  ASSERT_TRUE(harness_.run_until([&] {
    return !subscriber->standalone().with_method("notifications/resources/updated").empty();
  }));
  auto updated = subscriber->standalone().with_method("notifications/resources/updated");
  EXPECT_EQ(updated[0].at("params").at("uri"), "mem://a");
  harness_.settle();
  EXPECT_TRUE(bystander->standalone().with_method("notifications/resources/updated").empty());

  // Another URI, then unsubscribing: nothing more arrives.
  harness_.server().app().notify_resource_updated("mem://other");
  ASSERT_TRUE(result_of(subscriber->call("resources/unsubscribe", {{"uri", "mem://a"}})).empty());
  harness_.server().app().notify_resource_updated("mem://a");
  harness_.settle();
  EXPECT_EQ(subscriber->standalone().with_method("notifications/resources/updated").size(), 1u);
}

TEST_F(SessionTest, CloseCancelsHandlers) {
  auto client = harness_.connect();
  client->initialize();
  auto reply = start_wait(*client, 99);
  auto id = client->id();
  ASSERT_TRUE(harness_.server().close_session(id));
  EXPECT_EQ(harness_.server().find_session(id), nullptr);
  EXPECT_FALSE(harness_.server().close_session(id));
  ASSERT_TRUE(harness_.run_until([&] { return reply->completion().has_value(); }));
  EXPECT_EQ(reply->completion()->message, nullptr);
  EXPECT_TRUE(observed().wait_saw_cancel);
  EXPECT_TRUE(client->standalone().session_closed());
  EXPECT_TRUE(client->session().closed());

  // The session object still takes frames but answers every request with an error.
  EXPECT_EQ(error_code_of(client->call("ping")), -32600);
  EXPECT_EQ(harness_.metrics().sessions_closed_total.load(), 1u);
}

class InflightLimitTest : public SessionTest {
 protected:
  InflightLimitTest() : SessionTest(ServerConfig{.max_inflight_per_session = 1}) {}
};

TEST_F(InflightLimitTest, TooManyInFlightIsServerBusy) {
  auto client = harness_.connect();
  client->initialize();
  auto slow = start_wait(*client, "slow");
  auto r = client->call_tool("echo", {{"text", "x"}});
  EXPECT_EQ(error_code_of(r), -32000);
  EXPECT_NE(r.at("error").at("message").as_string().find("this session"), std::string::npos);
  // Every kind of request counts, those answered inline too.
  EXPECT_EQ(error_code_of(client->call("ping")), -32000);
  EXPECT_EQ(error_code_of(client->call("tools/list")), -32000);
  EXPECT_EQ(harness_.metrics().inflight_rejected_total.load(), 3u);
  // Another session is not limited by this one.
  auto other = harness_.connect();
  other->initialize();
  EXPECT_TRUE(result_of(other->call("ping")).empty());

  client->notify("notifications/cancelled", {{"requestId", "slow"}});
  ASSERT_TRUE(harness_.run_until([&] { return slow->completion().has_value(); }));
  EXPECT_EQ(result_of(client->call_tool("echo", {{"text", "x"}})).at("content").at(0).at("text"),
            "x");
}

TEST_F(SessionTest, RunBlockingUsesTheWorkerPoolAndResumes) {
  auto client = harness_.connect();
  client->initialize();
  auto result = result_of(client->call_tool("blocking"));
  EXPECT_EQ(result.at("content").at(0).at("text"), "blocked");
  EXPECT_NE(observed().blocking_ran_on, std::thread::id());
  EXPECT_NE(observed().blocking_ran_on, std::this_thread::get_id());
  // The io_context runs only on this thread, so resuming there means back on the session.
  EXPECT_EQ(observed().resumed_on, std::this_thread::get_id());
  // What admission control reads of the pool: the job ended, its time is in the average.
  auto load = harness_.server().worker_load();
  EXPECT_EQ(load.jobs, 0u);
  EXPECT_GE(load.threads, 1u);
  EXPECT_GT(load.mean_job.count(), 0);
  EXPECT_LT(load.mean_job, std::chrono::seconds(5));
}

class NoBlockingSlotsTest : public SessionTest {
 protected:
  NoBlockingSlotsTest() : SessionTest(ServerConfig{.max_blocking_jobs = 0}) {}
};

TEST_F(NoBlockingSlotsTest, RunBlockingFailsFastWhenThePoolIsFull) {
  auto client = harness_.connect();
  client->initialize();
  EXPECT_EQ(error_code_of(client->call_tool("blocking")), -32000);
  EXPECT_EQ(harness_.metrics().blocking_jobs_rejected_total.load(), 1u);
  EXPECT_EQ(observed().blocking_ran_on, std::thread::id());
}

TEST_F(SessionTest, SessionIdsHaveNodePrefixEpochAndRandomHex) {
  harness_.server().set_epoch(0x18c2f0a1b2c);
  auto a = harness_.connect();
  auto b = harness_.connect();
  EXPECT_NE(a->id(), b->id());
  EXPECT_EQ(a->id().rfind("n1.18c2f0a1b2c.", 0), 0u) << a->id();
  EXPECT_EQ(a->id().size(), 3u + 12u + 32u);
  std::string_view owner;
  std::uint64_t epoch = 0;
  ASSERT_TRUE(parse_session_id(a->id(), owner, epoch));
  EXPECT_EQ(owner, "n1");
  EXPECT_EQ(epoch, 0x18c2f0a1b2cu);
  EXPECT_EQ(harness_.server().session_count(), 2u);
}

TEST_F(SessionTest, LatencyIsKeptPerMethodAndPerToolForMetrics) {
  auto client = harness_.connect();
  client->initialize();
  auto& m = harness_.server().metrics();
  auto& calls = m.method_latency[timed_method_index("tools/call")];
  auto& pings = m.method_latency[timed_method_index("ping")];
  auto& other = m.method_latency[timed_method_index("other")];
  EXPECT_TRUE(result_of(client->call("ping")).empty());
  EXPECT_FALSE(
      result_of(client->call("tools/call", {{"name", "echo"}, {"arguments", {{"text", "hi"}}}}))
          .empty());
  EXPECT_EQ(error_code_of(client->call("no/such/method")), -32601);
  EXPECT_EQ(pings.count(), 1u);
  EXPECT_EQ(calls.count(), 1u);
  EXPECT_EQ(other.count(), 1u);
  auto text = m.render_prometheus();
  EXPECT_NE(text.find("mcpmesh_request_duration_seconds_count{method=\"tools/call\"} 1\n"),
            std::string::npos);
  std::string tools;
  harness_.server().app().render_tool_latency(tools);
  EXPECT_NE(tools.find("mcpmesh_tool_duration_seconds_count{tool=\"echo\"} 1\n"), std::string::npos)
      << tools;
  EXPECT_NE(tools.find("mcpmesh_tool_duration_seconds_count{tool=\"wait\"} 0\n"),
            std::string::npos);
}

class MaxSessionsTest : public SessionTest {
 protected:
  MaxSessionsTest() : SessionTest(ServerConfig{.max_sessions = 1}) {}
};

TEST_F(MaxSessionsTest, CreateSessionFailsAtTheLimit) {
  auto a = harness_.connect();
  ASSERT_NE(a, nullptr);
  auto refused = harness_.server().create_session(std::make_shared<RecordingChannel>());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, -32000);
  EXPECT_EQ(harness_.metrics().sessions_rejected_total.load(), 1u);
}

class SessionCapRaceTest : public SessionTest {
 protected:
  SessionCapRaceTest() : SessionTest(ServerConfig{.max_sessions = 100}) {}
};

TEST_F(SessionCapRaceTest, TheCapIsExactWhenThreadsCreateSessionsAtOnce) {
  // 8 threads x 50 attempts, released together: exactly max_sessions succeed.
  constexpr int kThreads = 8, kEach = 50;
  std::atomic<bool> go{false};
  std::atomic<int> created{0}, refused{0};
  std::vector<std::shared_ptr<Session>> kept[kThreads];
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      for (int i = 0; i < kEach; ++i) {
        auto s = harness_.server().create_session(std::make_shared<RecordingChannel>());
        if (s) {
          kept[t].push_back(*s);
          created.fetch_add(1);
        } else {
          refused.fetch_add(1);
        }
      }
    });
  }
  go.store(true, std::memory_order_release);
  for (auto& th : threads) th.join();
  EXPECT_EQ(created.load(), 100);
  EXPECT_EQ(refused.load(), kThreads * kEach - 100);
  EXPECT_EQ(harness_.server().session_count(), 100u);
  EXPECT_EQ(harness_.metrics().sessions_rejected_total.load(),
            static_cast<std::uint64_t>(kThreads * kEach - 100));
}

}  // namespace
}  // namespace mcpmesh::mcp

namespace mcpmesh::mcp {
namespace {

class LimitedSessionTest : public SessionTest {
 protected:
  LimitedSessionTest() : SessionTest(ServerConfig{.max_subscriptions_per_session = 2}) {}
};

TEST_F(LimitedSessionTest, SubscriptionsAreBoundedPerSession) {
  auto client = harness_.connect();
  client->initialize();
  EXPECT_TRUE(result_of(client->call("resources/subscribe", {{"uri", "a://1"}})).empty());
  EXPECT_TRUE(result_of(client->call("resources/subscribe", {{"uri", "a://2"}})).empty());
  // Subscribing again to one it has is fine; a third URI is refused and counted.
  EXPECT_TRUE(result_of(client->call("resources/subscribe", {{"uri", "a://2"}})).empty());
  EXPECT_EQ(error_code_of(client->call("resources/subscribe", {{"uri", "a://3"}})), -32000);
  EXPECT_EQ(harness_.server().metrics().subscriptions_rejected_total.load(), 1u);
  EXPECT_TRUE(result_of(client->call("resources/unsubscribe", {{"uri", "a://1"}})).empty());
  EXPECT_TRUE(result_of(client->call("resources/subscribe", {{"uri", "a://3"}})).empty());
}

TEST_F(SessionTest, AThrowingListerFailsOnlyThatRequest) {
  fixture_.app.add_resource_template(
      {.uri_template = "boom://{x}", .name = "boom"},
      [](HandlerContext&, std::string, std::map<std::string, std::string>)
          -> asio::awaitable<Result<std::vector<ResourceContents>>> {
        co_return std::vector<ResourceContents>{};
      },
      []() -> std::vector<ResourceSpec> { throw std::runtime_error("lister broke"); });
  auto client = harness_.connect();
  client->initialize();
  EXPECT_EQ(error_code_of(client->call("resources/list")), -32603);
  // The session (and the node) go on.
  EXPECT_TRUE(result_of(client->call("ping")).empty());
}

TEST_F(SessionTest, SynchronousToolsAnswerInlineWithProgressAndLogs) {
  fixture_.app.add_tool(
      {.name = "sync_sum",
       .input_schema = object_schema({{"a", "number"}, {"b", "number"}}, {"a", "b"})},
      [](HandlerContext& ctx, json::object args) -> Result<ToolResult> {
        ctx.report_progress(1, 1);
        ctx.log(LogLevel::kError, "summing", "sync");
        double sum = args.at("a").to_number<double>() + args.at("b").to_number<double>();
        return ToolResult::structured({{"sum", json_number(sum)}});
      });
  fixture_.app.add_tool({.name = "sync_fail"},
                        [](HandlerContext&, json::object) -> Result<ToolResult> {
                          return RpcError(ErrorCode::kInvalidParams, "not today");
                        });
  fixture_.app.add_tool({.name = "sync_throw"},
                        [](HandlerContext&, json::object) -> Result<ToolResult> {
                          throw std::runtime_error("sync broke");
                        });
  auto client = harness_.connect();
  client->initialize();
  EXPECT_TRUE(result_of(client->call("logging/setLevel", {{"level", "error"}})).empty());
  auto reply = client->start("tools/call", {{"name", "sync_sum"},
                                            {"arguments", {{"a", 2}, {"b", 3}}},
                                            {"_meta", {{"progressToken", "p1"}}}});
  auto r = client->wait_response(*reply);
  EXPECT_EQ(result_of(r).at("structuredContent").at("sum"), 5);
  EXPECT_EQ(reply->with_method("notifications/progress").size(), 1u);
  EXPECT_EQ(reply->with_method("notifications/message").size(), 1u);
  // Schema checks apply as for coroutine tools: an isError result, not a protocol error.
  auto bad = result_of(client->call_tool("sync_sum", {{"a", "x"}, {"b", 1}}));
  EXPECT_EQ(bad.at("isError"), true);
  EXPECT_EQ(error_code_of(client->call_tool("sync_fail")), -32602);
  auto thrown = client->call_tool("sync_throw");
  EXPECT_EQ(error_code_of(thrown), -32603);
  // Nothing stays in flight: a request id can be reused at once, and the session goes on.
  EXPECT_EQ(
      result_of(client->call_tool("echo", {{"text", "after"}})).at("content").at(0).at("text"),
      "after");
}

}  // namespace
}  // namespace mcpmesh::mcp

namespace mcpmesh::mcp {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

/// A response's error message ("" if it has none).
std::string error_message_of(const json::object& response) {
  auto* e = response.if_contains("error");
  if (!e || !e->is_object()) return {};
  auto* m = e->get_object().if_contains("message");
  return m && m->is_string() ? std::string(m->get_string()) : std::string();
}

/// Whether `text` names a source file and line (what Boost's exceptions add to what()).
bool names_a_source_location(std::string_view text) {
  for (std::string_view ext : {".hpp:", ".cpp:", ".ipp:", ".h:"}) {
    if (text.find(ext) != std::string_view::npos) return true;
  }
  return text.find("/usr/") != std::string_view::npos;
}

TEST_F(SessionTest, AResultJsonCannotCarryIsAnInternalErrorForThatRequestOnly) {
  fixture_.app.add_tool({.name = "sum", .input_schema = object_schema({{"a", "number"}})},
                        [](HandlerContext&, json::object args) -> Result<ToolResult> {
                          double sum = args.at("a").to_number<double>() * 2;
                          ToolResult r = ToolResult::text("sum");
                          r.structured_content = json::object{{"sum", json_number(sum)}};
                          return r;
                        });
  fixture_.app.add_tool({.name = "async_inf"},
                        [](HandlerContext&, json::object) -> asio::awaitable<Result<ToolResult>> {
                          co_return ToolResult::structured({{"x", json::array{1, -kInf}}});
                        });
  fixture_.app.add_tool(
      {.name = "nan_progress"},
      [](HandlerContext& ctx, json::object) -> asio::awaitable<Result<ToolResult>> {
        ctx.report_progress(std::numeric_limits<double>::quiet_NaN(), 1);
        ctx.log(LogLevel::kError, json::object{{"v", kInf}}, "t");
        co_return ToolResult::text("done");
      });
  auto client = harness_.connect();
  client->initialize();
  auto healthy = harness_.connect();
  healthy->initialize();
  // 1.7e308 * 2 overflows to infinity from a valid input.
  auto r = client->call_tool("sum", {{"a", 1.7e308}});
  EXPECT_EQ(error_code_of(r), -32603);
  EXPECT_NE(error_message_of(r).find("infinity or NaN"), std::string::npos);
  EXPECT_EQ(error_code_of(client->call_tool("async_inf")), -32603);
  EXPECT_EQ(harness_.metrics().non_finite_numbers_total.load(), 2u);
  // A notification that cannot be written is dropped (counted); the call answers.
  auto reply =
      client->start("tools/call", {{"name", "nan_progress"}, {"_meta", {{"progressToken", "p"}}}});
  EXPECT_EQ(result_of(client->wait_response(*reply)).at("content").at(0).at("text"), "done");
  EXPECT_TRUE(reply->with_method("notifications/progress").empty());
  EXPECT_TRUE(reply->with_method("notifications/message").empty());
  EXPECT_EQ(harness_.metrics().non_finite_numbers_total.load(), 4u);
  // Everything delivered was JSON (RecordingChannel::messages parses each), and both sessions
  // go on.
  EXPECT_EQ(result_of(client->call_tool("sum", {{"a", 2}})).at("structuredContent").at("sum"), 4);
  EXPECT_EQ(result_of(healthy->call_tool("echo", {{"text", "ok"}})).at("content").at(0).at("text"),
            "ok");
}

TEST_F(SessionTest, ArgumentsNoHandlerCanConvertAreToolErrors) {
  auto client = harness_.connect();
  client->initialize();
  // Above int64 (Boost.JSON keeps it as uint64): converting it would throw in the handler.
  auto big = result_of(client->call(
      "tools/call",
      {{"name", "typed"}, {"arguments", json::parse(R"({"n":18446744073709551615})")}}));
  EXPECT_EQ(big.at("isError"), true);
  EXPECT_NE(big.at("content").at(0).at("text").as_string().find("integer from -2^63"),
            std::string::npos);
  fixture_.app.add_tool({.name = "num", .input_schema = object_schema({{"x", "number"}}, {"x"})},
                        [](HandlerContext&, json::object) -> Result<ToolResult> {
                          return ToolResult::text("num ok");
                        });
  // The parser reads 1e400 as infinity (sent as text: serializing infinity is what cannot be).
  auto frame = parse_frame(
      R"({"jsonrpc":"2.0","id":"inf","method":"tools/call","params":{"name":"num","arguments":{"x":1e400}}})",
      ParseLimits{});
  ASSERT_EQ(frame.messages.size(), 1u);
  auto reply = std::make_shared<RecordingChannel>();
  client->session().post_frame(std::move(frame.messages), reply);
  auto inf = result_of(client->wait_response(*reply));
  EXPECT_EQ(inf.at("isError"), true);
  EXPECT_NE(inf.at("content").at(0).at("text").as_string().find("finite number"),
            std::string::npos);
}

TEST_F(SessionTest, HandlerFailuresNameNoSourceLocation) {
  // Handlers that convert arguments their own way and throw (Boost's system_error: its what()
  // carries "[boost.json:... at /usr/include/...hpp:...]").
  fixture_.app.add_tool({.name = "sync_convert"},
                        [](HandlerContext&, json::object) -> Result<ToolResult> {
                          json::value v = "seven";
                          return ToolResult::text(std::to_string(v.to_number<std::int64_t>()));
                        });
  fixture_.app.add_tool({.name = "async_convert"},
                        [](HandlerContext&, json::object) -> asio::awaitable<Result<ToolResult>> {
                          json::value v = 1.5;
                          co_return ToolResult::text(std::to_string(v.to_number<std::int64_t>()));
                        });
  fixture_.app.add_tool({.name = "async_fs"},
                        [](HandlerContext&, json::object) -> asio::awaitable<Result<ToolResult>> {
                          throw std::filesystem::filesystem_error(
                              "open", "/srv/secret/config.toml",
                              std::make_error_code(std::errc::permission_denied));
                          co_return ToolResult::text("unreachable");
                        });
  auto client = harness_.connect();
  client->initialize();
  for (std::string_view tool : {"sync_convert", "async_convert", "async_fs"}) {
    auto r = client->call_tool(tool);
    EXPECT_EQ(error_code_of(r), -32603) << tool;
    auto message = error_message_of(r);
    EXPECT_FALSE(names_a_source_location(message)) << tool << ": " << message;
    EXPECT_EQ(message.find("/srv/"), std::string::npos) << tool << ": " << message;
    EXPECT_EQ(message.rfind("the handler failed: ", 0), 0u) << tool << ": " << message;
  }
  EXPECT_NE(error_message_of(client->call_tool("sync_convert")).find("not a number"),
            std::string::npos);
  EXPECT_NE(error_message_of(client->call_tool("async_fs")).find("ermission denied"),
            std::string::npos);
  EXPECT_TRUE(result_of(client->call("ping")).empty());
}

class UriLimitTest : public SessionTest {
 protected:
  UriLimitTest() : SessionTest(ServerConfig{.max_uri_bytes = 32}) {}
};

TEST_F(UriLimitTest, SubscriptionUrisAreValidatedAndBounded) {
  auto client = harness_.connect();
  client->initialize();
  auto healthy = harness_.connect();
  healthy->initialize();
  for (std::string_view uri :
       {"", "no-scheme", "://x", "1abc://x", "a b://x", "note://with space", "note://a\nb",
        "note://tab\tx", "note://del\x7f", "note://c1\xc2\x85", "note://q\"uote", "note://{x}",
        "note://back\\slash", "note://this-one-is-longer-than-32-bytes"}) {
    for (std::string_view method : {"resources/subscribe", "resources/unsubscribe"}) {
      auto r = client->call(method, {{"uri", uri}});
      EXPECT_EQ(error_code_of(r), -32602) << method << " " << uri;
      EXPECT_NE(error_message_of(r).find("params.uri"), std::string::npos) << uri;
    }
  }
  EXPECT_EQ(harness_.metrics().uris_rejected_total.load(), 28u);
  for (std::string_view uri : {"note://ok", "urn:isbn:0451450523", "file:///a/b%20c",
                               "x-y.z+w:opaque", "note://caf\xc3\xa9"}) {
    EXPECT_TRUE(result_of(client->call("resources/subscribe", {{"uri", uri}})).empty()) << uri;
  }
  EXPECT_TRUE(result_of(healthy->call("resources/subscribe", {{"uri", "note://ok"}})).empty());
  EXPECT_EQ(harness_.metrics().uris_rejected_total.load(), 28u);
}

TEST_F(SessionTest, ASubscribedUriIsStoredOncePerNode) {
  auto a = harness_.connect();
  a->initialize();
  auto b = harness_.connect();
  b->initialize();
  std::string uri = "note://shared-" + std::string(100, 'x');
  ASSERT_TRUE(result_of(a->call("resources/subscribe", {{"uri", uri}})).empty());
  ASSERT_TRUE(result_of(b->call("resources/subscribe", {{"uri", uri}})).empty());
  harness_.settle();  // nothing runs on the strands: their records may be read here
  auto ra = a->session().record();
  auto rb = b->session().record();
  ASSERT_EQ(ra.subscriptions.size(), 1u);
  ASSERT_EQ(rb.subscriptions.size(), 1u);
  EXPECT_EQ(*ra.subscriptions.begin(), uri);
  // Both sessions' records hold the index's own text: one copy for the node.
  EXPECT_TRUE(ra.subscriptions.begin()->shares_text_with(*rb.subscriptions.begin()));
  auto again = harness_.server().subscriptions().subscribe(uri, "probe");
  EXPECT_TRUE(again.uri.shares_text_with(*ra.subscriptions.begin()));
  // The record's wire form still carries the URI (replication).
  auto parsed = SessionRecord::parse(ra.serialize());
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->subscriptions, ra.subscriptions);
  // Updates reach both; unsubscribing one leaves the other.
  ASSERT_TRUE(result_of(a->call("resources/unsubscribe", {{"uri", uri}})).empty());
  harness_.server().app().notify_resource_updated(uri);
  ASSERT_TRUE(harness_.run_until(
      [&] { return !b->standalone().with_method("notifications/resources/updated").empty(); }));
  harness_.settle();
  EXPECT_TRUE(a->standalone().with_method("notifications/resources/updated").empty());
}

class NodeInflightLimitTest : public SessionTest {
 protected:
  NodeInflightLimitTest() : SessionTest(ServerConfig{.max_inflight = 1}) {}
};

TEST_F(NodeInflightLimitTest, TooManyInFlightOnTheNodeIsServerBusyForEveryone) {
  auto busy = harness_.connect();
  busy->initialize();
  auto other = harness_.connect();
  other->initialize();
  auto slow = start_wait(*busy, "slow");
  EXPECT_EQ(harness_.metrics().inflight_requests.load(), 1u);
  for (auto* client : {busy.get(), other.get()}) {
    auto r = client->call("ping");
    EXPECT_EQ(error_code_of(r), -32000);
    EXPECT_NE(error_message_of(r).find("this node"), std::string::npos);
  }
  EXPECT_EQ(harness_.metrics().inflight_node_rejected_total.load(), 2u);
  EXPECT_EQ(harness_.metrics().inflight_rejected_total.load(), 0u);
  busy->notify("notifications/cancelled", {{"requestId", "slow"}});
  ASSERT_TRUE(harness_.run_until([&] { return slow->completion().has_value(); }));
  EXPECT_TRUE(harness_.run_until([&] { return harness_.metrics().inflight_requests == 0; }));
  EXPECT_TRUE(result_of(other->call("ping")).empty());
  EXPECT_EQ(harness_.metrics().inflight_requests.load(), 0u);
}

class InitTimeoutTest : public SessionTest {
 protected:
  InitTimeoutTest() : SessionTest(ServerConfig{.init_timeout = std::chrono::milliseconds(200)}) {}
};

TEST_F(InitTimeoutTest, SessionsThatNeverCompleteInitializationExpire) {
  harness_.server().start_idle_sweeper();
  auto complete = harness_.connect();
  complete->initialize();
  auto working = harness_.connect();  // skips notifications/initialized but goes on working
  ASSERT_FALSE(working->call("initialize", {{"protocolVersion", "2025-11-25"}}).contains("error"));
  EXPECT_TRUE(result_of(working->call("ping")).empty());
  auto abandoned = harness_.connect();
  ASSERT_FALSE(
      abandoned->call("initialize", {{"protocolVersion", "2025-11-25"}}).contains("error"));
  auto gone = abandoned->id();
  ASSERT_TRUE(harness_.run_until([&] { return !harness_.server().find_session(gone); }));
  EXPECT_EQ(harness_.metrics().sessions_init_expired_total.load(), 1u);
  EXPECT_TRUE(abandoned->session().closed());
  // The others' deadlines came first (one timeout, sweeps in deadline order): they were looked
  // at already, and stay.
  EXPECT_EQ(harness_.server().session_count(), 2u);
  EXPECT_TRUE(result_of(complete->call("ping")).empty());
  EXPECT_TRUE(result_of(working->call("ping")).empty());
  EXPECT_EQ(harness_.metrics().sessions_init_expired_total.load(), 1u);
}

/// The cluster's side of DeliveryGate: closed while the node may have been declared dead;
/// sessions continued elsewhere (stale copies) named in `stale`.
class FakeGate final : public DeliveryGate {
 public:
  bool open() override { return is_open.load(); }
  bool holds(std::string_view owner, std::uint64_t epoch) override {
    return !stale.contains({std::string(owner), epoch});
  }
  std::atomic<bool> is_open{true};
  std::set<std::pair<std::string, std::uint64_t>> stale;  // set before deliveries run
};

/// Counts what this node's app raised for the other nodes.
class CountingFanout final : public NotificationFanout {
 public:
  void resource_updated(std::string_view) override { ++updates; }
  void list_changed(ListKind) override { ++lists; }
  std::atomic<int> updates{0}, lists{0};
};

class HeldNotificationsTest : public SessionTest {
 protected:
  HeldNotificationsTest() : SessionTest(ServerConfig{.max_held_notifications = 3}) {
    harness_.server().set_fanout(&fanout_);
    harness_.server().set_delivery_gate(&gate_);
  }
  ~HeldNotificationsTest() override {
    harness_.server().set_delivery_gate(nullptr);
    harness_.server().set_fanout(nullptr);
  }
  static std::size_t updates_of(const TestClient& c) {
    return c.standalone().with_method("notifications/resources/updated").size();
  }
  FakeGate gate_;
  CountingFanout fanout_;
};

TEST_F(HeldNotificationsTest, AClosedGateHoldsThenAStaleCopyGetsNothing) {
  // Two sets: this node's sessions of epoch 1 (still its own) and of epoch 2 (continued by
  // another node below).
  harness_.server().set_epoch(1);
  auto own = harness_.connect();
  own->initialize();
  harness_.server().set_epoch(2);
  auto stale = harness_.connect();
  stale->initialize();
  for (auto* c : {own.get(), stale.get()}) {
    ASSERT_TRUE(result_of(c->call("resources/subscribe", {{"uri", "mem://a"}})).empty());
  }
  harness_.server().app().notify_resource_updated("mem://a");
  ASSERT_TRUE(harness_.run_until([&] { return updates_of(*own) == 1 && updates_of(*stale) == 1; }));
  EXPECT_EQ(fanout_.updates.load(), 1);

  // Closed: raised here (to deliver and fan out) or from another node (to deliver), both wait;
  // beyond max_held_notifications they are dropped, counted.
  gate_.is_open = false;
  harness_.server().app().notify_resource_updated("mem://a");
  harness_.server().deliver_resource_updated("mem://a");
  harness_.server().deliver_list_changed(ListKind::kTools);
  harness_.server().deliver_resource_updated("mem://a");
  harness_.settle();
  EXPECT_EQ(updates_of(*own), 1u);
  EXPECT_EQ(fanout_.updates.load(), 1);
  EXPECT_EQ(harness_.server().held_notifications(), 3u);
  EXPECT_EQ(harness_.metrics().notifications_held_total.load(), 3u);
  EXPECT_EQ(harness_.metrics().notifications_held_dropped_total.load(), 1u);

  // Meanwhile another node continued `stale`: once open, what waited goes, in order, to the
  // sessions still held here only; what this node raised goes to the other nodes too.
  std::string_view owner;
  std::uint64_t epoch = 0;
  ASSERT_TRUE(parse_session_id(stale->id(), owner, epoch));
  gate_.stale.insert({std::string(owner), epoch});
  gate_.is_open = true;
  harness_.server().release_held_notifications();
  ASSERT_TRUE(harness_.run_until([&] {
    return updates_of(*own) == 3 &&
           !own->standalone().with_method("notifications/tools/list_changed").empty();
  }));
  harness_.settle();
  EXPECT_EQ(updates_of(*own), 3u);
  EXPECT_EQ(updates_of(*stale), 1u);
  EXPECT_TRUE(stale->standalone().with_method("notifications/tools/list_changed").empty());
  EXPECT_EQ(fanout_.updates.load(), 2);
  EXPECT_EQ(harness_.server().held_notifications(), 0u);
  EXPECT_EQ(harness_.metrics().notifications_stale_skipped_total.load(), 3u);

  // Open: at once, still never to the stale copy.
  harness_.server().app().notify_resource_updated("mem://a");
  ASSERT_TRUE(harness_.run_until([&] { return updates_of(*own) == 4; }));
  harness_.settle();
  EXPECT_EQ(updates_of(*stale), 1u);
}

}  // namespace
}  // namespace mcpmesh::mcp
