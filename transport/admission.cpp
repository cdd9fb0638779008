#include "transport/admission.hpp"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

namespace mcpmesh::transport {

using mcp::Metrics;
using Clock = AdmissionClock;

// -- clients ----------------------------------------------------------------------------------

ClientKey client_key(const asio::ip::address& address) {
  ClientKey k;
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return client_key(asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()));
  }
  if (address.is_v4()) {
    auto b = address.to_v4().to_bytes();
    std::copy(b.begin(), b.end(), k.bytes.begin());
    k.family = 4;
  } else {
    auto b = address.to_v6().to_bytes();
    std::copy(b.begin(), b.begin() + 8, k.bytes.begin());  // the /64
    k.family = 6;
  }
  return k;
}

std::string ClientKey::to_string() const {
  if (family == 4) {
    return asio::ip::address_v4({bytes[0], bytes[1], bytes[2], bytes[3]}).to_string();
  }
  if (family == 6) {
    asio::ip::address_v6::bytes_type b{};
    std::copy(bytes.begin(), bytes.begin() + 8, b.begin());
    return asio::ip::address_v6(b).to_string() + "/64";
  }
  return "others";
}

std::size_t ClientKeyHash::operator()(const ClientKey& k) const noexcept {
  std::uint64_t a = 0, b = 0;
  std::memcpy(&a, k.bytes.data(), 8);
  std::memcpy(&b, k.bytes.data() + 8, 8);
  std::uint64_t h = (a ^ (b * 0x9e3779b97f4a7c15ULL) ^ k.family) * 0xff51afd7ed558ccdULL;
  return static_cast<std::size_t>(h ^ (h >> 33));
}

// -- token bucket -----------------------------------------------------------------------------

void TokenBucket::refill(Clock::time_point now) {
  if (now <= last_) return;
  std::chrono::duration<double> elapsed = now - last_;
  tokens_ = std::min(burst_, tokens_ + elapsed.count() * rate_);
  last_ = now;
}

std::chrono::nanoseconds TokenBucket::take(Clock::time_point now, double n) {
  if (rate_ <= 0) return std::chrono::nanoseconds(0);
  refill(now);
  n = std::min(n, burst_);  // more than a burst at once waits for a whole burst
  if (tokens_ >= n) {
    tokens_ -= n;
    return std::chrono::nanoseconds(0);
  }
  auto wait = std::chrono::duration<double>((n - tokens_) / rate_);
  return std::max(std::chrono::nanoseconds(1),
                  std::chrono::duration_cast<std::chrono::nanoseconds>(wait));
}

bool TokenBucket::full(Clock::time_point now) const {
  if (rate_ <= 0) return true;
  std::chrono::duration<double> elapsed = now - last_;
  return tokens_ + std::max(0.0, elapsed.count()) * rate_ >= burst_;
}

// -- the shedding rule ------------------------------------------------------------------------

std::string_view to_string(Zone zone) {
  switch (zone) {
    case Zone::kGreen:
      return "green";
    case Zone::kYellow:
      return "yellow";
    case Zone::kOrange:
      return "orange";
    case Zone::kRed:
      return "red";
  }
  return "?";
}

