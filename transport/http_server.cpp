#include "transport/http_server.hpp"

#include "transport/http_request.hpp"

#include "mcp/roaming_executor.hpp"
#include "mcp/stateless.hpp"
#include "mcp/version.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <initializer_list>

namespace mcpmesh::transport {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using mcp::ErrorCode;
using mcp::Metrics;
using mcp::RpcError;

namespace {

/// ASCII lower case, without the locale lookups of std::tolower (header names are ASCII).
constexpr char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

/// Case-insensitive substring test without allocating (`needle` is lower case).
bool contains_ci(std::string_view haystack, std::string_view needle) {
  if (needle.size() > haystack.size()) return false;
  if (haystack.find(needle) != std::string_view::npos) return true;  // the usual spelling
  for (std::size_t i = 0; i + needle.size() <= haystack.size(); ++i) {
    std::size_t j = 0;
    while (j < needle.size() && ascii_lower(haystack[i + j]) == needle[j]) {
      ++j;
    }
    if (j == needle.size()) return true;
  }
  return false;
}

bool accepts(std::string_view accept, std::string_view type) {
  return contains_ci(accept, type) || contains_ci(accept, "*/*");
}

bool is_loopback_name(std::string_view host) {
  return beast::iequals(host, "localhost") || host == "127.0.0.1" || host == "[::1]" ||
         host == "::1";
}

/// "name:port" / "[v6]:port" → name (case kept: every comparison below ignores case).
std::string_view strip_port(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    auto close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(0, close + 1);
  }
  auto colon = host.rfind(':');
  if (colon != std::string_view::npos && host.find(':') == colon) host = host.substr(0, colon);
  return host;
}

}  // namespace

bool origin_allowed(std::string_view origin, const std::vector<std::string>& allowed) {
  for (auto& a : allowed) {
    if (a == "*" || beast::iequals(a, origin)) return true;
  }
  if (!allowed.empty()) return false;
  auto scheme_end = origin.find("://");
  if (scheme_end == std::string_view::npos) return false;
  auto rest = origin.substr(scheme_end + 3);
  rest = rest.substr(0, rest.find('/'));
  return is_loopback_name(strip_port(rest));
}

bool host_allowed(std::string_view host, const std::vector<std::string>& allowed) {
  auto name = strip_port(host);
  if (name.empty()) return false;
  for (auto& a : allowed) {
    if (a == "*" || beast::iequals(a, name)) return true;
  }
  return allowed.empty() && is_loopback_name(name);
}

struct HttpServer::Shared {
  Shared(std::vector<asio::io_context*> ctxs, mcp::Server& s, HttpConfig c)
      : contexts(std::move(ctxs)),
        server(s),
        config(std::move(c)),
        acceptor(*contexts[0]),
        admission(std::make_shared<Admission>(config.admission, config.max_connections,
                                              s.config().max_sessions, s.metrics())) {
    reserve_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
  ~Shared() {
    if (reserve_fd >= 0) ::close(reserve_fd);
  }
  std::vector<asio::io_context*> contexts;
  std::size_t next_context = 0;  // accept loop only
  asio::io_context& next() { return *contexts[next_context++ % contexts.size()]; }
  std::atomic<std::size_t> next_forwarded{0};
  asio::io_context& next_for_forwarded() {
    return *contexts[next_forwarded.fetch_add(1, std::memory_order_relaxed) % contexts.size()];
  }
  mcp::Server& server;
  HttpConfig config;
  tcp::acceptor acceptor;
  SessionLocator* locator = nullptr;
  std::atomic<std::shared_ptr<const UpgradeRoute>> upgrade;
  std::function<bool()> ready;
  std::function<void(std::string&)> extra_metrics;
  std::shared_ptr<Admission> admission;
  mcp::Metrics& metrics() { return server.metrics(); }

  /// /metrics: the server's, admission's and (in a cluster) the cluster's figures.
  [[nodiscard]] std::string render_metrics() {
    auto text = server.metrics().render_prometheus();
    server.app().render_tool_latency(text);
    admission->render_metrics(text);
    if (extra_metrics) extra_metrics(text);
    return text;
  }

  /// /readyz: why the node is not taking new work (not ready or draining, full, shedding
  /// requests), or "" when it is.
  [[nodiscard]] std::string_view not_ready_because() const {
    if (!server.quorate()) return "no quorum: at most half of the cluster seen alive";
    if (!(this->ready ? this->ready() : server.accepting())) return "not accepting new sessions";
    if (server.session_count() >= server.config().max_sessions) return "sessions at max_sessions";
    if (server.metrics().connections_active.load(std::memory_order_relaxed) >=
        config.max_connections) {
      return "connections at max_connections";
    }
    if (!admission->taking_work()) return "shedding load";
    return "";
  }

  // Accept loop only (context 0).
  int reserve_fd = -1;  // given up to accept (and refuse) a connection when out of descriptors
  std::chrono::steady_clock::time_point accept_log_at{};
  std::uint64_t accept_errors_unlogged = 0;
};

namespace {

using mcp::EventQueue;
using mcp::SessionStreams;

/// Cancels a stateless request when the exchange that carries its answer ends (a no-op once
/// it was answered).
struct StatelessCancel {
  std::shared_ptr<mcp::StatelessConversation> call;
  ~StatelessCancel() {
    if (call) call->cancel();
  }
};

/// The way back for a stateless request (2026-07-28): its notifications and answer straight
/// into the exchange's queue, with no event id and nothing kept (its streams do not resume).
class RequestChannel final : public mcp::ClientChannel {
 public:
  explicit RequestChannel(const std::shared_ptr<EventQueue>& queue) : queue_(queue) {}
  void deliver(mcp::Payload message, bool completes_request) override {
    auto queue = queue_.lock();
    if (!queue) return;
    if (!completes_request) {
      if (message) queue->push({std::move(message), {}, false});
      return;
    }
    if (message) queue->push({std::move(message), {}, true});
    mcp::StreamEvent end;
    end.end = true;
    queue->push(std::move(end));
  }

 private:
  std::weak_ptr<EventQueue> queue_;
};

/// Detaches a connection's queue from a stream when the connection stops serving it.
struct StreamAttachment {
  std::shared_ptr<SessionStreams> streams;
  std::uint64_t id;
  std::shared_ptr<EventQueue> queue;
  ~StreamAttachment() { streams->detach(id, queue); }
};

using Request = HttpRequest;

/// One HTTP exchange at a time: a request in, its whole answer (JSON or an SSE stream) out,
/// through `out_` and the two write hooks. Knows no socket: a TCP connection (Connection) and an
/// exchange relayed from another node (ForwardedExchange) both run it. Runs on one
/// single-threaded io_context, so it needs no strand.
class Exchange {
 public:
  virtual ~Exchange() = default;

 protected:
  Exchange(std::shared_ptr<HttpServer::Shared> shared, asio::io_context& context, unsigned hops)
      : context_(context), shared_(std::move(shared)), cfg_(shared_->config), hops_(hops) {}

  /// The client admission control counts this exchange against; null for an exchange relayed
  /// here (the node it arrived at admitted it).
  virtual ClientRef client_of(const Request& req) = 0;
  /// Sends what `out_` holds without waiting; true when all of it went out.
  virtual bool write_now() = 0;
  /// Sends the rest of `out_`, waiting for the peer under its deadline; throws
  /// boost::system::system_error when the peer is gone or too slow.
  virtual asio::awaitable<void> write_rest() = 0;
  [[nodiscard]] virtual asio::any_io_executor executor() = 0;
  /// A stream is about to wait for its next event: gives back what only reading and writing
  /// need, so that an idle held stream costs little more than its socket and its queue.
  virtual void on_stream_idle() {}
  /// Offers the GET stream whose head is in `out_` (queue_ attached to `stream_id` of
  /// `streams`) to be pumped without a coroutine. True: taken; the exchange then ends (answers
  /// false) and the connection carries on once the stream ends. False: pump_sse serves it.
  virtual bool hold_stream(std::shared_ptr<mcp::Session>& session,
                           std::shared_ptr<SessionStreams>& streams, std::uint64_t stream_id,
                           bool keep_alive) {
    return false;
  }

  /// Serves one request and writes its answer into `out_` (and through the write hooks, for
  /// streams). Returns whether the connection may carry another request.
  asio::awaitable<bool> exchange(Request& req) {
    close_after_ = false;
    status_ = 0;
    req_ = &req;
    mcp::Span span = start_http_span(req);
    trace_ = span.context();
    Next next;
    {
      mcp::TraceScope scope(trace_);
      next = handle(req);
    }
    bool keep = false;
    switch (next) {
      case Next::kClose:
        break;
      case Next::kKeep:
        keep = true;
        break;
      case Next::kPostStream: {
        std::optional<StreamAttachment> attachment;
        if (post_.streams) attachment.emplace(post_.streams, post_.stream_id, queue_);
        // A stateless request's stream closing before its answer is its cancellation.
        StatelessCancel cancel{post_.call};
        if (auto answered = answer_post_now(req)) {
          keep = *answered;
        } else {
          keep = co_await stream_answer(req);
        }
        keep = keep && req.keep_alive();
        post_.reset();
        break;
      }
      case Next::kGetStream:
        keep = co_await handle_get(req);
        break;
      case Next::kRelay:
        keep = co_await relay(req);
        break;
      case Next::kLegacyStream:
        keep = co_await handle_legacy_get(req);
        break;
      case Next::kUpgrade:
        keep = upgrade(req);
        break;
    }
    end_http_span(span);
    co_return keep&& req.keep_alive() && !close_after_;
  }

