// The example in the file comment of mcp/app.hpp, compiled and exercised. The second test keeps
// the two copies identical.

#include "mcp/app.hpp"
#include "mcp/testing/session_harness.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace harness = mcpmesh::mcp::testing;

TEST(AppExample, HeaderExampleServesAdd) {
  // clang-format off
  // BEGIN app.hpp example
  using namespace mcpmesh::mcp;
  App app;
  app.add_tool(
      {.name = "add",
       .description = "Adds two numbers",
       .input_schema = object_schema({{"a", "number"}, {"b", "number"}}, {"a", "b"})},
      [](HandlerContext& ctx, json::object args) -> asio::awaitable<Result<ToolResult>> {
        double sum = args.at("a").to_number<double>() + args.at("b").to_number<double>();
        ctx.report_progress(1, 1);
        co_return ToolResult::structured({{"sum", json_number(sum)}});
      });
  // END app.hpp example
  // clang-format on

  harness::SessionHarness h(app);
  auto client = h.connect();
  client->initialize();

  auto listed = harness::result_of(client->call("tools/list"));
  ASSERT_EQ(listed.at("tools").as_array().size(), 1u);
  EXPECT_EQ(listed.at("tools").at(0).at("name"), "add");
  EXPECT_EQ(listed.at("tools").at(0).at("inputSchema").at("required"), (json::array{"a", "b"}));

  auto reply = client->start("tools/call", {{"name", "add"},
                                            {"arguments", {{"a", 2}, {"b", 3.5}}},
                                            {"_meta", {{"progressToken", "p"}}}});
  auto result = harness::result_of(client->wait_response(*reply));
  EXPECT_EQ(result.at("structuredContent").at("sum").to_number<double>(), 5.5);
  EXPECT_EQ(result.at("content").at(0).at("text"), R"({"sum":5.5E0})");
  ASSERT_EQ(reply->with_method("notifications/progress").size(), 1u);
  EXPECT_EQ(reply->with_method("notifications/progress")[0].at("params").at("progress"), 1);

  // Integral sums print as integers thanks to json_number.
  auto whole = harness::result_of(client->call_tool("add", {{"a", 2}, {"b", 3}}));
  EXPECT_EQ(json::serialize(whole.at("structuredContent")), R"({"sum":5})");

  // The schema is enforced before the handler runs.
  auto bad = harness::result_of(client->call_tool("add", {{"a", 2}}));
  EXPECT_EQ(bad.at("isError"), true);
}

std::vector<std::string> trimmed_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    auto first = line.find_first_not_of(" \t");
    if (first == std::string::npos) continue;
    auto last = line.find_last_not_of(" \t\r");
    out.push_back(line.substr(first, last - first + 1));
  }
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// The text between two marker lines (exclusive).
std::string between(const std::string& text, std::string_view begin, std::string_view end) {
  auto b = text.find(begin);
  auto e = text.find(end, b == std::string::npos ? 0 : b);
  if (b == std::string::npos || e == std::string::npos) return {};
  b = text.find('\n', b) + 1;
  e = text.rfind('\n', e);
  return text.substr(b, e - b);
}

TEST(AppExample, HeaderCommentMatchesThisTest) {
  const std::string root = MCPMESH_SOURCE_DIR;
  auto header = between(read_file(root + "/mcp/app.hpp"), "/// \\code", "/// \\endcode");
  std::string example_from_header;
  for (auto& line : trimmed_lines(header)) {
    ASSERT_EQ(line.rfind("///", 0), 0u) << line;
    example_from_header += line.substr(3) + "\n";
  }
  auto self = read_file(root + "/mcp/app_example_test.cpp");
  auto example_here = between(self,
                              "// BEGIN app.hpp "
                              "example",
                              "// END app.hpp "
                              "example");
  auto a = trimmed_lines(example_from_header);
  auto b = trimmed_lines(example_here);
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a, b) << "mcp/app.hpp's example and app_example_test.cpp drifted apart";
}

}  // namespace