Zone ShedController::update(const Sample& s) {
  bool over = s.lag > target_;
  bool calm = s.lag < target_ / 2;
  // A lag lower than the last tick's means the backlog is draining: what is admitted is already
  // below what the node serves, and the lag only falls as fast as the backlog drains. Cutting
  // on until it is under the target would overshoot far below the node's capacity.
  bool draining = s.lag < last_lag_;
  // Over the target on the tick before too, and growing by half the target or more: an
  // overload (twice the capacity adds a tick's length of backlog per tick), not a pause (a
  // stopped process, a stolen CPU), whose lag shows in a tick or two (the probes that waited
  // it out report in the next, about the same wait) and then falls.
  bool sustained = over && last_lag_ > target_ && s.lag > last_lag_ + target_ / 2;
  last_lag_ = s.lag;
  if (s.memory >= kMemoryOrange) session_ratio_ = 0;
  if (s.memory >= kMemoryRed) {
    request_ratio_ = std::max(kMinRequestRatio, request_ratio_ * 0.75);
  } else if (over) {
    // New sessions go first (cut fast: each brings more requests), then new requests. A lag
    // twice the target on two ticks running is no time for the gentle order: sessions stop at
    // once and requests are cut in the same tick, in proportion to the excess down to a half
    // per tick, so that ten times the capacity is cut to size within five ticks rather than
    // eight. One tick's spike (a pause) only halves new sessions.
    if (s.lag >= 2 * target_ && sustained) session_ratio_ = 0;
    if (session_ratio_ > 0) {
      session_ratio_ = session_ratio_ < 0.1 ? 0 : session_ratio_ * 0.5;
    } else if (!draining) {
      double excess = static_cast<double>(target_.count()) / static_cast<double>(s.lag.count());
      request_ratio_ =
          std::max(kMinRequestRatio, request_ratio_ * std::clamp(excess, kMaxCut, 0.75));
    }
  } else if (calm) {
    // Back in the reverse order; requests grow in proportion, so a ratio near the node's
    // capacity is approached without overshooting it by much.
    if (request_ratio_ < 1) {
      request_ratio_ = std::min(1.0, request_ratio_ * 1.15 + 0.01);
    } else if (s.memory < kMemoryOrange) {
      session_ratio_ = std::min(1.0, session_ratio_ + 0.1);
    }
  }
  if (request_ratio_ < 1) {
    zone_ = Zone::kRed;
  } else if (session_ratio_ < 1) {
    zone_ = Zone::kOrange;
  } else if (s.lag > target_ / 2 || s.memory >= kMemoryYellow) {
    zone_ = Zone::kYellow;
  } else {
    zone_ = Zone::kGreen;
  }
  return zone_;
}

// -- the client table -------------------------------------------------------------------------

ClientTable::ClientTable(std::size_t max_clients, double request_rate, double session_rate)
    : max_clients_(std::max<std::size_t>(max_clients, 1)),
      request_rate_(request_rate),
      session_rate_(session_rate),
      overflow_(std::make_shared<AdmissionClient>(ClientKey{})) {
  init_buckets(*overflow_, Clock::now());
}

void ClientTable::init_buckets(AdmissionClient& c, Clock::time_point now) const {
  // Bursts of two seconds' worth: a client that was quiet may catch up at once.
  if (request_rate_ > 0) c.requests = TokenBucket(request_rate_, 2 * request_rate_, now);
  if (session_rate_ > 0) {
    c.new_sessions = TokenBucket(session_rate_, std::max(10.0, 2 * session_rate_), now);
  }
}

ClientRef ClientTable::get(const ClientKey& key, Clock::time_point now, Metrics& metrics) {
  auto& shard = shards_[ClientKeyHash{}(key) % kShards];
  std::lock_guard lock(shard.mutex);
  if (auto it = shard.clients.find(key); it != shard.clients.end()) return it->second;
  if (size_.load(std::memory_order_relaxed) >= max_clients_) {
    Metrics::inc(metrics.clients_overflow_total);
    return overflow_;
  }
  auto client = std::make_shared<AdmissionClient>(key);
  init_buckets(*client, now);
  shard.clients.emplace(key, client);
  size_.fetch_add(1, std::memory_order_relaxed);
  return client;
}

std::size_t ClientTable::sweep(Clock::time_point now) {
  for (auto& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    for (auto it = shard.clients.begin(); it != shard.clients.end();) {
      auto& c = *it->second;
      // Only the table holds it (new references are made under this lock), and it has
      // nothing left to remember.
      bool idle = it->second.use_count() == 1;
      if (idle) {
        std::lock_guard buckets(c.mutex);
        idle = c.requests.full(now) && c.new_sessions.full(now);
      }
      if (idle) {
        it = shard.clients.erase(it);
        size_.fetch_sub(1, std::memory_order_relaxed);
      } else {
        ++it;
      }
    }
  }
  return size();
}

// -- admission --------------------------------------------------------------------------------

namespace {

std::optional<std::uint64_t> read_number_file(const char* path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text)) return std::nullopt;
  char* end = nullptr;
  auto v = std::strtoull(text.c_str(), &end, 10);
  if (end == text.c_str() || *end != '\0') return std::nullopt;  // "max"
  return v;
}

std::chrono::seconds retry_after(std::chrono::nanoseconds wait) {
  auto s = std::chrono::ceil<std::chrono::seconds>(wait);
  return std::clamp(s, std::chrono::seconds(1), std::chrono::seconds(60));
}

thread_local double session_credit = 0;
thread_local double request_credit = 0;

}  // namespace

