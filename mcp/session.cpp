#include "mcp/session.hpp"

#include "mcp/server.hpp"
#include "mcp/version.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <array>

namespace mcpmesh::mcp {

struct Session::PendingClientRequest {
  explicit PendingClientRequest(const asio::any_io_executor& ex) : timer(ex) {}
  asio::steady_timer timer;
  std::optional<Result<json::object>> outcome;
};

namespace {

/// The client state for an initialize, shared with the sessions before it that sent the same.
/// Clients of one kind send the same capabilities and clientInfo every time, so sessions share
/// one immutable ClientState instead of a copy each (~230 bytes of an idle session's ~1 KB).
/// The last few are remembered per thread, weakly: nothing outlives its sessions but the
/// cache's few control blocks. A lookup compares a few small objects, once per session.
std::shared_ptr<const ClientState> shared_client_state(std::string_view version,
                                                       const json::object* caps,
                                                       const json::object* info) {
  static const json::object kNone;
  const json::object& c = caps ? *caps : kNone;
  const json::object& i = info ? *info : kNone;
  thread_local std::array<std::weak_ptr<const ClientState>, 4> recent;
  thread_local std::size_t next = 0;
  for (auto& weak : recent) {
    auto known = weak.lock();
    if (known && known->protocol_version == version && known->capabilities == c &&
        known->info == i) {
      return known;
    }
  }
  auto client = std::make_shared<ClientState>();
  client->protocol_version = std::string(version);
  client->capabilities = c;
  client->info = i;
  recent[next++ % recent.size()] = client;
  return client;
}

}  // namespace

Session::Session(Server& server, SessionRecord record, asio::any_io_executor strand,
                 std::shared_ptr<ClientChannel> standalone, SessionStreams* streams)
    : server_(server),
      strand_(std::move(strand)),
      standalone_(std::move(standalone)),
      streams_(streams),
      record_(std::move(record)) {
  established_.store(record_.phase == SessionRecord::Phase::kReady, std::memory_order_relaxed);
  set_version_index();
  touch();
}

Session::~Session() = default;

void Session::touch() {
  last_activity_.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                       std::memory_order_relaxed);
}

void Session::set_version_index() {
  if (!record_.client) return;
  for (std::size_t i = 0; i < kSupportedVersions.size(); ++i) {
    if (kSupportedVersions[i] == record_.client->protocol_version) {
      version_index_.store(static_cast<int>(i), std::memory_order_release);
    }
  }
}

std::string_view Session::protocol_version() const {
  int i = version_index_.load(std::memory_order_acquire);
  return i < 0 ? std::string_view() : kSupportedVersions[static_cast<std::size_t>(i)];
}

bool Session::allows_batches() const { return version_allows_batches(protocol_version()); }

bool Session::resumable_streams() const { return protocol_version() >= "2025-11-25"; }

void Session::changed() {
  ++record_.revision;
  if (auto* observer = server_.observer()) observer->on_record(record_);
}

void Session::post_frame(std::vector<Message> messages, std::shared_ptr<ClientChannel> reply) {
  touch();
  // dispatch, not post: an idle session handles the frame right here, on the thread that read
  // it (see roaming_executor.hpp), and the answer is usually queued before the caller waits.
  asio::dispatch(strand_, [self = shared_from_this(), messages = std::move(messages),
                           reply = std::move(reply)]() mutable {
    for (auto& m : messages) {
      json::value id = m.is_request() ? m.id : json::value(nullptr);
      try {
        self->handle(std::move(m), reply);
      } catch (const std::exception& e) {
        // App code (a template lister, say) threw on a synchronous path: that request fails,
        // the node and the session go on.
        if (!id.is_null()) {
          reply->deliver(make_answer(self->server_.metrics(), id, handler_failure(e)), true);
        }
      }
    }
  });
}

void Session::post_notification(Payload message) {
  asio::post(strand_, [self = shared_from_this(), message = std::move(message)]() mutable {
    if (self->record_.phase == SessionRecord::Phase::kNew || self->closing_) return;
    if (!self->streams_) {
      self->standalone_->deliver(std::move(message), false);
      return;
    }
    auto seq = self->streams_->append_standalone(message);
    if (auto* observer = self->server_.observer()) {
      observer->on_standalone_event(self->record_.id, seq, message);
    }
  });
}

void Session::close() {
  if (closed_.exchange(true, std::memory_order_acq_rel)) return;
  asio::post(strand_, [self = shared_from_this()] { self->do_close(); });
}

void Session::abort_inflight(RpcError error) {
  asio::post(strand_, [self = shared_from_this(), error = std::move(error)] {
    auto inflight = self->inflight;  // fail() ends each handler, which edits the map
    for (auto& [key, request] : inflight) request->fail(error);
  });
}

