#include "node/apps/apps.hpp"

#include <boost/asio/steady_timer.hpp>

#include <time.h>

#include <cmath>
#include <cstdint>
#include <mutex>

namespace mcpmesh::node {

using namespace mcp;

namespace {

struct Notes {
  std::mutex mutex;
  std::map<std::string, std::string> by_name;  // guarded by mutex
};

std::string number_text(double d) {
  auto v = json_number(d);
  if (v.is_int64()) return std::to_string(v.get_int64());
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", d);
  return buf;
}

/// CPU time the calling thread has used.
std::chrono::nanoseconds thread_cpu_time() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

/// Spends `cpu` of this thread's CPU time (not wall time: a thread that waits for a core
/// still does all of its work) on a chain of multiply-xorshift rounds, and returns the chain's
/// end, which depends on every round, so none can be left out.
std::uint64_t burn_cpu(std::chrono::nanoseconds cpu, std::uint64_t seed) {
  auto until = thread_cpu_time() + cpu;
  std::uint64_t x = seed | 1;
  do {
    for (int i = 0; i < 4096; ++i) {  // ~10 µs between two looks at the clock
      x ^= x >> 29;
      x *= 0xbf58476d1ce4e5b9ULL;
      x ^= x >> 32;
    }
  } while (thread_cpu_time() < until);
  return x;
}

/// Works for `seconds` in `steps` equal parts, reporting progress after each; false when the
/// call is cancelled first.
asio::awaitable<bool> work_in_steps(HandlerContext& ctx, double seconds, std::int64_t steps) {
  auto step = std::chrono::duration<double>(seconds / static_cast<double>(steps));
  asio::steady_timer timer(ctx.executor());
  for (std::int64_t i = 1; i <= steps; ++i) {
    timer.expires_after(std::chrono::duration_cast<std::chrono::nanoseconds>(step));
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (ctx.is_cancelled() || ec) co_return false;
    ctx.report_progress(static_cast<double>(i), static_cast<double>(steps),
                        "step " + std::to_string(i) + " of " + std::to_string(steps));
  }
  co_return true;
}

constexpr std::int64_t kMaxBurnMicros = 100000;
constexpr std::chrono::seconds kClientDeadline{60};
// The demo's notes are shared by every session of the node: bound them.
constexpr std::size_t kMaxNotes = 10000;
constexpr std::size_t kMaxNoteBytes = 64 * 1024;

}  // namespace

std::shared_ptr<void> install_demo_app(App& app) {
  auto notes = std::make_shared<Notes>();

  app.add_tool({.name = "echo",
                .title = "Echo",
                .description = "Returns the text it is given.",
                .input_schema = object_schema({{"text", "string"}}, {"text"}),
                .annotations = {{"readOnlyHint", true}, {"idempotentHint", true}}},
               [](HandlerContext&, json::object args) -> Result<ToolResult> {
                 return ToolResult::text(args.at("text").get_string());
               });

  app.add_tool({.name = "add",
                .title = "Add",
                .description = "Adds two numbers; the sum also comes as structured content.",
                .input_schema = object_schema({{"a", "number"}, {"b", "number"}}, {"a", "b"}),
                .output_schema = object_schema({{"sum", "number"}}, {"sum"}),
                .annotations = {{"readOnlyHint", true}, {"idempotentHint", true}}},
               [](HandlerContext&, json::object args) -> Result<ToolResult> {
                 double sum = args.at("a").to_number<double>() + args.at("b").to_number<double>();
                 ToolResult r = ToolResult::text(number_text(sum));
                 r.structured_content = json::object{{"sum", json_number(sum)}};
                 return r;
               });

  app.add_tool(
      {.name = "slow",
       .title = "Slow",
       .description = "Works for `seconds`, reporting progress `steps` times; stops on cancel.",
       .input_schema =
           object_schema({{"seconds", "number"}, {"steps", "integer"}}, {"seconds", "steps"})},
      [](HandlerContext& ctx, json::object args) -> asio::awaitable<Result<ToolResult>> {
        double seconds = args.at("seconds").to_number<double>();
        auto steps = args.at("steps").to_number<std::int64_t>();
        if (seconds < 0 || seconds > 3600 || steps < 1 || steps > 10000) {
          co_return ToolResult::error("seconds must be in [0, 3600] and steps in [1, 10000]");
        }
        if (!co_await work_in_steps(ctx, seconds, steps)) co_return ToolResult::error("cancelled");
        co_return ToolResult::text("completed " + std::to_string(steps) + " steps");
      });

  app.add_tool(
      {.name = "job",
       .title = "Job",
       .description = "Works for `seconds`, reporting progress `steps` times (default 1); runs as "
                      "a task when the client asks for one. With `confirm`, first asks the user "
                      "(elicitation/create) whether to start; with `fail`, ends in a tool error.",
       .input_schema = object_schema({{"seconds", "number"},
                                      {"steps", "integer"},
                                      {"confirm", "boolean"},
                                      {"fail", "boolean"}},
                                     {"seconds"}),
       .task_support = TaskSupport::kOptional},
      [](HandlerContext& ctx, json::object args) -> asio::awaitable<Result<ToolResult>> {
        double seconds = args.at("seconds").to_number<double>();
        std::int64_t steps = 1;
        if (auto* s = args.if_contains("steps")) steps = s->to_number<std::int64_t>();
        if (seconds < 0 || seconds > 3600 || steps < 1 || steps > 10000) {
          co_return ToolResult::error("seconds must be in [0, 3600] and steps in [1, 10000]");
        }
        auto flag = [&args](std::string_view key) {
          auto* v = args.if_contains(key);
          return v && v->is_bool() && v->get_bool();
        };
        if (flag("confirm")) {
          json::object params{
              {"message", "Start the job?"},
              {"requestedSchema", object_schema({{"start", "boolean"}}, {"start"})}};
          auto r =
              co_await ctx.request_client("elicitation/create", std::move(params), kClientDeadline);
          if (!r) co_return ToolResult::error("elicitation failed: " + r.error().message);
          auto* content = r->if_contains("content");
          auto* start = content && content->is_object() ? content->get_object().if_contains("start")
                                                        : nullptr;
          if (get_string(*r, "action") != "accept" || !start || !start->is_bool() ||
              !start->get_bool()) {
            co_return ToolResult::text("not started");
          }
        }
        if (!co_await work_in_steps(ctx, seconds, steps)) co_return ToolResult::error("cancelled");
        if (flag("fail")) co_return ToolResult::error("the job failed");
        co_return ToolResult::text("job done: " + std::to_string(steps) + " steps");
      });

  // CPU work, done the way the app API asks for it (run_blocking: the node's bounded worker
  // pool, never an I/O thread), so a load of it costs what a real CPU-heavy tool costs: worker
  // time, queueing for the pool and, past max_blocking_jobs, refusals.
  app.add_tool(
      {.name = "burn",
       .title = "Burn CPU",
       .description = "Spends `micros` µs (at most 100000) of CPU time on the node's worker "
                      "pool and returns a digest of the work.",
       .input_schema = object_schema({{"micros", "integer"}}, {"micros"}),
       .output_schema =
           object_schema({{"micros", "integer"}, {"digest", "string"}}, {"micros", "digest"}),
       .annotations = {{"readOnlyHint", true}, {"idempotentHint", true}}},
      [](HandlerContext& ctx, json::object args) -> asio::awaitable<Result<ToolResult>> {
        auto& v = args.at("micros");
        if (!v.is_int64() || v.get_int64() < 0 || v.get_int64() > kMaxBurnMicros) {
          co_return ToolResult::error("micros must be an integer in [0, 100000]");
        }
        auto micros = v.get_int64();
        auto digest = co_await ctx.run_blocking([micros] {
          return burn_cpu(std::chrono::microseconds(micros), static_cast<std::uint64_t>(micros));
        });
        if (!digest) co_return digest.error();
        char hex[17];
        std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(*digest));
        ToolResult r = ToolResult::text(hex);
        r.structured_content = json::object{{"micros", micros}, {"digest", hex}};
        co_return r;
      });

