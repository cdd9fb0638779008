#pragma once
/// \file
/// Test-only harness: an `mcp::Server` on an `io_context` that the test thread runs itself
/// (`run_until`, `settle`), plus `TestClient`s that post frames to their `Session` and record
/// everything the server delivers back. Header-only; tests link GoogleTest anyway.
///
/// Thread-safety: `RecordingChannel` may be fed from any thread. `SessionHarness` and
/// `TestClient` belong to the test thread, which is also the only thread running the io_context
/// (the server's worker pool has its own threads).

#include "mcp/server.hpp"
#include "mcp/version.hpp"

#include <gtest/gtest.h>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace mcpmesh::mcp::testing {

/// Every wait in a test is bounded by this, generous for a loaded machine.
inline constexpr std::chrono::milliseconds kDefaultDeadline{10000};

/// A client channel that records what it is handed.
class RecordingChannel final : public ClientChannel {
 public:
  struct Delivery {
    Payload message;  // null when a request ended without an answer
    bool completes_request = false;
  };

  void deliver(Payload message, bool completes_request) override {
    std::lock_guard lock(mutex_);
    deliveries_.push_back({std::move(message), completes_request});
  }
  void on_session_closed() override {
    std::lock_guard lock(mutex_);
    session_closed_ = true;
  }
  void close_stream() override {
    std::lock_guard lock(mutex_);
    ++stream_closes_;
  }

  [[nodiscard]] std::vector<Delivery> deliveries() const {
    std::lock_guard lock(mutex_);
    return deliveries_;
  }
  [[nodiscard]] std::size_t size() const {
    std::lock_guard lock(mutex_);
    return deliveries_.size();
  }
  /// The delivery that completed a request, if one did.
  [[nodiscard]] std::optional<Delivery> completion() const {
    std::lock_guard lock(mutex_);
    for (auto& d : deliveries_) {
      if (d.completes_request) return d;
    }
    return std::nullopt;
  }
  /// Every non-null message, parsed, in delivery order.
  [[nodiscard]] std::vector<json::object> messages() const {
    std::vector<json::object> out;
    for (auto& d : deliveries()) {
      if (d.message) out.push_back(json::parse(*d.message).as_object());
    }
    return out;
  }
  /// The messages whose "method" is `method`.
  [[nodiscard]] std::vector<json::object> with_method(std::string_view method) const {
    std::vector<json::object> out;
    for (auto& m : messages()) {
      if (auto* v = m.if_contains("method"); v && v->is_string() && v->get_string() == method) {
        out.push_back(std::move(m));
      }
    }
    return out;
  }
  [[nodiscard]] bool session_closed() const {
    std::lock_guard lock(mutex_);
    return session_closed_;
  }
  [[nodiscard]] int stream_closes() const {
    std::lock_guard lock(mutex_);
    return stream_closes_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<Delivery> deliveries_;  // guarded by mutex_
  bool session_closed_ = false;       // guarded by mutex_
  int stream_closes_ = 0;             // guarded by mutex_
};

class SessionHarness;

/// One client session: sends messages and waits (bounded) for what comes back.
class TestClient {
 public:
  TestClient(SessionHarness& harness, std::shared_ptr<Session> session,
             std::shared_ptr<RecordingChannel> standalone)
      : harness_(harness), session_(std::move(session)), standalone_(std::move(standalone)) {}

  [[nodiscard]] Session& session() const { return *session_; }
  [[nodiscard]] const std::string& id() const { return session_->id(); }
  /// Messages unrelated to a request (list_changed, resources/updated).
  [[nodiscard]] RecordingChannel& standalone() const { return *standalone_; }

  /// Encodes `message`, decodes it as a transport would and posts it; requests answer on the
  /// returned channel.
  std::shared_ptr<RecordingChannel> send(const json::object& message) {
    auto frame = parse_frame(json::serialize(message), ParseLimits{});
    EXPECT_FALSE(frame.frame_error.has_value());
    EXPECT_TRUE(frame.errors.empty()) << json::serialize(message);
    auto reply = std::make_shared<RecordingChannel>();
    session_->post_frame(std::move(frame.messages), reply);
    return reply;
  }

  /// Starts a request without waiting for it; `id` defaults to the next integer.
  std::shared_ptr<RecordingChannel> start(std::string_view method, json::object params = {},
                                          json::value id = nullptr) {
    if (id.is_null()) id = next_id_++;
    json::object m{{"jsonrpc", "2.0"}, {"id", id}, {"method", method}};
    if (!params.empty()) m["params"] = std::move(params);
    return send(m);
  }

  void notify(std::string_view method, json::object params = {}) {
    json::object m{{"jsonrpc", "2.0"}, {"method", method}};
    if (!params.empty()) m["params"] = std::move(params);
    (void)send(m);
  }

