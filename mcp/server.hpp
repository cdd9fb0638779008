#pragma once
/// \file
/// The MCP server core of a node: sessions, the method router, subscriptions, the app and the
/// worker pool, independent of any transport and of the cluster.
///
/// Threading: each `Session` owns a strand; all its state is touched only there. `Server`'s
/// public members are thread-safe. The cluster plugs in through three interfaces it implements:
/// `SessionObserver` (told of every change worth replicating), `NotificationFanout` (carries
/// resource updates and list changes to the other nodes) and `DeliveryGate` (which sessions
/// held here may get them now).

#include "mcp/app.hpp"
#include "mcp/client_channel.hpp"
#include "mcp/metrics.hpp"
#include "mcp/request_state.hpp"
#include "mcp/router.hpp"
#include "mcp/session.hpp"
#include "mcp/session_record.hpp"
#include "mcp/session_streams.hpp"
#include "mcp/stateless.hpp"
#include "mcp/tasks.hpp"
#include "registry/sharded_registry.hpp"
#include "registry/subscription_index.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace mcpmesh::mcp {

struct ServerConfig {
  std::string node_id = "n1";
  std::string server_name = "mcpmesh";
  std::string server_title = "mcpmesh";
  std::string server_version = "0.1.0";
  std::string instructions;
  std::size_t page_size = 100;
  /// Requests of one session admitted and not answered yet, of every kind (-32000 above).
  std::size_t max_inflight_per_session = 64;
  /// Requests admitted and not answered yet on the whole node (-32000 above).
  std::size_t max_inflight = 4096;
  /// 100: a session's subscriptions replicate in its record, which a replica takes up to
  /// kMaxRecordBytes (256 KiB); 100 URIs of max_uri_bytes fit, 1,000 would not.
  std::size_t max_subscriptions_per_session = 100;
  /// Longest URI resources/subscribe and resources/unsubscribe accept (-32602 above).
  std::size_t max_uri_bytes = 2048;
  std::size_t max_sessions = 100000;
  /// A session whose client has not completed initialization (notifications/initialized or
  /// any later request) this long after initialize is removed.
  std::chrono::milliseconds init_timeout{10000};
  std::chrono::milliseconds client_request_timeout{60000};
  std::chrono::seconds session_idle_timeout{1800};
  std::size_t max_blocking_jobs = 1024;
  /// Resumable streams of sessions served over Streamable HTTP.
  StreamLimits streams;

  // The stateless era (2026-07-28).
  /// Keys that seal and open a multi round-trip request's requestState: the first seals, all
  /// open (rotation). Every node of a cluster must hold the same. Empty: a random key per
  /// process (states then open on the node that sealed them only).
  std::vector<std::string> request_state_keys;
  /// How long a requestState stays valid.
  std::chrono::milliseconds request_state_ttl{600000};
  /// Largest requestState sealed (the answers a request collects over its rounds); a request
  /// whose input outgrows it fails with -32602.
  std::size_t max_request_state_bytes = 65536;
  /// subscriptions/listen streams open at once on this node (-32000 above).
  std::size_t max_listen_streams = 10000;
  /// ttlMs on cacheable results (the lists, resources/read, server/discover).
  std::chrono::milliseconds cache_ttl{0};
  /// Tasks alive on this node, of both eras (finished ones count until their ttl ends);
  /// beyond, a 2026-07-28 call runs as an ordinary call and a task-augmented 2025-11-25 call
  /// gets -32000.
  std::size_t max_tasks = 10000;
  /// Tasks of one 2025-11-25 session not finished yet (-32000 above).
  std::size_t max_tasks_per_session = 32;
  /// How long a task is kept after it was created (a finished one is dropped then); a
  /// 2025-11-25 client may ask for less.
  std::chrono::milliseconds task_ttl{3600000};
  /// The pollIntervalMs (2025-11-25: pollInterval) tasks suggest.
  std::chrono::milliseconds task_poll_interval{500};
  /// Notifications (resource updates, list changes) held while the delivery gate is closed
  /// (see DeliveryGate); more are dropped and counted (notifications_held_dropped_total).
  std::size_t max_held_notifications = 4096;
};