void Session::do_close() {
  closing_ = true;
  auto requests = std::move(inflight);
  inflight.clear();
  for (auto& [key, request] : requests) request->cancel();
  // Nobody can see this session's tasks any more: they end with it.
  for (auto& request : server_.tasks().drop_session(record_.id)) request->cancel();
  for (auto& [key, pending] : pending_) {
    pending->outcome = RpcError(ErrorCode::kInternalError, "session closed");
    pending->timer.cancel();
  }
  pending_.clear();
  server_.subscriptions().unsubscribe_all(record_.id);
  auto* observer = server_.observer();
  if (observer) {
    for (auto& uri : record_.subscriptions) observer->on_subscription_changed(uri);
  }
  record_.subscriptions.clear();
  standalone_->on_session_closed();
  if (observer) observer->on_closed(record_.id);
}

void Session::handle(Message m, const Reply& reply) {
  if (closing_) {
    if (m.is_request()) {
      reply->deliver(make_error(m.id, {ErrorCode::kInvalidRequest, "session closed"}), true);
    }
    return;
  }
  switch (m.kind) {
    case Message::Kind::kRequest:
      Metrics::inc(server_.metrics().requests_total);
      handle_request(std::move(m), reply);
      break;
    case Message::Kind::kNotification:
      Metrics::inc(server_.metrics().notifications_total);
      handle_notification(m);
      break;
    default:
      handle_response(std::move(m));
      break;
  }
}

void Session::handle_notification(const Message& m) {
  if (m.method == "notifications/initialized") {
    if (record_.phase == SessionRecord::Phase::kInitializing) {
      record_.phase = SessionRecord::Phase::kReady;
      established_.store(true, std::memory_order_relaxed);
      changed();
    }
  } else if (m.method == "notifications/cancelled") {
    auto* id = m.params.if_contains("requestId");
    if (!id || !is_valid_id(*id)) return;
    auto it = inflight.find(id_key(*id));
    if (it == inflight.end()) return;  // already answered or unknown: ignore, as the spec says
    Metrics::inc(server_.metrics().cancelled_total);
    it->second->cancel();
  }
  // notifications/roots/list_changed and notifications/progress need no action here.
}

void Session::handle_response(Message m) {
  auto it = pending_.find(id_key(m.id));
  if (it == pending_.end()) return;  // late or unknown answer
  auto pending = it->second;
  pending_.erase(it);
  if (m.kind == Message::Kind::kResponse) {
    if (m.result.is_object()) {
      pending->outcome = std::move(m.result.get_object());
    } else {
      pending->outcome = RpcError(ErrorCode::kInvalidRequest, "client result is not an object");
    }
  } else {
    pending->outcome = std::move(m.error);
  }
  pending->timer.cancel();
}

void Session::handle_request(Message m, const Reply& reply) {
  if (m.method == "initialize") {
    auto span = server_.router().method_span(*this, m);
    TraceScope scope(span.context());
    auto r = handle_initialize(m);
    Router::finish_method_span(span, r);
    bool opened = r.has_value();
    if (opened) {
      std::string_view client_name, client_version;
      if (auto c = client()) {
        client_name = get_string(c->info, "name").value_or("?");
        client_version = get_string(c->info, "version").value_or("?");
      }
      spdlog::debug("session {} opened: protocol {}, client {} {}", redact_session_id(id()),
                    protocol_version(), client_name.substr(0, 64), client_version.substr(0, 32));
    } else {
      spdlog::debug("initialize refused: {}", r.error().message);
    }
    reply->deliver(make_answer(server_.metrics(), m.id, std::move(r)), true);
    if (opened) server_.watch_initialization(shared_from_this());
    return;
  }
  if (record_.phase == SessionRecord::Phase::kNew) {
    if (m.method != "ping") {
      reply->deliver(make_answer(server_.metrics(), m.id,
                                 RpcError(ErrorCode::kInvalidRequest,
                                          "session not initialized: send initialize first")),
                     true);
      return;
    }
  } else if (!established_.load(std::memory_order_relaxed)) {
    // A client that skips notifications/initialized but goes on working has not gone away.
    established_.store(true, std::memory_order_relaxed);
  }
  server_.router().handle(shared_from_this(), std::move(m), reply);
}

Result<json::value> Session::handle_initialize(const Message& m) {
  if (record_.phase != SessionRecord::Phase::kNew) {
    return RpcError(ErrorCode::kInvalidRequest, "already initialized");
  }
  auto requested = get_string(m.params, "protocolVersion");
  if (!requested) {
    return RpcError(ErrorCode::kInvalidParams, "initialize needs params.protocolVersion (string)");
  }
  auto version = negotiate_version(*requested);
  auto* caps = get_object(m.params, "capabilities");
  auto* info = get_object(m.params, "clientInfo");
  // They are kept in the session's record, whose wire form must stay JSON (the parser reads
  // 1e400 as infinity). A walk of two small objects, once per session.
  if ((caps && holds_non_finite_number(*caps)) || (info && holds_non_finite_number(*info))) {
    return RpcError(ErrorCode::kInvalidParams,
                    "params.capabilities and params.clientInfo must hold finite numbers only");
  }
  record_.client = shared_client_state(version, caps, info);
  record_.phase = SessionRecord::Phase::kInitializing;
  set_version_index();
  changed();
  return server_.initialize_result(version);
}

