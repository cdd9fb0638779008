#pragma once
/// \file
/// The application API: what an mcpmesh node serves.
///
/// An `App` is a catalogue of tools, resources, resource templates, prompts and completion
/// providers, each with a handler. Handlers are Asio coroutines (`asio::awaitable`) that run on
/// the calling session's executor; anything that blocks or burns CPU goes through
/// `HandlerContext::run_blocking`, which runs it on the node's bounded worker pool, so an I/O
/// thread is never blocked. A tool that answers at once without waiting may instead have a
/// plain function as handler (`SyncToolHandler`): it is called inline, with no coroutine.
///
/// Thread-safety: every `App` member may be called from any thread at any time, also while the
/// node serves requests; changes to the lists notify every initialized session
/// (`notifications/*/list_changed`).
///
/// Example (compiled and run by mcp/app_example_test.cpp):
/// \code
///   using namespace mcpmesh::mcp;
///   App app;
///   app.add_tool(
///       {.name = "add",
///        .description = "Adds two numbers",
///        .input_schema = object_schema({{"a", "number"}, {"b", "number"}}, {"a", "b"})},
///       [](HandlerContext& ctx, json::object args) -> asio::awaitable<Result<ToolResult>> {
///         double sum = args.at("a").to_number<double>() + args.at("b").to_number<double>();
///         ctx.report_progress(1, 1);
///         co_return ToolResult::structured({{"sum", json_number(sum)}});
///       });
/// \endcode

#include "mcp/jsonrpc.hpp"
#include "mcp/latency.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

namespace mcpmesh::mcp {

namespace asio = boost::asio;

/// A value or a JSON-RPC error. Handlers return errors as values, never by throwing.
template <class T>
using Result = boost::system::result<T, RpcError>;

/// MCP (syslog) log levels, lowest first.
enum class LogLevel { kDebug, kInfo, kNotice, kWarning, kError, kCritical, kAlert, kEmergency };
[[nodiscard]] std::string_view to_string(LogLevel level);
[[nodiscard]] std::optional<LogLevel> parse_log_level(std::string_view name);

/// What the client said about itself at initialize (session era) or in `_meta` (stateless).
struct ClientState {
  std::string protocol_version;
  json::object capabilities;
  json::object info;
};

/// One input a handler asks of the client (see HandlerContext::ask): `method` is
/// elicitation/create, sampling/createMessage or roots/list; `key` names it among the request's
/// inputs (2026-07-28 carries it as the key of inputRequests and inputResponses).
struct InputRequest {
  std::string key;
  std::string method;
  json::object params = {};
};
/// The client's answers to a handler's input requests, by key.
using InputResponses = std::map<std::string, json::object, std::less<>>;

/// Per-request facts every handler sees, whichever protocol era the request came in.
struct RequestContext {
  std::shared_ptr<const ClientState> client;
  std::string session_id;  // empty in the stateless era
  std::string node_id;
  json::value request_id;
  json::object meta;  // the request's params._meta, if any
  /// The request's span (invalid when not traced): pass it on (`traceparent`) to what the
  /// handler calls, or start child spans of it.
  TraceContext trace;
};

// ---------------------------------------------------------------------------------------------
// Catalogue entries

/// Builds `{"type":"object","properties":{name:{"type":type}},"required":[...]}`.
[[nodiscard]] json::object object_schema(
    std::initializer_list<std::pair<std::string_view, std::string_view>> properties,
    std::initializer_list<std::string_view> required = {});

/// Whether a tool's calls may run as tasks (the tasks extension): never, when the client takes
/// tasks, or always (a client that does not take tasks gets -32021).
enum class TaskSupport { kForbidden, kOptional, kRequired };

struct ToolSpec {
  std::string name;
  std::string title;
  std::string description;
  json::object input_schema = {{"type", "object"}};
  std::optional<json::object> output_schema;
  json::object annotations;  // readOnlyHint, destructiveHint, idempotentHint, openWorldHint, title
  json::array icons;         // [{src, mimeType, sizes, theme}]
  json::object meta;
  TaskSupport task_support = TaskSupport::kForbidden;
  /// With task support: the handler decides when the call becomes a task
  /// (HandlerContext::start_task), for example after gathering input round by round; otherwise
  /// it is one before the handler starts.
  bool starts_task_itself = false;
};

/// The result of `tools/call`.
struct ToolResult {
  json::array content;
  std::optional<json::object> structured_content;
  bool is_error = false;

