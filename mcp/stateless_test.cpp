#include "mcp/stateless.hpp"

#include <gtest/gtest.h>

namespace mcpmesh::mcp {
namespace {

json::object meta(std::string_view version = "2026-07-28") {
  return {{kMetaProtocolVersion, version},
          {kMetaClientCapabilities, json::object()},
          {kMetaClientInfo, {{"name", "test"}, {"version", "1"}}}};
}

Message request(std::string method, json::object params) {
  Message m;
  m.id = 7;
  m.method = std::move(method);
  m.params = std::move(params);
  return m;
}

MirroredHeaders headers(std::string_view method, std::optional<std::string_view> name = {},
                        std::string_view version = "2026-07-28") {
  MirroredHeaders h;
  h.present = true;
  h.protocol_version = version;
  h.method = method;
  h.name = name;
  return h;
}

class StatelessCheck : public ::testing::Test {
 protected:
  StatelessCheck() {
    app_.add_tool({.name = "echo", .input_schema = {{"type", "object"}}},
                  [](HandlerContext&, json::object) -> asio::awaitable<Result<ToolResult>> {
                    co_return ToolResult::text("");
                  });
    app_.add_tool(
        {.name = "sql",
         .input_schema = {{"type", "object"},
                          {"properties",
                           {{"region", {{"type", "string"}, {"x-mcp-header", "Region"}}},
                            {"limit", {{"type", "integer"}, {"x-mcp-header", "Limit"}}},
                            {"opts",
                             {{"type", "object"},
                              {"properties",
                               {{"dry", {{"type", "boolean"}, {"x-mcp-header", "Dry"}}}}}}}}}}},
        [](HandlerContext&, json::object) -> asio::awaitable<Result<ToolResult>> {
          co_return ToolResult::text("");
        });
  }
  std::optional<Rejection> check(const Message& m, const MirroredHeaders& h) {
    return check_stateless_request(m, h, *app_.catalog());
  }
  App app_;
};

TEST_F(StatelessCheck, AValidRequestPasses) {
  EXPECT_FALSE(check(request("tools/list", {{"_meta", meta()}}), headers("tools/list")));
  EXPECT_FALSE(check(request("tools/call", {{"name", "echo"}, {"_meta", meta()}}),
                     headers("tools/call", "echo")));
}

TEST_F(StatelessCheck, MetaMustCarryVersionAndCapabilities) {
  for (auto* drop : {"_meta", kMetaProtocolVersion.data(), kMetaClientCapabilities.data()}) {
    json::object params{{"_meta", meta()}};
    if (std::string_view(drop) == "_meta") {
      params.erase("_meta");
    } else {
      params["_meta"].as_object().erase(drop);
    }
    auto r = check(request("tools/list", params), headers("tools/list"));
    ASSERT_TRUE(r) << drop;
    EXPECT_EQ(r->error.code, static_cast<int>(ErrorCode::kInvalidParams));
    EXPECT_EQ(r->http_status, 400u);
  }
  // clientInfo is optional, but when given it is an Implementation.
  auto without_info = meta();
  without_info.erase(kMetaClientInfo);
  EXPECT_FALSE(check(request("tools/list", {{"_meta", without_info}}), headers("tools/list")));
  auto bad_info = meta();
  bad_info[kMetaClientInfo] = "me";
  EXPECT_TRUE(check(request("tools/list", {{"_meta", bad_info}}), headers("tools/list")));
  auto bad_level = meta();
  bad_level[kMetaLogLevel] = "verbose";
  EXPECT_TRUE(check(request("tools/list", {{"_meta", bad_level}}), headers("tools/list")));
}

TEST_F(StatelessCheck, VersionHeaderMustBeThereAndMatch) {
  auto none = headers("tools/list");
  none.protocol_version.reset();
  auto r = check(request("tools/list", {{"_meta", meta()}}), none);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->error.code, static_cast<int>(ErrorCode::kHeaderMismatch));
  r = check(request("tools/list", {{"_meta", meta("v999")}}), headers("tools/list"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->error.code, static_cast<int>(ErrorCode::kHeaderMismatch));
}

TEST_F(StatelessCheck, UnknownVersionListsTheSupportedOnes) {
  auto r =
      check(request("tools/list", {{"_meta", meta("v999")}}), headers("tools/list", {}, "v999"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->error.code, static_cast<int>(ErrorCode::kUnsupportedProtocolVersion));
  EXPECT_EQ(r->http_status, 400u);
  EXPECT_EQ(r->error.data.at("requested"), "v999");
  EXPECT_EQ(r->error.data.at("supported").as_array().front(), "2026-07-28");
}

TEST_F(StatelessCheck, MethodAndNameHeadersMustMatchTheBody) {
  auto m = request("tools/call", {{"name", "echo"}, {"_meta", meta()}});
  EXPECT_TRUE(check(m, headers("prompts/list", "echo")));
  EXPECT_TRUE(check(m, headers("TOOLS/CALL", "echo")));  // values are case-sensitive
  EXPECT_TRUE(check(m, headers("tools/call")));          // Mcp-Name missing
  EXPECT_TRUE(check(m, headers("tools/call", "other")));
  EXPECT_FALSE(check(m, headers("tools/call", "  echo\t")));  // surrounding space is not value
  EXPECT_FALSE(check(m, headers("tools/call", "=?base64?ZWNobw==?=")));
  auto no_method = headers("tools/call", "echo");
  no_method.method.reset();
  EXPECT_TRUE(check(m, no_method));
  auto read = request("resources/read", {{"uri", "test://a b"}, {"_meta", meta()}});
  EXPECT_FALSE(check(read, headers("resources/read", "=?base64?dGVzdDovL2EgYg==?=")));
}

TEST_F(StatelessCheck, MirroredParametersMustMatch) {
  auto call = [](json::object args) {
    return request("tools/call",
                   {{"name", "sql"}, {"arguments", std::move(args)}, {"_meta", meta()}});
  };
  auto with = [](std::vector<std::pair<std::string_view, std::string_view>> params) {
    auto h = headers("tools/call", "sql");
    h.params = std::move(params);
    return h;
  };
  EXPECT_FALSE(check(call({{"region", "eu"}}), with({{"region", "eu"}})));  // name: any case
  EXPECT_TRUE(check(call({{"region", "eu"}}), with({})));                   // omitted
  EXPECT_TRUE(check(call({{"region", "eu"}}), with({{"Region", "us"}})));
  EXPECT_FALSE(check(call({{"region", nullptr}}), with({})));  // null: no header expected
  EXPECT_FALSE(check(call({{"limit", 42}}), with({{"Limit", "42.0"}})));  // numerically equal
  EXPECT_FALSE(check(call({{"opts", {{"dry", true}}}}), with({{"Dry", "true"}})));
  EXPECT_TRUE(check(call({{"opts", {{"dry", true}}}}), with({{"Dry", "false"}})));
  EXPECT_FALSE(check(call({{"region", "Hello"}}), with({{"Region", "=?base64?SGVsbG8=?="}})));
  EXPECT_TRUE(check(call({{"region", "Hello"}}), with({{"Region", "=?base64?SGVsbG8?="}})));
  EXPECT_TRUE(check(call({{"region", "Hello"}}), with({{"Region", "=?base64?SGVs!!!bG8=?="}})));
  // Without the closing marker it is a literal value.
  EXPECT_FALSE(
      check(call({{"region", "=?base64?SGVsbG8="}}), with({{"Region", "=?base64?SGVsbG8="}})));
}

TEST(StatelessRequest, ChosenByVersionHeaderOrMeta) {
  auto m = request("tools/list", {{"_meta", meta()}});
  EXPECT_TRUE(is_stateless_request(m, headers("tools/list")));
  EXPECT_FALSE(is_stateless_request(m, headers("tools/list", {}, "2025-11-25")));
  EXPECT_TRUE(is_stateless_request(m, headers("tools/list", {}, "v999")));
  EXPECT_TRUE(is_stateless_request(m, MirroredHeaders{}));
  EXPECT_FALSE(is_stateless_request(request("tools/list", {}), MirroredHeaders{}));
}

TEST(StatelessRequest, HttpStatusFollowsTheError) {
  auto status = [](ErrorCode code) {
    return stateless_http_status(make_error(1, RpcError(code, "x")));
  };
  EXPECT_EQ(status(ErrorCode::kMethodNotFound), 404u);
  EXPECT_EQ(status(ErrorCode::kMissingClientCapability), 400u);
  EXPECT_EQ(status(ErrorCode::kInvalidParams), 200u);
  EXPECT_EQ(stateless_http_status(make_result(1, json::object{{"error", 1}})), 200u);
}

}  // namespace
}  // namespace mcpmesh::mcp
