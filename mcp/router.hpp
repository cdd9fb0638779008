#pragma once
/// \file
/// The method router: serves one client request (ping, the list methods, subscriptions, the
/// log level, tools, resources, prompts, completion) from the conversation it belongs to and a
/// channel back to the client. It knows nothing of sessions or transports: a session-era
/// session implements `Conversation`, and so can a request that carries its own context
/// (2026-07-28) or a request another node forwarded.
///
/// Threading: `Router::handle` runs on the conversation's executor; coroutine handlers run
/// there too. The router itself holds no per-request state and may serve any number of
/// conversations at once.

#include "mcp/app.hpp"
#include "mcp/client_channel.hpp"
#include "mcp/tasks.hpp"

#include <boost/asio/cancellation_signal.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

namespace mcpmesh::mcp {

class Server;
class InflightRequest;
struct Metrics;

/// What a request may read or change about the conversation it belongs to, and the requests
/// of that conversation still running (for notifications/cancelled and the in-flight bound).
/// Thread-safety: every member is called on `executor()` only.
class Conversation {
 public:
  virtual ~Conversation() = default;

  [[nodiscard]] virtual const asio::any_io_executor& executor() const = 0;
  /// What the client said about itself; null before initialize.
  [[nodiscard]] virtual std::shared_ptr<const ClientState> client() const = 0;
  /// Empty when the request belongs to no session.
  [[nodiscard]] virtual std::string_view session_id() const = 0;
  [[nodiscard]] virtual std::optional<LogLevel> log_level() const = 0;
  virtual Result<json::value> set_log_level(LogLevel level) = 0;
  /// Subscribes to `uri` and calls `done` with the answer, at once or (in a cluster) once the
  /// other nodes know this node cares about `uri`, so that no update raised anywhere after the
  /// answer is missed. `done` may run on another thread.
  virtual void subscribe(std::string_view uri, std::function<void(Result<json::value>)> done) = 0;
  virtual Result<json::value> unsubscribe(std::string_view uri) = 0;
  /// Whether a handler may end its request's stream early for the client to resume it.
  [[nodiscard]] virtual bool resumable_streams() const = 0;
  /// A request of the stateless era (2026-07-28): its context came in `_meta`; results carry
  /// resultType, server info and cache hints; input from the client is multi round-trip.
  [[nodiscard]] virtual bool stateless() const { return false; }
  /// Sends a request to the client on `via` and waits for its answer (see HandlerContext).
  virtual asio::awaitable<Result<json::object>> request_client(
      std::string method, json::object params, std::chrono::milliseconds deadline,
      const std::shared_ptr<ClientChannel>& via) = 0;
  /// Sends `message`, which answers no request, on the conversation's standalone stream (a
  /// session's GET stream or stdout); dropped where there is none. Any thread.
  virtual void notify_client(Payload message) {}

  /// Requests of this conversation being handled, by id_key.
  std::unordered_map<std::string, std::shared_ptr<InflightRequest>> inflight;
  /// Requests of this conversation admitted and not answered yet, of every kind (the bound of
  /// max_inflight_per_session). Atomic: an answer may complete on another thread.
  std::atomic<std::size_t> outstanding{0};
};

/// One admitted request's share of the in-flight bounds (its conversation's and the node's),
/// given back once it is answered and its handler has ended. Move-only; any thread.
class RequestSlot {
 public:
  RequestSlot() = default;
  RequestSlot(Server& server, std::shared_ptr<Conversation> conversation)
      : server_(&server), conversation_(std::move(conversation)) {}
  RequestSlot(RequestSlot&& other) noexcept
      : server_(other.server_), conversation_(std::move(other.conversation_)) {}
  RequestSlot& operator=(RequestSlot&& other) noexcept {
    if (this != &other) {
      release();
      server_ = other.server_;
      conversation_ = std::move(other.conversation_);
    }
    return *this;
  }
  ~RequestSlot() { release(); }
  void release();

