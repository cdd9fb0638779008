#pragma once
/// \file
/// Admission control for the HTTP transport (DESIGN §8): who may open a connection, create a
/// session or send a request, and how loaded the node is.
///
/// - **Clients.** A client is a source address; an IPv6 client is its /64 (one host gets a
///   whole /64). Behind a trusted proxy (`trusted_proxies`) the client is the address the
///   proxy appended to `X-Forwarded-For`. Each client has caps on open connections and
///   sessions, and token buckets for requests and for new sessions.
/// - **Node.** Token buckets for requests and new sessions over all clients.
/// - **Load shedding.** A controller samples the lag of every I/O thread's event loop, the wait
///   of a job for the worker pool (where handlers put their CPU work, `run_blocking`: a node
///   busy there has idle event loops) and memory every tick and keeps two admit ratios: new
///   sessions are shed first (zone orange), then new requests (zone red), each ratio cut
///   multiplicatively while the lag is over its target and restored additively once it is well
///   under, so an overloaded node keeps serving at its capacity with a bounded delay. Answers the
///   node owes (responses to its own requests, notifications, streams being resumed) are never
///   shed.
///
/// Thread-safety: every public member of `Admission` and `ClientTable` may be called from any
/// thread. `TokenBucket` and `ShedController` are plain values: their owner serialises access.

#include "mcp/metrics.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mcpmesh::transport {

namespace asio = boost::asio;
using AdmissionClock = std::chrono::steady_clock;

struct AdmissionConfig {
  /// Open connections per client (0 = a quarter of max_connections). Trusted proxies are
  /// exempt: they carry many clients.
  std::size_t max_connections_per_client = 0;
  /// Sessions per client (0 = a tenth of max_sessions).
  std::size_t max_sessions_per_client = 0;
  /// Requests per second per client (token bucket, burst = 2 s worth); 0 = no limit.
  double client_request_rate = 10000;
  /// New sessions per second per client (burst = 2 s worth, at least 10); 0 = no limit.
  double client_session_rate = 1000;
  /// Requests and new sessions per second over all clients; 0 = no limit (the load shedder
  /// protects the node by its measured load, which needs no tuning to the hardware).
  double node_request_rate = 0;
  double node_session_rate = 0;
  /// Clients tracked at once; beyond this, new clients share one entry (and its limits).
  std::size_t max_clients = 100000;
  /// Addresses or CIDR blocks of proxies whose X-Forwarded-For names the client.
  std::vector<std::string> trusted_proxies;
  /// Load shedding: off = the zone is still computed and exported, nothing is shed.
  bool shed = true;
  /// The event-loop lag load shedding keeps an overloaded node under (what an admitted
  /// request may wait before it is read).
  std::chrono::milliseconds shed_lag{50};
  /// Resident memory the node may use (0 = the cgroup's memory.max, else 80% of RAM): at 85%
  /// new sessions are refused, at 95% new requests too.
  std::uint64_t memory_limit_bytes = 0;
  /// Period of the controller; each I/O thread's lag probe runs at a quarter of it.
  std::chrono::milliseconds tick{100};
};

/// The worker pool's queue as admission control reads it.
struct WorkerQueue {
  std::size_t jobs = 0;     // blocking jobs queued or running
  std::size_t threads = 0;  // worker threads
  /// A job's mean wall time on its worker (0: none ran yet). threads / mean_job is what the
  /// pool serves per second on the CPU it gets.
  std::chrono::nanoseconds mean_job{0};
};

/// How many blocking jobs may be queued or running before new work is refused: every worker
/// busy plus what they serve in `wait` (Little's law), `share` of it for new sessions (which
/// go first). 0 = no bound yet (no job has run).
[[nodiscard]] double worker_queue_bound(const WorkerQueue& q, std::chrono::nanoseconds wait,
                                        double share = 1);

/// A client as admission control counts it.
struct ClientKey {
  std::array<std::uint8_t, 16> bytes{};
  std::uint8_t family = 0;  // 4, 6, or 0 for "the clients beyond max_clients"
  friend bool operator==(const ClientKey&, const ClientKey&) = default;
  [[nodiscard]] std::string to_string() const;
};
/// The key of `address`: IPv4 (also v4-mapped IPv6) whole, IPv6 by its /64.
[[nodiscard]] ClientKey client_key(const asio::ip::address& address);

struct ClientKeyHash {
  std::size_t operator()(const ClientKey& k) const noexcept;
};

/// A token bucket: `rate` tokens a second up to `burst`. A plain value; not thread-safe.
class TokenBucket {
 public:
  TokenBucket() = default;
  TokenBucket(double rate, double burst, AdmissionClock::time_point now)
      : rate_(rate), burst_(burst), tokens_(burst), last_(now) {}
  /// Takes `n` tokens if there are; else returns how long until there will be (> 0).
  [[nodiscard]] std::chrono::nanoseconds take(AdmissionClock::time_point now, double n = 1);
  /// Whether the bucket is full at `now` (an idle client: nothing to remember).
  [[nodiscard]] bool full(AdmissionClock::time_point now) const;
  [[nodiscard]] bool enabled() const { return rate_ > 0; }