std::uint64_t default_memory_limit() {
  std::uint64_t limit = 0;
  if (auto v2 = read_number_file("/sys/fs/cgroup/memory.max")) {
    limit = *v2;
  } else if (auto v1 = read_number_file("/sys/fs/cgroup/memory/memory.limit_in_bytes");
             v1 && *v1 < (std::uint64_t{1} << 60)) {
    limit = *v1;
  }
  std::uint64_t physical = 0;
  long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0) {
    physical = static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page) / 10 * 8;
  }
  if (limit == 0 || (physical != 0 && limit > physical)) limit = physical;
  return limit;
}

/// One I/O context's lag probe: a timer due every period, late by as long as the context's
/// queue of ready work took to go through.
struct Admission::Probe {
  Probe(asio::io_context& context, std::chrono::nanoseconds p, bool w)
      : timer(context), period(p), probes_workers(w) {}
  asio::steady_timer timer;
  std::chrono::nanoseconds period;
  bool probes_workers;  // this probe also probes the worker pool's queue
};

Admission::Admission(AdmissionConfig config, std::size_t max_connections, std::size_t max_sessions,
                     Metrics& metrics)
    : config_(std::move(config)),
      metrics_(metrics),
      per_client_connections_(config_.max_connections_per_client
                                  ? config_.max_connections_per_client
                                  : std::max<std::size_t>(1, max_connections / 4)),
      per_client_sessions_(config_.max_sessions_per_client
                               ? config_.max_sessions_per_client
                               : std::max<std::size_t>(1, max_sessions / 10)),
      clients_(config_.max_clients, config_.client_request_rate, config_.client_session_rate),
      controller_(config_.shed_lag) {
  auto now = Clock::now();
  if (config_.node_request_rate > 0) {
    node_requests_ = TokenBucket(config_.node_request_rate, 2 * config_.node_request_rate, now);
  }
  if (config_.node_session_rate > 0) {
    node_sessions_ =
        TokenBucket(config_.node_session_rate, std::max(10.0, 2 * config_.node_session_rate), now);
  }
  for (auto& text : config_.trusted_proxies) {
    auto slash = text.find('/');
    boost::system::error_code ec;
    auto base = asio::ip::make_address(text.substr(0, slash), ec);
    if (ec) throw std::invalid_argument("trusted proxy '" + text + "' is not an address or CIDR");
    unsigned max_prefix = base.is_v4() ? 32 : 128;
    unsigned prefix = max_prefix;
    if (slash != std::string::npos) {
      char* end = nullptr;
      auto p = std::strtoul(text.c_str() + slash + 1, &end, 10);
      if (*end != '\0' || end == text.c_str() + slash + 1 || p > max_prefix) {
        throw std::invalid_argument("trusted proxy '" + text + "' has a bad prefix length");
      }
      prefix = static_cast<unsigned>(p);
    }
    proxies_.push_back({base, prefix});
  }
  memory_limit_ = config_.memory_limit_bytes ? config_.memory_limit_bytes : default_memory_limit();
  statm_fd_ = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
}

void Admission::start(const std::vector<asio::io_context*>& contexts, asio::any_io_executor workers,
                      std::function<WorkerQueue()> queue) {
  workers_ = std::move(workers);
  worker_queue_ = std::move(queue);
  auto period = std::chrono::duration_cast<std::chrono::nanoseconds>(config_.tick) / 4;
  for (auto* context : contexts) {
    auto probe = std::make_shared<Probe>(*context, period, workers_ && probes_.empty());
    probes_.push_back(probe);
    // Each probe re-arms itself from its own handler: the timer is only ever touched on its
    // context's thread.
    struct Arm {
      std::shared_ptr<Admission> self;
      std::shared_ptr<Probe> probe;
      void operator()() const {
        probe->timer.expires_after(probe->period);
        probe->timer.async_wait([arm = *this](boost::system::error_code ec) {
          if (ec || arm.self->stopped_.load(std::memory_order_relaxed)) return;
          auto lag = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() -
                                                                          arm.probe->timer.expiry())
                         .count();
          note_lag(arm.self->worst_lag_ns_, lag);
          if (arm.probe->probes_workers) arm.self->probe_workers();
          arm();
        });
      }
    };
    asio::post(*context, Arm{shared_from_this(), probe});
  }
  tick_timer_ = std::make_unique<asio::steady_timer>(*contexts.front());
  asio::post(*contexts.front(), [self = shared_from_this()] { self->arm_tick(); });
}

void Admission::stop() { stopped_.store(true, std::memory_order_relaxed); }