  // -- tracing --------------------------------------------------------------------------------
  /// The span of an exchange on the MCP endpoints (probes and scrapes are not traced): "POST
  /// /mcp" (kind SERVER) for one from a client, "mcpmesh.v1.Forward/Relay" (SERVER) for one
  /// another node relayed here, a child of the request's `traceparent` either way.
  mcp::Span start_http_span(const Request& req) {
    auto* tracer = shared_->server.tracer();
    if (!tracer) return {};
    std::string_view path = req.target();
    path = path.substr(0, path.find('?'));
    if (path != cfg_.path &&
        (cfg_.legacy_sse_path.empty() ||
         (path != cfg_.legacy_sse_path && path != cfg_.legacy_messages_path))) {
      return {};
    }
    auto parent = mcp::parse_traceparent(req["traceparent"], req["tracestate"]);
    std::string_view verb = http::to_string(req.method());
    auto span = tracer->start(
        hops_ > 0 ? std::string(kRelaySpan) : std::string(verb) + " " + std::string(path),
        mcp::SpanKind::kServer, parent);
    if (!span.recording()) return span;
    span.set_attribute("http.request.method", std::string(verb));
    span.set_attribute("url.path", std::string(path.substr(0, 256)));
    span.set_attribute("network.protocol.version",
                       std::string(req.version() == 10 ? "1.0" : "1.1"));
    if (auto id = req["Mcp-Session-Id"]; !id.empty()) {
      span.set_attribute("mcp.session.id", mcp::redact_session_id(id.substr(0, 256)));
    }
    if (hops_ > 0) {
      span.set_attribute("rpc.system", std::string("mcpmesh-relay"));
      span.set_attribute("rpc.service", std::string("mcpmesh.v1.Forward"));
      span.set_attribute("rpc.method", std::string("Relay"));
      span.set_attribute("mcpmesh.forward.hops", static_cast<std::int64_t>(hops_));
    }
    return span;
  }

  /// Ends an exchange's span with the answer's status (5xx is an error on the server side).
  void end_http_span(mcp::Span& span) const {
    if (!span.recording()) return;
    if (status_ != 0) {
      span.set_attribute("http.response.status_code", static_cast<std::int64_t>(status_));
    }
    if (status_ >= 500) {
      span.set_attribute("error.type", std::to_string(status_));
      span.set_error("HTTP " + std::to_string(status_));
    }
    span.end();
  }

  static constexpr std::string_view kRelaySpan = "mcpmesh.v1.Forward/Relay";

  /// The exchange's event queue, emptied for the next stream. One queue (and its timer) per
  /// connection: a connection carries one stream at a time.
  void fresh_queue() {
    if (!queue_ || !queue_->reusable()) {
      queue_ =
          std::make_shared<EventQueue>(executor(), shared_->server.config().streams.queue_events);
    } else {
      queue_->clear();
    }
  }

  // -- responses ------------------------------------------------------------------------------
  using Header = std::pair<std::string_view, std::string_view>;
  static constexpr std::size_t kChunked = ~std::size_t{0};
  static constexpr std::size_t kUntilClose = kChunked - 1;

  /// Appends a status line and header block to `out_`: Content-Length `length`, chunked
  /// transfer coding for kChunked, neither for kUntilClose (an HTTP/1.0 stream, delimited by
  /// closing the connection). Counts 4xx and 5xx answers.
  void append_head(http::status status, unsigned version, bool keep, std::string_view content_type,
                   std::size_t length, std::initializer_list<Header> extra = {}) {
    auto code = static_cast<unsigned>(status);
    status_ = code;
    if (code >= 500) {
      Metrics::inc(shared_->metrics().http_5xx_total);
    } else if (code >= 400) {
      Metrics::inc(shared_->metrics().http_4xx_total);
    }
    std::array<char, 24> num;
    auto number = [&num](std::size_t v) {
      auto [end, ec] = std::to_chars(num.data(), num.data() + num.size(), v);
      return std::string_view(num.data(), static_cast<std::size_t>(end - num.data()));
    };
    out_ += version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
    out_ += number(code);
    out_ += ' ';
    out_ += http::obsolete_reason(status);
    out_ += "\r\n";
    if (!content_type.empty()) {
      out_ += "Content-Type: ";
      out_ += content_type;
      out_ += "\r\n";
    }
    for (auto& [name, value] : extra) {
      out_ += name;
      out_ += ": ";
      out_ += value;
      out_ += "\r\n";
    }
    if (length == kChunked) {
      out_ += "Transfer-Encoding: chunked\r\n";
    } else if (length == kUntilClose) {
      keep = false;
    } else {
      out_ += "Content-Length: ";
      out_ += number(length);
      out_ += "\r\n";
    }
    if (version == 11 && !keep) out_ += "Connection: close\r\n";
    if (version == 10 && keep) out_ += "Connection: keep-alive\r\n";
    out_ += "\r\n";
  }

  void respond(http::status status, unsigned version, bool keep, std::string_view content_type,
               std::string_view body, std::initializer_list<Header> extra = {}) {
    append_head(status, version, keep, content_type, body.size(), extra);
    out_ += body;
    if (status_ >= 400) log_refusal(body);
  }

  /// An exchange answered with an error status, at debug level with the answer (its JSON-RPC
  /// error says why) and, when traced, the trace id.
  void log_refusal(std::string_view body) const {
    if (!spdlog::should_log(spdlog::level::debug) || !req_) return;
    std::string_view path = req_->target();
    path = path.substr(0, std::min<std::size_t>(path.find('?'), 256));
    spdlog::debug("answered {} to {} {}{}{}: {}", status_, http::to_string(req_->method()), path,
                  hops_ > 0 ? " (relayed here)" : "", client_note(), body.substr(0, 300));
  }

  /// " from ADDRESS" for a client connection (nothing for an exchange relayed here).
  [[nodiscard]] virtual std::string client_note() const { return {}; }

  /// Admission control said no: 429 or 503 with Retry-After and a JSON-RPC error.
  void respond_refusal(const Refusal& refusal, const Request& req,
                       const mcp::json::value& id = nullptr) {
    auto body = mcp::make_error(id, RpcError(ErrorCode::kServerBusy, refusal.message));
    std::array<char, 24> num;
    auto [end, ec] =
        std::to_chars(num.data(), num.data() + num.size(), refusal.retry_after.count());
    respond(static_cast<http::status>(refusal.status), req.version(), req.keep_alive(),
            "application/json", *body,
            {{"Retry-After",
              std::string_view(num.data(), static_cast<std::size_t>(end - num.data()))}});
  }

  void respond_error(http::status status, unsigned version, bool keep, const RpcError& error,
                     const mcp::json::value& id = nullptr) {
    auto body = mcp::make_error(id, error);
    if (status == http::status::method_not_allowed) {
      respond(status, version, keep, "application/json", *body, {{"Allow", "GET, POST, DELETE"}});
    } else {
      respond(status, version, keep, "application/json", *body);
    }
  }

  // -- routing --------------------------------------------------------------------------------
  /// What exchange() does after handle(): the answer is in `out_` (close or keep the
  /// connection), or a stream follows (a POST waiting for its answers, a GET stream), or the
  /// exchange is relayed to the node holding its session.
  enum class Next { kClose, kKeep, kPostStream, kGetStream, kRelay, kLegacyStream, kUpgrade };

  static Next after(bool keep) { return keep ? Next::kKeep : Next::kClose; }

  /// A request to switch to the server's upgrade protocol on its path.
  bool wants_upgrade(const Request& req) const {
    auto route = shared_->upgrade.load();
    if (!route || req.method() != http::verb::get) return false;
    std::string_view target = req.target();
    if (target.substr(0, target.find('?')) != route->path) return false;
    return beast::iequals(req[http::field::upgrade], route->protocol);
  }

  /// Hands the connection to the upgrade route, or answers its refusal; false either way (this
  /// exchange serves no more requests on the connection).
  virtual bool upgrade(Request& req) {
    respond_error(http::status::not_found, req.version(), false,
                  RpcError(ErrorCode::kInvalidRequest, "no such endpoint"));
    return false;
  }

