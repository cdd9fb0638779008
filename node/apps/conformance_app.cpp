// The fixture the official MCP conformance suite (@modelcontextprotocol/conformance, server
// scenarios) calls: names, texts and payloads are the ones its checks look for.

#include "node/apps/apps.hpp"

#include <boost/asio/steady_timer.hpp>

namespace mcpmesh::node {

using namespace mcp;

namespace {

// A 1x1 red PNG and a minimal WAV file, base64.
constexpr std::string_view kImage =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg"
    "==";
constexpr std::string_view kAudio = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";
constexpr std::chrono::seconds kClientDeadline{60};

json::object no_args() { return {{"type", "object"}, {"properties", json::object{}}}; }

asio::awaitable<void> sleep_for(HandlerContext& ctx, std::chrono::milliseconds d) {
  asio::steady_timer t(ctx.executor(), d);
  co_await t.async_wait(asio::use_awaitable);
}

using ToolCo = asio::awaitable<Result<ToolResult>>;

/// Sends an elicitation/create form request and reports what the client answered.
ToolCo elicit(HandlerContext& ctx, json::object params, std::string_view prefix) {
  auto r = co_await ctx.request_client("elicitation/create", std::move(params), kClientDeadline);
  if (!r) co_return ToolResult::error("elicitation failed: " + r.error().message);
  std::string action = r->contains("action") && r->at("action").is_string()
                           ? std::string(r->at("action").get_string())
                           : std::string();
  std::string content = r->contains("content") ? json::serialize(r->at("content")) : "{}";
  co_return ToolResult::text(std::string(prefix) + "action=" + action + ", content=" + content);
}

void add_tools(App& app) {
  app.add_tool({.name = "test_simple_text",
                .description = "Tests simple text content response",
                .input_schema = no_args()},
               [](HandlerContext&, json::object) -> ToolCo {
                 co_return ToolResult::text("This is a simple text response for testing.");
               });
  app.add_tool({.name = "test_image_content",
                .description = "Tests image content response",
                .input_schema = no_args()},
               [](HandlerContext&, json::object) -> ToolCo {
                 ToolResult r;
                 r.add_image(std::string(kImage), "image/png");
                 co_return r;
               });
  app.add_tool({.name = "test_audio_content",
                .description = "Tests audio content response",
                .input_schema = no_args()},
               [](HandlerContext&, json::object) -> ToolCo {
                 ToolResult r;
                 r.add_audio(std::string(kAudio), "audio/wav");
                 co_return r;
               });
  app.add_tool({.name = "test_embedded_resource",
                .description = "Tests embedded resource content response",
                .input_schema = no_args()},
               [](HandlerContext&, json::object) -> ToolCo {
                 ToolResult r;
                 r.add_embedded_text("test://embedded-resource",
                                     "This is an embedded resource content.", "text/plain");
                 co_return r;
               });
  app.add_tool({.name = "test_multiple_content_types",
                .description = "Tests response with multiple content types (text, image, resource)",
                .input_schema = no_args()},
               [](HandlerContext&, json::object) -> ToolCo {
                 ToolResult r = ToolResult::text("Multiple content types test:");
                 r.add_image(std::string(kImage), "image/png");
                 r.add_embedded_text("test://mixed-content-resource",
                                     R"({"test":"data","value":123})", "application/json");
                 co_return r;
               });
  app.add_tool({.name = "test_tool_with_logging",
                .description = "Tests tool that emits log messages during execution",
                .input_schema = no_args()},
               [](HandlerContext& ctx, json::object) -> ToolCo {
                 ctx.log(LogLevel::kInfo, "Tool execution started", "conformance-test-server");
                 co_await sleep_for(ctx, std::chrono::milliseconds(50));
                 ctx.log(LogLevel::kInfo, "Tool processing data", "conformance-test-server");
                 co_await sleep_for(ctx, std::chrono::milliseconds(50));
                 ctx.log(LogLevel::kInfo, "Tool execution completed", "conformance-test-server");
                 co_return ToolResult::text("Tool with logging executed successfully");
               });
  app.add_tool({.name = "test_tool_with_progress",
                .description = "Tests tool that reports progress notifications",
                .input_schema = no_args()},
               [](HandlerContext& ctx, json::object) -> ToolCo {
                 for (int step : {0, 50, 100}) {
                   ctx.report_progress(step, 100,
                                       "Completed step " + std::to_string(step) + " of 100");
                   if (step != 100) co_await sleep_for(ctx, std::chrono::milliseconds(50));
                 }
                 std::string token;
                 if (auto* pt = ctx.request().meta.if_contains("progressToken")) {
                   token = pt->is_string() ? std::string(pt->get_string()) : json::serialize(*pt);
                 }
                 co_return ToolResult::text(token.empty() ? "no progress token" : token);
               });
  app.add_tool(
      {.name = "test_error_handling",
       .description = "Tests error response handling",
       .input_schema = no_args()},
      [](HandlerContext&, json::object) -> ToolCo {
        co_return ToolResult::error("This tool intentionally returns an error for testing");
      });
  app.add_tool(
      {.name = "test_reconnection",
       .description = "Tests SSE stream disconnection and client reconnection (SEP-1699). Server "
                      "will close the stream mid-call and send the result after client "
                      "reconnects.",
       .input_schema = no_args()},
      [](HandlerContext& ctx, json::object) -> ToolCo {
        ctx.close_stream();
        co_await sleep_for(ctx, std::chrono::milliseconds(100));
        co_return ToolResult::text(
            "Reconnection test completed successfully. If you received this, the client "
            "properly reconnected after stream closure.");
      });
  app.add_tool(
      {.name = "test_sampling",
       .description = "Tests server-initiated sampling (LLM completion request)",
       .input_schema =
           {{"type", "object"},
            {"properties",
             {{"prompt", {{"type", "string"}, {"description", "The prompt to send to the LLM"}}}}},
            {"required", {"prompt"}}}},
      [](HandlerContext& ctx, json::object args) -> ToolCo {
        auto text = co_await sample_text(ctx, args.at("prompt").get_string(), 100, kClientDeadline);
        if (!text) co_return ToolResult::error("sampling failed: " + text.error().message);
        co_return ToolResult::text("LLM response: " + *text);
      });
  app.add_tool(
      {.name = "test_elicitation",
       .description = "Tests server-initiated elicitation (user input request)",
       .input_schema = {{"type", "object"},
                        {"properties",
                         {{"message",
                           {{"type", "string"}, {"description", "The message to show the user"}}}}},
                        {"required", {"message"}}}},
      [](HandlerContext& ctx, json::object args) -> ToolCo {
        json::object schema{
            {"type", "object"},
            {"properties",
             {{"username", {{"type", "string"}, {"description", "User's response"}}},
              {"email", {{"type", "string"}, {"description", "User's email address"}}}}},
            {"required", {"username", "email"}}};
        json::object params{{"mode", "form"},
                            {"message", args.at("message")},
                            {"requestedSchema", std::move(schema)}};
        co_return co_await elicit(ctx, std::move(params), "User response: ");
      });
  app.add_tool(
      {.name = "test_elicitation_sep1034_defaults",
       .description = "Tests elicitation with default values per SEP-1034",
       .input_schema = no_args()},
      [](HandlerContext& ctx, json::object) -> ToolCo {
        json::object props{
            {"name", {{"type", "string"}, {"description", "User name"}, {"default", "John Doe"}}},
            {"age", {{"type", "integer"}, {"description", "User age"}, {"default", 30}}},
            {"score", {{"type", "number"}, {"description", "User score"}, {"default", 95.5}}},
            {"status",
             {{"type", "string"},
              {"description", "User status"},
              {"enum", {"active", "inactive", "pending"}},
              {"default", "active"}}},
            {"verified",
             {{"type", "boolean"}, {"description", "Verification status"}, {"default", true}}}};
        // (Built before the co_await: GCC 12 mis-compiles braced temporaries inside it.)
        json::object params{
            {"mode", "form"},
            {"message", "Please review and update the form fields with defaults"},
            {"requestedSchema",
             {{"type", "object"}, {"properties", std::move(props)}, {"required", json::array{}}}}};
        co_return co_await elicit(ctx, std::move(params), "Elicitation completed: ");
      });
  app.add_tool(
      {.name = "test_elicitation_sep1330_enums",
       .description = "Tests elicitation with enum schema improvements per SEP-1330",
       .input_schema = no_args()},
      [](HandlerContext& ctx, json::object) -> ToolCo {
        auto titled = [](std::initializer_list<std::pair<const char*, const char*>> items) {
          json::array out;
          for (auto& [c, t] : items) out.push_back(json::object{{"const", c}, {"title", t}});
          return out;
        };
        json::object props{
            {"untitledSingle",
             {{"type", "string"},
              {"description", "Select one option"},
              {"enum", {"option1", "option2", "option3"}}}},
            {"titledSingle",
             {{"type", "string"},
              {"description", "Select one option with titles"},
              {"oneOf", titled({{"value1", "First Option"},
                                {"value2", "Second Option"},
                                {"value3", "Third Option"}})}}},
            {"legacyEnum",
             {{"type", "string"},
              {"description", "Select one option (legacy)"},
              {"enum", {"opt1", "opt2", "opt3"}},
              {"enumNames", {"Option One", "Option Two", "Option Three"}}}},
            {"untitledMulti",
             {{"type", "array"},
              {"description", "Select multiple options"},
              {"minItems", 1},
              {"maxItems", 3},
              {"items", {{"type", "string"}, {"enum", {"option1", "option2", "option3"}}}}}},
            {"titledMulti",
             {{"type", "array"},
              {"description", "Select multiple options with titles"},
              {"minItems", 1},
              {"maxItems", 3},
              {"items",
               {{"anyOf", titled({{"value1", "First Choice"},
                                  {"value2", "Second Choice"},
                                  {"value3", "Third Choice"}})}}}}}};
        json::object params{
            {"mode", "form"},
            {"message", "Please select options from the enum fields"},
            {"requestedSchema",
             {{"type", "object"}, {"properties", std::move(props)}, {"required", json::array{}}}}};
        co_return co_await elicit(ctx, std::move(params), "Elicitation completed: ");
      });
  app.add_tool(
      {.name = "json_schema_2020_12_tool",
       .description = "Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)",
       .input_schema = json::parse(
                           R"({"$schema":"https://json-schema.org/draft/2020-12/schema",
                               "type":"object",
                               "$defs":{"address":{"type":"object","properties":{
                                 "street":{"type":"string"},"city":{"type":"string"}}}},
                               "properties":{"name":{"type":"string"},
                                             "address":{"$ref":"#/$defs/address"}},
                               "additionalProperties":false})")
                           .as_object()},
      [](HandlerContext&, json::object args) -> ToolCo {
        co_return ToolResult::text("JSON Schema 2020-12 tool called with: " +
                                   json::serialize(args));
      });
}

using ReadCo = asio::awaitable<Result<std::vector<ResourceContents>>>;

void add_resources(App& app) {
  app.add_resource(
      {.uri = "test://static-text",
       .name = "static-text",
       .title = "Static Text Resource",
       .description = "A static text resource for testing",
       .mime_type = "text/plain"},
      [](HandlerContext&, std::string uri) -> ReadCo {
        co_return std::vector<ResourceContents>{
            {uri, "text/plain", "This is the content of the static text resource.", std::nullopt}};
      });
  app.add_resource({.uri = "test://static-binary",
                    .name = "static-binary",
                    .title = "Static Binary Resource",
                    .description = "A static binary resource (image) for testing",
                    .mime_type = "image/png"},
                   [](HandlerContext&, std::string uri) -> ReadCo {
                     co_return std::vector<ResourceContents>{
                         {uri, "image/png", std::nullopt, std::string(kImage)}};
                   });
  app.add_resource({.uri = "test://watched-resource",
                    .name = "watched-resource",
                    .title = "Watched Resource",
                    .description = "A resource that subscribers are told about when it changes",
                    .mime_type = "text/plain"},
                   [](HandlerContext&, std::string uri) -> ReadCo {
                     co_return std::vector<ResourceContents>{
                         {uri, "text/plain", "Watched resource content", std::nullopt}};
                   });
  app.add_resource_template(
      {.uri_template = "test://template/{id}/data",
       .name = "template",
       .title = "Resource Template",
       .description = "A resource template with parameter substitution",
       .mime_type = "application/json"},
      [](HandlerContext&, std::string uri, std::map<std::string, std::string> vars) -> ReadCo {
        json::object body{
            {"id", vars["id"]}, {"templateTest", true}, {"data", "Data for ID: " + vars["id"]}};
        co_return std::vector<ResourceContents>{
            {uri, "application/json", json::serialize(body), std::nullopt}};
      });
}

using PromptCo = asio::awaitable<Result<PromptResult>>;

void add_prompts(App& app) {
  app.add_prompt({.name = "test_simple_prompt",
                  .title = "Simple Test Prompt",
                  .description = "A simple prompt without arguments"},
                 [](HandlerContext&, std::map<std::string, std::string>) -> PromptCo {
                   PromptResult r;
                   r.add_text("user", "This is a simple prompt for testing.");
                   co_return r;
                 });
  app.add_prompt(
      {.name = "test_prompt_with_arguments",
       .title = "Prompt With Arguments",
       .description = "A prompt with required arguments",
       .arguments = {{.name = "arg1", .description = "First test argument", .required = true},
                     {.name = "arg2", .description = "Second test argument", .required = true}}},
      [](HandlerContext&, std::map<std::string, std::string> a) -> PromptCo {
        PromptResult r;
        r.add_text("user",
                   "Prompt with arguments: arg1='" + a["arg1"] + "', arg2='" + a["arg2"] + "'");
        co_return r;
      });
  app.add_prompt({.name = "test_prompt_with_embedded_resource",
                  .title = "Prompt With Embedded Resource",
                  .description = "A prompt that includes an embedded resource",
                  .arguments = {{.name = "resourceUri",
                                 .description = "URI of the resource to embed",
                                 .required = true}}},
                 [](HandlerContext&, std::map<std::string, std::string> a) -> PromptCo {
                   PromptResult r;
                   r.add_content("user", {{"type", "resource"},
                                          {"resource",
                                           {{"uri", a["resourceUri"]},
                                            {"mimeType", "text/plain"},
                                            {"text", "Embedded resource content for testing."}}}});
                   r.add_text("user", "Please process the embedded resource above.");
                   co_return r;
                 });
  app.add_prompt(
      {.name = "test_prompt_with_image",
       .title = "Prompt With Image",
       .description = "A prompt that includes image content"},
      [](HandlerContext&, std::map<std::string, std::string>) -> PromptCo {
        PromptResult r;
        r.add_content("user", {{"type", "image"}, {"data", kImage}, {"mimeType", "image/png"}});
        r.add_text("user", "Please analyze the image above.");
        co_return r;
      });
  app.add_completion(
      "ref/prompt", "test_prompt_with_arguments",
      [](HandlerContext&, const CompletionRequest& req) -> asio::awaitable<Result<Completion>> {
        Completion c;
        for (std::string v : {"test", "testValue1", "testValue2"}) {
          if (v.rfind(req.value, 0) == 0) c.values.push_back(v);
        }
        co_return c;
      });
}

}  // namespace

std::shared_ptr<void> install_conformance_app(App& app) {
  add_tools(app);
  add_resources(app);
  add_prompts(app);
  return nullptr;
}

}  // namespace mcpmesh::node