  static ToolResult text(std::string_view text);
  /// A tool-level failure the model should see (`isError: true`), not a protocol error.
  static ToolResult error(std::string_view text);
  /// Structured output plus its JSON text as content, as the spec recommends.
  static ToolResult structured(json::object value);
  ToolResult& add_text(std::string_view text);
  ToolResult& add_image(std::string base64, std::string mime_type);
  ToolResult& add_audio(std::string base64, std::string mime_type);
  ToolResult& add_resource_link(std::string uri, std::string name, std::string mime_type = {});
  ToolResult& add_embedded_text(std::string uri, std::string text, std::string mime_type);
  [[nodiscard]] json::object to_json() const&;
  [[nodiscard]] json::object to_json() &&;
};

struct ResourceSpec {
  std::string uri;
  std::string name;
  std::string title;
  std::string description;
  std::string mime_type;
  std::optional<std::int64_t> size;
  json::object annotations;
  json::array icons;
  [[nodiscard]] json::object to_json() const;
};

/// One item of `resources/read`: text or a base64 blob.
struct ResourceContents {
  std::string uri;
  std::string mime_type;
  std::optional<std::string> text;
  std::optional<std::string> blob;
  [[nodiscard]] json::object to_json() const;
};

struct ResourceTemplateSpec {
  std::string uri_template;  // RFC 6570 level 1: "note://{name}"
  std::string name;
  std::string title;
  std::string description;
  std::string mime_type;
  json::object annotations;
  json::array icons;
  [[nodiscard]] json::object to_json() const;
};

struct PromptArgument {
  std::string name;
  std::string title;
  std::string description;
  bool required = false;
};

struct PromptSpec {
  std::string name;
  std::string title;
  std::string description;
  std::vector<PromptArgument> arguments;
  json::array icons;
  [[nodiscard]] json::object to_json() const;
};

struct PromptResult {
  std::string description;
  json::array messages;  // [{role, content}]
  PromptResult& add_text(std::string_view role, std::string_view text);
  PromptResult& add_content(std::string_view role, json::object content);
};

struct CompletionRequest {
  std::string ref_type;  // "ref/prompt" or "ref/resource"
  std::string ref;       // prompt name or URI template
  std::string argument;
  std::string value;
  std::map<std::string, std::string> context;  // context.arguments
};

struct Completion {
  std::vector<std::string> values;  // at most 100 are sent
  std::optional<std::int64_t> total;
  bool has_more = false;
};

class HandlerContext;
class Server;

using ToolHandler =
    std::function<asio::awaitable<Result<ToolResult>>(HandlerContext&, json::object arguments)>;
/// A tool handler that finishes without waiting for anything. It runs inline on the session's
/// executor, with no coroutine to start, so it must not block or take long: use a coroutine
/// `ToolHandler` (and `run_blocking`) for anything that waits.
using SyncToolHandler = std::function<Result<ToolResult>(HandlerContext&, json::object arguments)>;
using ResourceHandler = std::function<asio::awaitable<Result<std::vector<ResourceContents>>>(
    HandlerContext&, std::string uri)>;
/// Reads a URI that matched a template; `variables` holds the expanded template variables.
using TemplateHandler = std::function<asio::awaitable<Result<std::vector<ResourceContents>>>(
    HandlerContext&, std::string uri, std::map<std::string, std::string> variables)>;
/// Lists the concrete resources a template currently stands for (shown by resources/list).
using TemplateLister = std::function<std::vector<ResourceSpec>()>;
using PromptHandler = std::function<asio::awaitable<Result<PromptResult>>(
    HandlerContext&, std::map<std::string, std::string> arguments)>;
using CompletionHandler =
    std::function<asio::awaitable<Result<Completion>>(HandlerContext&, const CompletionRequest&)>;

/// Which list changed (for `notifications/<kind>/list_changed`).
enum class ListKind { kTools, kResources, kPrompts };

/// The catalogue. See the file comment for the threading contract.
class App {
 public:
  struct Tool {
    ToolSpec spec;
    ToolHandler handler;           // set for coroutine tools
    SyncToolHandler sync_handler;  // set for synchronous tools
    /// Its calls' latency (/metrics), kept as long as the tool is in the catalog.
    std::shared_ptr<LatencyHistogram> latency = std::make_shared<LatencyHistogram>();
  };
  struct Resource {
    ResourceSpec spec;
    ResourceHandler handler;
  };
  struct Template {
    ResourceTemplateSpec spec;
    TemplateHandler handler;
    TemplateLister lister;
  };
  struct Prompt {
    PromptSpec spec;
    PromptHandler handler;
  };
  /// An immutable snapshot; handlers keep it alive while they run.
  struct Catalog {
    std::vector<std::shared_ptr<const Tool>> tools;
    std::vector<std::shared_ptr<const Resource>> resources;
    std::vector<std::shared_ptr<const Template>> templates;
    std::vector<std::shared_ptr<const Prompt>> prompts;
    std::map<std::string, CompletionHandler, std::less<>> completions;  // key: ref_type + " " + ref
    [[nodiscard]] const Tool* find_tool(std::string_view name) const;
    [[nodiscard]] const Resource* find_resource(std::string_view uri) const;
    [[nodiscard]] const Prompt* find_prompt(std::string_view name) const;
  };