Result<json::value> Session::set_log_level(LogLevel level) {
  if (record_.log_level != level) {
    record_.log_level = level;
    changed();
  }
  return json::value(json::object{});
}

void Session::subscribe(std::string_view uri, std::function<void(Result<json::value>)> done) {
  if (record_.subscriptions.contains(uri)) return done(json::value(json::object{}));
  if (record_.subscriptions.size() >= server_.config().max_subscriptions_per_session) {
    Metrics::inc(server_.metrics().subscriptions_rejected_total);
    return done(RpcError(ErrorCode::kServerBusy,
                         "too many subscriptions for this session (max " +
                             std::to_string(server_.config().max_subscriptions_per_session) + ")"));
  }
  // The record holds the index's text of the URI: one copy per node.
  record_.subscriptions.insert(server_.subscriptions().subscribe(uri, record_.id).uri);
  changed();
  auto* observer = server_.observer();
  if (!observer) return done(json::value(json::object{}));
  observer->on_subscribed(uri, [done = std::move(done)] { done(json::value(json::object{})); });
}

Result<json::value> Session::unsubscribe(std::string_view uri) {
  if (auto it = record_.subscriptions.find(uri); it != record_.subscriptions.end()) {
    record_.subscriptions.erase(it);
    server_.subscriptions().unsubscribe(uri, record_.id);
    if (auto* observer = server_.observer()) observer->on_subscription_changed(uri);
    changed();
  }
  return json::value(json::object{});
}

asio::awaitable<Result<json::object>> Session::request_client(std::string method,
                                                              json::object params,
                                                              std::chrono::milliseconds deadline,
                                                              const Reply& via) {
  const json::object& caps = record_.client->capabilities;
  bool supported = false;
  if (method == "sampling/createMessage") {
    supported = caps.contains("sampling");
  } else if (method == "roots/list") {
    supported = caps.contains("roots");
  } else if (method == "elicitation/create") {
    auto* el = get_object(caps, "elicitation");
    auto mode = get_string(params, "mode");
    if (el) {
      // An empty elicitation capability means form mode only.
      supported =
          (mode && *mode == "url") ? el->contains("url") : (el->empty() || el->contains("form"));
    }
  } else {
    supported = true;  // an app-defined request: the app knows what the client speaks
  }
  if (!supported) {
    co_return RpcError(ErrorCode::kInvalidParams,
                       "client did not declare the capability for " + method);
  }
  if (closing_) co_return RpcError(ErrorCode::kInternalError, "session closed");
  // A task's request names its task; so does its cancellation (2025-11-25).
  json::value related_task = nullptr;
  if (auto* meta = get_object(params, "_meta")) {
    if (auto* task = meta->if_contains(kRelatedTaskMeta)) related_task = *task;
  }
  json::value id = record_.next_client_request_id;
  auto request = make_request(id, method, std::move(params));
  if (!request) {
    Metrics::inc(server_.metrics().non_finite_numbers_total);
    co_return RpcError(
        ErrorCode::kInternalError,
        "the params of " + method + " hold a number JSON cannot represent (infinity or NaN)");
  }
  ++record_.next_client_request_id;
  changed();  // a node that continues this session must not reuse the id
  auto key = id_key(id);
  auto pending = std::make_shared<PendingClientRequest>(strand_);
  pending_.emplace(key, pending);
  Metrics::inc(server_.metrics().client_requests_total);
  via->deliver(std::move(request), false);
  deadline = std::min(deadline, server_.config().client_request_timeout);
  pending->timer.expires_after(deadline);
  boost::system::error_code ec;
  co_await pending->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  if (pending->outcome) co_return std::move(*pending->outcome);
  pending_.erase(key);
  if (ec == asio::error::operation_aborted) {
    co_return RpcError(ErrorCode::kInternalError, "request cancelled");
  }
  Metrics::inc(server_.metrics().client_request_timeouts_total);
  json::object cancelled{{"requestId", id}, {"reason", "timed out"}};
  if (!related_task.is_null()) cancelled["_meta"] = json::object{{kRelatedTaskMeta, related_task}};
  via->deliver(make_notification("notifications/cancelled", std::move(cancelled)), false);
  co_return RpcError(ErrorCode::kRequestTimeout,
                     method + " got no answer within " + std::to_string(deadline.count()) + " ms");
}

}  // namespace mcpmesh::mcp