 private:
  void refill(AdmissionClock::time_point now);
  double rate_ = 0;
  double burst_ = 0;
  double tokens_ = 0;
  AdmissionClock::time_point last_{};
};

/// The health zones, worst last.
enum class Zone : std::uint8_t { kGreen, kYellow, kOrange, kRed };
[[nodiscard]] std::string_view to_string(Zone zone);

/// The load shedder's rule, a plain value fed one sample per tick: the admit ratios for new
/// sessions and new requests, and the zone.
class ShedController {
 public:
  struct Sample {
    /// The worst delay seen during the tick: event-loop lag or a worker-pool job's wait.
    std::chrono::nanoseconds lag{0};
    double memory = 0;  // resident memory / limit
  };
  explicit ShedController(std::chrono::nanoseconds lag_target) : target_(lag_target) {}

  /// Moves the ratios one step for `s` and returns the zone.
  Zone update(const Sample& s);
  [[nodiscard]] double session_ratio() const { return session_ratio_; }
  [[nodiscard]] double request_ratio() const { return request_ratio_; }
  [[nodiscard]] Zone zone() const { return zone_; }

  /// Requests are never shed below this ratio: the node keeps serving some of every kind.
  static constexpr double kMinRequestRatio = 0.02;
  /// The deepest cut of the request ratio in one tick (a lag of twice the target or more):
  /// deeper cuts, on a lag spike of a node whose CPU share dips, leave it idle for seconds.
  static constexpr double kMaxCut = 0.5;
  /// Memory thresholds (fractions of the limit): yellow, orange (no new sessions), red.
  static constexpr double kMemoryYellow = 0.70, kMemoryOrange = 0.85, kMemoryRed = 0.95;

 private:
  std::chrono::nanoseconds target_;
  std::chrono::nanoseconds last_lag_{0};
  double session_ratio_ = 1;
  double request_ratio_ = 1;
  Zone zone_ = Zone::kGreen;
};

/// Per-client state. Counts are atomics; the buckets are guarded by `mutex`.
struct AdmissionClient {
  explicit AdmissionClient(ClientKey k) : key(k) {}
  const ClientKey key;
  std::atomic<std::uint32_t> connections{0};
  std::atomic<std::uint32_t> sessions{0};
  std::mutex mutex;
  TokenBucket requests;      // guarded by mutex
  TokenBucket new_sessions;  // guarded by mutex
};
using ClientRef = std::shared_ptr<AdmissionClient>;

/// The clients seen recently, sharded. An entry lives while anything holds it (a connection,
/// a session) or its buckets are not yet full again; `sweep` forgets the rest.
class ClientTable {
 public:
  ClientTable(std::size_t max_clients, double request_rate, double session_rate);
  /// The entry of `key`, made if new; the shared overflow entry once max_clients are tracked.
  [[nodiscard]] ClientRef get(const ClientKey& key, AdmissionClock::time_point now,
                              mcp::Metrics& metrics);
  /// Forgets idle entries; returns how many remain.
  std::size_t sweep(AdmissionClock::time_point now);
  [[nodiscard]] std::size_t size() const { return size_.load(std::memory_order_relaxed); }

 private:
  void init_buckets(AdmissionClient& c, AdmissionClock::time_point now) const;
  static constexpr std::size_t kShards = 16;
  struct Shard {
    std::mutex mutex;
    std::unordered_map<ClientKey, ClientRef, ClientKeyHash> clients;  // guarded by mutex
  };
  std::array<Shard, kShards> shards_;
  std::atomic<std::size_t> size_{0};
  const std::size_t max_clients_;
  const double request_rate_, session_rate_;
  ClientRef overflow_;
};

/// Why something was refused, as the transport answers it.
struct Refusal {
  unsigned status = 503;  // 429 (a limit of this client or of the node's rate) or 503
  std::chrono::seconds retry_after{1};
  std::string message;
};

class Admission : public std::enable_shared_from_this<Admission> {
 public:
  /// `max_connections` / `max_sessions`: the node's caps (the per-client defaults derive from
  /// them). Throws std::invalid_argument for a malformed trusted proxy (start-up).
  Admission(AdmissionConfig config, std::size_t max_connections, std::size_t max_sessions,
            mcp::Metrics& metrics);
  ~Admission();
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  /// Starts the lag probes (one per context), the queue probe of the worker pool `workers`
  /// (none when null) and the controller (on the first context). `workers` must outlive the
  /// probe's last job: stop() before the pool is joined, whose pending jobs are then dropped.
  /// `queue` reads the pool's queue for its bound (any thread, at every new request; no bound
  /// when null).
  void start(const std::vector<asio::io_context*>& contexts, asio::any_io_executor workers = {},
             std::function<WorkerQueue()> queue = {});
  void stop();