void Admission::note_lag(std::atomic<std::int64_t>& worst, std::int64_t lag) {
  auto seen = worst.load(std::memory_order_relaxed);
  while (lag > seen && !worst.compare_exchange_weak(seen, lag, std::memory_order_relaxed)) {
  }
}

void Admission::probe_workers() {
  // Tools put their CPU work on the worker pool (run_blocking): when that is what overloads the
  // node, the event loops stay idle and only the pool's queue says so. A job's wait there is
  // how long an admitted request waits for its CPU; one probe job is queued at a time.
  auto now = Clock::now().time_since_epoch().count();
  if (auto posted = worker_probe_posted_ns_.load(std::memory_order_acquire); posted != 0) {
    note_lag(worst_worker_lag_ns_, now - posted);  // still queued: it has waited this long
    return;
  }
  worker_probe_posted_ns_.store(now, std::memory_order_release);
  asio::post(workers_, [self = shared_from_this()] {
    auto posted = self->worker_probe_posted_ns_.exchange(0, std::memory_order_acq_rel);
    note_lag(self->worst_worker_lag_ns_, Clock::now().time_since_epoch().count() - posted);
  });
}

void Admission::arm_tick() {
  tick_timer_->expires_after(config_.tick);
  tick_timer_->async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec || self->stopped_.load(std::memory_order_relaxed)) return;
    self->tick();
    self->arm_tick();
  });
}