/// One subscriptions/listen stream (2026-07-28): the notifications it opted in to and where
/// they go, each tagged with its subscription id.
struct ListenStream {
  json::value subscription_id;
  std::shared_ptr<ClientChannel> reply;
  bool tools = false;
  bool prompts = false;
  bool resources = false;
  std::vector<std::string> uris;  // resources/updated for these
  std::string key;                // its subscriber name in the subscription index (set on add)
  /// Any thread: ends the stream with its result (the server tears it down: shutdown, drain).
  std::function<void()> end;
  /// Its acknowledgement went out: nothing is sent on it before (guarded by the server).
  bool acked = false;
};

/// Told about every change of a session's replicable state. Implemented by the cluster's
/// replication. Thread-safety: called concurrently from session strands; must not block.
class SessionObserver {
 public:
  virtual ~SessionObserver() = default;
  /// A session was created or its record changed (the record is a snapshot).
  virtual void on_record(const SessionRecord& record) = 0;
  /// Session `session_id` appended `message` to its standalone stream as event `seq`.
  virtual void on_standalone_event(const std::string& session_id, std::uint64_t seq,
                                   const Payload& message) = 0;
  /// Session `session_id` ended (DELETE, expiry, shutdown).
  virtual void on_closed(const std::string& session_id) = 0;
  /// Whether any session on this node subscribes to `uri` may have changed (a hint: read the
  /// truth from Server::subscriptions()).
  virtual void on_subscription_changed(std::string_view uri) = 0;
  /// A session subscribed to `uri`: as on_subscription_changed, and `published` (any thread,
  /// exactly once, bounded in time) once the nodes that raise updates know this node cares
  /// about `uri` (the subscribe is answered then).
  virtual void on_subscribed(std::string_view uri, std::function<void()> published) {
    on_subscription_changed(uri);
    published();
  }
};

/// Carries notifications raised by this node's app to the other nodes' sessions.
/// Thread-safety: called from any thread; must not block.
class NotificationFanout {
 public:
  virtual ~NotificationFanout() = default;
  virtual void resource_updated(std::string_view uri) = 0;
  virtual void list_changed(ListKind kind) = 0;
};

/// Which of this node's sessions may be given a notification (resource update, list change)
/// now. Implemented by the cluster: a session another node has continued since (this node's
/// copy is stale and about to be closed) gets none, and while this node cannot tell which of
/// its sessions are still its own (it may have been declared dead: a stall, a partition),
/// notifications wait until Server::release_held_notifications().
/// Thread-safety: called from any thread; must not block.
class DeliveryGate {
 public:
  virtual ~DeliveryGate() = default;
  /// False while notifications must wait.
  virtual bool open() = 0;
  /// Whether this node still holds the sessions `owner` created in `epoch` (false: another
  /// node continues them).
  virtual bool holds(std::string_view owner, std::uint64_t epoch) = 0;
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
  /// connection's, so their hops stay on one thread; default: the server's) and whose
  /// standalone messages go to `standalone`. Fails with kServerBusy at max_sessions or while
  /// the node does not accept new sessions.
  [[nodiscard]] Result<std::shared_ptr<Session>> create_session(
      std::shared_ptr<ClientChannel> standalone, asio::io_context* context = nullptr);
  /// As create_session, for a transport that serves resumable streams (Streamable HTTP): the
  /// session's standalone channel is its own `SessionStreams`. `admission` (the transport's
  /// reservation for the session's client) is held until the session leaves this node.
  [[nodiscard]] Result<std::shared_ptr<Session>> create_streamed_session(
      asio::io_context* context = nullptr, std::shared_ptr<void> admission = nullptr);
  /// Continues a session another node held (adoption): registers it with `record`'s state and
  /// its replicated standalone events. Fails if the id is taken or the record is malformed.
  [[nodiscard]] Result<std::shared_ptr<Session>> restore_session(
      SessionRecord record, std::vector<SessionStreams::StoredEvent> events,
      asio::io_context* context = nullptr);
  [[nodiscard]] std::shared_ptr<Session> find_session(std::string_view id) const;
  /// Removes and closes a session (logged at debug with `why`). Returns false if unknown.
  bool close_session(std::string_view id, std::string_view why = "closed");
  /// Removes a session from the registry without closing it: requests it is handling go on,
  /// new ones no longer find it here (a drain hands it to another node).
  std::shared_ptr<Session> release_session(std::string_view id);
  [[nodiscard]] std::size_t session_count() const;
  /// Any thread. Shards of the session registry.
  [[nodiscard]] std::size_t session_shards() const { return sessions_.shard_count(); }
  /// Every session (a snapshot).
  [[nodiscard]] std::vector<std::shared_ptr<Session>> sessions() const;
  /// Closes every session (shutdown).
  void close_all();
  /// Starts the periodic sweeps that expire idle sessions and sessions whose client never
  /// completed initialization.
  void start_idle_sweeper();
  /// Any thread: `session` answered initialize; it is removed (counted) unless its client
  /// completes initialization within init_timeout.
  void watch_initialization(const std::shared_ptr<Session>& session);
  /// Any thread, never blocks. `objects` per-client objects (a connection, a stream) were freed:
  /// after a flood of them ends, free heap pages go back to the system (see release_memory).
  /// Sessions that leave count by themselves.
  void note_freed(std::size_t objects = 1) {
    freed_since_trim_.fetch_add(objects, std::memory_order_relaxed);
  }

