// The fixture the official MCP conformance suite (@modelcontextprotocol/conformance, server
// scenarios) calls: names, texts and payloads are the ones its checks look for.

#include "node/apps/apps.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>

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
                               "$defs":{"address":{"$anchor":"addressDef","type":"object",
                                 "properties":{"street":{"type":"string"},
                                               "city":{"type":"string"}}}},
                               "properties":{"name":{"type":"string"},
                                             "address":{"$ref":"#/$defs/address"},
                                             "contactMethod":{"type":"string",
                                                              "enum":["phone","email"]},
                                             "phone":{"type":"string"},
                                             "email":{"type":"string"}},
                               "allOf":[{"anyOf":[{"required":["phone"]},
                                                  {"required":["email"]}]}],
                               "if":{"properties":{"contactMethod":{"const":"phone"}},
                                     "required":["contactMethod"]},
                               "then":{"required":["phone"]},
                               "else":{"required":["email"]},
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

/// The text of an input answer's `key`.
std::string answer_text(const InputResponses& answers, std::string_view key) {
  auto it = answers.find(key);
  return it == answers.end() ? std::string() : json::serialize(it->second);
}

json::object elicit_params(std::string_view message, std::string_view field,
                           std::string_view type = "string") {
  return {
      {"message", message},
      {"requestedSchema",
       {{"type", "object"}, {"properties", {{field, {{"type", type}}}}}, {"required", {field}}}}};
}

json::object sampling_params(std::string_view text, std::int64_t max_tokens) {
  return {{"messages", json::array{json::object{{"role", "user"},
                                                {"content", {{"type", "text"}, {"text", text}}}}}},
          {"maxTokens", max_tokens}};
}