  Next handle(Request& req) {
    auto version = req.version();
    bool keep = req.keep_alive();
    // A relayed exchange was checked by the node it arrived at (an authenticated peer).
    if (hops_ == 0) {
      if (wants_upgrade(req)) return Next::kUpgrade;
      auto host = req[http::field::host];
      if (!host_allowed(host, cfg_.allowed_hosts)) {
        Metrics::inc(shared_->metrics().host_rejected_total);
        respond_error(http::status::forbidden, version, keep,
                      RpcError(ErrorCode::kInvalidRequest, "Host not allowed"));
        return after(keep);
      }
      if (auto origin = req[http::field::origin];
          !origin.empty() && !origin_allowed(origin, cfg_.allowed_origins)) {
        Metrics::inc(shared_->metrics().origin_rejected_total);
        respond_error(http::status::forbidden, version, keep,
                      RpcError(ErrorCode::kInvalidRequest, "Origin not allowed"));
        return after(keep);
      }
    }
    std::string_view target = req.target();
    target = target.substr(0, target.find('?'));
    if (target == "/healthz" && req.method() == http::verb::get) {
      respond(http::status::ok, version, keep, "text/plain", "ok\n");
      return after(keep);
    }
    if (target == "/readyz" && req.method() == http::verb::get) {
      auto why = shared_->not_ready_because();
      bool ready = why.empty();
      auto body = std::string(ready ? "ready" : "not ready: ") + std::string(why) + " (zone " +
                  std::string(to_string(shared_->admission->zone())) + ")\n";
      respond(ready ? http::status::ok : http::status::service_unavailable, version, keep,
              "text/plain", body);
      return after(keep);
    }
    if (target == "/metrics" && req.method() == http::verb::get) {
      respond(http::status::ok, version, keep, "text/plain; version=0.0.4",
              shared_->render_metrics());
      return after(keep);
    }
    if (!cfg_.legacy_sse_path.empty() && target != cfg_.path) {
      if (target == cfg_.legacy_sse_path && req.method() == http::verb::get) {
        return Next::kLegacyStream;
      }
      if (target == cfg_.legacy_messages_path && req.method() == http::verb::post) {
        return handle_legacy_post(req);
      }
    }
    if (target != cfg_.path) {
      respond_error(http::status::not_found, version, keep,
                    RpcError(ErrorCode::kInvalidRequest, "no such endpoint"));
      return after(keep);
    }
    if (auto pv = req["MCP-Protocol-Version"]; !pv.empty() && !mcp::is_supported_version(pv)) {
      // Without a session, a POST of another version is a stateless request (2026-07-28), and
      // its checks answer an unknown version with the versions this node speaks.
      if (!req["Mcp-Session-Id"].empty()) {
        respond_error(http::status::bad_request, version, keep,
                      RpcError(ErrorCode::kInvalidRequest,
                               "unsupported MCP-Protocol-Version: " + std::string(pv)));
        return after(keep);
      }
      if (req.method() != http::verb::post) {
        respond_error(http::status::method_not_allowed, version, keep,
                      RpcError(ErrorCode::kInvalidRequest,
                               "MCP-Protocol-Version " + std::string(pv) +
                                   " has no GET stream and no session to DELETE: POST each "
                                   "request (subscriptions/listen for notifications)"));
        return after(keep);
      }
    }
    // Where the exchange is served: with the session it names, or (a stateless request about
    // a task) with the task; either may be held by another node.
    std::string_view id = req["Mcp-Session-Id"];
    bool elsewhere = !id.empty() && shared_->locator && !shared_->server.find_session(id);
    if (id.empty() && shared_->locator && req.method() == http::verb::post) {
      if (auto task = mcp::task_named(req["Mcp-Method"], req["Mcp-Name"]);
          task && !shared_->server.tasks().find(*task)) {
        id = *task;
        elsewhere = true;
      }
    }
    if (elsewhere) {
      // Not held here: the node holding it answers, byte for byte, before this one reads the
      // body (it would only repeat the holder's checks).
      auto where = shared_->locator->locate(id);
      if (where.verdict == SessionLocator::Verdict::kUnavailable) {
        Metrics::inc(shared_->metrics().sessions_unavailable_total);
        respond(http::status::service_unavailable, version, keep, "application/json",
                *mcp::make_error(nullptr, RpcError(ErrorCode::kServerBusy,
                                                   "the node holding this session is not "
                                                   "answering and no other node has taken it "
                                                   "over yet; retry shortly")),
                {{"Retry-After", "1"}});
        return after(keep);
      }
      if (where.verdict == SessionLocator::Verdict::kElsewhere) {
        if (hops_ < cfg_.max_forward_hops) {
          // The client's limits are this node's to apply (the holder sheds by its own load).
          // The body is not parsed here: a POST naming a method counts as one request.
          if (req.method() == http::verb::post &&
              req.body().find("\"method\"") != std::string::npos) {
            if (auto client = client_of(req)) {
              if (auto refused = shared_->admission->limit_requests(client, 1)) {
                respond_refusal(*refused, req);
                return after(keep);
              }
            }
          }
          remote_ = std::move(where.target);
          return Next::kRelay;
        }
        Metrics::inc(shared_->metrics().forward_hops_exceeded_total);
        respond(http::status::service_unavailable, version, keep, "application/json",
                *mcp::make_error(nullptr, RpcError(ErrorCode::kServerBusy,
                                                   "this session is moving between nodes; "
                                                   "retry shortly")),
                {{"Retry-After", "1"}});
        return after(keep);
      }
    }
    switch (req.method()) {
      case http::verb::post:
        return handle_post(req);
      case http::verb::get:
        return Next::kGetStream;
      case http::verb::delete_:
        return handle_delete(req);
      default:
        respond_error(http::status::method_not_allowed, version, keep,
                      RpcError(ErrorCode::kInvalidRequest, "method not allowed"));
        return after(keep);
    }
  }

  /// An HTTP session: the session and its SSE streams.
  struct HttpSession {
    std::shared_ptr<mcp::Session> session;
    std::shared_ptr<SessionStreams> streams;
  };

  /// Looks up the session named by Mcp-Session-Id, answering 400/404 itself when it fails
  /// (then `session` is null).
  HttpSession require_session(Request& req) {
    auto id = req["Mcp-Session-Id"];
    if (id.empty()) {
      respond_error(
          http::status::bad_request, req.version(), req.keep_alive(),
          RpcError(ErrorCode::kInvalidRequest, "Bad Request: Mcp-Session-Id header is required"));
      return {};
    }
    auto session = shared_->server.find_session(id);
    // A session of another transport (stdio) has no streams and is not reachable over HTTP.
    if (!session || session->closed() || !session->streams()) {
      respond_error(http::status::not_found, req.version(), req.keep_alive(),
                    RpcError(ErrorCode::kInvalidRequest, "Session not found"));
      return {};
    }
    session->touch();
    auto streams = session->streams()->shared_from_this();
    return {std::move(session), std::move(streams)};
  }

  Next handle_post(Request& req) {
    auto version = req.version();
    bool keep = req.keep_alive();
    auto ct = req[http::field::content_type];
    if (!contains_ci(ct.substr(0, ct.find(';')), "application/json")) {
      respond_error(http::status::unsupported_media_type, version, keep,
                    RpcError(ErrorCode::kInvalidRequest, "Content-Type must be application/json"));
      return after(keep);
    }
    auto accept = req[http::field::accept];
    if (!accepts(accept, "application/json") || !accepts(accept, "text/event-stream")) {
      respond_error(http::status::not_acceptable, version, keep,
                    RpcError(ErrorCode::kInvalidRequest,
                             "Not Acceptable: Accept must list application/json and "
                             "text/event-stream"));
      return after(keep);
    }
    auto frame = mcp::parse_frame(req.body(), {.max_depth = cfg_.max_json_depth});
    if (frame.frame_error) {
      if (frame.frame_error->code == static_cast<int>(ErrorCode::kParseError)) {
        Metrics::inc(shared_->metrics().parse_errors_total);
      } else if (frame.frame_error->message.find("nesting") != std::string::npos) {
        Metrics::inc(shared_->metrics().json_too_deep_total);
      }
      respond_error(http::status::bad_request, version, keep, *frame.frame_error);
      return after(keep);
    }
    if (frame.is_batch && frame.messages.size() + frame.errors.size() > cfg_.max_batch_size) {
      Metrics::inc(shared_->metrics().batches_rejected_total);
      respond_error(
          http::status::bad_request, version, keep,
          RpcError(ErrorCode::kInvalidRequest,
                   "batch longer than " + std::to_string(cfg_.max_batch_size) + " messages"));
      return after(keep);
    }
    if (!frame.is_batch && !frame.errors.empty()) {
      respond_error(http::status::bad_request, version, keep, frame.errors[0].second,
                    frame.errors[0].first);
      return after(keep);
    }
    if (trace_.valid()) {
      for (auto& m : frame.messages) m.trace = trace_;
    }
    // A request that names a 2026-07-28 version is served statelessly, initialize included
    // (which that revision removed).
    if (!frame.is_batch && frame.messages.size() == 1 && req["Mcp-Session-Id"].empty()) {
      auto headers = mirrored_headers(req);
      if (mcp::is_stateless_request(frame.messages[0], headers)) {
        return handle_stateless(req, std::move(frame.messages[0]), headers);
      }
    }
    bool opens = std::any_of(frame.messages.begin(), frame.messages.end(),
                             [](auto& m) { return mcp::Server::opens_session(m); });
    std::size_t requests = 0;
    for (auto& m : frame.messages) requests += m.is_request() ? 1 : 0;
    for (auto& e : frame.errors) requests += e.first.is_null() ? 0 : 1;
    auto& admission = *shared_->admission;
    auto client = client_of(req);  // null when relayed here
    if (!opens && requests > 0) {
      // New work: the client's rate first (a client over it does not take others' share of
      // what the shedder admits), then the node's load. A POST carrying only answers and
      // notifications is never refused: the node asked for those answers.
      std::optional<Refusal> refused;
      if (client) refused = admission.limit_requests(client, requests);
      if (!refused) refused = admission.shed_request();
      if (refused) {
        bool single = !frame.is_batch && !frame.messages.empty();
        respond_refusal(*refused, req, single ? frame.messages[0].id : mcp::json::value());
        return after(keep);
      }
    }
    std::shared_ptr<mcp::Session> session;
    std::shared_ptr<SessionStreams> streams;
    bool created = false;
    if (opens) {
      if (frame.is_batch || frame.messages.size() != 1 || !frame.messages[0].is_request()) {
        respond_error(
            http::status::bad_request, version, keep,
            RpcError(ErrorCode::kInvalidRequest, "initialize must be sent alone, as a request"));
        return after(keep);
      }
      if (!req["Mcp-Session-Id"].empty()) {
        respond_error(
            http::status::bad_request, version, keep,
            RpcError(ErrorCode::kInvalidRequest, "initialize must not carry Mcp-Session-Id"),
            frame.messages[0].id);
        return after(keep);
      }
      std::shared_ptr<void> hold;
      if (client) {
        Refusal refusal;
        hold = admission.admit_session(client, refusal);
        if (!hold) {
          respond_refusal(refusal, req, frame.messages[0].id);
          return after(keep);
        }
      }
      auto made = shared_->server.create_streamed_session(&context_, std::move(hold));
      if (!made) {
        respond(http::status::service_unavailable, version, keep, "application/json",
                *mcp::make_error(frame.messages[0].id, made.error()), {{"Retry-After", "5"}});
        return after(keep);
      }
      session = *made;
      streams = session->streams()->shared_from_this();
      created = true;
    } else {
      auto found = require_session(req);
      if (!found.session) return after(keep);
      session = std::move(found.session);
      streams = std::move(found.streams);
      if (frame.is_batch && !session->allows_batches()) {
        respond_error(http::status::bad_request, version, keep,
                      RpcError(ErrorCode::kInvalidRequest,
                               "JSON-RPC batches are not allowed in protocol version " +
                                   std::string(session->protocol_version())));
        return after(keep);
      }
    }
    if (requests == 0) {
      session->post_frame(std::move(frame.messages), streams);
      respond(http::status::accepted, version, keep, {}, {});
      return after(keep);
    }
    auto stream_id = streams->open_post_stream(requests);
    auto channel = streams->channel(stream_id);
    fresh_queue();
    streams->attach(stream_id, 0, queue_);
    for (auto& [id, error] : frame.errors) {
      if (!id.is_null()) channel->deliver(mcp::make_error(id, error), true);
    }
    // An idle session handles the frame right here (its strand runs inline on this thread), so
    // synchronous handlers have answered by the time post_frame returns.
    session->post_frame(std::move(frame.messages), channel);
    post_.streams = std::move(streams);
    post_.stream_id = stream_id;
    post_.session = std::move(session);
    post_.session_header = created ? post_.session->id() : std::string();
    post_.created = created;
    post_.is_batch = frame.is_batch;
    return Next::kPostStream;
  }