  /// The client behind a connection from `peer`, and whether `peer` is a trusted proxy.
  [[nodiscard]] ClientRef client(const asio::ip::address& peer);
  [[nodiscard]] bool trusted_proxy(const asio::ip::address& peer) const;
  /// The client named by the last X-Forwarded-For entry of a trusted proxy's request
  /// (`fallback` when there is none or it does not parse).
  [[nodiscard]] ClientRef forwarded_client(std::string_view x_forwarded_for,
                                           const ClientRef& fallback);

  /// A connection of `client` opens: a hold that closes it again, or null (counted) when the
  /// client has max_connections_per_client open.
  [[nodiscard]] std::shared_ptr<void> open_connection(const ClientRef& client);
  /// A session for `client`: a hold that releases it when the session ends, or null and the
  /// refusal (counted): shedding, the client's session cap, a new-session token bucket.
  [[nodiscard]] std::shared_ptr<void> admit_session(const ClientRef& client, Refusal& refusal);
  /// `n` new requests of `client` (a batch counts each) against the request token buckets:
  /// nullopt when within them, else the refusal (429, counted).
  [[nodiscard]] std::optional<Refusal> limit_requests(const ClientRef& client, std::size_t n);
  /// A new request against the load shedder (whoever sent it, relayed ones included):
  /// nullopt when admitted, else the refusal (503, counted). Also refused, whatever the ratio,
  /// while the worker pool's queue is over the lag target (between two ticks).
  [[nodiscard]] std::optional<Refusal> shed_request();

  [[nodiscard]] Zone zone() const { return zone_.load(std::memory_order_relaxed); }
  /// /readyz: not red (and not over memory). Full and draining are the caller's.
  [[nodiscard]] bool taking_work() const { return zone() != Zone::kRed; }
  /// Appends the zone, the admit ratios, the lag, memory and the client table to /metrics.
  void render_metrics(std::string& out) const;

  [[nodiscard]] std::size_t max_connections_per_client() const { return per_client_connections_; }
  [[nodiscard]] std::size_t max_sessions_per_client() const { return per_client_sessions_; }
  [[nodiscard]] const AdmissionConfig& config() const { return config_; }

 private:
  struct Cidr {
    asio::ip::address base;
    unsigned prefix = 0;
  };
  struct Probe;
  void tick();
  void arm_tick();
  /// Posts a probe job to the worker pool unless one is still queued, whose wait so far is then
  /// the lag. Called by the first context's lag probe only.
  void probe_workers();
  static void note_lag(std::atomic<std::int64_t>& worst, std::int64_t lag);
  /// The worker pool's probe job has been queued longer than the lag target (any thread).
  [[nodiscard]] bool worker_queue_stalled() const;
  /// The worker pool's queue is at `share` of its bound (any thread): admitted work would wait
  /// there longer than half the lag target. Notes the refusal for the zone.
  [[nodiscard]] bool worker_queue_full(double share, std::atomic<bool>& refused);
  /// Admits one in `ratio` (deterministically, per thread); true = admitted.
  static bool admit_share(double ratio, double& credit);
  [[nodiscard]] std::uint64_t resident_bytes();

  AdmissionConfig config_;
  mcp::Metrics& metrics_;
  std::size_t per_client_connections_;
  std::size_t per_client_sessions_;
  std::vector<Cidr> proxies_;
  ClientTable clients_;
  std::mutex node_mutex_;
  TokenBucket node_requests_;  // guarded by node_mutex_
  TokenBucket node_sessions_;  // guarded by node_mutex_

  // The controller's state: written by tick() (one context), read anywhere.
  ShedController controller_;
  std::atomic<Zone> zone_{Zone::kGreen};
  std::atomic<double> session_ratio_{1};
  std::atomic<double> request_ratio_{1};
  std::atomic<std::int64_t> worst_lag_ns_{0};  // since the last tick, from every probe
  std::atomic<std::int64_t> last_lag_ns_{0};   // the last tick's
  asio::any_io_executor workers_;
  std::atomic<std::int64_t> worker_probe_posted_ns_{0};  // 0 = no probe job queued
  std::atomic<std::int64_t> worst_worker_lag_ns_{0};     // since the last tick
  std::atomic<std::int64_t> last_worker_lag_ns_{0};      // the last tick's
  std::function<WorkerQueue()> worker_queue_;            // null: no bound
  std::atomic<bool> queue_refused_requests_{false};      // since the last tick
  std::atomic<bool> queue_refused_sessions_{false};      // since the last tick
  std::atomic<std::uint64_t> rss_{0};
  std::uint64_t memory_limit_ = 0;
  int statm_fd_ = -1;
  std::vector<std::shared_ptr<Probe>> probes_;
  std::unique_ptr<asio::steady_timer> tick_timer_;
  AdmissionClock::time_point next_sweep_{};
  std::atomic<bool> stopped_{false};
};

/// The memory the node may use by default: the cgroup's limit, else 80% of physical memory.
[[nodiscard]] std::uint64_t default_memory_limit();

}  // namespace mcpmesh::transport