 private:
  Server* server_ = nullptr;
  std::shared_ptr<Conversation> conversation_;  // null once released
};

/// The answer to request `id` from its outcome, counted in `metrics` (errors; a result holding
/// a number JSON cannot carry, answered with -32603 instead). Every answer to a client request
/// is built here.
[[nodiscard]] Payload make_answer(Metrics& metrics, const json::value& id,
                                  Result<json::value> outcome);

/// The error for a handler that threw `e` (app code's bug). Says what went wrong in words a
/// client can use, never where: no exception text carrying a source location (Boost's
/// system_error adds one to what()) or a file path (std::filesystem) reaches the client.
[[nodiscard]] RpcError handler_failure(const std::exception& e);

/// A request being handled: the handler's context. Lives on the conversation's executor.
class InflightRequest final : public HandlerContext {
 public:
  InflightRequest(Server& server, std::shared_ptr<Conversation> conversation, RequestContext rc,
                  std::shared_ptr<ClientChannel> reply, json::value progress_token);

  const RequestContext& request() const override { return rc_; }
  void report_progress(double progress, std::optional<double> total,
                       std::string_view message) override;
  void log(LogLevel level, json::value data, std::string_view logger) override;
  bool is_cancelled() const override { return cancelled_; }
  void close_stream() override;
  asio::awaitable<Result<json::object>> request_client(std::string method, json::object params,
                                                       std::chrono::milliseconds deadline) override;
  asio::awaitable<Result<InputResponses>> ask(std::vector<InputRequest> inputs,
                                              std::chrono::milliseconds deadline) override;
  [[nodiscard]] std::size_t input_round() const override { return input_ ? input_->round : 0; }
  bool start_task() override;
  asio::any_io_executor executor() const override;
  asio::any_io_executor worker_executor() const override;
  App& app() const override;

  /// The client cancelled: the handler is told, and its answer will be dropped.
  void cancel();
  /// Answers the request now with `error` and cancels the handler (shutdown, drain).
  void fail(const RpcError& error);

 protected:
  bool acquire_blocking_slot() override;
  void release_blocking_slot() override;
  void blocking_job_ran(std::chrono::nanoseconds wall) override;

 private:
  friend class Router;
  /// The answers the request holds for `inputs` (validated; taken into the next requestState),
  /// and in `missing` the inputs it holds none for. An error for a malformed answer.
  Result<InputResponses> take_answers(const std::vector<InputRequest>& inputs,
                                      std::vector<const InputRequest*>& missing);
  /// ask() for a call that became a task: the task waits in input_required for tasks/update.
  asio::awaitable<Result<InputResponses>> ask_in_task(std::vector<InputRequest> inputs);
  /// Makes this tools/call the session-era task `task` (2025-11-25) before its handler starts:
  /// answers the CreateTaskResult, and from then on the handler's messages go the task's ways
  /// (SessionTaskChannel, TaskInputChannel). The task is bounded by the tasks limits, no
  /// longer by the in-flight ones.
  void begin_session_task(std::shared_ptr<Task> task);
  /// request_client() of a session-era task: the request carries the related-task `_meta`, and
  /// the task is input_required until it is answered.
  asio::awaitable<Result<json::object>> request_client_in_task(std::string method,
                                                               json::object params,
                                                               std::chrono::milliseconds deadline);
  [[nodiscard]] bool session_task() const { return task_ && !task_->session_id.empty(); }
  /// Once the call became a task: drops it from the in-flight requests and from the tools/call
  /// latencies.
  void leave_exchange();
  /// Sends a progress or log notification; null (it held a non-finite number) is dropped.
  void deliver_notification(Payload notification);

  /// A stateless request's multi round-trip input (tools/call, prompts/get, resources/read).
  struct InputRounds {
    std::string binding;    // what its requestState is sealed for (RequestStateSealer::binding)
    std::size_t round = 0;  // InputRequiredResults answered before this call
    json::object answers;   // by key: earlier rounds' (from requestState), then this round's
    json::object used;      // the answers the handler took: sealed into the next requestState
    std::vector<InputRequest> missing;  // asked for, not answered: the answer asks for them
    /// The input could not be asked for or was malformed: the request's answer, whatever the
    /// handler made of it (-32021, -32602).
    std::optional<RpcError> refusal;
    std::size_t next_auto_key = 0;  // request_client's inputs are "input-1", "input-2", ...
  };

