#include "mcp/router.hpp"

#include "mcp/server.hpp"
#include "mcp/session_tasks.hpp"
#include "mcp/stateless.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cmath>
#include <variant>

namespace mcpmesh::mcp {

namespace {

RpcError invalid_params(std::string msg) { return {ErrorCode::kInvalidParams, std::move(msg)}; }

/// Checks tool arguments against the top level of the tool's input schema: required
/// properties and primitive types. Returns an explanation on mismatch.
std::optional<std::string> check_arguments(const json::object& schema, const json::object& args) {
  if (auto* req = schema.if_contains("required"); req && req->is_array()) {
    for (auto& r : req->get_array()) {
      if (r.is_string() && !args.contains(r.get_string())) {
        return "missing required argument '" + std::string(r.get_string()) + "'";
      }
    }
  }
  auto* props = get_object(schema, "properties");
  if (!props) return std::nullopt;
  for (auto& [name, value] : args) {
    auto* prop = props->if_contains(name);
    if (!prop || !prop->is_object()) continue;
    auto type = get_string(prop->get_object(), "type");
    if (!type) continue;
    bool ok = true;
    if (*type == "string")
      ok = value.is_string();
    else if (*type == "number") {
      // The parser reads 1e400 as infinity: no handler can compute with it, nor answer it.
      ok = value.is_number() && (!value.is_double() || std::isfinite(value.get_double()));
      if (!ok && value.is_double()) {
        return "argument '" + std::string(name) + "' must be a finite number";
      }
    } else if (*type == "integer") {
      // Integers within int64 (what handlers can convert): Boost.JSON keeps only those above
      // 2^63-1 as uint64. Integral doubles too; range before any cast, which would be
      // undefined for 1e300.
      ok = value.is_int64();
      if (value.is_double()) {
        double d = value.get_double();
        ok = d > -9.2e18 && d < 9.2e18 && std::trunc(d) == d;
      }
      if (!ok && value.is_number()) {
        return "argument '" + std::string(name) + "' must be an integer from -2^63 to 2^63-1";
      }
    } else if (*type == "boolean")
      ok = value.is_bool();
    else if (*type == "object")
      ok = value.is_object();
    else if (*type == "array")
      ok = value.is_array();
    else if (*type == "null")
      ok = value.is_null();
    if (!ok) return "argument '" + std::string(name) + "' must be of type " + std::string(*type);
  }
  return std::nullopt;
}

/// The tool a tools/call names, or the protocol error to answer with.
Result<const App::Tool*> called_tool(const App::Catalog& catalog, const json::object& params) {
  auto name = get_string(params, "name");
  if (!name) return invalid_params("tools/call needs params.name (string)");
  if (auto* tool = catalog.find_tool(*name)) return tool;
  return invalid_params("unknown tool: " + std::string(*name));
}

/// Moves a tools/call's arguments out of `params` and checks them against the tool's input
/// schema. On failure, the answer to send instead: a protocol error, or an isError result when
/// the arguments do not fit the schema (a tool execution error, so a model can correct itself).
std::variant<json::object, Result<json::value>> tool_arguments(const App::Tool& tool,
                                                               json::object& params) {
  json::object args;
  if (auto* a = params.if_contains("arguments")) {
    if (a->is_object()) {
      args = std::move(a->get_object());
    } else if (!a->is_null()) {
      return Result<json::value>(invalid_params("tools/call params.arguments must be an object"));
    }
  }
  if (auto why = check_arguments(tool.spec.input_schema, args)) {
    return Result<json::value>(json::value(
        ToolResult::error("invalid arguments for tool '" + tool.spec.name + "': " + *why)
            .to_json()));
  }
  return args;
}

Result<json::value> tool_answer(Result<ToolResult> r) {
  if (!r) return r.error();
  return json::value(std::move(*r).to_json());
}

/// Why `uri` cannot be subscribed to, or nullopt. RFC 3986: a scheme (a letter, then letters,
/// digits, '+', '-' or '.') and ':'; characters a URI never holds unencoded (controls, space,
/// `"<>\^`{|}`) refused. Other non-ASCII characters pass (IRIs), since clients send them.
std::optional<std::string> uri_problem(std::string_view uri, std::size_t max_bytes) {
  if (uri.size() > max_bytes) {
    return "params.uri is longer than " + std::to_string(max_bytes) + " bytes";
  }
  auto is_alpha = [](unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; };
  std::size_t i = 0;
  while (i < uri.size() &&
         (is_alpha(uri[i]) || (i > 0 && ((uri[i] >= '0' && uri[i] <= '9') || uri[i] == '+' ||
                                         uri[i] == '-' || uri[i] == '.')))) {
    ++i;
  }
  if (i == 0 || i == uri.size() || uri[i] != ':') {
    return "params.uri must be a URI: a scheme (a letter, then letters, digits, '+', '-' or "
           "'.') and ':'";
  }
  static constexpr std::string_view kNeverInUris = " \"<>\\^`{|}";
  for (std::size_t j = 0; j < uri.size(); ++j) {
    auto c = static_cast<unsigned char>(uri[j]);
    // C1 controls (U+0080 to U+009F) are 0xC2 0x80..0x9F in UTF-8.
    bool c1 = c == 0xC2 && j + 1 < uri.size() && static_cast<unsigned char>(uri[j + 1]) < 0xA0;
    if (c < 0x20 || c == 0x7F || c1) return "params.uri holds a control character";
    if (kNeverInUris.find(static_cast<char>(c)) != std::string_view::npos) {
      return "params.uri holds a character URIs carry only percent-encoded (space or one of "
             "\"<>\\^`{|})";
    }
  }
  return std::nullopt;
}

/// Methods the 2026-07-28 revision removed (their work moved into _meta and listen streams).
bool removed_in_stateless(std::string_view method) {
  return method == "initialize" || method == "ping" || method == "logging/setLevel" ||
         method == "resources/subscribe" || method == "resources/unsubscribe";
}

/// Results a client may cache (2026-07-28 asks for ttlMs and cacheScope on these).
bool cacheable(std::string_view method) {
  return method == "tools/list" || method == "prompts/list" || method == "resources/list" ||
         method == "resources/templates/list" || method == "resources/read" ||
         method == "server/discover";
}

/// Methods whose answer may be an InputRequiredResult (multi round-trip).
bool takes_input(std::string_view method) {
  return method == "tools/call" || method == "prompts/get" || method == "resources/read";
}

/// The client capability an input request needs, or "" for a method that is no input request.
std::string_view capability_for(std::string_view method) {
  if (method == "elicitation/create") return "elicitation";
  if (method == "sampling/createMessage") return "sampling";
  if (method == "roots/list") return "roots";
  return {};
}

/// Whether the client declared the tasks extension for this request.
bool takes_tasks(const std::shared_ptr<const ClientState>& client) {
  if (!client) return false;
  auto* ext = get_object(client->capabilities, "extensions");
  return ext && ext->contains(kTasksExtension);
}

RpcError tasks_not_declared() {
  return {ErrorCode::kMissingClientCapability,
          "this needs the tasks extension: declare io.modelcontextprotocol/tasks in the "
          "request's client capabilities (extensions)",
          json::object{
              {"requiredCapabilities", {{"extensions", {{kTasksExtension, json::object()}}}}}}};
}

/// Why `answer` is no valid answer to an input request of `method`, or nullopt.
std::optional<std::string> input_answer_problem(std::string_view method,
                                                const json::value& answer) {
  if (!answer.is_object()) return "must be an object";
  const auto& o = answer.get_object();
  if (method == "elicitation/create") {
    auto action = get_string(o, "action");
    if (!action || (*action != "accept" && *action != "decline" && *action != "cancel")) {
      return "must be an ElicitResult: action accept, decline or cancel";
    }
    if (auto* c = o.if_contains("content"); c && !c->is_object() && !c->is_null()) {
      return "must be an ElicitResult: content is an object";
    }
  } else if (method == "sampling/createMessage") {
    if (!get_string(o, "role") || !o.contains("content")) {
      return "must be a CreateMessageResult: role and content";
    }
  } else if (method == "roots/list") {
    auto* roots = o.if_contains("roots");
    if (!roots || !roots->is_array()) return "must be a ListRootsResult: a roots array";
  }
  return std::nullopt;
}

/// Longest client-chosen text (a tool name, a URI) put into a span's name or attributes.
constexpr std::size_t kMaxSpanText = 256;

std::string_view bounded(std::string_view text) { return text.substr(0, kMaxSpanText); }

/// A request's `params._meta.traceparent` (with its tracestate), when it holds a valid one.
std::optional<TraceContext> meta_trace(const json::object& params) {
  auto* meta = get_object(params, "_meta");
  if (!meta) return std::nullopt;
  auto parent = get_string(*meta, "traceparent");
  if (!parent) return std::nullopt;
  auto state = get_string(*meta, "tracestate");
  return parse_traceparent(*parent, state ? *state : std::string_view());
}

/// The span of a handler (tool, resource, prompt): a child of its request's span.
Span handler_span(Tracer* tracer, const TraceContext& request, std::string name) {
  if (!tracer || !request.valid()) return {};
  return tracer->start(std::move(name), SpanKind::kInternal, request);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
InflightRequest::InflightRequest(Server& server, std::shared_ptr<Conversation> conversation,
                                 RequestContext rc, std::shared_ptr<ClientChannel> reply,
                                 json::value progress_token)
    : server_(server),
      conversation_(std::move(conversation)),
      rc_(std::move(rc)),
      reply_(std::move(reply)),
      progress_token_(std::move(progress_token)) {}

void InflightRequest::report_progress(double progress, std::optional<double> total,
                                      std::string_view message) {
  if (progress_token_.is_null() || cancelled_) return;
  json::object p{{"progressToken", progress_token_}, {"progress", json_number(progress)}};
  if (total) p["total"] = json_number(*total);
  if (!message.empty()) p["message"] = message;
  if (session_task()) add_related_task(p, task_->id);
  deliver_notification(make_notification("notifications/progress", std::move(p)));
}

void InflightRequest::log(LogLevel level, json::value data, std::string_view logger) {
  if (cancelled_ || !conversation_) return;
  auto threshold = conversation_->log_level();
  // 2026-07-28: a request that set no log level gets no log messages at all.
  if (!threshold && conversation_->stateless()) return;
  if (threshold && level < *threshold) return;
  json::object p{{"level", to_string(level)}, {"data", std::move(data)}};
  if (!logger.empty()) p["logger"] = logger;
  if (session_task()) add_related_task(p, task_->id);
  deliver_notification(make_notification("notifications/message", std::move(p)));
}

void InflightRequest::deliver_notification(Payload notification) {
  if (!notification) {  // it held a number JSON cannot represent: dropped
    Metrics::inc(server_.metrics().non_finite_numbers_total);
    return;
  }
  reply_->deliver(std::move(notification), false);
}

void InflightRequest::close_stream() {
  // Streams that carry no priming id cannot be resumed: keep them open.
  if (conversation_ && conversation_->resumable_streams()) reply_->close_stream();
}

asio::awaitable<Result<json::object>> InflightRequest::request_client(
    std::string method, json::object params, std::chrono::milliseconds deadline) {
  if (input_) {
    // The stateless era has no server-to-client requests: the same input, multi round-trip.
    auto key = "input-" + std::to_string(++input_->next_auto_key);
    std::vector<InputRequest> inputs(1);
    inputs[0].key = key;
    inputs[0].method = std::move(method);
    inputs[0].params = std::move(params);
    auto answers = co_await ask(std::move(inputs), deadline);
    if (!answers) co_return answers.error();
    co_return std::move(answers->at(key));
  }
  if (session_task()) {
    co_return co_await request_client_in_task(std::move(method), std::move(params), deadline);
  }
  // The handler runs while this context lives, so the conversation is still set.
  co_return co_await conversation_->request_client(std::move(method), std::move(params), deadline,
                                                   reply_);
}

asio::awaitable<Result<json::object>> InflightRequest::request_client_in_task(
    std::string method, json::object params, std::chrono::milliseconds deadline) {
  auto& store = server_.tasks();
  auto task = task_;
  auto conversation = conversation_;  // the handler runs while this context lives
  add_related_task(params, task->id);
  if (store.begin_input(*task)) announce_task_status(store, *task, *conversation);
  auto answer = co_await conversation->request_client(std::move(method), std::move(params),
                                                      deadline, task_inputs_);
  if (store.end_input(*task)) announce_task_status(store, *task, *conversation);
  co_return answer;
}

asio::awaitable<Result<InputResponses>> InflightRequest::ask(std::vector<InputRequest> inputs,
                                                             std::chrono::milliseconds deadline) {
  if (!input_) {
    if (conversation_ && conversation_->stateless()) {
      co_return RpcError(ErrorCode::kInvalidRequest,
                         "only tools/call, prompts/get and resources/read may ask the client for "
                         "input");
    }
    co_return co_await HandlerContext::ask(std::move(inputs), deadline);
  }
  json::object needed;
  const auto& caps = rc_.client ? rc_.client->capabilities : json::object();
  for (auto& input : inputs) {
    auto cap = capability_for(input.method);
    if (cap.empty()) {
      co_return RpcError(ErrorCode::kInternalError,
                         "the handler asked for input by " + input.method +
                             " (only elicitation/create, sampling/createMessage and roots/list)");
    }
    if (!caps.contains(cap)) needed[cap] = json::object();
  }
  if (!needed.empty()) {
    std::string names;
    for (auto& [cap, _] : needed) names += (names.empty() ? "" : ", ") + std::string(cap);
    RpcError refusal(ErrorCode::kMissingClientCapability,
                     "this request needs client capabilities it did not declare in _meta: " + names,
                     json::object{{"requiredCapabilities", std::move(needed)}});
    if (!input_->refusal) input_->refusal = refusal;
    co_return refusal;
  }
  if (task_) co_return co_await ask_in_task(std::move(inputs));
  std::vector<const InputRequest*> missing;
  auto answers = take_answers(inputs, missing);
  if (!answers) {
    if (!input_->refusal) input_->refusal = answers.error();
    co_return answers.error();
  }
  auto& asked = input_->missing;
  for (auto* m : missing) {
    if (std::none_of(asked.begin(), asked.end(), [&](auto& a) { return a.key == m->key; })) {
      asked.push_back(*m);
    }
  }
  // The request's answer will ask for what is missing (Router::settle_input), whatever the
  // handler makes of this error.
  if (!missing.empty()) co_return RpcError(ErrorCode::kInternalError, "input required");
  co_return answers;
}

Result<InputResponses> InflightRequest::take_answers(const std::vector<InputRequest>& inputs,
                                                     std::vector<const InputRequest*>& missing) {
  InputResponses answers;
  for (auto& input : inputs) {
    auto* answer = input_->answers.if_contains(input.key);
    if (!answer) {
      missing.push_back(&input);
      continue;
    }
    if (auto problem = input_answer_problem(input.method, *answer)) {
      return RpcError(ErrorCode::kInvalidParams,
                      "inputResponses[\"" + input.key + "\"] " + *problem);
    }
    input_->used[input.key] = *answer;
    answers.emplace(input.key, answer->get_object());
  }
  return answers;
}

asio::awaitable<Result<InputResponses>> InflightRequest::ask_in_task(
    std::vector<InputRequest> inputs) {
  auto& store = server_.tasks();
  for (;;) {
    store.with(*task_, [&](Task& t) {
      for (auto& [key, value] : t.answers) input_->answers[key] = value;
      t.answers.clear();
    });
    std::vector<const InputRequest*> missing;
    auto answers = take_answers(inputs, missing);
    if (!answers) co_return answers.error();
    if (missing.empty()) co_return answers;
    if (cancelled_) co_return RpcError(ErrorCode::kInternalError, "the task was cancelled");
    // The task waits in input_required until tasks/update brings every missing answer.
    auto wake =
        std::make_shared<asio::steady_timer>(executor(), asio::steady_timer::time_point::max());
    store.with(*task_, [&](Task& t) {
      if (is_terminal(t.status)) return;
      for (auto* m : missing) {
        t.input_requests[m->key] = json::object{{"method", m->method}, {"params", m->params}};
      }
      t.status = TaskStatus::kInputRequired;
      t.updated = std::chrono::system_clock::now();
      t.wake = wake;
    });
    boost::system::error_code ec;
    co_await wake->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (cancelled_) co_return RpcError(ErrorCode::kInternalError, "the task was cancelled");
  }
}

bool InflightRequest::start_task() {
  if (task_ || task_support_ == TaskSupport::kForbidden || !conversation_ ||
      !conversation_->stateless() || !takes_tasks(rc_.client)) {
    return false;
  }
  auto& store = server_.tasks();
  auto task = store.create(server_.new_session_id());
  if (!task) {
    Metrics::inc(server_.metrics().tasks_rejected_total);
    return false;  // the store is full: the call goes on as an ordinary one
  }
  task->executor = conversation_->executor();
  task->request = self_;
  task_ = task;
  if (!input_) input_ = std::make_unique<InputRounds>();
  Metrics::inc(server_.metrics().tasks_created_total);
  // The task exists before the client hears of it: a tasks/get right after finds it.
  auto created = store.to_json(*task, false);
  created["resultType"] = "task";
  created["_meta"] = json::object{{kMetaServerInfo, server_.server_info()}};
  reply_->deliver(make_result(rc_.request_id, json::value(std::move(created))), true);
  reply_ = std::make_shared<TaskChannel>(store, task);
  leave_exchange();
  return true;
}

void InflightRequest::leave_exchange() {
  // The exchange that asked is answered: its end must not cancel the task, and the task's
  // run time is not a tools/call latency.
  auto& inflight = conversation_->inflight;
  if (auto it = inflight.find(id_key(rc_.request_id));
      it != inflight.end() && it->second.get() == this) {
    inflight.erase(it);
  }
  method_latency_ = nullptr;
  tool_latency_.reset();
}

void InflightRequest::begin_session_task(std::shared_ptr<Task> task) {
  auto& store = server_.tasks();
  store.with(*task, [&](Task& t) {
    t.executor = conversation_->executor();
    t.request = self_;
  });
  task_ = task;
  Metrics::inc(server_.metrics().tasks_created_total);
  // The task exists before the client hears of it: a tasks/get right after finds it.
  reply_->deliver(
      make_result(rc_.request_id, json::value(json::object{{"task", store.session_json(*task)}})),
      true);
  reply_ = std::make_shared<SessionTaskChannel>(store, task, conversation_);
  task_inputs_ = std::make_shared<TaskInputChannel>(store, task, server_.metrics());
  leave_exchange();
  slot_.release();  // the tasks bounds count it from here on
}

asio::any_io_executor InflightRequest::executor() const { return conversation_->executor(); }
asio::any_io_executor InflightRequest::worker_executor() const { return server_.worker_executor(); }
App& InflightRequest::app() const { return server_.app(); }
bool InflightRequest::acquire_blocking_slot() { return server_.acquire_blocking_slot(); }
void InflightRequest::release_blocking_slot() { server_.release_blocking_slot(); }
void InflightRequest::blocking_job_ran(std::chrono::nanoseconds wall) {
  server_.blocking_job_ran(wall);
}

void InflightRequest::cancel() {
  cancelled_ = true;
  signal_.emit(asio::cancellation_type::terminal);
}

void InflightRequest::fail(const RpcError& error) {
  if (answered_) return;
  answered_ = true;
  Metrics::inc(server_.metrics().request_errors_total);
  reply_->deliver(make_error(rc_.request_id, error), true);
  cancel();
}

// ---------------------------------------------------------------------------------------------
void RequestSlot::release() {
  if (!conversation_) return;
  conversation_->outstanding.fetch_sub(1, std::memory_order_relaxed);
  conversation_.reset();
  server_->release_request_slot();
}

Payload make_answer(Metrics& metrics, const json::value& id, Result<json::value> outcome) {
  if (outcome) {
    bool non_finite = false;
    auto text = make_result(id, std::move(*outcome), &non_finite);
    if (non_finite) {
      Metrics::inc(metrics.non_finite_numbers_total);
      Metrics::inc(metrics.request_errors_total);
    }
    return text;
  }
  Metrics::inc(metrics.request_errors_total);
  return make_error(id, outcome.error());
}

RpcError handler_failure(const std::exception& e) {
  // system_error's what() ends in "[category:value at file:line in function ...]" (Boost) or
  // names the paths involved (std::filesystem): its code's message says the same without them.
  std::string why;
  if (auto* boost_error = dynamic_cast<const boost::system::system_error*>(&e)) {
    auto code = boost_error->code();
    why = code.category() == json::error_code(json::error::not_number).category()
              ? "a value could not be converted (" + code.message() + ")"
              : code.message();
  } else if (auto* std_error = dynamic_cast<const std::system_error*>(&e)) {
    why = std_error->code().message();
  } else if (dynamic_cast<const std::bad_alloc*>(&e)) {
    why = "out of memory";
  } else {
    why = e.what();
    if (auto at = why.find(" ["); at != std::string::npos) why.resize(at);  // a location
    constexpr std::size_t kMaxWhy = 200;
    if (why.size() > kMaxWhy) why.resize(kMaxWhy);
  }
  return {ErrorCode::kInternalError, "the handler failed: " + why};
}

std::optional<RequestSlot> Router::admit(const std::shared_ptr<Conversation>& conversation,
                                         const json::value& id,
                                         const std::shared_ptr<ClientChannel>& reply) {
  auto& config = server_.config();
  if (conversation->outstanding.load(std::memory_order_relaxed) >=
      config.max_inflight_per_session) {
    Metrics::inc(server_.metrics().inflight_rejected_total);
    reply->deliver(make_answer(server_.metrics(), id,
                               RpcError(ErrorCode::kServerBusy,
                                        "too many requests in flight for this session (max " +
                                            std::to_string(config.max_inflight_per_session) +
                                            "): wait for answers before sending more")),
                   true);
    return std::nullopt;
  }
  if (!server_.acquire_request_slot()) {
    reply->deliver(
        make_answer(server_.metrics(), id,
                    RpcError(ErrorCode::kServerBusy,
                             "this node has too many requests in flight (max " +
                                 std::to_string(config.max_inflight) + "): retry later")),
        true);
    return std::nullopt;
  }
  conversation->outstanding.fetch_add(1, std::memory_order_relaxed);
  return RequestSlot(server_, conversation);
}

Span Router::method_span(const Conversation& conversation, const Message& m) const {
  auto* tracer = server_.tracer();
  if (!tracer) return {};
  auto parent = meta_trace(m.params);
  if (!parent && m.trace.valid()) parent = m.trace;
  const std::string_view method = m.method;
  std::optional<std::string_view> name;
  if (method == "tools/call" || method == "prompts/get") name = get_string(m.params, "name");
  std::string span_name = m.method;
  if (name) {
    span_name += ' ';
    span_name += bounded(*name);
  }
  auto span = tracer->start(std::move(span_name), SpanKind::kServer, parent);
  if (!span.recording()) return span;
  span.set_attribute("mcp.method.name", m.method);
  if (m.id.is_string()) {
    span.set_attribute("jsonrpc.request.id", std::string(bounded(m.id.get_string())));
  } else if (!m.id.is_null()) {
    span.set_attribute("jsonrpc.request.id", json::serialize(m.id));
  }
  if (auto id = conversation.session_id(); !id.empty()) {
    span.set_attribute("mcp.session.id", redact_session_id(id));
  }
  if (auto client = conversation.client(); client && !client->protocol_version.empty()) {
    span.set_attribute("mcp.protocol.version", std::string(bounded(client->protocol_version)));
  }
  if (method == "tools/call" && name) {
    span.set_attribute("gen_ai.tool.name", std::string(bounded(*name)));
    span.set_attribute("gen_ai.operation.name", std::string("execute_tool"));
  } else if (method == "prompts/get" && name) {
    span.set_attribute("gen_ai.prompt.name", std::string(bounded(*name)));
  } else if (auto uri = get_string(m.params, "uri")) {
    span.set_attribute("mcp.resource.uri", std::string(bounded(*uri)));
  }
  return span;
}

void Router::finish_method_span(Span& span, const Result<json::value>& outcome) {
  if (!span.recording()) return;
  if (!outcome) {
    auto code = std::to_string(outcome.error().code);
    span.set_attribute("error.type", code);
    span.set_attribute("rpc.response.status_code", std::move(code));
    span.set_error(std::string(bounded(outcome.error().message)));
  } else if (outcome->is_object()) {
    if (auto* e = outcome->get_object().if_contains("isError");
        e && e->is_bool() && e->get_bool()) {
      span.set_attribute("error.type", std::string("tool_error"));
      span.set_error("tool_error");
    }
  }
}

void Router::handle(const std::shared_ptr<Conversation>& conversation, Message m,
                    const std::shared_ptr<ClientChannel>& reply) {
  auto slot = admit(conversation, m.id, reply);
  if (!slot) return;
  // A synchronous answer is delivered before `slot` goes; a coroutine or a subscription that
  // waits for the cluster takes it along.
  serve(conversation, std::move(m), reply, *slot);
}

void Router::serve(const std::shared_ptr<Conversation>& conversation, Message m,
                   const std::shared_ptr<ClientChannel>& reply, RequestSlot& slot) {
  const auto started = std::chrono::steady_clock::now();
  LatencyHistogram& latency = server_.metrics().method_latency[timed_method_index(m.method)];
  const bool stateless = conversation->stateless();
  // A string_view compares lengths first: most of the names below are ruled out at once.
  const std::string_view method = m.method;
  Span span = method_span(*conversation, m);
  TraceScope scope(span.context());
  auto answer = [&](Result<json::value> r) {
    finish_method_span(span, r);
    if (stateless) r = complete_stateless(method, std::move(r));
    reply->deliver(make_answer(server_.metrics(), m.id, std::move(r)), true);
    latency.observe(std::chrono::steady_clock::now() - started);
    span.end();
  };
  if (stateless) {
    if (removed_in_stateless(method)) {
      return answer(RpcError(ErrorCode::kMethodNotFound,
                             "method not found: " + m.method +
                                 " (removed in 2026-07-28: requests carry their context in "
                                 "_meta; subscriptions/listen replaces subscribe)"));
    }
    if (method == "server/discover") return answer(server_.discover_result());
    if (method == "tasks/get" || method == "tasks/update" || method == "tasks/cancel") {
      if (!takes_tasks(conversation->client())) return answer(tasks_not_declared());
      return answer(handle_task_method(method, m.params));
    }
  }
  // Sessions of 2025-11-25: tasks/get, tasks/list and tasks/cancel answer at once, tasks/result
  // waits for its task.
  bool task_result = false;
  if (!stateless && method.starts_with("tasks/") && has_session_tasks(*conversation)) {
    if (method == "tasks/get" || method == "tasks/list" || method == "tasks/cancel") {
      return answer(serve_session_task_method(server_.tasks(), *conversation, method, m.params,
                                              server_.config().page_size));
    }
    task_result = method == "tasks/result";
  }
  if (method == "ping") return answer(json::value(json::object{}));
  if (method == "tools/list" || method == "resources/list" ||
      method == "resources/templates/list" || method == "prompts/list") {
    return answer(handle_list(m));
  }
  if (method == "resources/subscribe" || method == "resources/unsubscribe") {
    auto uri = get_string(m.params, "uri");
    if (!uri) return answer(invalid_params("params.uri (string) is required"));
    if (auto problem = uri_problem(*uri, server_.config().max_uri_bytes)) {
      Metrics::inc(server_.metrics().uris_rejected_total);
      return answer(invalid_params(std::move(*problem)));
    }
    if (method == "resources/unsubscribe") return answer(conversation->unsubscribe(*uri));
    // std::function needs a copyable callable: the slot rides in a shared_ptr.
    auto held = std::make_shared<RequestSlot>(std::move(slot));
    auto held_span = std::make_shared<Span>(std::move(span));
    conversation->subscribe(
        *uri, [this, id = m.id, reply, held, held_span, started, &latency](Result<json::value> r) {
          finish_method_span(*held_span, r);
          reply->deliver(make_answer(server_.metrics(), id, std::move(r)), true);
          latency.observe(std::chrono::steady_clock::now() - started);
          held->release();
          held_span->end();
        });
    return;
  }
  if (method == "logging/setLevel") {
    auto level = get_string(m.params, "level");
    if (!level) return answer(invalid_params("params.level (string) is required"));
    auto parsed = parse_log_level(*level);
    if (!parsed) return answer(invalid_params("unknown log level: " + std::string(*level)));
    return answer(conversation->set_log_level(*parsed));
  }
  if (method != "tools/call" && method != "resources/read" && method != "prompts/get" &&
      method != "completion/complete" && (!stateless || method != "subscriptions/listen") &&
      !task_result) {
    return answer(RpcError(ErrorCode::kMethodNotFound, "method not found: " + m.method));
  }
  std::unique_ptr<InflightRequest::InputRounds> input;
  if (stateless && takes_input(method)) {
    auto opened = open_input(method, m.params);
    if (!opened) return answer(opened.error());
    input = std::move(*opened);
  }
  auto& inflight = conversation->inflight;
  auto key = id_key(m.id);
  if (inflight.contains(key)) {
    return answer(RpcError(ErrorCode::kInvalidRequest, "request id already in use"));
  }
  json::object meta;
  json::value progress_token = nullptr;
  if (auto* mv = m.params.if_contains("_meta"); mv && mv->is_object()) {
    if (auto* pt = mv->get_object().if_contains("progressToken");
        pt && (pt->is_string() || pt->is_number())) {
      progress_token = *pt;
    }
    meta = std::move(mv->get_object());  // the handler reads it from its RequestContext
  }
  RequestContext rc{conversation->client(),   std::string(conversation->session_id()),
                    server_.config().node_id, m.id,
                    std::move(meta),          span.context()};
  std::shared_ptr<LatencyHistogram> tool_latency;
  TaskSupport task_support = TaskSupport::kForbidden;
  bool auto_task = false;
  std::shared_ptr<Task> session_task;  // 2025-11-25: the call asked to run as this task
  if (method == "tools/call") {
    // A synchronous tool (and any call that fails its checks) is answered right here: no
    // coroutine, no in-flight entry (nothing can cancel it before it ends). A handler that
    // throws reaches the caller's catch, which fails this request alone.
    auto catalog = server_.app().catalog();
    auto tool = called_tool(*catalog, m.params);
    if (tool && stateless && (*tool)->spec.task_support == TaskSupport::kRequired &&
        !takes_tasks(conversation->client())) {
      Metrics::inc(server_.metrics().tool_calls_total);
      return answer(tasks_not_declared());
    }
    if (tool && stateless && (*tool)->handler &&
        (*tool)->spec.task_support != TaskSupport::kForbidden) {
      task_support = (*tool)->spec.task_support;
      auto_task = !(*tool)->spec.starts_task_itself;
    }
    if (tool && !stateless && has_session_tasks(*conversation)) {
      auto augmentation = read_task_augmentation((*tool)->spec, m.params);
      if (augmentation && augmentation->requested) {
        auto created = create_session_task(*conversation, augmentation->ttl);
        if (created) {
          session_task = std::move(*created);
        } else {
          augmentation = created.error();
        }
      }
      if (!augmentation) {
        Metrics::inc(server_.metrics().tool_calls_total);
        return answer(augmentation.error());
      }
    }
    // A task runs its handler, synchronous or not, after the CreateTaskResult.
    if (!tool || ((*tool)->sync_handler && !session_task)) {
      Metrics::inc(server_.metrics().tool_calls_total);
      if (!tool) return answer(tool.error());
      auto args = tool_arguments(**tool, m.params);
      if (auto* done = std::get_if<Result<json::value>>(&args)) {
        answer(std::move(*done));
      } else {
        InflightRequest ctx(server_, conversation, std::move(rc), reply, std::move(progress_token));
        ctx.input_ = std::move(input);
        auto handling = handler_span(server_.tracer(), span.context(),
                                     "execute_tool " + std::string(bounded((*tool)->spec.name)));
        auto r = tool_answer((*tool)->sync_handler(ctx, std::move(std::get<json::object>(args))));
        finish_method_span(handling, r);
        handling.end();
        answer(settle_input(ctx, std::move(r)));
      }
      // (The catalog snapshot holds the tool, and its histogram, until here.)
      (*tool)->latency->observe(std::chrono::steady_clock::now() - started);
      return;
    }
    tool_latency = (*tool)->latency;  // the handler may outlive this catalog snapshot
  }
  auto request = std::make_shared<InflightRequest>(server_, conversation, std::move(rc), reply,
                                                   std::move(progress_token));
  request->slot_ = std::move(slot);
  request->input_ = std::move(input);
  request->started_ = started;
  request->method_latency_ = &latency;
  request->tool_latency_ = std::move(tool_latency);
  request->task_support_ = task_support;
  request->span_ = std::move(span);
  request->self_ = request;
  inflight.emplace(std::move(key), request);
  // A task-supporting tool called by a client that takes tasks becomes a task before its
  // handler starts, unless the handler decides when (ToolSpec::starts_task_itself); in a
  // session, a call that asked for a task is one before its handler starts.
  if (session_task) {
    request->begin_session_task(std::move(session_task));
  } else if (auto_task) {
    request->start_task();
  }
  auto cancellation = request->signal_.slot();
  // The completion handler owns `request` too: co_spawn keeps using the slot (and so the
  // signal inside InflightRequest) after run_request returns, until it calls the handler.
  asio::co_spawn(
      conversation->executor(), run_request(request, std::move(m)),
      asio::bind_cancellation_slot(cancellation, [keep = request](std::exception_ptr) {}));
}

asio::awaitable<void> Router::run_request(std::shared_ptr<InflightRequest> inflight, Message m) {
  Payload response;
  const bool stateless = inflight->conversation_->stateless();
  try {
    auto r = settle_input(*inflight, co_await dispatch_async(*inflight, m));
    finish_method_span(inflight->span_, r);
    if (stateless) r = complete_stateless(m.method, std::move(r));
    response = make_answer(server_.metrics(), m.id, std::move(r));
  } catch (const std::exception& e) {
    // Handler code is the app's: a throw is its bug, reported to the client, never a crash.
    Result<json::value> failed = handler_failure(e);
    finish_method_span(inflight->span_, failed);
    response = make_answer(server_.metrics(), m.id, std::move(failed));
  }
  auto& map = inflight->conversation_->inflight;
  auto it = map.find(id_key(m.id));
  if (it != map.end() && it->second == inflight) map.erase(it);
  if (!inflight->answered_) {
    const bool answering = !inflight->cancelled_;
    inflight->reply_->deliver(answering ? std::move(response) : nullptr, true);
    if (answering && inflight->method_latency_) {
      auto took = std::chrono::steady_clock::now() - inflight->started_;
      inflight->method_latency_->observe(took);
      if (inflight->tool_latency_) inflight->tool_latency_->observe(took);
    }
  }
  if (inflight->cancelled_ && inflight->span_.recording()) {
    inflight->span_.set_attribute("error.type", std::string("cancelled"));
    inflight->span_.set_error("cancelled");
  }
  inflight->span_.end();
  // Break the cycle conversation -> inflight -> conversation once done.
  inflight->conversation_.reset();
  inflight->slot_.release();
}

// GCC 12 warns -Wmismatched-new-delete on this coroutine's frame: Asio's awaitable frames
// come from its class-specific operator new (recycling, aligned_new underneath) and go back
// through the matching class-specific operator delete, but after inlining GCC compares
// aligned_new with that operator delete. A false positive for coroutine frames; silenced for
// this one function.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
asio::awaitable<Result<json::value>> Router::dispatch_async(InflightRequest& ctx, Message& m) {
  if (m.method == "subscriptions/listen") co_return co_await listen(ctx, m);
  if (m.method == "tasks/result") co_return co_await task_result(ctx, m);
  auto catalog = server_.app().catalog();
  auto& p = m.params;
  if (m.method == "tools/call") {
    Metrics::inc(server_.metrics().tool_calls_total);
    auto tool = called_tool(*catalog, p);
    if (!tool) co_return tool.error();
    auto prepared = tool_arguments(**tool, p);
    if (auto* answer = std::get_if<Result<json::value>>(&prepared)) co_return std::move(*answer);
    auto& args = std::get<json::object>(prepared);
    auto handling = handler_span(server_.tracer(), ctx.request().trace,
                                 "execute_tool " + std::string(bounded((*tool)->spec.name)));
    // `catalog` (a local of this frame) keeps the tool and its handler alive across suspension.
    Result<json::value> r = RpcError();
    if ((*tool)->handler) {
      r = tool_answer(co_await (*tool)->handler(ctx, std::move(args)));
    } else {
      r = tool_answer((*tool)->sync_handler(ctx, std::move(args)));
    }
    finish_method_span(handling, r);
    co_return r;
  }
  if (m.method == "resources/read") {
    auto uri = get_string(p, "uri");
    if (!uri) co_return invalid_params("resources/read needs params.uri (string)");
    Result<std::vector<ResourceContents>> contents = RpcError();
    auto handling = handler_span(server_.tracer(), ctx.request().trace, "read_resource");
    handling.set_attribute("mcp.resource.uri", std::string(bounded(*uri)));
    if (auto* res = catalog->find_resource(*uri)) {
      auto handler = res->handler;
      contents = co_await handler(ctx, std::string(*uri));
    } else {
      const App::Template* match = nullptr;
      std::map<std::string, std::string> vars;
      for (auto& t : catalog->templates) {
        vars.clear();
        if (match_uri_template(t->spec.uri_template, *uri, vars)) {
          match = t.get();
          break;
        }
      }
      if (!match) {
        co_return RpcError(ErrorCode::kResourceNotFound, "resource not found",
                           json::object{{"uri", *uri}});
      }
      auto handler = match->handler;
      contents = co_await handler(ctx, std::string(*uri), std::move(vars));
    }
    if (!contents) {
      handling.set_error(std::string(bounded(contents.error().message)));
      co_return contents.error();
    }
    json::array arr;
    for (auto& c : *contents) arr.push_back(c.to_json());
    co_return json::value(json::object{{"contents", std::move(arr)}});
  }
  if (m.method == "prompts/get") {
    auto name = get_string(p, "name");
    if (!name) co_return invalid_params("prompts/get needs params.name (string)");
    auto* prompt = catalog->find_prompt(*name);
    if (!prompt) co_return invalid_params("unknown prompt: " + std::string(*name));
    std::map<std::string, std::string> args;
    if (auto* a = get_object(p, "arguments")) {
      for (auto& [k, v] : *a) {
        if (!v.is_string()) {
          co_return invalid_params("prompt argument '" + std::string(k) + "' must be a string");
        }
        args.emplace(std::string(k), std::string(v.get_string()));
      }
    }
    for (auto& arg : prompt->spec.arguments) {
      if (arg.required && !args.contains(arg.name)) {
        co_return invalid_params("missing required argument '" + arg.name + "' for prompt '" +
                                 prompt->spec.name + "'");
      }
    }
    auto handler = prompt->handler;
    auto handling = handler_span(server_.tracer(), ctx.request().trace,
                                 "get_prompt " + std::string(bounded(prompt->spec.name)));
    auto r = co_await handler(ctx, std::move(args));
    if (!r) handling.set_error(std::string(bounded(r.error().message)));
    if (!r) co_return r.error();
    json::object out{{"messages", std::move(r->messages)}};
    if (!r->description.empty()) out["description"] = r->description;
    co_return json::value(std::move(out));
  }
  // completion/complete
  auto* ref = get_object(p, "ref");
  auto* argument = get_object(p, "argument");
  if (!ref || !argument) co_return invalid_params("completion/complete needs ref and argument");
  CompletionRequest req;
  auto type = get_string(*ref, "type");
  if (!type) co_return invalid_params("ref.type must be a string");
  req.ref_type = std::string(*type);
  std::optional<std::string_view> ref_name;
  if (req.ref_type == "ref/prompt") {
    ref_name = get_string(*ref, "name");
    if (ref_name && !catalog->find_prompt(*ref_name)) {
      co_return invalid_params("unknown prompt: " + std::string(*ref_name));
    }
  } else if (req.ref_type == "ref/resource") {
    ref_name = get_string(*ref, "uri");
  } else {
    co_return invalid_params("ref.type must be ref/prompt or ref/resource");
  }
  if (!ref_name) co_return invalid_params("ref needs name (prompt) or uri (resource)");
  req.ref = std::string(*ref_name);
  auto arg_name = get_string(*argument, "name");
  auto arg_value = get_string(*argument, "value");
  if (!arg_name || !arg_value) co_return invalid_params("argument needs name and value strings");
  req.argument = std::string(*arg_name);
  req.value = std::string(*arg_value);
  if (auto* c = get_object(p, "context")) {
    if (auto* a = get_object(*c, "arguments")) {
      for (auto& [k, v] : *a) {
        if (v.is_string()) req.context.emplace(std::string(k), std::string(v.get_string()));
      }
    }
  }
  Completion completion;
  auto it = catalog->completions.find(req.ref_type + " " + req.ref);
  if (it != catalog->completions.end()) {
    auto handler = it->second;
    auto r = co_await handler(ctx, req);
    if (!r) co_return r.error();
    completion = std::move(*r);
  }
  json::array values;
  constexpr std::size_t kMaxValues = 100;
  for (std::size_t i = 0; i < completion.values.size() && i < kMaxValues; ++i) {
    values.emplace_back(completion.values[i]);
  }
  json::object c{{"values", std::move(values)}};
  bool more = completion.has_more || completion.values.size() > kMaxValues;
  c["total"] =
      completion.total ? *completion.total : static_cast<std::int64_t>(completion.values.size());
  c["hasMore"] = more;
  co_return json::value(json::object{{"completion", std::move(c)}});
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

Result<std::unique_ptr<InflightRequest::InputRounds>> Router::open_input(
    std::string_view method, const json::object& params) {
  auto rounds = std::make_unique<InflightRequest::InputRounds>();
  rounds->binding = RequestStateSealer::binding(method, params);
  if (auto* state = params.if_contains("requestState")) {
    if (!state->is_string()) {
      return invalid_params("requestState must be a string, echoed as the server sent it");
    }
    auto opened = server_.request_states().open(state->get_string(), rounds->binding);
    if (!opened) {
      Metrics::inc(server_.metrics().request_states_rejected_total);
      return invalid_params(std::string(to_string(opened.error())));
    }
    if (auto* r = opened->if_contains("r"); r && r->is_int64() && r->get_int64() > 0) {
      rounds->round = static_cast<std::size_t>(r->get_int64());
    }
    if (auto* a = opened->if_contains("a"); a && a->is_object()) {
      rounds->answers = std::move(a->get_object());
    }
  }
  if (auto* responses = params.if_contains("inputResponses")) {
    if (!responses->is_object()) {
      return invalid_params("inputResponses must be an object: the answers by input request key");
    }
    // An earlier round's answer, sealed in requestState, stands: the handler acted on it.
    for (auto& [key, value] : responses->get_object()) {
      if (!rounds->answers.contains(key)) rounds->answers[key] = value;
    }
  }
  return rounds;
}

Result<json::value> Router::settle_input(InflightRequest& ctx, Result<json::value> outcome) {
  auto* input = ctx.input_.get();
  if (input && input->refusal) return *input->refusal;
  if (!input || input->missing.empty()) return outcome;
  json::object requests;
  for (auto& asked : input->missing) {
    requests[asked.key] = json::object{{"method", asked.method}, {"params", asked.params}};
  }
  json::object data{{"r", static_cast<std::int64_t>(input->round + 1)}, {"a", input->used}};
  auto state = server_.request_states().seal(data, input->binding);
  if (state.size() > server_.config().max_request_state_bytes) {
    return invalid_params("the answers this request collected exceed max_request_state_bytes (" +
                          std::to_string(server_.config().max_request_state_bytes) + ")");
  }
  Metrics::inc(server_.metrics().input_required_total);
  return json::value(json::object{{"resultType", "input_required"},
                                  {"inputRequests", std::move(requests)},
                                  {"requestState", std::move(state)}});
}

Result<json::value> Router::complete_stateless(std::string_view method,
                                               Result<json::value> outcome) {
  if (!outcome) {
    if (outcome.error().code == static_cast<int>(ErrorCode::kResourceNotFound)) {
      // 2026-07-28 names an unknown resource an invalid parameter.
      return RpcError(ErrorCode::kInvalidParams, "Resource not found", outcome.error().data);
    }
    return outcome;
  }
  if (!outcome->is_object()) return outcome;
  auto& o = outcome->get_object();
  if (!o.contains("resultType")) o["resultType"] = "complete";
  if (cacheable(method) && o["resultType"] == "complete") {
    if (!o.contains("ttlMs")) {
      o["ttlMs"] = static_cast<std::int64_t>(server_.config().cache_ttl.count());
    }
    // The lists and discovery are the same for every client; a resource's contents may not be.
    if (!o.contains("cacheScope"))
      o["cacheScope"] = method == "resources/read" ? "private" : "public";
  }
  auto& meta = o["_meta"];
  if (!meta.is_object()) meta = json::object();
  meta.get_object()[kMetaServerInfo] = server_.server_info();
  return outcome;
}

Result<json::value> Router::handle_task_method(std::string_view method,
                                               const json::object& params) {
  auto id = get_string(params, "taskId");
  if (!id) return invalid_params(std::string(method) + " needs params.taskId (string)");
  auto& store = server_.tasks();
  auto task = store.find(*id);
  if (!task) {
    return RpcError(ErrorCode::kInvalidParams, "unknown task: " + std::string(*id),
                    json::object{{"taskId", *id}});
  }
  if (method == "tasks/get") return json::value(store.to_json(*task, true));
  if (method == "tasks/update") {
    auto* responses = params.if_contains("inputResponses");
    if (!responses || !responses->is_object()) {
      return invalid_params("tasks/update needs params.inputResponses (an object by key)");
    }
    if (auto wake = store.answer(*task, responses->get_object())) {
      asio::post(task->executor, [wake] { wake->cancel(); });
    }
    return json::value(json::object{});
  }
  // tasks/cancel: an ack whatever its state (a finished task stays as it finished).
  if (auto request = store.cancel(*task)) {
    asio::post(task->executor, [request] { request->cancel(); });
  }
  return json::value(json::object{});
}

Result<std::shared_ptr<Task>> Router::create_session_task(
    const Conversation& conversation, std::optional<std::chrono::milliseconds> ttl) {
  const auto& config = server_.config();
  bool session_full = false;
  auto task = server_.tasks().create_for_session(server_.new_session_id(),
                                                 std::string(conversation.session_id()), ttl,
                                                 config.max_tasks_per_session, session_full);
  if (task) return task;
  if (session_full) {
    Metrics::inc(server_.metrics().tasks_per_session_rejected_total);
    return RpcError(ErrorCode::kServerBusy,
                    "this session has max_tasks_per_session (" +
                        std::to_string(config.max_tasks_per_session) +
                        ") tasks not finished: wait for one to end, or cancel one");
  }
  Metrics::inc(server_.metrics().tasks_rejected_total);
  return RpcError(
      ErrorCode::kServerBusy,
      "this node holds max_tasks (" + std::to_string(config.max_tasks) + ") tasks: retry later");
}

asio::awaitable<Result<json::value>> Router::task_result(InflightRequest& ctx, const Message& m) {
  auto& store = server_.tasks();
  auto task = find_session_task(store, *ctx.conversation_, m.method, m.params);
  if (!task) co_return task.error();
  auto wake =
      std::make_shared<asio::steady_timer>(ctx.executor(), asio::steady_timer::time_point::max());
  for (;;) {
    std::deque<Payload> queued;
    if (auto answer = store.wait_for_result(**task, ctx.reply_, wake, queued)) {
      co_return std::move(*answer);
    }
    // What the handler asked of the client while nobody waited goes out on this stream.
    for (auto& message : queued) ctx.reply_->deliver(std::move(message), false);
    boost::system::error_code ec;
    co_await wake->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    store.stop_waiting(**task, ctx.reply_.get());
    if (ctx.is_cancelled()) co_return RpcError(ErrorCode::kInternalError, "request cancelled");
    wake->expires_at(asio::steady_timer::time_point::max());
  }
}

asio::awaitable<Result<json::value>> Router::listen(InflightRequest& ctx, const Message& m) {
  auto* filter = get_object(m.params, "notifications");
  if (!filter)
    co_return invalid_params("subscriptions/listen needs params.notifications (an object)");
  auto stream = std::make_shared<ListenStream>();
  stream->subscription_id = m.id;
  stream->reply = ctx.reply_;
  json::object honored;
  for (auto [key, flag] : {std::pair{"toolsListChanged", &stream->tools},
                           std::pair{"promptsListChanged", &stream->prompts},
                           std::pair{"resourcesListChanged", &stream->resources}}) {
    auto* v = filter->if_contains(key);
    if (!v) continue;
    if (!v->is_bool())
      co_return invalid_params(std::string("notifications.") + key + " must be a boolean");
    *flag = v->get_bool();
    if (*flag) honored[key] = true;
  }
  if (auto* uris = filter->if_contains("resourceSubscriptions")) {
    if (!uris->is_array()) {
      co_return invalid_params("notifications.resourceSubscriptions must be an array of URIs");
    }
    auto& config = server_.config();
    if (uris->get_array().size() > config.max_subscriptions_per_session) {
      Metrics::inc(server_.metrics().subscriptions_rejected_total);
      co_return invalid_params("notifications.resourceSubscriptions holds more than " +
                               std::to_string(config.max_subscriptions_per_session) + " URIs");
    }
    json::array listed;
    for (auto& u : uris->get_array()) {
      if (!u.is_string())
        co_return invalid_params("notifications.resourceSubscriptions holds a non-string");
      if (auto problem = uri_problem(u.get_string(), config.max_uri_bytes)) {
        Metrics::inc(server_.metrics().uris_rejected_total);
        co_return invalid_params(std::move(*problem));
      }
      std::string uri(u.get_string());
      if (std::find(stream->uris.begin(), stream->uris.end(), uri) != stream->uris.end()) continue;
      listed.emplace_back(uri);
      stream->uris.push_back(std::move(uri));
    }
    if (!listed.empty()) honored["resourceSubscriptions"] = std::move(listed);
  }
  auto wait =
      std::make_shared<asio::steady_timer>(ctx.executor(), asio::steady_timer::time_point::max());
  stream->end = [executor = ctx.executor(), weak = std::weak_ptr(wait)] {
    asio::post(executor, [weak] {
      if (auto timer = weak.lock()) timer->cancel();
    });
  };
  auto ack = make_notification("notifications/subscriptions/acknowledged",
                               json::object{{"notifications", std::move(honored)},
                                            {"_meta", {{kMetaSubscriptionId, m.id}}}});
  if (!server_.add_listen_stream(stream,
                                 [reply = ctx.reply_, ack] { reply->deliver(ack, false); })) {
    co_return RpcError(ErrorCode::kServerBusy,
                       "this node holds max_listen_streams (" +
                           std::to_string(server_.config().max_listen_streams) +
                           ") listen streams: retry later or on another node");
  }
  struct Unlisten {
    Server& server;
    std::shared_ptr<ListenStream> stream;
    ~Unlisten() { server.remove_listen_stream(stream); }
  } unlisten{server_, stream};
  // A listen stream is counted by max_listen_streams, not against the in-flight bounds.
  ctx.slot_.release();
  boost::system::error_code ec;
  co_await wait->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  co_return json::value(json::object{{"_meta", {{kMetaSubscriptionId, m.id}}}});
}

Result<json::value> Router::handle_list(const Message& m) {
  auto offset = parse_cursor(m.params);
  if (!offset) return invalid_params("invalid cursor");
  auto catalog = server_.app().catalog();
  std::vector<json::object> items;
  std::string_view key;
  if (m.method == "tools/list") {
    key = "tools";
    for (auto& t : catalog->tools) {
      const auto& s = t->spec;
      json::object o{{"name", s.name}, {"inputSchema", s.input_schema}};
      if (!s.title.empty()) o["title"] = s.title;
      if (!s.description.empty()) o["description"] = s.description;
      if (s.output_schema) o["outputSchema"] = *s.output_schema;
      if (!s.annotations.empty()) o["annotations"] = s.annotations;
      if (!s.icons.empty()) o["icons"] = s.icons;
      if (!s.meta.empty()) o["_meta"] = s.meta;
      if (s.task_support != TaskSupport::kForbidden) {
        o["execution"] = {
            {"taskSupport", s.task_support == TaskSupport::kRequired ? "required" : "optional"}};
      }
      items.push_back(std::move(o));
    }
  } else if (m.method == "resources/list") {
    key = "resources";
    for (auto& r : catalog->resources) items.push_back(r->spec.to_json());
    for (auto& t : catalog->templates) {
      if (!t->lister) continue;
      for (auto& r : t->lister()) items.push_back(r.to_json());
    }
  } else if (m.method == "resources/templates/list") {
    key = "resourceTemplates";
    for (auto& t : catalog->templates) items.push_back(t->spec.to_json());
  } else {
    key = "prompts";
    for (auto& p : catalog->prompts) items.push_back(p->spec.to_json());
  }
  if (*offset > items.size()) return invalid_params("invalid cursor");
  std::size_t page = std::max<std::size_t>(server_.config().page_size, 1);
  std::size_t end = std::min(items.size(), *offset + page);
  json::array arr;
  for (std::size_t i = *offset; i < end; ++i) arr.push_back(std::move(items[i]));
  json::object result{{key, std::move(arr)}};
  if (end < items.size()) result["nextCursor"] = std::to_string(end);
  return json::value(std::move(result));
}

}  // namespace mcpmesh::mcp