std::uint64_t Admission::resident_bytes() {
  if (statm_fd_ < 0) return 0;
  char buf[128];
  auto n = ::pread(statm_fd_, buf, sizeof buf - 1, 0);
  if (n <= 0) return 0;
  buf[n] = '\0';
  unsigned long long size = 0, resident = 0;
  if (std::sscanf(buf, "%llu %llu", &size, &resident) != 2) return 0;
  return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

void Admission::tick() {
  auto loop_lag = worst_lag_ns_.exchange(0, std::memory_order_relaxed);
  last_lag_ns_.store(loop_lag, std::memory_order_relaxed);
  auto worker_lag = worst_worker_lag_ns_.exchange(0, std::memory_order_relaxed);
  last_worker_lag_ns_.store(worker_lag, std::memory_order_relaxed);
  auto lag = std::max(loop_lag, worker_lag);
  auto rss = resident_bytes();
  rss_.store(rss, std::memory_order_relaxed);
  double memory = memory_limit_ ? static_cast<double>(rss) / static_cast<double>(memory_limit_) : 0;
  auto before = zone_.load(std::memory_order_relaxed);
  auto zone = controller_.update({std::chrono::nanoseconds(lag), memory});
  if (config_.shed) {
    session_ratio_.store(controller_.session_ratio(), std::memory_order_relaxed);
    request_ratio_.store(controller_.request_ratio(), std::memory_order_relaxed);
  }
  // The queue bound's refusals since the last tick count like the ratios': requests refused
  // is red, sessions only orange.
  if (queue_refused_requests_.exchange(false, std::memory_order_relaxed)) {
    zone = std::max(zone, Zone::kRed);
  } else if (queue_refused_sessions_.exchange(false, std::memory_order_relaxed)) {
    zone = std::max(zone, Zone::kOrange);
  }
  zone_.store(zone, std::memory_order_relaxed);
  if (zone != before && (zone >= Zone::kOrange || before >= Zone::kOrange)) {
    spdlog::warn(
        "health zone {} -> {} (event-loop lag {} ms, worker queue {} ms, memory {} MiB of {} MiB)",
        to_string(before), to_string(zone), loop_lag / 1000000, worker_lag / 1000000, rss >> 20,
        memory_limit_ >> 20);
  }
  auto now = Clock::now();
  if (now >= next_sweep_) {
    clients_.sweep(now);
    next_sweep_ = now + std::chrono::seconds(10);
  }
}

bool Admission::admit_share(double ratio, double& credit) {
  if (ratio >= 1) return true;
  credit += ratio;
  if (credit < 1) return false;
  credit -= 1;
  return true;
}

bool Admission::trusted_proxy(const asio::ip::address& peer) const {
  for (auto& p : proxies_) {
    if (p.base.is_v4() != peer.is_v4()) continue;
    if (peer.is_v4()) {
      auto mask = p.prefix == 0 ? 0u : ~0u << (32 - p.prefix);
      if ((peer.to_v4().to_uint() & mask) == (p.base.to_v4().to_uint() & mask)) return true;
    } else {
      auto a = peer.to_v6().to_bytes(), b = p.base.to_v6().to_bytes();
      unsigned bits = p.prefix;
      bool same = true;
      for (std::size_t i = 0; i < 16 && bits > 0 && same; ++i, bits = bits > 8 ? bits - 8 : 0) {
        auto mask = static_cast<std::uint8_t>(bits >= 8 ? 0xff : 0xff << (8 - bits));
        same = (a[i] & mask) == (b[i] & mask);
      }
      if (same) return true;
    }
  }
  return false;
}

ClientRef Admission::client(const asio::ip::address& peer) {
  return clients_.get(client_key(peer), Clock::now(), metrics_);
}

ClientRef Admission::forwarded_client(std::string_view xff, const ClientRef& fallback) {
  // The proxy appended the address it saw last; entries before it are the client's own say.
  auto comma = xff.rfind(',');
  auto last = comma == std::string_view::npos ? xff : xff.substr(comma + 1);
  while (!last.empty() && (last.front() == ' ' || last.front() == '\t')) last.remove_prefix(1);
  while (!last.empty() && (last.back() == ' ' || last.back() == '\t')) last.remove_suffix(1);
  if (last.empty() || last.size() > 64) return fallback;
  boost::system::error_code ec;
  auto address = asio::ip::make_address(std::string(last), ec);
  if (ec) return fallback;
  return clients_.get(client_key(address), Clock::now(), metrics_);
}

std::shared_ptr<void> Admission::open_connection(const ClientRef& client) {
  if (client->connections.fetch_add(1, std::memory_order_relaxed) >= per_client_connections_) {
    client->connections.fetch_sub(1, std::memory_order_relaxed);
    Metrics::inc(metrics_.client_connections_rejected_total);
    return nullptr;
  }
  return {client.get(), [client](AdmissionClient*) {
            client->connections.fetch_sub(1, std::memory_order_relaxed);
          }};
}

double worker_queue_bound(const WorkerQueue& q, std::chrono::nanoseconds wait, double share) {
  if (q.threads == 0 || q.mean_job.count() <= 0) return 0;
  auto threads = static_cast<double>(q.threads);
  return threads + share * threads * static_cast<double>(wait.count()) /
                       static_cast<double>(q.mean_job.count());
}

bool Admission::worker_queue_full(double share, std::atomic<bool>& refused) {
  // The lag controller reacts per tick, to a lag it samples; between its ticks ten times the
  // capacity queues seconds of work, and its ratio, a share of what arrives, leaves the pool
  // idle whenever arrivals dip. A bound on the queue itself admits exactly while a job would
  // start within half the lag target: every finished job lets the next arrival in, so the
  // workers stay busy at any offered load, and an admitted job's wait stays bounded.
  if (!config_.shed || !worker_queue_) return false;
  auto q = worker_queue_();
  auto bound = worker_queue_bound(q, std::chrono::nanoseconds(config_.shed_lag) / 2, share);
  if (bound <= 0 || static_cast<double>(q.jobs) < bound) return false;
  refused.store(true, std::memory_order_relaxed);
  return true;
}

bool Admission::worker_queue_stalled() const {
  // Between two ticks the ratios stand still, and ten times the capacity fills the worker
  // queue with a second of work in one tick (the first tick of an overload, or a dip in the
  // node's CPU share). A probe job that has waited longer than the lag target says the queue
  // is that deep right now: nothing new is admitted until it has run. Only once the
  // controller has seen the lag (orange: new sessions; red: requests too): right after a
  // pause (a stopped process) the probe job has "waited" the pause, and the node is not busy.
  if (!config_.shed) return false;
  auto posted = worker_probe_posted_ns_.load(std::memory_order_relaxed);
  return posted != 0 && Clock::now().time_since_epoch().count() - posted >
                            std::chrono::nanoseconds(config_.shed_lag).count();
}

std::shared_ptr<void> Admission::admit_session(const ClientRef& client, Refusal& refusal) {
  if (worker_queue_full(0.5, queue_refused_sessions_) ||
      !admit_share(session_ratio_.load(std::memory_order_relaxed), session_credit) ||
      (zone() >= Zone::kOrange && worker_queue_stalled())) {
    Metrics::inc(metrics_.shed_sessions_total);
    refusal = {503, std::chrono::seconds(2),
               "this node is overloaded (health zone " + std::string(to_string(zone())) +
                   "): not taking new sessions now; retry shortly"};
    return nullptr;
  }
  if (client->sessions.fetch_add(1, std::memory_order_relaxed) >= per_client_sessions_) {
    client->sessions.fetch_sub(1, std::memory_order_relaxed);
    Metrics::inc(metrics_.client_sessions_rejected_total);
    refusal = {429, std::chrono::seconds(5),
               "too many sessions from this client (max " + std::to_string(per_client_sessions_) +
                   "); close some (DELETE) or let idle ones expire"};
    return nullptr;
  }
  auto now = Clock::now();
  std::chrono::nanoseconds wait{0};
  {
    std::lock_guard lock(client->mutex);
    wait = client->new_sessions.take(now);
  }
  if (wait.count() == 0 && node_sessions_.enabled()) {
    std::lock_guard lock(node_mutex_);
    wait = node_sessions_.take(now);
  }
  if (wait.count() > 0) {
    client->sessions.fetch_sub(1, std::memory_order_relaxed);
    Metrics::inc(metrics_.session_rate_limited_total);
    refusal = {429, retry_after(wait), "new sessions are arriving too fast; retry later"};
    return nullptr;
  }
  return {client.get(),
          [client](AdmissionClient*) { client->sessions.fetch_sub(1, std::memory_order_relaxed); }};
}

std::optional<Refusal> Admission::limit_requests(const ClientRef& client, std::size_t n) {
  auto now = Clock::now();
  std::chrono::nanoseconds wait{0};
  if (client->requests.enabled()) {
    std::lock_guard lock(client->mutex);
    wait = client->requests.take(now, static_cast<double>(n));
  }
  if (wait.count() == 0 && node_requests_.enabled()) {
    std::lock_guard lock(node_mutex_);
    wait = node_requests_.take(now, static_cast<double>(n));
  }
  if (wait.count() == 0) return std::nullopt;
  Metrics::inc(metrics_.rate_limited_total);
  return Refusal{429, retry_after(wait), "too many requests; retry later"};
}

std::optional<Refusal> Admission::shed_request() {
  if (!worker_queue_full(1, queue_refused_requests_) &&
      admit_share(request_ratio_.load(std::memory_order_relaxed), request_credit) &&
      !(zone() == Zone::kRed && worker_queue_stalled())) {
    return std::nullopt;
  }
  Metrics::inc(metrics_.shed_requests_total);
  return Refusal{503, std::chrono::seconds(1),
                 "this node is overloaded (health zone " + std::string(to_string(zone())) +
                     "): request not taken; retry shortly"};
}

Admission::~Admission() {
  if (statm_fd_ >= 0) ::close(statm_fd_);
}

void Admission::render_metrics(std::string& out) const {
  // An empty help: another sample of the family above.
  auto gauge = [&out](std::string_view name, std::string_view help, std::string_view labels,
                      double value) {
    mcp::append_sample(out, "mcpmesh_" + std::string(name), help, "gauge", labels, value);
  };
  gauge("health_zone",
        "health zone: 0 green, 1 yellow, 2 orange (new sessions shed), 3 red (new requests shed)",
        "", static_cast<double>(zone()));
  gauge("admit_ratio", "share of new sessions / new requests the load shedder admits",
        "{kind=\"sessions\"}", session_ratio_.load(std::memory_order_relaxed));
  gauge("admit_ratio", "", "{kind=\"requests\"}", request_ratio_.load(std::memory_order_relaxed));
  gauge("event_loop_lag_seconds", "the worst I/O thread lag of the last tick", "",
        static_cast<double>(last_lag_ns_.load(std::memory_order_relaxed)) / 1e9);
  gauge("worker_queue_lag_seconds",
        "the longest a job waited for a worker pool thread during the last tick", "",
        static_cast<double>(last_worker_lag_ns_.load(std::memory_order_relaxed)) / 1e9);
  if (worker_queue_) {
    auto q = worker_queue_();
    gauge("worker_queue_jobs", "blocking jobs queued or running on the worker pool", "",
          static_cast<double>(q.jobs));
    gauge("worker_queue_bound",
          "blocking jobs past which new requests are shed (0: no job ran yet)", "",
          config_.shed ? worker_queue_bound(q, std::chrono::nanoseconds(config_.shed_lag) / 2) : 0);
  }
  gauge("memory_resident_bytes", "resident memory of the node", "",
        static_cast<double>(rss_.load(std::memory_order_relaxed)));
  gauge("memory_limit_bytes", "resident memory the load shedder measures against", "",
        static_cast<double>(memory_limit_));
  gauge("clients_tracked", "clients admission control currently remembers", "",
        static_cast<double>(clients_.size()));
}

}  // namespace mcpmesh::transport