  // -- the HTTP+SSE transport of 2024-11-05 ---------------------------------------------------
  /// GET on the legacy SSE path: a new session whose every message (answers included) goes out
  /// on this stream; the first event names where the client POSTs. The session ends with the
  /// stream (this transport has no resumption).
  asio::awaitable<bool> handle_legacy_get(Request& req) {
    bool keep = req.keep_alive();
    if (!accepts(req[http::field::accept], "text/event-stream")) {
      respond_error(http::status::not_acceptable, req.version(), keep,
                    RpcError(ErrorCode::kInvalidRequest,
                             "Not Acceptable: Accept must list text/event-stream"));
      co_return keep;
    }
    std::shared_ptr<void> hold;
    if (auto client = client_of(req)) {
      Refusal refusal;
      hold = shared_->admission->admit_session(client, refusal);
      if (!hold) {
        respond_refusal(refusal, req);
        co_return keep;
      }
    }
    auto made = shared_->server.create_streamed_session(&context_, std::move(hold));
    if (!made) {
      respond(http::status::service_unavailable, req.version(), keep, "application/json",
              *mcp::make_error(nullptr, made.error()), {{"Retry-After", "5"}});
      co_return keep;
    }
    auto session = *made;
    auto streams = session->streams()->shared_from_this();
    fresh_queue();
    streams->attach(0, SessionStreams::kUndelivered, queue_);
    StreamAttachment attachment{streams, 0, queue_};
    struct EndSession {
      mcp::Server& server;
      std::string id;
      ~EndSession() { server.close_session(id, "its HTTP+SSE stream ended"); }
    } end{shared_->server, session->id()};
    append_sse_head(req, {}, false, 0);
    append_sse({"event: endpoint\ndata: ", cfg_.legacy_messages_path, "?sessionId=", session->id(),
                "\n\n"});
    co_return co_await pump_sse(*queue_, session.get()) && keep;
  }

  /// POST on the legacy messages path: the messages go to the session named by `sessionId`;
  /// whatever answers them goes out on its SSE stream. 202 once accepted.
  Next handle_legacy_post(Request& req) {
    auto version = req.version();
    bool keep = req.keep_alive();
    std::string_view query = req.target();
    auto q = query.find('?');
    query = q == std::string_view::npos ? std::string_view() : query.substr(q + 1);
    std::string_view id;
    while (!query.empty()) {
      auto amp = query.find('&');
      auto pair = query.substr(0, amp);
      if (pair.starts_with("sessionId=")) id = pair.substr(10);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    }
    auto session = id.empty() ? nullptr : shared_->server.find_session(id);
    if (!session || session->closed() || !session->streams()) {
      respond_error(http::status::not_found, version, keep,
                    RpcError(ErrorCode::kInvalidRequest, "Session not found"));
      return after(keep);
    }
    auto frame = mcp::parse_frame(req.body(), {.max_depth = cfg_.max_json_depth});
    if (frame.frame_error) {
      respond_error(http::status::bad_request, version, keep, *frame.frame_error);
      return after(keep);
    }
    if (trace_.valid()) {
      for (auto& m : frame.messages) m.trace = trace_;
    }
    std::size_t requests = 0;
    for (auto& m : frame.messages) requests += m.is_request() ? 1 : 0;
    if (requests > 0) {
      std::optional<Refusal> refused;
      if (auto client = client_of(req))
        refused = shared_->admission->limit_requests(client, requests);
      if (!refused) refused = shared_->admission->shed_request();
      if (refused) {
        respond_refusal(*refused, req);
        return after(keep);
      }
    }
    session->touch();
    auto streams = session->streams()->shared_from_this();
    for (auto& [eid, error] : frame.errors) {
      if (!eid.is_null()) streams->deliver(mcp::make_error(eid, error), true);
    }
    session->post_frame(std::move(frame.messages), streams);
    respond(http::status::accepted, version, keep, "text/plain", "Accepted");
    return after(keep);
  }

  /// The request metadata a 2026-07-28 client mirrors into headers.
  static mcp::MirroredHeaders mirrored_headers(const Request& req) {
    mcp::MirroredHeaders h;
    h.present = true;
    auto get = [&req](std::string_view name) -> std::optional<std::string_view> {
      auto v = req[name];
      if (v.empty()) return std::nullopt;
      return v;
    };
    h.protocol_version = get("MCP-Protocol-Version");
    h.method = get("Mcp-Method");
    h.name = get("Mcp-Name");
    constexpr std::string_view kParam = "mcp-param-";
    req.for_each_field([&](std::string_view name, std::string_view value) {
      if (name.size() > kParam.size() &&
          boost::beast::iequals(name.substr(0, kParam.size()), kParam)) {
        h.params.emplace_back(name.substr(kParam.size()), value);
      }
    });
    return h;
  }

  /// A request of the stateless era (2026-07-28): no session; checked (its _meta, version and
  /// mirrored headers), then served on this connection's thread, answered as JSON or as an SSE
  /// stream that ends with its answer.
  Next handle_stateless(Request& req, mcp::Message m, const mcp::MirroredHeaders& headers) {
    auto version = req.version();
    bool keep = req.keep_alive();
    auto& admission = *shared_->admission;
    if (m.is_request()) {
      std::optional<Refusal> refused;
      if (auto client = client_of(req)) refused = admission.limit_requests(client, 1);
      if (!refused) refused = admission.shed_request();
      if (refused) {
        respond_refusal(*refused, req, m.id);
        return after(keep);
      }
    }
    auto& server = shared_->server;
    if (auto rejected = mcp::check_stateless_request(m, headers, *server.app().catalog())) {
      Metrics::inc(shared_->metrics().stateless_rejected_total);
      respond_error(static_cast<http::status>(rejected->http_status), version, keep,
                    rejected->error, m.id);
      return after(keep);
    }
    if (!m.is_request()) {
      server.serve_stateless(std::move(m), nullptr, executor());
      respond(http::status::accepted, version, keep, {}, {});
      return after(keep);
    }
    fresh_queue();
    post_.call =
        server.serve_stateless(std::move(m), std::make_shared<RequestChannel>(queue_), executor());
    return Next::kPostStream;
  }

  /// The POST being answered: its stream, and the responses held back for a JSON answer.
  struct PendingPost {
    std::shared_ptr<mcp::SessionStreams> streams;
    std::uint64_t stream_id = 0;
    std::shared_ptr<mcp::Session> session;             // null for a stateless request
    std::shared_ptr<mcp::StatelessConversation> call;  // a stateless request's
    std::string session_header;                        // set when this POST created the session
    bool created = false;
    bool is_batch = false;
    std::vector<mcp::StreamEvent> held;

    void reset() {
      streams.reset();
      session.reset();
      call.reset();
      held.clear();
    }
  };

  /// Answers the POST as JSON if every answer is already queued; nullopt when it has to wait
  /// (a handler still running, a notification that needs SSE). Never waits.
  std::optional<bool> answer_post_now(Request& req) {
    for (;;) {
      auto ev = queue_->try_pop([this](const mcp::StreamEvent& e) {
        return e.is_response || (e.end && !e.disconnect && !post_.held.empty());
      });
      if (!ev) return std::nullopt;
      if (ev->end) {
        answer_finished_stream(req);
        return true;
      }
      post_.held.push_back(std::move(*ev));
    }
  }

  /// Answers a POST: JSON when every event is a response, else an SSE stream.
  asio::awaitable<bool> stream_answer(Request& req) {
    auto& queue = *queue_;
    auto& held = post_.held;
    auto* session = post_.session.get();
    const bool priming = session && session->resumable_streams();
    for (;;) {
      auto [status, ev] = co_await queue.pop(cfg_.sse_keepalive);
      if (session) session->touch();
      if (status == mcp::EventQueue::Status::kItem && ev->end && !held.empty()) {
        answer_finished_stream(req);
        co_return true;
      }
      if ((status == mcp::EventQueue::Status::kItem && (ev->end || ev->disconnect)) ||
          status == mcp::EventQueue::Status::kOverflow) {
        // Every request was cancelled (end, nothing held), the handler released the connection
        // (disconnect) or the answers outgrew the queue: open the SSE stream, so the client has
        // a priming id to resume from, pass on what is held, and end this response.
        append_sse_head(req, post_.session_header, priming, post_.stream_id);
        for (auto& h : held) append_event(h);
        append_last_chunk();
        co_return status == mcp::EventQueue::Status::kItem;
      }
      if (status == mcp::EventQueue::Status::kItem && ev->is_response) {
        held.push_back(std::move(*ev));
        continue;
      }
      if (status == mcp::EventQueue::Status::kClosed) {
        if (!held.empty()) {
          respond_json(req);
          co_return true;
        }
        respond_error(http::status::not_found, req.version(), false,
                      RpcError(ErrorCode::kInvalidRequest, "session closed"));
        co_return false;
      }
      // A notification or a server→client request, or a long wait: switch to SSE.
      append_sse_head(req, post_.session_header, priming, post_.stream_id);
      for (auto& h : held) append_event(h);
      if (ev) append_event(*ev);
      co_return co_await pump_sse(queue, session);
    }
  }

  /// Every request of the pending POST was answered: the answers go out as JSON, and as no
  /// event id of this stream reached the client, nothing can resume it.
  void answer_finished_stream(Request& req) {
    respond_json(req);
    if (post_.streams) post_.streams->forget(post_.stream_id);
  }

