#pragma once
/// \file
/// The MCP server core: sessions and the method router, independent of any transport.
///
/// Threading: each `Session` owns a strand; all its state is touched only there. Transports call
/// the thread-safe entry points (`post_frame`, `post_notification`, `close`) from their own
/// executors; answers come back through `ClientChannel::deliver`, which transports implement
/// thread-safely.

#include "mcp/app.hpp"
#include "mcp/metrics.hpp"
#include "registry/sharded_registry.hpp"
#include "registry/subscription_index.hpp"

#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace mcpmesh::mcp {

/// A way back to the client. Implemented by transports.
/// Thread-safety: `deliver` may be called from any thread and must not block.
class ClientChannel {
 public:
  virtual ~ClientChannel() = default;
  /// Sends `message`. `completes_request` marks the final answer to one client request;
  /// `message` is null when that request ends without an answer (it was cancelled).
  virtual void deliver(Payload message, bool completes_request) = 0;
  /// The session this channel serves has ended (standalone channels only).
  virtual void on_session_closed() {}
  /// Ends the transport stream carrying this channel now, keeping what it would still carry
  /// for a resumption (SSE polling); a no-op where streams cannot be resumed.
  virtual void close_stream() {}
};

struct ServerConfig {
  std::string node_id = "n1";
  std::string server_name = "mcpmesh";
  std::string server_title = "mcpmesh";
  std::string server_version = "0.1.0";
  std::string instructions;
  std::size_t page_size = 100;
  std::size_t max_inflight_per_session = 64;
  std::size_t max_subscriptions_per_session = 1000;
  std::size_t max_sessions = 100000;
  std::chrono::milliseconds client_request_timeout{60000};
  std::chrono::seconds session_idle_timeout{1800};
  std::size_t max_blocking_jobs = 1024;
};

class Server;
class InflightRequest;

/// One MCP session (session era). Created by a transport through `Server::create_session`.
class Session : public std::enable_shared_from_this<Session> {
 public:
  enum class State { kNew, kInitializing, kReady, kClosed };

  Session(Server& server, std::string id, asio::any_io_executor strand,
          std::shared_ptr<ClientChannel> standalone);
  ~Session();

  [[nodiscard]] const std::string& id() const { return id_; }
  [[nodiscard]] const asio::any_io_executor& executor() const { return strand_; }
  /// The transport's channel for messages unrelated to a request (GET stream, stdout).
  [[nodiscard]] const std::shared_ptr<ClientChannel>& standalone() const { return standalone_; }

  /// Any thread. Handles the messages of one frame, in order; requests answer on `reply`.
  void post_frame(std::vector<Message> messages, std::shared_ptr<ClientChannel> reply);
  /// Any thread. Sends a notification unrelated to a request (dropped before initialize).
  void post_notification(Payload message);
  /// Any thread. Cancels handlers, fails pending client requests, drops subscriptions.
  void close();

  /// Any thread: the negotiated version, empty before initialize.
  [[nodiscard]] std::string_view protocol_version() const;
  [[nodiscard]] bool closed() const { return closed_.load(std::memory_order_acquire); }
  [[nodiscard]] std::chrono::steady_clock::time_point last_activity() const {
    return std::chrono::steady_clock::time_point(
        std::chrono::steady_clock::duration(last_activity_.load(std::memory_order_relaxed)));
  }
  void touch();
  /// Any thread. A pinned session never expires for idleness (stdio: the process is the session).
  void pin() { pinned_.store(true, std::memory_order_relaxed); }
  [[nodiscard]] bool pinned() const { return pinned_.load(std::memory_order_relaxed); }

 private:
  friend class InflightRequest;
  using Reply = std::shared_ptr<ClientChannel>;