/// The fixtures of the 2026-07-28 scenarios: multi round-trip input (each asks through
/// HandlerContext::ask, so each also works in the session era, as server-to-client requests),
/// capability checks, mirrored headers, logging without a level, list changes for listen streams.
void add_stateless_fixtures(App& app) {
  auto asking_tool = [&app](std::string name, std::string description,
                            std::vector<InputRequest> inputs, std::string done) {
    app.add_tool(
        {.name = std::move(name), .description = std::move(description), .input_schema = no_args()},
        [inputs, done](HandlerContext& ctx, json::object) -> ToolCo {
          auto answers = co_await ctx.ask(inputs, kClientDeadline);
          if (!answers) co_return answers.error();
          std::string text = done;
          for (auto& [key, value] : *answers) text += " " + key + "=" + json::serialize(value);
          co_return ToolResult::text(text);
        });
  };
  asking_tool("test_input_required_result_elicitation", "Asks the user's name (elicitation)",
              {{"user_name", "elicitation/create", elicit_params("What is your name?", "name")}},
              "Hello!");
  asking_tool("test_input_required_result_sampling", "Asks the client's model a question",
              {{"capital_question", "sampling/createMessage",
                sampling_params("What is the capital of France?", 100)}},
              "Sampling answered:");
  asking_tool("test_input_required_result_list_roots", "Asks the client for its roots",
              {{"client_roots", "roots/list", {}}}, "Roots:");
  asking_tool("test_input_required_result_multiple_inputs",
              "Asks for a name, a greeting and the roots in one round",
              {{"user_name", "elicitation/create", elicit_params("What is your name?", "name")},
               {"greeting", "sampling/createMessage", sampling_params("Generate a greeting", 50)},
               {"client_roots", "roots/list", {}}},
              "All inputs received:");
  for (auto name :
       {"test_input_required_result_request_state", "test_input_required_result_tampered_state"}) {
    app.add_tool(
        {.name = name,
         .description = "Asks for a confirmation; the retry's requestState is verified",
         .input_schema = no_args()},
        [](HandlerContext& ctx, json::object) -> ToolCo {
          std::vector<InputRequest> inputs{
              {"confirm", "elicitation/create", elicit_params("Please confirm", "ok", "boolean")}};
          auto answers = co_await ctx.ask(std::move(inputs), kClientDeadline);
          if (!answers) co_return answers.error();
          // Round 1 or later: the requestState of the round before opened and verified.
          co_return ToolResult::text(ctx.input_round() > 0 ? "state-ok: confirmed"
                                                           : "confirmed without state");
        });
  }
  app.add_tool(
      {.name = "test_input_required_result_multi_round",
       .description = "Asks for a name, then for a colour, one round each",
       .input_schema = no_args()},
      [](HandlerContext& ctx, json::object) -> ToolCo {
        std::vector<InputRequest> first{
            {"step1", "elicitation/create", elicit_params("Step 1: What is your name?", "name")}};
        auto name = co_await ctx.ask(std::move(first), kClientDeadline);
        if (!name) co_return name.error();
        std::vector<InputRequest> second{
            {"step2", "elicitation/create",
             elicit_params("Step 2: What is your favorite color?", "color")}};
        auto color = co_await ctx.ask(std::move(second), kClientDeadline);
        if (!color) co_return color.error();
        co_return ToolResult::text("Done: " + answer_text(*name, "step1") + " " +
                                   answer_text(*color, "step2"));
      });
  app.add_tool({.name = "test_input_required_result_capabilities",
                .description = "Asks only for the inputs the client declared it can give",
                .input_schema = no_args()},
               [](HandlerContext& ctx, json::object) -> ToolCo {
                 const auto& caps =
                     ctx.request().client ? ctx.request().client->capabilities : json::object();
                 std::vector<InputRequest> inputs;
                 if (caps.contains("elicitation")) {
                   inputs.push_back({"user_name", "elicitation/create",
                                     elicit_params("What is your name?", "name")});
                 }
                 if (caps.contains("sampling")) {
                   inputs.push_back({"greeting", "sampling/createMessage",
                                     sampling_params("Generate a greeting", 50)});
                 }
                 if (caps.contains("roots")) inputs.push_back({"client_roots", "roots/list", {}});
                 if (inputs.empty()) co_return ToolResult::text("the client declared no input");
                 auto answers = co_await ctx.ask(std::move(inputs), kClientDeadline);
                 if (!answers) co_return answers.error();
                 co_return ToolResult::text("inputs received: " + std::to_string(answers->size()));
               });
  app.add_tool({.name = "test_missing_capability",
                .description = "Needs the sampling capability: refused when it is not declared",
                .input_schema = no_args()},
               [](HandlerContext& ctx, json::object) -> ToolCo {
                 auto text = co_await sample_text(ctx, "Say hello", 20, kClientDeadline);
                 if (!text) co_return text.error();
                 co_return ToolResult::text("sampled: " + *text);
               });
  app.add_tool({.name = "test_streaming_elicitation",
                .description = "Reports progress, then asks the user for input",
                .input_schema = no_args()},
               [](HandlerContext& ctx, json::object) -> ToolCo {
                 ctx.report_progress(0, 1, "asking");
                 std::vector<InputRequest> inputs{
                     {"user_input", "elicitation/create", elicit_params("Say something", "text")}};
                 auto answers = co_await ctx.ask(std::move(inputs), kClientDeadline);
                 if (!answers) co_return answers.error();
                 co_return ToolResult::text("received " + answer_text(*answers, "user_input"));
               });
  app.add_tool({.name = "test_logging_tool",
                .description = "Logs three messages (sent only to a request that set a level)",
                .input_schema = no_args()},
               [](HandlerContext& ctx, json::object) -> ToolCo {
                 for (auto text : {"Tool execution started", "Tool processing data",
                                   "Tool execution completed"}) {
                   ctx.log(LogLevel::kInfo, text, "conformance-test-server");
                   co_await sleep_for(ctx, std::chrono::milliseconds(20));
                 }
                 co_return ToolResult::text("Tool with logging executed successfully");
               });
  // Each call adds or removes a tool / a prompt, so the list changes (list_changed).
  app.add_tool({.name = "test_trigger_tool_change",
                .description = "Changes the tool list (adds or removes test_dynamic_tool)",
                .input_schema = no_args()},
               [](HandlerContext& ctx, json::object) -> ToolCo {
                 auto& app = ctx.app();
                 if (!app.remove_tool("test_dynamic_tool")) {
                   app.add_tool(
                       {.name = "test_dynamic_tool",
                        .description = "Appears and disappears with test_trigger_tool_change",
                        .input_schema = no_args()},
                       [](HandlerContext&, json::object) -> ToolCo {
                         co_return ToolResult::text("dynamic");
                       });
                 }
                 co_return ToolResult::text("tool list changed");
               });
  app.add_tool({.name = "test_trigger_prompt_change",
                .description = "Changes the prompt list (adds or removes test_dynamic_prompt)",
                .input_schema = no_args()},
               [](HandlerContext& ctx, json::object) -> ToolCo {
                 auto& app = ctx.app();
                 if (!app.remove_prompt("test_dynamic_prompt")) {
                   app.add_prompt({.name = "test_dynamic_prompt",
                                   .description = "Appears and disappears with "
                                                  "test_trigger_prompt_change"},
                                  [](HandlerContext&, std::map<std::string, std::string>)
                                      -> asio::awaitable<Result<PromptResult>> {
                                    PromptResult r;
                                    r.add_text("user", "dynamic");
                                    co_return r;
                                  });
                 }
                 co_return ToolResult::text("prompt list changed");
               });
  // A tool whose argument is mirrored into a header (x-mcp-header).
  app.add_tool(
      {.name = "test_mirrored_header",
       .description = "Echoes its region argument, which clients mirror into Mcp-Param-Region",
       .input_schema =
           {{"type", "object"},
            {"properties",
             {{"region",
               {{"type", "string"}, {"description", "Where to run"}, {"x-mcp-header", "Region"}}},
              {"query", {{"type", "string"}}}}},
            {"required", {"region"}}}},
      [](HandlerContext&, json::object args) -> ToolCo {
        co_return ToolResult::text("region=" + std::string(args.at("region").get_string()));
      });
  app.add_prompt({.name = "test_input_required_result_prompt",
                  .description = "A prompt that asks the user for its context first"},
                 [](HandlerContext& ctx,
                    std::map<std::string, std::string>) -> asio::awaitable<Result<PromptResult>> {
                   std::vector<InputRequest> inputs{
                       {"user_context", "elicitation/create",
                        elicit_params("What context should the prompt use?", "context")}};
                   auto answers = co_await ctx.ask(std::move(inputs), kClientDeadline);
                   if (!answers) co_return answers.error();
                   PromptResult r;
                   r.description = "A prompt built from the user's context";
                   r.add_text("user", "Context: " + answer_text(*answers, "user_context"));
                   co_return r;
                 });
}