  /// Waits until `reply` completed its request; returns the response (empty object if the
  /// request ended without one, or on timeout, which also fails the test).
  json::object wait_response(const RecordingChannel& reply,
                             std::chrono::milliseconds deadline = kDefaultDeadline);

  /// Sends a request and waits for its response object ({"result"} or {"error"}).
  json::object call(std::string_view method, json::object params = {},
                    std::chrono::milliseconds deadline = kDefaultDeadline) {
    auto reply = start(method, std::move(params));
    return wait_response(*reply, deadline);
  }

  json::object call_tool(std::string_view name, json::object arguments = {},
                         json::object meta = {}) {
    json::object params{{"name", name}, {"arguments", std::move(arguments)}};
    if (!meta.empty()) params["_meta"] = std::move(meta);
    return call("tools/call", std::move(params));
  }

  /// initialize + notifications/initialized; returns the initialize result.
  json::object initialize(json::object capabilities = {},
                          std::string_view version = kLatestVersion) {
    auto r = call("initialize", {{"protocolVersion", version},
                                 {"capabilities", std::move(capabilities)},
                                 {"clientInfo", {{"name", "test"}, {"version", "1"}}}});
    notify("notifications/initialized");
    if (auto* result = r.if_contains("result"); result && result->is_object()) {
      return result->get_object();
    }
    ADD_FAILURE() << "initialize failed: " << json::serialize(r);
    return {};
  }

 private:
  SessionHarness& harness_;
  std::shared_ptr<Session> session_;
  std::shared_ptr<RecordingChannel> standalone_;
  std::int64_t next_id_ = 1;
};

/// Owns the io_context and the server. Runs the io_context only when the test asks.
class SessionHarness {
 public:
  explicit SessionHarness(App& app, ServerConfig config = {}, std::size_t worker_threads = 2)
      : guard_(io_.get_executor()),
        server_(std::make_unique<Server>(io_, app, std::move(config), worker_threads)) {}

  ~SessionHarness() {
    // Close everything, then let cancelled handlers finish while the server still exists:
    // their frames refer to it.
    server_->close_all();
    guard_.reset();
    io_.run_for(kDefaultDeadline);
    server_.reset();
  }

  SessionHarness(const SessionHarness&) = delete;
  SessionHarness& operator=(const SessionHarness&) = delete;

  [[nodiscard]] asio::io_context& io() { return io_; }
  [[nodiscard]] Server& server() { return *server_; }
  [[nodiscard]] Metrics& metrics() { return server_->metrics(); }

  /// A new session with its own recording standalone channel.
  std::unique_ptr<TestClient> connect() {
    auto standalone = std::make_shared<RecordingChannel>();
    auto session = server_->create_session(standalone);
    if (!session) {
      ADD_FAILURE() << "create_session failed: " << session.error().message;
      return nullptr;
    }
    return std::make_unique<TestClient>(*this, *session, standalone);
  }

  /// Runs the io_context on this thread until `pred()` holds or `deadline` passes.
  template <class Pred>
  bool run_until(Pred pred, std::chrono::milliseconds deadline = kDefaultDeadline) {
    auto end = std::chrono::steady_clock::now() + deadline;
    while (!pred()) {
      if (std::chrono::steady_clock::now() >= end) return pred();
      io_.run_one_for(std::chrono::milliseconds(20));
    }
    return true;
  }

  /// Runs every handler that is ready now (and those they make ready), without waiting on
  /// timers: afterwards nothing posted before this call is still pending.
  void settle() {
    while (io_.poll() > 0) {
    }
  }

 private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::unique_ptr<Server> server_;
};

inline json::object TestClient::wait_response(const RecordingChannel& reply,
                                              std::chrono::milliseconds deadline) {
  if (!harness_.run_until([&] { return reply.completion().has_value(); }, deadline)) {
    ADD_FAILURE() << "no response within " << deadline.count() << " ms";
    return {};
  }
  auto done = reply.completion();
  if (!done->message) return {};
  return json::parse(*done->message).as_object();
}

/// The "result" object of a response (empty, with a test failure, if it is an error).
inline json::object result_of(const json::object& response) {
  if (auto* r = response.if_contains("result"); r && r->is_object()) return r->get_object();
  ADD_FAILURE() << "expected a result, got " << json::serialize(response);
  return {};
}

/// The error code of a response (0, with a test failure, if it is not an error).
inline std::int64_t error_code_of(const json::object& response) {
  if (auto* e = response.if_contains("error"); e && e->is_object()) {
    if (auto* c = e->get_object().if_contains("code"); c && c->is_int64()) return c->get_int64();
  }
  ADD_FAILURE() << "expected an error, got " << json::serialize(response);
  return 0;
}

}  // namespace mcpmesh::mcp::testing