  void handle(Message m, const Reply& reply);
  void handle_notification(const Message& m);
  void handle_response(Message m);
  void handle_request(Message m, const Reply& reply);
  Result<json::value> handle_initialize(const Message& m);
  Result<json::value> handle_list(const Message& m);
  Result<json::value> handle_subscribe(const Message& m, bool subscribe);
  Result<json::value> handle_set_level(const Message& m);
  asio::awaitable<void> run_request(std::shared_ptr<InflightRequest> inflight, Message m);
  asio::awaitable<Result<json::value>> dispatch_async(InflightRequest& ctx, Message& m);
  asio::awaitable<Result<json::object>> request_client(std::string method, json::object params,
                                                       std::chrono::milliseconds deadline,
                                                       const Reply& via);
  void send_log(LogLevel level, json::value data, std::string_view logger, const Reply& via);
  void do_close();

  Server& server_;
  const std::string id_;
  asio::any_io_executor strand_;
  std::shared_ptr<ClientChannel> standalone_;

  // Session state: strand only.
  State state_ = State::kNew;
  std::shared_ptr<const ClientState> client_;
  std::optional<LogLevel> log_level_;
  std::unordered_map<std::string, std::shared_ptr<InflightRequest>> inflight_;  // by id_key
  struct PendingClientRequest;
  std::unordered_map<std::string, std::shared_ptr<PendingClientRequest>> pending_;
  std::unordered_set<std::string> subscriptions_;  // bounded by max_subscriptions_per_session
  std::int64_t next_client_request_id_ = 1;

  // Readable from any thread.
  std::atomic<int> version_index_{-1};
  std::atomic<bool> closed_{false};
  std::atomic<bool> pinned_{false};
  std::atomic<std::chrono::steady_clock::rep> last_activity_;
};

/// The node's MCP server: sessions, subscriptions, the app, the worker pool.
/// Thread-safety: every public member may be called from any thread.
class Server {
 public:
  Server(asio::io_context& io, App& app, ServerConfig config, std::size_t worker_threads = 4);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Creates and registers a session whose strand runs on `context` (the creating
  /// connection's, so their hops stay on one thread; default: the server's); fails with
  /// kServerBusy at max_sessions.
  [[nodiscard]] Result<std::shared_ptr<Session>> create_session(
      std::shared_ptr<ClientChannel> standalone, asio::io_context* context = nullptr);
  [[nodiscard]] std::shared_ptr<Session> find_session(std::string_view id) const;
  /// Removes and closes a session. Returns false if unknown.
  bool close_session(std::string_view id);
  [[nodiscard]] std::size_t session_count() const;
  /// Closes every session (shutdown).
  void close_all();
  /// Starts the periodic sweep that expires idle sessions.
  void start_idle_sweeper();

  [[nodiscard]] App& app() { return app_; }
  [[nodiscard]] const ServerConfig& config() const { return config_; }
  [[nodiscard]] Metrics& metrics() { return metrics_; }
  [[nodiscard]] registry::SubscriptionIndex& subscriptions() { return subscriptions_; }
  [[nodiscard]] asio::any_io_executor worker_executor() { return workers_.get_executor(); }
  [[nodiscard]] asio::io_context& io() { return io_; }

  /// Blocking-job admission (HandlerContext::run_blocking): false at max_blocking_jobs.
  [[nodiscard]] bool acquire_blocking_slot();
  void release_blocking_slot();

  /// Makes a new session id: `<node-id>.<32 hex digits from the OS CSPRNG>`.
  [[nodiscard]] std::string new_session_id() const;

 private:
  void on_resource_updated(std::string_view uri);
  void on_list_changed(ListKind kind);
  void sweep_idle();

  asio::io_context& io_;
  App& app_;
  ServerConfig config_;
  Metrics metrics_;
  asio::thread_pool workers_;
  registry::ShardedRegistry<Session> sessions_;
  registry::SubscriptionIndex subscriptions_;
  asio::steady_timer sweep_timer_;
  std::atomic<std::size_t> blocking_jobs_{0};
};

}  // namespace mcpmesh::mcp