  /// The held responses of the pending POST as one JSON answer (an array for a batch).
  void respond_json(Request& req) {
    auto& held = post_.held;
    if (post_.call) {
      // The revision ties a status to some errors (404 unknown method, 400 missing capability).
      auto status = static_cast<http::status>(mcp::stateless_http_status(held[0].data));
      append_head(status, req.version(), req.keep_alive(), "application/json",
                  held[0].data->size());
      out_ += *held[0].data;
      return;
    }
    bool with_session = !post_.session_header.empty();
    if (post_.created && post_.session->protocol_version().empty()) {
      // The initialize failed (a version is set only by a successful one): the session never
      // existed for the client.
      shared_->server.close_session(post_.session->id(), "initialize failed");
      with_session = false;
    }
    // One message answers one request; a batch is an array of them.
    std::size_t length = held[0].data->size();
    if (post_.is_batch) {
      length = held.size() + 1;  // brackets and commas
      for (auto& h : held) length += h.data->size();
    }
    if (with_session) {
      append_head(http::status::ok, req.version(), req.keep_alive(), "application/json", length,
                  {{"Mcp-Session-Id", post_.session_header}});
    } else {
      append_head(http::status::ok, req.version(), req.keep_alive(), "application/json", length);
    }
    if (!post_.is_batch) {
      out_ += *held[0].data;
      return;
    }
    out_ += '[';
    for (std::size_t i = 0; i < held.size(); ++i) {
      if (i) out_ += ',';
      out_ += *held[i].data;
    }
    out_ += ']';
  }

  /// Starts an SSE answer. HTTP/1.1 streams are chunked; HTTP/1.0 has no chunked coding, so
  /// there the stream is the rest of the connection, which closes when it ends.
  void append_sse_head(Request& req, const std::string& session_header, bool priming,
                       std::uint64_t stream_id) {
    sse_chunked_ = req.version() >= 11;
    if (!sse_chunked_) close_after_ = true;
    auto length = sse_chunked_ ? kChunked : kUntilClose;
    Header sse[] = {{"Cache-Control", "no-cache"},
                    {"X-Accel-Buffering", "no"},
                    {"Mcp-Session-Id", session_header}};
    if (session_header.empty()) {
      append_head(http::status::ok, req.version(), req.keep_alive(), "text/event-stream", length,
                  {sse[0], sse[1]});
    } else {
      append_head(http::status::ok, req.version(), req.keep_alive(), "text/event-stream", length,
                  {sse[0], sse[1], sse[2]});
    }
    if (priming) {
      // Priming event: an id (so the client can resume from here) and empty data.
      auto retry = std::to_string(cfg_.sse_retry.count());
      append_sse({"id: ", mcp::SessionStreams::event_id(stream_id, 0), "\nretry: ", retry,
                  "\ndata: \n\n"});
    }
  }

  /// Appends SSE text: one chunk on HTTP/1.1, as is on HTTP/1.0.
  void append_sse(std::initializer_list<std::string_view> parts) {
    if (sse_chunked_) {
      append_chunk(out_, parts);
    } else {
      for (auto p : parts) out_ += p;
    }
  }

  /// Appends `parts`, concatenated, as one HTTP/1.1 chunk.
  static void append_chunk(std::string& out, std::initializer_list<std::string_view> parts) {
    std::size_t size = 0;
    for (auto p : parts) size += p.size();
    std::array<char, 16> hex;
    auto [end, ec] = std::to_chars(hex.data(), hex.data() + hex.size(), size, 16);
    out.reserve(out.size() + size + 24);
    out.append(hex.data(), end);
    out += "\r\n";
    for (auto p : parts) out += p;
    out += "\r\n";
  }

  /// Ends an SSE answer (the last chunk; on HTTP/1.0 the connection's close does it).
  void append_last_chunk() {
    if (sse_chunked_) out_ += "0\r\n\r\n";
  }

  void append_event(const mcp::StreamEvent& ev) {
    if (ev.id.empty()) {
      append_sse({"event: message\ndata: ", *ev.data, "\n\n"});
    } else {
      append_sse({"event: message\nid: ", ev.id, "\ndata: ", *ev.data, "\n\n"});
    }
    Metrics::inc(shared_->metrics().sse_events_total);
  }

  /// Writes events until the stream ends. Returns whether the connection may be reused.
  /// An open stream keeps `session` from expiring for idleness.
  asio::awaitable<bool> pump_sse(mcp::EventQueue& queue, mcp::Session* session) {
    for (;;) {
      if (!write_now()) co_await write_rest();
      // An event or a keep-alive is a few hundred bytes at most, written at once: the next
      // one allocates again rather than every idle stream keeping the largest it wrote.
      std::string().swap(out_);
      on_stream_idle();
      auto [status, ev] = co_await queue.pop(cfg_.sse_keepalive);
      if (session) session->touch();
      switch (status) {
        case mcp::EventQueue::Status::kItem:
          if (ev->end || ev->disconnect) {
            append_last_chunk();
            co_return true;
          }
          append_event(*ev);
          break;
        case mcp::EventQueue::Status::kTimeout:
          append_sse({": keep-alive\n\n"});
          break;
        case mcp::EventQueue::Status::kClosed:
          co_return false;
        case mcp::EventQueue::Status::kOverflow:
          Metrics::inc(shared_->metrics().slow_consumers_total);
          co_return false;
      }
    }
  }

  asio::awaitable<bool> handle_get(Request& req) {
    if (!accepts(req[http::field::accept], "text/event-stream")) {
      respond_error(http::status::not_acceptable, req.version(), req.keep_alive(),
                    RpcError(ErrorCode::kInvalidRequest,
                             "Not Acceptable: Accept must list text/event-stream"));
      co_return req.keep_alive();
    }
    auto [session, streams] = require_session(req);
    if (!session) co_return req.keep_alive();
    fresh_queue();
    std::uint64_t stream_id = 0, seq = 0;
    auto last = req["Last-Event-ID"];
    if (last.empty() || !SessionStreams::parse_event_id(last, stream_id, seq) ||
        !streams->attach(stream_id, seq, queue_)) {
      stream_id = 0;
      streams->attach(0, SessionStreams::kUndelivered, queue_);
    }
    append_sse_head(req, {}, false, stream_id);
    // The request is not needed any more: a held stream keeps none of its text.
    bool keep_alive = req.keep_alive();
    {
      Request spent;
      std::swap(req, spent);  // (a move assignment would keep the string's allocation)
    }
    if (hold_stream(session, streams, stream_id, keep_alive)) co_return false;
    StreamAttachment attachment{streams, stream_id, queue_};
    co_return co_await pump_sse(*queue_, session.get()) && keep_alive;
  }

  Next handle_delete(Request& req) {
    auto session = require_session(req).session;
    if (!session) return after(req.keep_alive());
    shared_->server.close_session(session->id(), "the client sent DELETE");
    respond(http::status::ok, req.version(), req.keep_alive(), "text/plain", {});
    return after(req.keep_alive());
  }

  // -- relaying -------------------------------------------------------------------------------
  /// Relays the exchange to the node holding its session and passes its answer on as it comes.
  /// Once bytes of the answer went out, a failure can only end the connection (the client sees
  /// a truncated answer, never a wrong one); before that it gets an explicit error.
  asio::awaitable<bool> relay(Request& req) {
    auto target = std::move(remote_);
    Metrics::inc(shared_->metrics().forwarded_total);
    auto queue = std::make_shared<RelayQueue>(executor(), cfg_.relay_queue_parts);
    // The relaying end of the hop: the holder's span is its child.
    mcp::Span hop;
    if (auto* tracer = shared_->server.tracer(); tracer && trace_.valid()) {
      hop = tracer->start(std::string(kRelaySpan), mcp::SpanKind::kClient, trace_);
      hop.set_attribute("rpc.system", std::string("mcpmesh-relay"));
      hop.set_attribute("rpc.service", std::string("mcpmesh.v1.Forward"));
      hop.set_attribute("rpc.method", std::string("Relay"));
      hop.set_attribute("mcpmesh.forward.node", target->node());
    }
    auto handle =
        target->relay(req, hops_ + 1, queue, hop.context().valid() ? &hop.context() : nullptr);
    bool answered = false;
    for (;;) {
      auto [status, ev] = co_await queue->pop(std::chrono::hours(24));
      if (status == RelayQueue::Status::kTimeout) continue;  // the relay has its own deadline
      if (status != RelayQueue::Status::kItem) {
        // Overflow: the client reads slower than the holder answers (a slow consumer).
        Metrics::inc(shared_->metrics().slow_consumers_total);
        close_after_ = true;
        co_return false;
      }
      if (!answered && ev->kind != RelayEvent::Kind::kFailed) {
        // The holder's status line: this exchange's status.
        status_ = status_of(ev->bytes);
        if (hop.recording() && status_ != 0) {
          hop.set_attribute("http.response.status_code", static_cast<std::int64_t>(status_));
        }
      }
      switch (ev->kind) {
        case RelayEvent::Kind::kBytes:
          answered = true;
          out_ += ev->bytes;
          if (!write_now()) co_await write_rest();
          break;
        case RelayEvent::Kind::kEnd:
          out_ += ev->bytes;
          co_return !ev->close;
        case RelayEvent::Kind::kFailed:
          hop.set_error(ev->error);
          Metrics::inc(shared_->metrics().forward_failures_total);
          if (answered) {
            close_after_ = true;
            co_return false;
          }
          {
            // Unreachable: it may be failing over, retry shortly; anything else is a fault.
            auto status =
                ev->unreachable ? http::status::service_unavailable : http::status::bad_gateway;
            auto body = mcp::make_error(
                nullptr, RpcError(ErrorCode::kInternalError,
                                  "node " + target->node() +
                                      " holding this session failed before it answered (" +
                                      ev->error + "); the request may or may not have run"));
            if (ev->unreachable) {
              respond(status, req.version(), req.keep_alive(), "application/json", *body,
                      {{"Retry-After", "1"}});
            } else {
              respond(status, req.version(), req.keep_alive(), "application/json", *body);
            }
          }
          co_return req.keep_alive();
      }
    }
  }

  /// The status code of an HTTP answer's status line ("HTTP/1.1 200 OK"), or 0.
  static unsigned status_of(std::string_view head) {
    if (head.size() < 12 || !head.starts_with("HTTP/")) return 0;
    unsigned code = 0;
    auto [end, ec] = std::from_chars(head.data() + 9, head.data() + 12, code);
    return ec == std::errc() && end == head.data() + 12 ? code : 0;
  }

