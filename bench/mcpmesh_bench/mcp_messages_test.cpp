#include "bench/mcpmesh_bench/mcp_messages.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <string>

namespace mcpmesh::bench {
namespace {

HttpAnswer json_answer(unsigned status, std::string body) {
  HttpAnswer a;
  a.status = status;
  a.content_type = "application/json";
  a.body = std::move(body);
  return a;
}

HttpAnswer sse_answer(std::string body) {
  HttpAnswer a;
  a.status = 200;
  a.content_type = "text/event-stream";
  a.event_stream = true;
  a.body = std::move(body);
  return a;
}

TEST(JudgeResponse, JsonBody) {
  auto ok = json_answer(200, R"({"jsonrpc":"2.0","id":5,"result":{"content":[]}})");
  EXPECT_EQ(judge_response(ok, 5, true).outcome, Outcome::kOk);
  EXPECT_EQ(judge_response(ok, 6, true).outcome, Outcome::kBadAnswer);
  auto err = json_answer(200, R"({"jsonrpc":"2.0","id":5,"error":{"code":-32602,"message":"x"}})");
  auto v = judge_response(err, 5, true);
  EXPECT_EQ(v.outcome, Outcome::kJsonRpcError);
  EXPECT_NE(v.detail.find("-32602"), std::string::npos);
  auto tool = json_answer(200, R"({"jsonrpc":"2.0","id":5,"result":{"isError":true}})");
  EXPECT_EQ(judge_response(tool, 5, true).outcome, Outcome::kToolError);
  EXPECT_EQ(judge_response(tool, 5, false).outcome, Outcome::kOk);
  EXPECT_EQ(judge_response(json_answer(200, "{not json"), 5, true).outcome, Outcome::kBadAnswer);
  EXPECT_EQ(judge_response(json_answer(429, "{}"), 5, true).outcome, Outcome::kHttpStatus);
}

TEST(JudgeResponse, SseBodyWithNotificationsFirst) {
  auto a = sse_answer(
      "id: 1\ndata:\n\n"
      "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n"
      "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":9,\r\ndata: \"result\":{}}\r\n\r\n");
  EXPECT_EQ(judge_response(a, 9, true).outcome, Outcome::kOk);
  EXPECT_EQ(judge_response(a, 8, true).outcome, Outcome::kBadAnswer);
  // Cut before the blank line that ends the response's event: the client never got it.
  auto cut = sse_answer("data: {\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}\n");
  EXPECT_EQ(judge_response(cut, 9, true).outcome, Outcome::kBadAnswer);
}

TEST(JudgeResponse, InitializeKeepsTheVersion) {
  auto a =
      json_answer(200, R"({"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18"}})");
  auto v = judge_response(a, 1, false, true);
  EXPECT_EQ(v.outcome, Outcome::kOk);
  EXPECT_EQ(v.protocol_version, "2025-06-18");
  auto none = json_answer(200, R"({"jsonrpc":"2.0","id":1,"result":{}})");
  EXPECT_EQ(judge_response(none, 1, false, true).outcome, Outcome::kBadAnswer);
}

TEST(JudgeOthers, NotificationsAndDelete) {
  EXPECT_EQ(judge_accepted(json_answer(202, "")).outcome, Outcome::kOk);
  EXPECT_EQ(judge_accepted(json_answer(200, "")).outcome, Outcome::kHttpStatus);
  EXPECT_EQ(judge_deleted(json_answer(200, "")).outcome, Outcome::kOk);
  EXPECT_EQ(judge_deleted(json_answer(204, "")).outcome, Outcome::kOk);
  EXPECT_EQ(judge_deleted(json_answer(404, "")).outcome, Outcome::kHttpStatus);
}

BenchOptions options() {
  BenchOptions o;
  std::string error;
  o.endpoint = *parse_url("http://127.0.0.1:8080/mcp", error);
  o.tool = "echo";
  o.tool_args = R"({"text":"hi"})";
  o.headers = {"Authorization: Bearer t"};
  return o;
}

std::string body_of(const std::string& request) {
  return request.substr(request.find("\r\n\r\n") + 4);
}

TEST(McpRequests, PostsCarryTheSessionAndAnExactLength) {
  McpRequests r(options());
  std::string out;
  r.tools_call(out, "n1.abc", "2025-11-25", 42);
  EXPECT_TRUE(out.starts_with("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
  EXPECT_NE(out.find("Authorization: Bearer t\r\n"), std::string::npos);
  EXPECT_NE(out.find("Mcp-Session-Id: n1.abc\r\n"), std::string::npos);
  EXPECT_NE(out.find("MCP-Protocol-Version: 2025-11-25\r\n"), std::string::npos);
  EXPECT_NE(out.find("Accept: application/json, text/event-stream\r\n"), std::string::npos);
  std::string body = body_of(out);
  EXPECT_NE(out.find("Content-Length: " + std::to_string(body.size()) + "\r\n"), std::string::npos);
  auto v = boost::json::parse(body);
  EXPECT_EQ(v.at("id").as_int64(), 42);
  EXPECT_EQ(v.at("method").as_string(), "tools/call");
  EXPECT_EQ(v.at("params").at("name").as_string(), "echo");
  EXPECT_EQ(v.at("params").at("arguments").at("text").as_string(), "hi");
}

TEST(McpRequests, EveryMessageIsValidJsonRpc) {
  McpRequests r(options());
  std::string out;
  r.initialize(out, 1);
  EXPECT_EQ(out.find("Mcp-Session-Id"), std::string::npos);
  auto init = boost::json::parse(body_of(out));
  EXPECT_EQ(init.at("method").as_string(), "initialize");
  EXPECT_EQ(init.at("params").at("protocolVersion").as_string(), "2025-11-25");
  out.clear();
  r.initialized(out, "s", "v");
  EXPECT_FALSE(boost::json::parse(body_of(out)).as_object().contains("id"));
  out.clear();
  r.ping(out, "s", "v", 7);
  EXPECT_EQ(boost::json::parse(body_of(out)).at("method").as_string(), "ping");
  out.clear();
  r.notify(out, "s", "v");
  EXPECT_EQ(boost::json::parse(body_of(out)).at("method").as_string(),
            "notifications/roots/list_changed");
  out.clear();
  r.remove(out, "s", "v");
  EXPECT_TRUE(out.starts_with("DELETE /mcp HTTP/1.1\r\n"));
  out.clear();
  r.open_stream(out, "s", "v");
  EXPECT_TRUE(out.starts_with("GET /mcp HTTP/1.1\r\n"));
  EXPECT_NE(out.find("Accept: text/event-stream\r\n"), std::string::npos);
}

}  // namespace
}  // namespace mcpmesh::bench