  app.add_tool(
      {.name = "note_set",
       .title = "Set a note",
       .description = "Stores a note readable as note://{name}; subscribers are notified.",
       .input_schema = object_schema({{"name", "string"}, {"text", "string"}}, {"name", "text"})},
      [notes](HandlerContext& ctx, json::object args) -> asio::awaitable<Result<ToolResult>> {
        std::string name(args.at("name").get_string());
        if (name.empty() || name.find_first_of("/{}") != std::string::npos) {
          co_return ToolResult::error("note names are non-empty and contain no '/', '{' or '}'");
        }
        std::string text(args.at("text").get_string());
        if (name.size() > kMaxNoteBytes || text.size() > kMaxNoteBytes) {
          co_return ToolResult::error("note names and texts are at most 64 KiB");
        }
        bool created;
        {
          std::lock_guard lock(notes->mutex);
          if (notes->by_name.size() >= kMaxNotes && !notes->by_name.contains(name)) {
            co_return ToolResult::error("the demo keeps at most 10000 notes");
          }
          created = notes->by_name.insert_or_assign(name, std::move(text)).second;
        }
        ctx.app().notify_resource_updated("note://" + name);
        if (created) ctx.app().notify_list_changed(ListKind::kResources);
        co_return ToolResult::text("ok");
      });