  asio::io_context& context_;  // the one this exchange (and sessions it creates) runs on
  std::shared_ptr<HttpServer::Shared> shared_;
  const HttpConfig& cfg_;
  const unsigned hops_;  // relays this exchange went through before it reached this node
  std::shared_ptr<EventQueue> queue_;
  PendingPost post_;
  std::shared_ptr<SessionTarget> remote_;  // set by handle() for Next::kRelay
  std::string out_;                        // the answer being written
  bool sse_chunked_ = true;                // the SSE answer being written is chunked (HTTP/1.1)
  bool close_after_ = false;               // the answer ends with the connection (HTTP/1.0 SSE)
  const Request* req_ = nullptr;           // the request being served (for log lines)
  unsigned status_ = 0;                    // the status of the answer being written
  mcp::TraceContext trace_;                // the exchange's span (or the caller's, not sampled)
};

/// One HTTP connection: reads requests off its socket and runs each as an exchange. Lives as
/// long as its coroutine (shared_from_this). Runs on one single-threaded io_context.
class Connection final : public Exchange, public std::enable_shared_from_this<Connection> {
 public:
  /// `client`: who is on the other end (`proxy`: a trusted proxy, whose requests name their
  /// client); `hold`: its share of connections, released with the connection.
  Connection(std::shared_ptr<HttpServer::Shared> shared, tcp::socket socket,
             asio::io_context& context, ClientRef client, bool proxy, std::shared_ptr<void> hold)
      : Exchange(std::move(shared), context, 0),
        socket_(std::move(socket)),
        watchdog_(socket_.get_executor()),
        client_(std::move(client)),
        hold_(std::move(hold)),
        proxy_(proxy) {}

  /// Starts serving once the client has sent something: until then the connection holds no
  /// coroutine (its frames are taken when there is a request to serve, and mostly given back
  /// in the same turn), only its idle deadline.
  void start() {
    set_deadline(cfg_.idle_timeout);
    socket_.async_wait(tcp::socket::wait_read,
                       [self = shared_from_this()](boost::system::error_code) {
                         self->clear_deadline();
                         if (self->timed_out_) {
                           Metrics::inc(self->shared_->metrics().idle_timeouts_total);
                           return self->close();
                         }
                         auto ex = self->socket_.get_executor();
                         asio::co_spawn(
                             ex, [self] { return self->run(); }, asio::detached);
                       });
  }

  ~Connection() override {
    if (held_) held_->streams->detach(held_->id, queue_);  // at shutdown, with its wait
  }

  /// Serves the connection's requests; `resumed`: again, after a held stream ended and the
  /// connection was kept (what ended the stream is still to be written).
  asio::awaitable<void> run(bool resumed = false) {
    try {
      if (!resumed) {
        // Non-blocking for the synchronous first attempts at reads and writes below.
        socket_.non_blocking(true);
      } else if (!write_now()) {
        co_await write_rest();
      }
      co_await serve();
    } catch (const boost::system::system_error& e) {
      fail(e.code());
      drop_held();
    }
    if (held_) {
      // A GET stream: it goes on without this coroutine (see pump_held).
      pump_held();
      co_return;
    }
    close();
  }

 private:
  using Clock = std::chrono::steady_clock;

  /// Here rather than in a destructor: at shutdown, frames and handlers are destroyed after
  /// the server.
  void close() {
    Metrics::dec(shared_->metrics().connections_active);
    shared_->server.note_freed();
    clear_deadline();
    watchdog_.cancel();
    boost::system::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
  }

  // -- held streams -----------------------------------------------------------------------------
  // A GET stream mostly waits: held by a coroutine it would keep the frames of run, serve,
  // exchange, handle_get, pump_sse and the queue's pop (~2 KB with their handlers) for hours.
  // Here it is pumped by callbacks instead: while it waits, it holds one timer wait on its
  // queue (woken by an event or at the keep-alive deadline). When the stream ends and the
  // connection is kept, run(true) serves the next request.
  struct HeldStream {
    std::shared_ptr<mcp::Session> session;
    std::shared_ptr<SessionStreams> streams;
    std::uint64_t id = 0;
    bool keep_alive = true;
    bool ending = false;  // the end of the stream is in out_
    Clock::time_point keepalive_at;
  };

  bool hold_stream(std::shared_ptr<mcp::Session>& session, std::shared_ptr<SessionStreams>& streams,
                   std::uint64_t stream_id, bool keep_alive) override {
    held_.emplace(HeldStream{std::move(session), std::move(streams), stream_id, keep_alive, false,
                             Clock::now() + cfg_.sse_keepalive});
    return true;
  }

  void drop_held() {
    if (!held_) return;
    held_->streams->detach(held_->id, queue_);
    held_.reset();
  }

  /// Writes what is queued for the held stream, then waits for its next event (or the
  /// keep-alive deadline) without a coroutine; ends it when it is over.
  void pump_held() {
    auto& h = *held_;
    for (;;) {
      bool written = false;
      try {
        written = write_now();
      } catch (const boost::system::system_error& e) {
        fail(e.code());
        return end_held(false);
      }
      if (!written) {
        set_deadline(cfg_.write_timeout);
        asio::async_write(socket_, asio::buffer(out_.data() + out_sent_, out_.size() - out_sent_),
                          [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                            self->clear_deadline();
                            if (self->timed_out_) ec = beast::error::timeout;
                            if (ec) {
                              self->fail(ec);
                              return self->end_held(false);
                            }
                            self->reset_out();
                            self->pump_held();
                          });
        return;
      }
      if (h.ending) return end_held(h.keep_alive && !close_after_);
      auto got = queue_->poll();
      auto now = Clock::now();
      if (!got) {
        if (now < h.keepalive_at) {
          std::string().swap(out_);  // see pump_sse
          on_stream_idle();
          queue_->wait_until(h.keepalive_at, [self = shared_from_this()] { self->pump_held(); });
          return;
        }
        append_sse({": keep-alive\n\n"});
      } else if (got->first == mcp::EventQueue::Status::kItem) {
        auto& ev = *got->second;
        if (ev.end || ev.disconnect) {
          append_last_chunk();
          h.ending = true;
        } else {
          append_event(ev);
        }
      } else {
        if (got->first == mcp::EventQueue::Status::kOverflow) {
          Metrics::inc(shared_->metrics().slow_consumers_total);
        }
        return end_held(false);  // kClosed: the session ended or another GET took the stream
      }
      // An open stream keeps its session from expiring for idleness.
      h.session->touch();
      h.keepalive_at = now + cfg_.sse_keepalive;
    }
  }

  /// The held stream is over: the connection serves its next request (`keep`) or closes.
  void end_held(bool keep) {
    drop_held();
    if (!keep) return close();
    auto ex = socket_.get_executor();
    asio::co_spawn(
        ex, [self = shared_from_this()] { return self->run(true); }, asio::detached);
  }

  asio::any_io_executor executor() override { return socket_.get_executor(); }