  App();

  /// Adds or replaces a tool (by name).
  void add_tool(ToolSpec spec, ToolHandler handler);
  /// Adds or replaces a tool whose handler is synchronous (see SyncToolHandler).
  void add_tool(ToolSpec spec, SyncToolHandler handler);
  bool remove_tool(std::string_view name);
  void add_resource(ResourceSpec spec, ResourceHandler handler);
  bool remove_resource(std::string_view uri);
  void add_resource_template(ResourceTemplateSpec spec, TemplateHandler handler,
                             TemplateLister lister = {});
  void add_prompt(PromptSpec spec, PromptHandler handler);
  bool remove_prompt(std::string_view name);
  /// Completion for a prompt argument (`ref_type` "ref/prompt", `ref` the prompt name) or a
  /// template variable (`ref_type` "ref/resource", `ref` the URI template).
  void add_completion(std::string ref_type, std::string ref, CompletionHandler handler);

  /// Tells every session subscribed to `uri` (`notifications/resources/updated`).
  void notify_resource_updated(std::string_view uri);
  /// Tells every initialized session that a list changed (called by add/remove automatically;
  /// call it yourself when a template's lister results change).
  void notify_list_changed(ListKind kind);

  [[nodiscard]] std::shared_ptr<const Catalog> catalog() const;
  /// Any thread. Appends each tool's call latency (mcpmesh_tool_duration_seconds{tool="…"}) to
  /// `out` (Prometheus text).
  void render_tool_latency(std::string& out) const;

  /// Wiring for the server: where notifications go. Set once before serving.
  struct Listener {
    std::function<void(std::string_view uri)> resource_updated;
    std::function<void(ListKind)> list_changed;
  };
  void set_listener(Listener listener);

 private:
  template <class F>
  void mutate(F&& f, std::optional<ListKind> changed);
  void put_tool(std::shared_ptr<const Tool> tool);

  mutable std::shared_mutex mutex_;
  std::shared_ptr<const Catalog> catalog_;  // guarded by mutex_
  Listener listener_;                       // guarded by mutex_
};

/// Matches `uri` against a level-1 RFC 6570 template; fills `vars` on success.
[[nodiscard]] bool match_uri_template(std::string_view tmpl, std::string_view uri,
                                      std::map<std::string, std::string>& vars);

/// What a handler may do besides returning its result. Lives as long as the handler runs.
/// Thread-safety: call only from the handler's own coroutine (the session's executor).
class HandlerContext {
 public:
  virtual ~HandlerContext() = default;