  Server& server_;
  std::shared_ptr<Conversation> conversation_;  // reset when done (breaks the cycle)
  RequestContext rc_;
  std::unique_ptr<InputRounds> input_;  // null: the session era, or a method without input
  // The tasks extension: whether this call may become a task, and the task once it is one
  // (of either era).
  TaskSupport task_support_ = TaskSupport::kForbidden;
  std::shared_ptr<Task> task_;
  std::shared_ptr<ClientChannel> task_inputs_;  // a session-era task's way for its requests
  std::weak_ptr<InflightRequest> self_;
  Span span_;  // the request's MCP span, ended once it is answered
  std::shared_ptr<ClientChannel> reply_;
  json::value progress_token_;
  asio::cancellation_signal signal_;
  RequestSlot slot_;  // released when the handler ends
  // Where its latency goes once it is answered (/metrics).
  std::chrono::steady_clock::time_point started_{};
  LatencyHistogram* method_latency_ = nullptr;
  std::shared_ptr<LatencyHistogram> tool_latency_;
  bool cancelled_ = false;
  bool answered_ = false;  // fail() answered already: the handler's outcome is dropped
};

class Router {
 public:
  explicit Router(Server& server) : server_(server) {}

  /// Conversation executor only. Serves request `m`; the answer (and anything the handler
  /// emits on the way) goes to `reply`. A handler that throws fails this request alone. A
  /// request of any kind over max_inflight_per_session (this conversation's requests not
  /// answered yet) or max_inflight (the node's) is answered at once with -32000.
  void handle(const std::shared_ptr<Conversation>& conversation, Message m,
              const std::shared_ptr<ClientChannel>& reply);

  /// The MCP span of request `m` (OpenTelemetry's MCP conventions: named "{method} {tool or
  /// prompt}", kind SERVER): a child of the `traceparent` in `params._meta` when it holds a
  /// valid one, else of the transport's span (`m.trace`). Not recording without a tracer or
  /// when its trace is not sampled.
  [[nodiscard]] Span method_span(const Conversation& conversation, const Message& m) const;
  /// Records `outcome` on a method span: a JSON-RPC error sets error.type (the code) and the
  /// error status; a tool result with isError sets error.type tool_error.
  static void finish_method_span(Span& span, const Result<json::value>& outcome);

 private:
  /// Admits request `id` within the in-flight bounds, or answers it with -32000 (counted).
  std::optional<RequestSlot> admit(const std::shared_ptr<Conversation>& conversation,
                                   const json::value& id,
                                   const std::shared_ptr<ClientChannel>& reply);
  void serve(const std::shared_ptr<Conversation>& conversation, Message m,
             const std::shared_ptr<ClientChannel>& reply, RequestSlot& slot);
  Result<json::value> handle_list(const Message& m);
  asio::awaitable<void> run_request(std::shared_ptr<InflightRequest> inflight, Message m);
  asio::awaitable<Result<json::value>> dispatch_async(InflightRequest& ctx, Message& m);

  // The stateless era (2026-07-28).
  /// Reads a request's inputResponses and opens its requestState.
  Result<std::unique_ptr<InflightRequest::InputRounds>> open_input(std::string_view method,
                                                                   const json::object& params);
  /// The answer when the handler asked for input the request did not carry: an
  /// InputRequiredResult with a new requestState, whatever the handler returned.
  Result<json::value> settle_input(InflightRequest& ctx, Result<json::value> outcome);
  /// What every stateless answer carries: resultType, server info, cache hints; the errors the
  /// revision renames (an unknown resource is -32602 with its URI).
  Result<json::value> complete_stateless(std::string_view method, Result<json::value> outcome);
  /// tasks/get, tasks/update, tasks/cancel (the tasks extension).
  Result<json::value> handle_task_method(std::string_view method, const json::object& params);
  /// tasks/result of a session-era task: waits until the task ends, carrying the handler's
  /// messages to the client on this request's stream meanwhile, then answers what the call
  /// would have answered.
  asio::awaitable<Result<json::value>> task_result(InflightRequest& ctx, const Message& m);
  /// A new task of `conversation` (a session) for a task-augmented tools/call, or -32000 when
  /// the session's or the node's bound is reached (counted).
  Result<std::shared_ptr<Task>> create_session_task(const Conversation& conversation,
                                                    std::optional<std::chrono::milliseconds> ttl);
  /// subscriptions/listen: acknowledges, then delivers what the client opted in to until the
  /// client goes away or the server ends the stream.
  asio::awaitable<Result<json::value>> listen(InflightRequest& ctx, const Message& m);

  Server& server_;
};

}  // namespace mcpmesh::mcp