  bool upgrade(Request& req) override {
    std::string leftover(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    buffer_.consume(buffer_.size());
    auto route = shared_->upgrade.load();
    auto refusal = route ? route->accept(req, socket_, std::move(leftover))
                         : UpgradeRoute::Refusal{404, "no such endpoint"};
    if (refusal) {
      Metrics::inc(shared_->metrics().upgrades_refused_total);
      respond_error(static_cast<http::status>(refusal->status), req.version(), false,
                    RpcError(ErrorCode::kInvalidRequest, refusal->reason));
      return false;
    }
    // The socket is the taker's now; close() finds it moved out and only does the accounting.
    Metrics::inc(shared_->metrics().upgrades_total);
    return false;
  }

  void on_stream_idle() override {
    // DESIGN: an idle connection holds no read buffer (what the client pipelined stays).
    if (buffer_.size() == 0 && buffer_.capacity() != 0) buffer_.shrink_to_fit();
    // The watchdog stays armed lazily after a read; a held stream has no deadline to watch.
    if (watchdog_armed_ && deadline_ == Clock::time_point::max()) watchdog_.cancel();
  }

  ClientRef client_of(const Request& req) override {
    if (!proxy_) return client_;
    return shared_->admission->forwarded_client(req["X-Forwarded-For"], client_);
  }

  std::string client_note() const override {
    return client_ ? " from " + client_->key.to_string() : std::string();
  }

  void fail(boost::system::error_code ec) {
    // Expected ends of a connection are not worth a log line.
    if (ec == asio::error::operation_aborted || ec == http::error::end_of_stream ||
        ec == asio::error::eof || ec == asio::error::connection_reset ||
        ec == asio::error::broken_pipe || ec == beast::error::timeout) {
      if (ec == beast::error::timeout) Metrics::inc(shared_->metrics().slow_consumers_total);
      return;
    }
    spdlog::debug("http connection: {}", ec.message());
  }

  // -- deadlines ------------------------------------------------------------------------------
  // One lazily re-armed timer per connection watches whichever socket operation is pending.
  // Setting a later deadline than the armed expiry costs nothing (the timer fires, sees the
  // deadline moved and re-arms), so a busy connection touches its timer about once per
  // idle_timeout rather than several times per request.

  /// Watches the socket operation about to start: past `after`, the socket's pending
  /// operations are cancelled and `timed_out_` is set.
  void set_deadline(std::chrono::milliseconds after) {
    timed_out_ = false;
    deadline_ = Clock::now() + after;
    if (watchdog_armed_ && watchdog_expiry_ <= deadline_) return;
    arm_watchdog();
  }

  /// No socket operation is watched any more.
  void clear_deadline() { deadline_ = Clock::time_point::max(); }

  void arm_watchdog() {
    watchdog_armed_ = true;
    watchdog_expiry_ = deadline_;
    watchdog_.expires_at(deadline_);
    watchdog_.async_wait(
        [self = shared_from_this(), gen = ++watchdog_gen_](boost::system::error_code ec) {
          // A superseded wait (re-armed earlier) leaves the newer one in charge.
          if (gen != self->watchdog_gen_) return;
          self->watchdog_armed_ = false;
          if (ec || self->deadline_ == Clock::time_point::max()) return;
          if (Clock::now() < self->deadline_) {
            self->arm_watchdog();
            return;
          }
          self->timed_out_ = true;
          boost::system::error_code ignored;
          self->socket_.cancel(ignored);
        });
  }

  // -- reading --------------------------------------------------------------------------------
  static constexpr std::size_t kReadChunk = 2048;
  /// A read buffer larger than this (left by a big request) is released once it is empty.
  static constexpr std::size_t kKeptBuffer = 16 * 1024;

  asio::awaitable<void> serve() {
    for (;;) {
      if (buffer_.size() == 0) {
        // DESIGN: an idle connection holds no read buffer. It waits until the socket is
        // readable, then takes a buffer for the read and the parse that follows at once, and
        // gives it back when the request is consumed: the next connection served on this
        // thread reuses the same block, instead of every connection pinning one (2 KB each,
        // and holes in the heap once they are freed).
        // Asio tracks whether the socket was drained by the last read, so this goes straight
        // to epoll instead of spending a system call on a read (or an ioctl) that would fail.
        if (buffer_.capacity() != 0) buffer_.shrink_to_fit();
        set_deadline(cfg_.idle_timeout);
        boost::system::error_code ec;
        co_await socket_.async_wait(tcp::socket::wait_read,
                                    asio::redirect_error(asio::use_awaitable, ec));
        clear_deadline();
        if (timed_out_) {
          Metrics::inc(shared_->metrics().idle_timeouts_total);
          co_return;
        }
        if (ec) co_return;
        auto n = socket_.read_some(buffer_.prepare(kReadChunk), ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) continue;
        if (ec) co_return;
        buffer_.commit(n);
      }
      HttpRequestParser parser(request_);
      parser.header_limit(static_cast<std::uint32_t>(cfg_.max_header_bytes));
      parser.body_limit(cfg_.max_body_bytes);
      // Most requests arrive whole in one segment: parse them synchronously. Only a request
      // still incomplete when the socket has nothing more goes asynchronous, watched by the
      // read deadline (the watchdog cancels the read, so a slow sender still gets its 408).
      boost::system::error_code ec;
      http::read(socket_, buffer_, parser, ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        set_deadline(cfg_.read_timeout);
        ec = {};
        co_await http::async_read(socket_, buffer_, parser,
                                  asio::redirect_error(asio::use_awaitable, ec));
        clear_deadline();
        if (ec && timed_out_) ec = beast::error::timeout;
      }
      if (ec) {
        if (ec == http::error::body_limit) {
          Metrics::inc(shared_->metrics().body_too_large_total);
          respond_error(http::status::payload_too_large, 11, false,
                        RpcError(ErrorCode::kInvalidRequest,
                                 "request body larger than " + std::to_string(cfg_.max_body_bytes) +
                                     " bytes"));
        } else if (ec == http::error::header_limit) {
          Metrics::inc(shared_->metrics().header_too_large_total);
          respond_error(http::status::request_header_fields_too_large, 11, false,
                        RpcError(ErrorCode::kInvalidRequest, "request headers too large"));
        } else if (ec == beast::error::timeout) {
          Metrics::inc(shared_->metrics().read_timeouts_total);
          respond_error(http::status::request_timeout, 11, false,
                        RpcError(ErrorCode::kInvalidRequest, "request not received in time"));
        } else if (ec == http::error::bad_transfer_encoding) {
          reject_transfer_coding();
        } else if (ec != http::error::end_of_stream && ec != asio::error::eof &&
                   ec != asio::error::connection_reset) {
          respond_error(http::status::bad_request, 11, false,
                        RpcError(ErrorCode::kInvalidRequest, "malformed HTTP request"));
        }
        if (out_.empty()) co_return;  // the client is gone: nothing to say
        if (!write_now()) co_await write_rest();
        co_await linger();
        co_return;
      }
      if (auto te = request_[http::field::transfer_encoding]; !te.empty() && !only_chunked(te)) {
        reject_transfer_coding();
        if (!write_now()) co_await write_rest();
        co_await linger();
        co_return;
      }
      Metrics::inc(shared_->metrics().http_requests_total);
      if (buffer_.size() == 0) buffer_.shrink_to_fit();  // consumed: see above
      // Every answer that is ready at once (errors, JSON answers of synchronous handlers) is
      // written without a coroutine of its own; only waiting for a handler, an SSE stream or a
      // relayed answer goes through one.
      bool keep = co_await exchange(request_);
      if (!write_now()) co_await write_rest();
      if (!keep) co_return;
      if (request_.body().capacity() > kKeptBuffer) {  // idle connections stay small
        request_.clear();
        request_.body().shrink_to_fit();
      }
    }
  }

  /// Transfer codings other than chunked (gzip, deflate, ...) are not implemented: 501.
  void reject_transfer_coding() {
    Metrics::inc(shared_->metrics().transfer_coding_rejected_total);
    respond_error(
        http::status::not_implemented, 11, false,
        RpcError(ErrorCode::kInvalidRequest, "Transfer-Encoding: only chunked is supported"));
  }

  static bool only_chunked(std::string_view te) {
    while (!te.empty() && (te.front() == ' ' || te.front() == '\t')) te.remove_prefix(1);
    while (!te.empty() && (te.back() == ' ' || te.back() == '\t')) te.remove_suffix(1);
    return beast::iequals(te, "chunked");
  }

  /// After an answer that ends the connection early: stop sending, then read and drop what
  /// the client still sends (bounded in time and bytes) before closing, so a client that
  /// writes its whole request before it reads gets the answer rather than a reset (closing a
  /// socket with unread data resets it). nginx's lingering close works the same way.
  asio::awaitable<void> linger() {
    Metrics::inc(shared_->metrics().lingering_closes_total);
    boost::system::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    if (ec) co_return;
    buffer_.clear();
    set_deadline(cfg_.linger_timeout);
    std::size_t dropped = 0;
    while (dropped < cfg_.linger_bytes) {
      auto n = co_await socket_.async_read_some(buffer_.prepare(8 * kReadChunk),
                                                asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      dropped += n;  // never committed: the same space takes the next read
    }
    clear_deadline();
  }

  // -- writing --------------------------------------------------------------------------------
  // Answers are appended to `out_` and written by write_now() (one non-blocking write: on
  // loopback and idle links it takes everything) or, when the peer's window is full, by
  // write_rest() under the write deadline. A peer that does not read in time gets
  // beast::error::timeout thrown (a slow consumer).

  /// Writes what `out_` holds without waiting; true when all of it went out.
  bool write_now() override {
    if (out_sent_ == out_.size()) {
      reset_out();
      return true;
    }
    boost::system::error_code ec;
    std::size_t n =
        socket_.write_some(asio::buffer(out_.data() + out_sent_, out_.size() - out_sent_), ec);
    if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
      throw boost::system::system_error(ec);
    }
    out_sent_ += ec ? 0 : n;
    if (out_sent_ < out_.size()) return false;
    reset_out();
    return true;
  }

  /// Writes the rest of `out_`, waiting for the peer under the write deadline.
  asio::awaitable<void> write_rest() override {
    boost::system::error_code ec;
    set_deadline(cfg_.write_timeout);
    co_await asio::async_write(socket_,
                               asio::buffer(out_.data() + out_sent_, out_.size() - out_sent_),
                               asio::redirect_error(asio::use_awaitable, ec));
    clear_deadline();
    if (timed_out_) throw boost::system::system_error(beast::error::timeout);
    if (ec) throw boost::system::system_error(ec);
    reset_out();
  }

  void reset_out() {
    out_.clear();
    out_sent_ = 0;
    if (out_.capacity() > 64 * 1024) std::string().swap(out_);  // idle connections stay small
  }

  tcp::socket socket_;
  beast::flat_buffer buffer_;
  HttpRequest request_;  // reused: its buffers keep their capacity between requests
  asio::steady_timer watchdog_;
  Clock::time_point deadline_ = Clock::time_point::max();
  Clock::time_point watchdog_expiry_{};
  bool watchdog_armed_ = false;
  bool timed_out_ = false;
  std::uint64_t watchdog_gen_ = 0;
  std::size_t out_sent_ = 0;
  ClientRef client_;
  std::shared_ptr<void> hold_;  // the client's share of connections (null for a proxy)
  bool proxy_;
  std::optional<HeldStream> held_;  // a GET stream pumped by pump_held
};

/// An exchange another node relayed here: one request, its answer sent back part by part
/// through the forwarding service. At most one part is in flight; the next waits for it, so a
/// slow requesting node (or its slow client) holds back this exchange as a slow socket would.
class ForwardedExchange final : public Exchange,
                                public std::enable_shared_from_this<ForwardedExchange> {
 public:
  ForwardedExchange(std::shared_ptr<HttpServer::Shared> shared, asio::io_context& context,
                    unsigned hops, std::shared_ptr<ForwardedAnswer> answer)
      : Exchange(std::move(shared), context, hops),
        answer_(std::move(answer)),
        waiter_(context.get_executor()) {}

  asio::awaitable<void> run(HttpRequest request) {
    Metrics::inc(shared_->metrics().forwarded_in_total);
    bool keep = false;
    try {
      keep = co_await exchange(request);
    } catch (const boost::system::system_error&) {
      // The requesting node is gone: nothing more to send.
      answer_->finish({}, true);
      co_return;
    }
    answer_->finish(std::move(out_), !keep);
  }

 private:
  asio::any_io_executor executor() override { return waiter_.get_executor(); }
  ClientRef client_of(const Request&) override { return nullptr; }

  bool write_now() override {
    if (failed_) throw boost::system::system_error(asio::error::connection_aborted);
    if (out_.empty()) return true;
    if (in_flight_) return false;
    in_flight_ = true;
    answer_->send(std::move(out_), [self = shared_from_this()](bool ok) {
      asio::post(self->waiter_.get_executor(), [self, ok] {
        self->in_flight_ = false;
        self->failed_ = self->failed_ || !ok;
        self->waiter_.cancel();
      });
    });
    out_.clear();
    return true;
  }

  asio::awaitable<void> write_rest() override {
    while (in_flight_ && !failed_) {
      waiter_.expires_after(cfg_.write_timeout);
      boost::system::error_code ec;
      co_await waiter_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (!ec && in_flight_) throw boost::system::system_error(beast::error::timeout);
    }
    if (!write_now()) throw boost::system::system_error(asio::error::connection_aborted);
  }

  std::shared_ptr<ForwardedAnswer> answer_;
  asio::steady_timer waiter_;
  bool in_flight_ = false;
  bool failed_ = false;
};

constexpr std::string_view kTooManyConnections =
    "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\n"
    "Content-Length: 99\r\nConnection: close\r\n\r\n"
    R"({"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"too many connections; retry shortly"}})";