  [[nodiscard]] virtual const RequestContext& request() const = 0;
  /// Sends `notifications/progress` if the client asked for progress (a progressToken).
  virtual void report_progress(double progress, std::optional<double> total = {},
                               std::string_view message = {}) = 0;
  /// Sends `notifications/message` if `level` passes the session's log level.
  virtual void log(LogLevel level, json::value data, std::string_view logger = {}) = 0;
  /// True once the client cancelled this request; the response will be dropped.
  [[nodiscard]] virtual bool is_cancelled() const = 0;
  /// Sends a request to the client (sampling/createMessage, elicitation/create, roots/list) and
  /// waits for its answer at most `deadline`. Fails with kInvalidParams when the client did not
  /// declare the capability, kRequestTimeout on deadline, or the client's own error.
  virtual asio::awaitable<Result<json::object>> request_client(
      std::string method, json::object params, std::chrono::milliseconds deadline) = 0;
  /// Asks the client for `inputs` and returns its answers by key, whichever era the request
  /// came in:
  /// - session era: each is sent to the client as a request, in order, each waited for at most
  ///   `deadline` (as request_client);
  /// - 2026-07-28 (stateless): the answers come with the request (its inputResponses, and those
  ///   of earlier rounds sealed in its requestState). When one is missing, the request is
  ///   answered with an InputRequiredResult asking for what is missing, whatever the handler
  ///   then returns, and the handler runs again from the start when the client retries with the
  ///   answers: what it did before asking, it does again.
  /// Fails with kMissingClientCapability (kInvalidParams in the session era) when the client
  /// did not declare what a method needs, kInvalidParams when an answer is malformed.
  virtual asio::awaitable<Result<InputResponses>> ask(std::vector<InputRequest> inputs,
                                                      std::chrono::milliseconds deadline);
  /// Turns this tools/call into a task (the tasks extension) when the tool and the client
  /// allow it: the client gets the task's id now, and the rest of the handler runs as the task
  /// (its input requests wait for tasks/update; its result is inlined in tasks/get). Returns
  /// false, and nothing changes, when the call cannot become one (the session era, a client
  /// without the extension, a tool without task support, already a task).
  virtual bool start_task() { return false; }
  /// 2026-07-28: how many rounds of input this request went through before this call (0 on a
  /// first call, 1 on the retry that answers one InputRequiredResult). 0 in the session era.
  [[nodiscard]] virtual std::size_t input_round() const { return 0; }
  /// Ends the stream this request answers on (Streamable HTTP: the POST's SSE response) while
  /// the handler keeps running; the client resumes with Last-Event-ID and gets the rest there.
  /// Lets long calls release their connection (SSE polling).
  virtual void close_stream() = 0;
  /// The executor this handler runs on.
  [[nodiscard]] virtual asio::any_io_executor executor() const = 0;
  /// The node's bounded worker pool for blocking work.
  [[nodiscard]] virtual asio::any_io_executor worker_executor() const = 0;
  /// The app serving this request (to notify resource updates, for example).
  [[nodiscard]] virtual App& app() const = 0;

  /// Runs `fn` (blocking allowed, must return a value) on the worker pool and resumes here with
  /// its result. Fails with kServerBusy, without running `fn`, when `max_blocking_jobs` jobs
  /// are already queued or running (counted in blocking_jobs_rejected_total).
  template <class F>
  auto run_blocking(F fn) -> asio::awaitable<Result<std::invoke_result_t<F>>> {
    using R = std::invoke_result_t<F>;
    if (!acquire_blocking_slot()) {
      co_return RpcError(ErrorCode::kServerBusy, "worker pool is full, try again later");
    }
    struct Release {
      HandlerContext* ctx;
      ~Release() { ctx->release_blocking_slot(); }
    } release{this};
    // The job's wall time on its worker feeds admission control; it is handed over here, on
    // the handler's side, so the worker touches nothing but `fn`.
    struct Ran {
      R value;
      std::chrono::nanoseconds wall;
    };
    auto ran = co_await asio::co_spawn(
        worker_executor(),
        [fn = std::move(fn)]() mutable -> asio::awaitable<Ran> {
          auto start = std::chrono::steady_clock::now();
          R value = fn();
          co_return Ran{std::move(value), std::chrono::steady_clock::now() - start};
        },
        asio::use_awaitable);
    blocking_job_ran(ran.wall);
    co_return std::move(ran.value);
  }

 protected:
  /// Reserves one of the node's `max_blocking_jobs` slots; false when none is free.
  [[nodiscard]] virtual bool acquire_blocking_slot() = 0;
  virtual void release_blocking_slot() = 0;
  /// A blocking job ran for `wall` on a worker thread (called on the handler's executor).
  virtual void blocking_job_ran(std::chrono::nanoseconds wall) = 0;
};

/// Asks the client's model for a completion of one user `prompt` (sampling/createMessage)
/// and returns the text of its answer (empty if the answer was not text).
asio::awaitable<Result<std::string>> sample_text(HandlerContext& ctx, std::string_view prompt,
                                                 std::int64_t max_tokens,
                                                 std::chrono::milliseconds deadline);

}  // namespace mcpmesh::mcp