  /// New sessions are refused while this is false (a draining node).
  void set_accepting(bool accepting) { accepting_.store(accepting, std::memory_order_release); }
  [[nodiscard]] bool accepting() const { return accepting_.load(std::memory_order_acquire); }
  /// New sessions are refused while this is false too: a cluster node that sees at most half of
  /// its cluster alive (its sessions of this epoch may be continued elsewhere, and a session
  /// made now would be lost with them when the cut heals).
  void set_quorate(bool quorate) { quorate_.store(quorate, std::memory_order_relaxed); }
  [[nodiscard]] bool quorate() const { return quorate_.load(std::memory_order_relaxed); }
  /// The ownership epoch written into new session ids; 0 until set (single node: the boot
  /// time). A node whose sessions were continued elsewhere starts a new epoch.
  void set_epoch(std::uint64_t epoch) { epoch_.store(epoch, std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t epoch() const { return epoch_.load(std::memory_order_relaxed); }

  /// Set once before serving; null = single node.
  void set_observer(SessionObserver* observer) { observer_ = observer; }
  [[nodiscard]] SessionObserver* observer() const { return observer_; }
  void set_fanout(NotificationFanout* fanout) { fanout_ = fanout; }
  /// Set once before serving; null = every session held here gets every notification at once.
  void set_delivery_gate(DeliveryGate* gate) { gate_ = gate; }
  /// Any thread, once the gate opened: raises and delivers what waited while it was closed, in
  /// order, to the sessions held here then (what waits again if it closed meanwhile).
  void release_held_notifications();
  /// Notifications waiting for the gate.
  [[nodiscard]] std::size_t held_notifications() const {
    return held_count_.load(std::memory_order_relaxed);
  }
  /// Set once before serving; null (the default) = no spans are made.
  void set_tracer(Tracer* tracer) { tracer_ = tracer; }
  [[nodiscard]] Tracer* tracer() const { return tracer_; }

  /// Delivers a resource update / list change to this node's sessions only (the cluster's
  /// bus calls these for notifications raised elsewhere).
  void deliver_resource_updated(std::string_view uri);
  void deliver_list_changed(ListKind kind);

  [[nodiscard]] App& app() { return app_; }
  [[nodiscard]] const ServerConfig& config() const { return config_; }
  [[nodiscard]] Metrics& metrics() { return metrics_; }
  [[nodiscard]] Router& router() { return router_; }
  [[nodiscard]] registry::SubscriptionIndex& subscriptions() { return subscriptions_; }
  [[nodiscard]] asio::any_io_executor worker_executor() { return workers_.get_executor(); }
  [[nodiscard]] asio::io_context& io() { return io_; }

  /// Whether `m` opens a session (initialize): it is served by a new session, never an
  /// existing one.
  [[nodiscard]] static bool opens_session(const Message& m) {
    return std::string_view(m.method) == "initialize";
  }

  /// The initialize result for a negotiated `version`.
  [[nodiscard]] json::value initialize_result(std::string_view version) const;
  /// The server/discover result (2026-07-28; the router adds resultType and cache hints).
  [[nodiscard]] json::value discover_result() const;
  /// `{name, version, title}`: who answers (initialize's serverInfo; the stateless era's
  /// `_meta` io.modelcontextprotocol/serverInfo).
  [[nodiscard]] const json::object& server_info() const { return server_info_; }
  /// Seals and opens multi round-trip requestState (2026-07-28).
  [[nodiscard]] const RequestStateSealer& request_states() const { return request_states_; }
  /// The tasks of this node (the tasks extension and 2025-11-25 sessions').
  [[nodiscard]] TaskStore& tasks() { return tasks_; }

  /// Serves one request of the stateless era (2026-07-28), already checked by
  /// check_stateless_request, on `executor`, which must be the calling thread's (a synchronous
  /// handler has answered when this returns). Its notifications and answer go to `reply`.
  /// Returns the request's conversation: cancel() it when the client goes away.
  std::shared_ptr<StatelessConversation> serve_stateless(Message m,
                                                         std::shared_ptr<ClientChannel> reply,
                                                         asio::any_io_executor executor);

  /// Registers a subscriptions/listen stream. `ready` (any thread, once) is called when every
  /// node that raises updates for its URIs knows this node cares (at once with no URIs): the
  /// acknowledgement goes out then. False (counted) at max_listen_streams.
  bool add_listen_stream(const std::shared_ptr<ListenStream>& stream, std::function<void()> ready);
  /// Unregisters it; nothing more is sent on it.
  void remove_listen_stream(const std::shared_ptr<ListenStream>& stream);
  /// Ends every listen stream with its result (shutdown, drain).
  void end_listen_streams();

  /// Blocking-job admission (HandlerContext::run_blocking): false at max_blocking_jobs.
  [[nodiscard]] bool acquire_blocking_slot();
  void release_blocking_slot();
  /// A blocking job ran for `wall` on a worker (any thread): feeds WorkerLoad::mean_job.
  void blocking_job_ran(std::chrono::nanoseconds wall);

  /// The worker pool's load as admission control reads it (any thread).
  struct WorkerLoad {
    std::size_t jobs = 0;     // blocking jobs queued or running
    std::size_t threads = 0;  // worker threads
    /// Moving average of a job's wall time on its worker (0 before the first job): with the
    /// threads, what the pool serves per second on the CPU it gets.
    std::chrono::nanoseconds mean_job{0};
  };
  [[nodiscard]] WorkerLoad worker_load() const {
    return {blocking_jobs_.load(std::memory_order_relaxed), worker_threads_,
            std::chrono::nanoseconds(mean_job_ns_.load(std::memory_order_relaxed))};
  }
  /// Request admission (the Router, any thread): false (counted) at max_inflight requests
  /// admitted and not answered yet; the gauge inflight_requests is that count.
  [[nodiscard]] bool acquire_request_slot();
  void release_request_slot();

  /// Makes a new session id: `<node-id>.<epoch, hex>.<32 hex digits from the OS CSPRNG>`.
  [[nodiscard]] std::string new_session_id() const;

 private:
  Result<std::shared_ptr<Session>> make_session(std::shared_ptr<ClientChannel> standalone,
                                                SessionStreams* streams, asio::io_context* context,
                                                std::shared_ptr<void> admission = nullptr);
  /// Reserves one of max_sessions, exactly under concurrency; false (counted) when full.
  bool reserve_session_slot();
  void release_session_slot();
  void on_resource_updated(std::string_view uri);
  void on_list_changed(ListKind kind);
  /// A notification waiting for the delivery gate: raised by this node's app (to deliver here
  /// and fan out) or delivered by the cluster's bus (to deliver here only).
  struct HeldNotification {
    bool raised_here = false;
    std::optional<ListKind> list;  // a list change; else a resource update of `uri`
    std::string uri;
  };
  /// True when the gate is closed: `n` waits (or is dropped, counted, past the bound).
  bool hold(HeldNotification n);
  /// The gate's last answer in one delivery: its subscribers belong to a few sets only.
  struct GateAnswer {
    std::string owner;
    std::uint64_t epoch = 0;
    bool asked = false;
    bool holds = true;
  };
  /// Whether `session_id` may be given a notification (the gate says it is held here).
  bool delivers_to(std::string_view session_id, GateAnswer& last);
  // The sweeps run on sweep_strand_. A scan copies only the sessions it finds due, and those
  // are closed a chunk per turn, so that 100K sessions expiring at once never hold an I/O
  // thread for long.
  enum class Expiry : std::uint8_t { kIdle, kUninitialized };
  void arm_idle_sweep();
  void sweep_idle();
  void arm_init_sweep();
  void sweep_uninitialized();
  void expire(std::vector<std::shared_ptr<Session>> due, Expiry why);
  void close_expiring();
  /// Sweep strand, every init sweep tick: once at least kTrimAfterFreed objects were freed and
  /// none since the last tick (the flood is over), malloc_trim on the worker pool.
  void release_memory();
  static constexpr std::size_t kTrimAfterFreed = 1024;

  asio::io_context& io_;
  App& app_;
  ServerConfig config_;
  Metrics metrics_;
  Router router_{*this};
  asio::thread_pool workers_;
  std::size_t worker_threads_;
  static std::string_view session_key(const Session& s) { return s.id(); }
  registry::ShardedRegistry<Session, &Server::session_key> sessions_;  // keys: views of the ids
  registry::SubscriptionIndex subscriptions_;
  asio::strand<asio::io_context::executor_type> sweep_strand_;
  asio::steady_timer sweep_timer_;   // idle sweep
  asio::steady_timer init_timer_;    // sweep of sessions that did not complete initialization
  asio::steady_timer expiry_timer_;  // closes what the sweeps found, a chunk per turn
  /// Sessions that answered initialize, in deadline order (one timeout for all): a sweep looks
  /// at those due only, not at every session.
  struct Unestablished {
    std::chrono::steady_clock::time_point deadline;
    std::weak_ptr<Session> session;
  };
  std::mutex unestablished_mutex_;
  std::deque<Unestablished> unestablished_;  // guarded by unestablished_mutex_
  // sweep_strand_ only.
  std::deque<std::pair<std::shared_ptr<Session>, Expiry>> expiring_;
  bool expiry_armed_ = false;
  std::atomic<std::size_t> freed_since_trim_{0};
  std::size_t freed_at_last_tick_ = 0;  // sweep_strand_ only
  std::atomic<std::size_t> blocking_jobs_{0};
  std::atomic<std::int64_t> mean_job_ns_{0};
  std::atomic<std::size_t> session_slots_{0};
  std::atomic<bool> accepting_{true};
  std::atomic<bool> quorate_{true};
  std::atomic<std::uint64_t> epoch_{0};
  json::object server_info_;
  RequestStateSealer request_states_;
  TaskStore tasks_;
  std::mutex listen_mutex_;
  std::unordered_map<std::string, std::shared_ptr<ListenStream>> listen_streams_;  // by key
  std::uint64_t next_listen_ = 0;  // guarded by listen_mutex_
  SessionObserver* observer_ = nullptr;
  NotificationFanout* fanout_ = nullptr;
  Tracer* tracer_ = nullptr;
  DeliveryGate* gate_ = nullptr;
  std::mutex held_mutex_;
  std::deque<HeldNotification> held_;  // guarded by held_mutex_
  std::atomic<std::size_t> held_count_{0};
};

}  // namespace mcpmesh::mcp