static_assert(kTooManyConnections.size() - kTooManyConnections.find("\r\n\r\n") - 4 == 99);

/// Answers a connection that will not be served with 503 and closes it, without waiting: what
/// the client already sent is read first, so the close does not reset the connection before
/// the client reads the answer.
void refuse_connection(int fd) {
  std::array<char, 4096> sink;
  while (::recv(fd, sink.data(), sink.size(), MSG_DONTWAIT) > 0) {
  }
  (void)::send(fd, kTooManyConnections.data(), kTooManyConnections.size(),
               MSG_DONTWAIT | MSG_NOSIGNAL);
  ::shutdown(fd, SHUT_WR);
}

/// Out of descriptors: accept() fails while connections wait in the backlog, and would fail
/// again at once. Gives up the reserved descriptor to take them one at a time, each answered
/// 503 and closed, then takes the reserve back. Returns how many were answered.
std::size_t refuse_backlog(HttpServer::Shared& shared) {
  std::size_t refused = 0;
  for (; refused < 256; ++refused) {
    if (shared.reserve_fd >= 0) {
      ::close(shared.reserve_fd);
      shared.reserve_fd = -1;
    }
    int fd =
        ::accept4(shared.acceptor.native_handle(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) break;
    refuse_connection(fd);
    ::close(fd);
    Metrics::inc(shared.metrics().connections_rejected_total);
  }
  shared.reserve_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  return refused;
}

/// Whether an accept error means the process or system is out of a resource (as opposed to
/// one connection that went away before it was accepted).
bool out_of_resources(boost::system::error_code ec) {
  return ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space ||
         ec == asio::error::no_memory || ec == boost::system::errc::too_many_files_open_in_system;
}

asio::awaitable<void> accept_loop(std::shared_ptr<HttpServer::Shared> shared) {
  using namespace std::chrono_literals;
  auto backoff = 0ms;
  auto& admission = *shared->admission;
  for (;;) {
    boost::system::error_code ec;
    auto& context = shared->next();
    auto socket = co_await shared->acceptor.async_accept(
        context, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !shared->acceptor.is_open()) co_return;
    auto& m = shared->metrics();
    if (ec) {
      if (!out_of_resources(ec)) continue;  // that one client gave up; the next may not
      Metrics::inc(m.accept_errors_total);
      auto refused = refuse_backlog(*shared);
      // At most one line a second, however often it happens.
      ++shared->accept_errors_unlogged;
      auto now = std::chrono::steady_clock::now();
      if (now - shared->accept_log_at >= 1s) {
        spdlog::warn(
            "accept failed: {} ({} times since the last report; {} waiting connections answered "
            "503); --max-connections {} may be above what the descriptor limit allows",
            ec.message(), shared->accept_errors_unlogged, refused, shared->config.max_connections);
        shared->accept_log_at = now;
        shared->accept_errors_unlogged = 0;
      }
      // Descriptors come back as connections close: pause accepting, longer while it lasts.
      backoff = std::clamp(backoff * 2, 10ms, 1000ms);
      asio::steady_timer t(shared->acceptor.get_executor(), backoff);
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    backoff = 0ms;
    Metrics::inc(m.connections_total);
    auto peer = socket.remote_endpoint(ec);
    if (ec) continue;  // already gone
    auto refuse = [&] {
      refuse_connection(socket.native_handle());
      boost::system::error_code ignored;
      socket.close(ignored);
    };
    if (m.connections_active.load(std::memory_order_relaxed) >= shared->config.max_connections) {
      Metrics::inc(m.connections_rejected_total);
      refuse();
      continue;
    }
    auto client = admission.client(peer.address());
    bool proxy = admission.trusted_proxy(peer.address());
    std::shared_ptr<void> hold;
    if (!proxy) {
      hold = admission.open_connection(client);
      if (!hold) {
        refuse();  // counted by open_connection
        continue;
      }
    }
    Metrics::inc(m.connections_active);
    socket.set_option(tcp::no_delay(true), ec);
    auto conn = std::make_shared<Connection>(shared, std::move(socket), context, std::move(client),
                                             proxy, std::move(hold));
    conn->start();
  }
}

}  // namespace

HttpServer::HttpServer(asio::io_context& io, mcp::Server& server, HttpConfig config)
    : HttpServer(std::vector<asio::io_context*>{&io}, server, std::move(config)) {}

HttpServer::HttpServer(IoPool& pool, mcp::Server& server, HttpConfig config)
    : HttpServer(
          [&pool] {
            std::vector<asio::io_context*> v;
            for (std::size_t i = 0; i < pool.size(); ++i) v.push_back(&pool.at(i));
            return v;
          }(),
          server, std::move(config)) {}

HttpServer::HttpServer(std::vector<asio::io_context*> contexts, mcp::Server& server,
                       HttpConfig config)
    : shared_(std::make_shared<Shared>(std::move(contexts), server, std::move(config))) {
  auto& cfg = shared_->config;
  tcp::endpoint ep(asio::ip::make_address(cfg.host), cfg.port);
  auto& acc = shared_->acceptor;
  acc.open(ep.protocol());
  acc.set_option(asio::socket_base::reuse_address(true));
  acc.bind(ep);
  acc.listen(asio::socket_base::max_listen_connections);
  if (cfg.allowed_hosts.empty() && !is_loopback_name(cfg.host) && cfg.host != "0.0.0.0" &&
      cfg.host != "::") {
    // Bound to a specific non-loopback address: that address names this node too.
    cfg.allowed_hosts = {"localhost", "127.0.0.1", "[::1]", cfg.host};
  }
}

HttpServer::~HttpServer() { stop(); }

/// Gives each I/O context's reactor the per-descriptor state of its share of `max_connections`
/// at start, in one contiguous run. Asio keeps that state (~180 B a socket) in a pool it never
/// gives back; made one socket at a time during a flood, it lands between the flood's other
/// objects, and once those are freed every page holding one of them stays resident: after 10K
/// sessions and 10K streams, 17 MB of heap for 3 MB of live objects. Made at start it costs its
/// size (3.3 MB at 19,000 connections) and nothing more. The descriptors are duplicates of one
/// eventfd that never fires, held together for a moment (~8 µs each: 0.15 s at 19,000) before
/// anything else of the node runs; it stops at the first one the process may not open.
void prepare_descriptor_states(const std::vector<asio::io_context*>& contexts, std::size_t max) {
  int base = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (base < 0) return;
  std::size_t per_context = max / contexts.size() + 64;
  std::vector<asio::posix::stream_descriptor> held;
  held.reserve(per_context);
  for (auto* context : contexts) {
    for (std::size_t i = 0; i < per_context; ++i) {
      int fd = ::fcntl(base, F_DUPFD_CLOEXEC, 0);
      if (fd < 0) break;
      asio::posix::stream_descriptor d(*context);
      boost::system::error_code ec;
      d.assign(fd, ec);
      if (ec) {
        ::close(fd);
        break;
      }
      held.push_back(std::move(d));
    }
    held.clear();  // closed: their states wait in the reactor's pool
  }
  ::close(base);
}

void HttpServer::start() {
  boost::system::error_code ec;
  if (shared_->config.prepare_descriptors) {
    prepare_descriptor_states(shared_->contexts, shared_->config.max_connections);
  }
  shared_->acceptor.non_blocking(true, ec);  // refuse_backlog's accept4 must never wait
  shared_->admission->start(shared_->contexts, shared_->server.worker_executor(),
                            [&server = shared_->server] {
                              auto load = server.worker_load();
                              return WorkerQueue{load.jobs, load.threads, load.mean_job};
                            });
  asio::co_spawn(shared_->acceptor.get_executor(), accept_loop(shared_), asio::detached);
}

void HttpServer::stop() {
  boost::system::error_code ec;
  shared_->acceptor.close(ec);
  shared_->admission->stop();
}

Admission& HttpServer::admission() { return *shared_->admission; }

asio::ip::tcp::endpoint HttpServer::local_endpoint() const {
  return shared_->acceptor.local_endpoint();
}

void HttpServer::set_locator(SessionLocator* locator) { shared_->locator = locator; }

void HttpServer::set_upgrade(std::optional<UpgradeRoute> route) {
  shared_->upgrade.store(route ? std::make_shared<const UpgradeRoute>(std::move(*route)) : nullptr);
}

void HttpServer::set_readiness(std::function<bool()> ready) { shared_->ready = std::move(ready); }

void HttpServer::set_extra_metrics(std::function<void(std::string&)> render) {
  shared_->extra_metrics = std::move(render);
}

std::string HttpServer::render_metrics() const { return shared_->render_metrics(); }

std::string_view HttpServer::not_ready_because() const { return shared_->not_ready_because(); }

void HttpServer::serve_forwarded(HttpRequest request, unsigned hops,
                                 std::shared_ptr<ForwardedAnswer> answer) {
  // On the calling thread when it is one of this server's: no wake-up of another thread.
  auto* here = mcp::RoamingExecutor::thread_context();
  auto& context = here && std::find(shared_->contexts.begin(), shared_->contexts.end(), here) !=
                              shared_->contexts.end()
                      ? *here
                      : shared_->next_for_forwarded();
  auto exchange =
      std::make_shared<ForwardedExchange>(shared_, context, std::max(hops, 1u), std::move(answer));
  asio::co_spawn(
      context,
      [exchange, request = std::move(request)]() mutable {
        return exchange->run(std::move(request));
      },
      asio::detached);
}

}  // namespace mcpmesh::transport