  app.add_tool({.name = "whoami",
                .title = "Who am I",
                .description = "The node and session serving this call.",
                .output_schema = object_schema({{"node_id", "string"}, {"session_id", "string"}},
                                               {"node_id", "session_id"}),
                .annotations = {{"readOnlyHint", true}}},
               [](HandlerContext& ctx, json::object) -> asio::awaitable<Result<ToolResult>> {
                 co_return ToolResult::structured({{"node_id", ctx.request().node_id},
                                                   {"session_id", ctx.request().session_id}});
               });

  app.add_tool({.name = "log",
                .title = "Log",
                .description = "Emits a log notification at the given level (logger 'demo').",
                .input_schema = object_schema({{"level", "string"}, {"message", "string"}},
                                              {"level", "message"})},
               [](HandlerContext& ctx, json::object args) -> asio::awaitable<Result<ToolResult>> {
                 auto level = parse_log_level(args.at("level").get_string());
                 if (!level) co_return ToolResult::error("unknown level");
                 ctx.log(*level, args.at("message"), "demo");
                 co_return ToolResult::text("logged");
               });

  app.add_tool({.name = "ask_llm",
                .title = "Ask the client's model",
                .description = "Asks the client to sample its LLM (sampling/createMessage).",
                .input_schema = object_schema({{"prompt", "string"}}, {"prompt"})},
               [](HandlerContext& ctx, json::object args) -> asio::awaitable<Result<ToolResult>> {
                 auto text = co_await sample_text(ctx, args.at("prompt").get_string(), 100,
                                                  kClientDeadline);
                 if (!text) co_return ToolResult::error("sampling failed: " + text.error().message);
                 co_return ToolResult::text("sampled: " + *text);
               });

  app.add_tool(
      {.name = "ask_user",
       .title = "Ask the user",
       .description = "Asks the user a question through the client (elicitation/create).",
       .input_schema = object_schema({{"question", "string"}}, {"question"})},
      [](HandlerContext& ctx, json::object args) -> asio::awaitable<Result<ToolResult>> {
        json::object params{{"message", args.at("question")},
                            {"requestedSchema", object_schema({{"answer", "string"}}, {"answer"})}};
        auto r =
            co_await ctx.request_client("elicitation/create", std::move(params), kClientDeadline);
        if (!r) co_return ToolResult::error("elicitation failed: " + r.error().message);
        std::string action, answer;
        if (auto* a = r->if_contains("action"); a && a->is_string()) action = a->get_string();
        if (auto* c = r->if_contains("content"); c && c->is_object()) {
          if (auto* t = c->get_object().if_contains("answer"); t && t->is_string()) {
            answer = t->get_string();
          }
        }
        co_return ToolResult::text("action=" + action + " answer=" + answer);
      });

  app.add_resource_template(
      {.uri_template = "note://{name}",
       .name = "note",
       .title = "Note",
       .description = "A note stored with the note_set tool.",
       .mime_type = "text/plain"},
      [notes](HandlerContext&, std::string uri, std::map<std::string, std::string> vars)
          -> asio::awaitable<Result<std::vector<ResourceContents>>> {
        std::lock_guard lock(notes->mutex);
        auto it = notes->by_name.find(vars["name"]);
        if (it == notes->by_name.end()) {
          co_return RpcError(ErrorCode::kResourceNotFound, "resource not found",
                             json::object{{"uri", uri}});
        }
        co_return std::vector<ResourceContents>{{uri, "text/plain", it->second, std::nullopt}};
      },
      [notes] {
        std::vector<ResourceSpec> out;
        std::lock_guard lock(notes->mutex);
        for (auto& [name, text] : notes->by_name) {
          out.push_back({.uri = "note://" + name,
                         .name = name,
                         .mime_type = "text/plain",
                         .size = static_cast<std::int64_t>(text.size())});
        }
        return out;
      });

  app.add_prompt(
      {.name = "summarize",
       .title = "Summarize",
       .description = "Asks for a summary of a topic.",
       .arguments = {{.name = "topic", .description = "What to summarize", .required = true}}},
      [](HandlerContext&,
         std::map<std::string, std::string> args) -> asio::awaitable<Result<PromptResult>> {
        PromptResult r;
        r.description = "Summary request";
        r.add_text("user", "Summarize " + args["topic"] + ".");
        co_return r;
      });

  app.add_completion(
      "ref/prompt", "summarize",
      [](HandlerContext&, const CompletionRequest& req) -> asio::awaitable<Result<Completion>> {
        static const std::vector<std::string> kTopics = {"mcp", "mesh", "membership", "metrics"};
        Completion c;
        if (req.argument == "topic") {
          for (auto& t : kTopics) {
            if (t.rfind(req.value, 0) == 0) c.values.push_back(t);
          }
        }
        co_return c;
      });
  return notes;
}

}  // namespace mcpmesh::node