/// The fixtures of the tasks extension's scenarios (SEP-2663).
void add_task_fixtures(App& app) {
  app.add_tool(
      {.name = "greet",
       .description = "Greets by name (never a task)",
       .input_schema = object_schema({{"name", "string"}}, {"name"})},
      [](HandlerContext&, json::object args) -> Result<ToolResult> {
        return ToolResult::text("Hello, " + std::string(args.at("name").get_string()) + "!");
      });
  app.add_tool({.name = "slow_compute",
                .description = "Works for `seconds` seconds, then answers; a task when it can be",
                .input_schema = object_schema({{"seconds", "number"}}),
                .task_support = TaskSupport::kOptional},
               [](HandlerContext& ctx, json::object args) -> ToolCo {
                 double seconds = 1;
                 if (auto* s = args.if_contains("seconds"); s && s->is_number()) {
                   seconds = std::clamp(s->to_number<double>(), 0.0, 600.0);
                 }
                 asio::steady_timer t(ctx.executor(),
                                      std::chrono::milliseconds(static_cast<long>(seconds * 1000)));
                 boost::system::error_code ec;
                 co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
                 if (ctx.is_cancelled()) co_return ToolResult::error("cancelled");
                 co_return ToolResult::text("computed after " + std::to_string(seconds) + " s");
               });
  app.add_tool(
      {.name = "confirm_delete",
       .description = "Asks the user to confirm, then deletes (a task)",
       .input_schema = object_schema({{"filename", "string"}}),
       .task_support = TaskSupport::kOptional},
      [](HandlerContext& ctx, json::object args) -> ToolCo {
        std::string file = args.contains("filename") && args.at("filename").is_string()
                               ? std::string(args.at("filename").get_string())
                               : "the file";
        std::vector<InputRequest> inputs{
            {"confirm", "elicitation/create",
             elicit_params("Delete " + file + "?", "confirm", "boolean")}};
        auto answers = co_await ctx.ask(std::move(inputs), kClientDeadline);
        if (!answers) co_return answers.error();
        co_return ToolResult::text("deleted " + file + ": " + answer_text(*answers, "confirm"));
      });
  app.add_tool({.name = "multi_input",
                .description = "Asks two questions at once (a task)",
                .input_schema = no_args(),
                .task_support = TaskSupport::kOptional},
               [](HandlerContext& ctx, json::object) -> ToolCo {
                 std::vector<InputRequest> inputs{
                     {"first", "elicitation/create", elicit_params("First question", "answer")},
                     {"second", "elicitation/create", elicit_params("Second question", "answer")}};
                 auto answers = co_await ctx.ask(std::move(inputs), kClientDeadline);
                 if (!answers) co_return answers.error();
                 co_return ToolResult::text("both answered");
               });
  app.add_tool({.name = "failing_job",
                .description = "Reports a tool error after a second (always a task)",
                .input_schema = no_args(),
                .task_support = TaskSupport::kRequired},
               [](HandlerContext& ctx, json::object) -> ToolCo {
                 co_await sleep_for(ctx, std::chrono::milliseconds(1000));
                 co_return ToolResult::error("the job failed");
               });
  app.add_tool({.name = "protocol_error_job",
                .description = "Fails with a protocol error (a task)",
                .input_schema = no_args(),
                .task_support = TaskSupport::kOptional},
               [](HandlerContext& ctx, json::object) -> ToolCo {
                 co_await sleep_for(ctx, std::chrono::milliseconds(100));
                 co_return RpcError(ErrorCode::kInternalError, "the job broke down");
               });
  app.add_tool({.name = "test_tool_with_task",
                .description = "Asks the user's name round by round, then runs as a task",
                .input_schema = no_args(),
                .task_support = TaskSupport::kRequired,
                .starts_task_itself = true},
               [](HandlerContext& ctx, json::object) -> ToolCo {
                 std::vector<InputRequest> inputs{
                     {"user_name", "elicitation/create", elicit_params("Your name?", "name")}};
                 auto answers = co_await ctx.ask(std::move(inputs), kClientDeadline);
                 if (!answers) co_return answers.error();
                 ctx.start_task();
                 co_await sleep_for(ctx, std::chrono::milliseconds(100));
                 std::string name;
                 if (auto* c = answers->at("user_name").if_contains("content");
                     c && c->is_object() && c->get_object().contains("name") &&
                     c->get_object().at("name").is_string()) {
                   name = c->get_object().at("name").get_string();
                 }
                 co_return ToolResult::text("Hello, " + name + ", from a task");
               });
}

}  // namespace

std::shared_ptr<void> install_conformance_app(App& app) {
  add_tools(app);
  add_resources(app);
  add_prompts(app);
  add_stateless_fixtures(app);
  add_task_fixtures(app);
  return nullptr;
}

}  // namespace mcpmesh::node
