#include "mcp/server.hpp"

#include "mcp/roaming_executor.hpp"
#include "mcp/session_tasks.hpp"
#include "mcp/stateless.hpp"
#include "mcp/version.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <array>
#include <charconv>
#include <cstdio>
#include <latch>
#include <memory>
#include <stdexcept>

namespace mcpmesh::mcp {

namespace {

/// Handler CPU work (run_blocking) must not take the I/O threads' CPU. When every worker is
/// busy, as in a node overloaded by CPU-heavy tools, I/O threads at the same priority get a
/// 1/(workers + 1) share of a core, and the node can no longer even refuse work quickly (its
/// event-loop lag, and what a 503 costs in wall time, grow with the workers' load). Workers run
/// at nice 10 (a tenth of an I/O thread's weight): an I/O thread with work preempts them, and
/// idle I/O threads leave them the whole machine. Each worker takes one of these jobs (the
/// latch holds it until all have started). Raising one's own nice needs no privilege.
void lower_worker_priority(asio::thread_pool& workers, std::size_t threads) {
  constexpr int kWorkerNice = 10;
  auto started = std::make_shared<std::latch>(static_cast<std::ptrdiff_t>(threads));
  for (std::size_t i = 0; i < threads; ++i) {
    asio::post(workers, [started] {
      ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kWorkerNice);
      started->arrive_and_wait();
    });
  }
  started->wait();
}

}  // namespace

Server::Server(asio::io_context& io, App& app, ServerConfig config, std::size_t worker_threads)
    : io_(io),
      app_(app),
      config_(std::move(config)),
      workers_(std::max<std::size_t>(worker_threads, 1)),
      worker_threads_(std::max<std::size_t>(worker_threads, 1)),
      sweep_strand_(asio::make_strand(io)),
      sweep_timer_(sweep_strand_),
      init_timer_(sweep_strand_),
      expiry_timer_(sweep_strand_),
      request_states_(config_.request_state_keys, config_.request_state_ttl),
      tasks_(config_.max_tasks, config_.task_ttl, config_.task_poll_interval) {
  server_info_ = {{"name", config_.server_name}, {"version", config_.server_version}};
  if (!config_.server_title.empty()) server_info_["title"] = config_.server_title;
  app_.set_listener({
      .resource_updated = [this](std::string_view uri) { on_resource_updated(uri); },
      .list_changed = [this](ListKind kind) { on_list_changed(kind); },
  });
  lower_worker_priority(workers_, std::max<std::size_t>(worker_threads, 1));
}

Server::~Server() {
  app_.set_listener({});
  close_all();
  workers_.join();
}

bool Server::acquire_blocking_slot() {
  if (blocking_jobs_.fetch_add(1, std::memory_order_acq_rel) >= config_.max_blocking_jobs) {
    blocking_jobs_.fetch_sub(1, std::memory_order_acq_rel);
    Metrics::inc(metrics_.blocking_jobs_rejected_total);
    return false;
  }
  return true;
}

void Server::release_blocking_slot() { blocking_jobs_.fetch_sub(1, std::memory_order_acq_rel); }

void Server::blocking_job_ran(std::chrono::nanoseconds wall) {
  // An exponential moving average over about the last 16 jobs; concurrent updates may lose
  // one sample, which an average does not mind.
  auto sample = std::max<std::int64_t>(wall.count(), 1);
  auto mean = mean_job_ns_.load(std::memory_order_relaxed);
  mean_job_ns_.store(mean == 0 ? sample : mean + (sample - mean) / 16, std::memory_order_relaxed);
}

bool Server::acquire_request_slot() {
  auto& gauge = metrics_.inflight_requests;
  if (gauge.fetch_add(1, std::memory_order_relaxed) >= config_.max_inflight) {
    gauge.fetch_sub(1, std::memory_order_relaxed);
    Metrics::inc(metrics_.inflight_node_rejected_total);
    return false;
  }
  return true;
}

void Server::release_request_slot() { Metrics::dec(metrics_.inflight_requests); }

bool Server::reserve_session_slot() {
  if (session_slots_.fetch_add(1, std::memory_order_acq_rel) >= config_.max_sessions) {
    session_slots_.fetch_sub(1, std::memory_order_acq_rel);
    return false;
  }
  return true;
}

void Server::release_session_slot() { session_slots_.fetch_sub(1, std::memory_order_acq_rel); }

std::string Server::new_session_id() const {
  std::array<unsigned char, 16> bytes{};
  std::size_t got = 0;
  while (got < bytes.size()) {
    ssize_t n = ::getrandom(bytes.data() + got, bytes.size() - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      // No entropy source is a broken host, not bad input: fail loudly.
      throw std::runtime_error("getrandom failed");
    }
    got += static_cast<std::size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::array<char, 20> epoch_hex;
  auto [epoch_end, ec] =
      std::to_chars(epoch_hex.data(), epoch_hex.data() + epoch_hex.size(), epoch(), 16);
  std::string id = config_.node_id;
  id.reserve(id.size() + 2 + static_cast<std::size_t>(epoch_end - epoch_hex.data()) + 32);
  id += '.';
  id.append(epoch_hex.data(), epoch_end);
  id += '.';
  for (unsigned char b : bytes) {
    id += kHex[b >> 4];
    id += kHex[b & 0xf];
  }
  return id;
}

// A session's strand, type-erased in Session::executor(), fits in any_io_executor's inline
// storage (three pointers): no heap block of its own per session.
static_assert(sizeof(asio::strand<RoamingExecutor>) <= 3 * sizeof(void*));

Result<std::shared_ptr<Session>> Server::make_session(std::shared_ptr<ClientChannel> standalone,
                                                      SessionStreams* streams,
                                                      asio::io_context* context,
                                                      std::shared_ptr<void> admission) {
  if (!accepting()) {
    Metrics::inc(metrics_.sessions_rejected_total);
    return RpcError(ErrorCode::kServerBusy, "this node is draining: not taking new sessions");
  }
  if (!quorate()) {
    Metrics::inc(metrics_.sessions_rejected_total);
    return RpcError(ErrorCode::kServerBusy,
                    "this node sees at most half of its cluster alive: not taking new sessions "
                    "(another node may)");
  }
  if (!reserve_session_slot()) {
    Metrics::inc(metrics_.sessions_rejected_total);
    return RpcError(ErrorCode::kServerBusy, "too many sessions on this node (max " +
                                                std::to_string(config_.max_sessions) + ")");
  }
  for (;;) {
    SessionRecord record;
    record.id = new_session_id();
    record.owner = config_.node_id;
    record.epoch = epoch();
    auto session = std::make_shared<Session>(
        *this, std::move(record),
        asio::strand<RoamingExecutor>(RoamingExecutor(context ? *context : io_)), standalone,
        streams);
    session->set_admission(admission);
    if (sessions_.insert(session->id(), session)) {
      Metrics::inc(metrics_.sessions_created_total);
      Metrics::inc(metrics_.sessions_active);
      return session;
    }
  }
}

Result<std::shared_ptr<Session>> Server::create_session(std::shared_ptr<ClientChannel> standalone,
                                                        asio::io_context* context) {
  return make_session(std::move(standalone), nullptr, context);
}

Result<std::shared_ptr<Session>> Server::create_streamed_session(asio::io_context* context,
                                                                 std::shared_ptr<void> admission) {
  auto streams = std::make_shared<SessionStreams>(config_.streams, metrics_);
  auto* raw = streams.get();
  return make_session(std::move(streams), raw, context, std::move(admission));
}

Result<std::shared_ptr<Session>> Server::restore_session(
    SessionRecord record, std::vector<SessionStreams::StoredEvent> events,
    asio::io_context* context) {
  if (record.id.empty()) return RpcError(ErrorCode::kInvalidParams, "record without an id");
  if (sessions_.find(record.id)) {
    return RpcError(ErrorCode::kInvalidRequest, "a session with this id is already here");
  }
  if (!reserve_session_slot()) {
    Metrics::inc(metrics_.sessions_rejected_total);
    return RpcError(ErrorCode::kServerBusy, "too many sessions on this node (max " +
                                                std::to_string(config_.max_sessions) + ")");
  }
  auto streams = std::make_shared<SessionStreams>(config_.streams, metrics_);
  // POST streams opened here are numbered above any id the previous holder could have used,
  // so a stale Last-Event-ID never attaches to an unrelated new stream. Epochs are wall-clock
  // milliseconds: shifted by 20 bits they exceed every earlier holder's range.
  record.stream_base = std::max(record.stream_base + (std::uint64_t{1} << 20), epoch() << 20);
  streams->restore(std::move(events), record.stream_base);
  // The record keeps the index's texts of its URIs from here on (one copy per node).
  std::set<registry::SharedUri, std::less<>> subscribed;
  for (auto& uri : record.subscriptions)
    subscribed.insert(subscriptions_.subscribe(uri, record.id).uri);
  record.subscriptions = std::move(subscribed);
  auto* raw = streams.get();
  auto session = std::make_shared<Session>(
      *this, record, asio::strand<RoamingExecutor>(RoamingExecutor(context ? *context : io_)),
      std::move(streams), raw);
  if (!sessions_.insert(session->id(), session)) {
    release_session_slot();
    subscriptions_.unsubscribe_all(record.id);
    return RpcError(ErrorCode::kInvalidRequest, "a session with this id is already here");
  }
  Metrics::inc(metrics_.sessions_restored_total);
  Metrics::inc(metrics_.sessions_active);
  if (!session->established()) watch_initialization(session);
  if (observer_) {
    observer_->on_record(record);
    for (auto& uri : record.subscriptions) observer_->on_subscription_changed(uri);
  }
  return session;
}

std::shared_ptr<Session> Server::find_session(std::string_view id) const {
  return sessions_.find(id);
}

bool Server::close_session(std::string_view id, std::string_view why) {
  auto session = sessions_.extract(id);
  if (!session) return false;
  spdlog::debug("session {} closed: {}", redact_session_id(id), why);
  session->close();
  session->drop_admission();
  release_session_slot();
  note_freed();
  Metrics::inc(metrics_.sessions_closed_total);
  Metrics::dec(metrics_.sessions_active);
  return true;
}

std::shared_ptr<Session> Server::release_session(std::string_view id) {
  auto session = sessions_.extract(id);
  if (!session) return nullptr;
  session->drop_admission();
  release_session_slot();
  Metrics::dec(metrics_.sessions_active);
  return session;
}

std::size_t Server::session_count() const { return sessions_.size(); }

std::vector<std::shared_ptr<Session>> Server::sessions() const {
  std::vector<std::shared_ptr<Session>> out;
  sessions_.for_each(
      [&](std::string_view, const std::shared_ptr<Session>& s) { out.push_back(s); });
  return out;
}

void Server::close_all() {
  std::vector<std::string> ids;
  sessions_.for_each(
      [&](std::string_view id, const std::shared_ptr<Session>&) { ids.emplace_back(id); });
  for (auto& id : ids) close_session(id, "the node is shutting down");
  end_listen_streams();
}

void Server::start_idle_sweeper() {
  arm_idle_sweep();
  arm_init_sweep();
}

void Server::arm_idle_sweep() {
  auto period = std::clamp<std::chrono::seconds>(config_.session_idle_timeout / 4,
                                                 std::chrono::seconds(1), std::chrono::seconds(60));
  sweep_timer_.expires_after(period);
  sweep_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    sweep_idle();
    arm_idle_sweep();
  });
}

void Server::watch_initialization(const std::shared_ptr<Session>& session) {
  std::lock_guard lock(unestablished_mutex_);
  // The deadline is taken under the lock, so the queue stays in deadline order.
  unestablished_.push_back({std::chrono::steady_clock::now() + config_.init_timeout, session});
}

void Server::arm_init_sweep() {
  // A session expires at most a tick after its deadline: within seconds of it, not minutes.
  auto tick = std::clamp<std::chrono::milliseconds>(
      config_.init_timeout / 4, std::chrono::milliseconds(50), std::chrono::milliseconds(1000));
  init_timer_.expires_after(tick);
  init_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    sweep_uninitialized();
    release_memory();
    arm_init_sweep();
  });
}

void Server::release_memory() {
  // glibc keeps freed memory in its arenas and gives back only the top of each heap: after
  // 50K sessions or 10K streams come and go, the RSS would stay at the flood's peak.
  // malloc_trim returns every free page, wherever it is. It costs a walk of the arenas (a few
  // ms for a few hundred MB), so it runs once a flood is over (no frees during a whole tick),
  // not while objects keep coming and going, and on the worker pool, not on an I/O thread.
  auto freed = freed_since_trim_.load(std::memory_order_relaxed);
  bool quiet = freed == freed_at_last_tick_;
  freed_at_last_tick_ = freed;
  if (freed < kTrimAfterFreed || !quiet) return;
  freed_since_trim_.fetch_sub(freed, std::memory_order_relaxed);
  freed_at_last_tick_ = 0;
#if defined(__GLIBC__)
  asio::post(workers_, [] { ::malloc_trim(0); });
#endif
}

void Server::sweep_uninitialized() {
  auto now = std::chrono::steady_clock::now();
  std::vector<std::shared_ptr<Session>> due;
  {
    std::lock_guard lock(unestablished_mutex_);
    std::size_t gone = 0;
    while (!unestablished_.empty() && unestablished_.front().deadline <= now) {
      auto session = unestablished_.front().session.lock();
      if (session && !session->established()) due.push_back(std::move(session));
      gone += session ? 0 : 1;
      unestablished_.pop_front();
    }
    // The weak reference kept a closed session's block (make_shared) until now.
    if (gone > 0) note_freed(gone);
  }
  if (!due.empty()) expire(std::move(due), Expiry::kUninitialized);
}

void Server::sweep_idle() {
  auto cutoff = std::chrono::steady_clock::now() - config_.session_idle_timeout;
  auto due = sessions_.select([cutoff](std::string_view, const Session& s) {
    return !s.pinned() && s.last_activity() < cutoff;
  });
  if (!due.empty()) expire(std::move(due), Expiry::kIdle);
}

void Server::expire(std::vector<std::shared_ptr<Session>> due, Expiry why) {
  for (auto& session : due) expiring_.emplace_back(std::move(session), why);
  if (expiry_armed_ || expiring_.empty()) return;
  expiry_armed_ = true;
  expiry_timer_.expires_after(std::chrono::seconds(0));
  expiry_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) close_expiring();
  });
}

void Server::close_expiring() {
  constexpr std::size_t kClosesPerTurn = 256;
  auto idle_cutoff = std::chrono::steady_clock::now() - config_.session_idle_timeout;
  for (std::size_t n = 0; n < kClosesPerTurn && !expiring_.empty(); ++n) {
    auto [session, why] = std::move(expiring_.front());
    expiring_.pop_front();
    // Still due (a request may have come meanwhile), and still registered here (not one a
    // drain handed over).
    bool due = !session->pinned() && (why == Expiry::kIdle ? session->last_activity() < idle_cutoff
                                                           : !session->established());
    if (!due || sessions_.find(session->id()) != session) continue;
    if (close_session(session->id(), why == Expiry::kIdle
                                         ? "idle for longer than the session idle timeout"
                                         : "initialization not completed in time")) {
      Metrics::inc(why == Expiry::kIdle ? metrics_.sessions_expired_total
                                        : metrics_.sessions_init_expired_total);
    }
  }
  expiry_armed_ = false;
  expire({}, Expiry::kIdle);  // the rest, if any, in the next turn
}

json::value Server::initialize_result(std::string_view version) const {
  const auto& cfg = config_;
  json::object caps{
      {"tools", {{"listChanged", true}}},
      {"resources", {{"subscribe", true}, {"listChanged", true}}},
      {"prompts", {{"listChanged", true}}},
      {"logging", json::object{}},
  };
  if (version != "2024-11-05") caps["completions"] = json::object{};
  if (version >= "2025-11-25") caps["tasks"] = session_tasks_capability();
  json::object result{{"protocolVersion", version},
                      {"capabilities", std::move(caps)},
                      {"serverInfo", server_info_}};
  if (!cfg.instructions.empty()) result["instructions"] = cfg.instructions;
  return json::value(std::move(result));
}

json::value Server::discover_result() const {
  json::array versions;
  for (auto v : kAllVersions) versions.emplace_back(v);
  json::object caps{
      {"tools", {{"listChanged", true}}},
      {"resources", {{"subscribe", true}, {"listChanged", true}}},
      {"prompts", {{"listChanged", true}}},
      {"logging", json::object{}},
      {"completions", json::object{}},
      {"extensions", {{kTasksExtension, json::object{}}}},
  };
  json::object result{{"supportedVersions", std::move(versions)},
                      {"capabilities", std::move(caps)}};
  if (!config_.instructions.empty()) result["instructions"] = config_.instructions;
  return json::value(std::move(result));
}

bool Server::add_listen_stream(const std::shared_ptr<ListenStream>& stream,
                               std::function<void()> ready) {
  {
    std::lock_guard lock(listen_mutex_);
    if (listen_streams_.size() >= config_.max_listen_streams) {
      Metrics::inc(metrics_.listen_streams_rejected_total);
      return false;
    }
    // '~' starts no session id: listen streams and sessions share the subscription index.
    stream->key = "~listen." + std::to_string(++next_listen_);
    listen_streams_.emplace(stream->key, stream);
  }
  Metrics::inc(metrics_.listen_streams_active);
  // The acknowledgement goes out under the lock deliveries take: nothing reaches the stream
  // before it, and nothing raised after it is missed.
  auto acknowledge = [this, stream, ready = std::move(ready)] {
    std::lock_guard lock(listen_mutex_);
    ready();
    stream->acked = true;
  };
  if (stream->uris.empty()) {
    acknowledge();
    return true;
  }
  // Acknowledged once every URI is published to the nodes that raise its updates.
  auto pending = std::make_shared<std::atomic<std::size_t>>(stream->uris.size());
  auto shared_ready = std::make_shared<std::function<void()>>(std::move(acknowledge));
  for (auto& uri : stream->uris) {
    subscriptions_.subscribe(uri, stream->key);
    auto one_done = [pending, shared_ready] {
      if (pending->fetch_sub(1, std::memory_order_acq_rel) == 1) (*shared_ready)();
    };
    if (observer_) {
      observer_->on_subscribed(uri, std::move(one_done));
    } else {
      one_done();
    }
  }
  return true;
}

std::shared_ptr<StatelessConversation> Server::serve_stateless(Message m,
                                                               std::shared_ptr<ClientChannel> reply,
                                                               asio::any_io_executor executor) {
  const auto& meta = m.params.at("_meta").get_object();
  std::optional<LogLevel> level;
  if (auto l = get_string(meta, kMetaLogLevel)) level = parse_log_level(*l);
  auto conversation = std::make_shared<StatelessConversation>(
      std::move(executor), client_from_meta(meta), level, &metrics_);
  Metrics::inc(metrics_.stateless_requests_total);
  if (!m.is_request()) {
    Metrics::inc(metrics_.notifications_total);  // the revision defines none to act on
    return conversation;
  }
  Metrics::inc(metrics_.requests_total);
  router_.handle(conversation, std::move(m), reply);
  return conversation;
}

void Server::end_listen_streams() {
  std::vector<std::shared_ptr<ListenStream>> streams;
  {
    std::lock_guard lock(listen_mutex_);
    for (auto& [key, stream] : listen_streams_) streams.push_back(stream);
  }
  for (auto& stream : streams) {
    if (stream->end) stream->end();
  }
}

void Server::remove_listen_stream(const std::shared_ptr<ListenStream>& stream) {
  {
    std::lock_guard lock(listen_mutex_);
    auto it = listen_streams_.find(stream->key);
    if (it == listen_streams_.end() || it->second != stream) return;
    listen_streams_.erase(it);
  }
  Metrics::dec(metrics_.listen_streams_active);
  for (auto& uri : stream->uris) {
    if (subscriptions_.unsubscribe(uri, stream->key) && observer_) {
      observer_->on_subscription_changed(uri);
    }
  }
}

void Server::on_resource_updated(std::string_view uri) {
  // Held whole, fan-out included: once the gate opens, the cluster knows which nodes care.
  if (hold({.raised_here = true, .uri = std::string(uri)})) return;
  deliver_resource_updated(uri);
  if (fanout_) fanout_->resource_updated(uri);
}

void Server::on_list_changed(ListKind kind) {
  if (hold({.raised_here = true, .list = kind})) return;
  deliver_list_changed(kind);
  if (fanout_) fanout_->list_changed(kind);
}

bool Server::hold(HeldNotification n) {
  if (!gate_ || gate_->open()) return false;
  std::lock_guard lock(held_mutex_);
  // Checked again under the lock release_held_notifications() takes after the gate opened: a
  // notification is either delivered now or found by that release, never left behind.
  if (gate_->open()) return false;
  if (held_.size() >= config_.max_held_notifications) {
    Metrics::inc(metrics_.notifications_held_dropped_total);
    return true;
  }
  held_.push_back(std::move(n));
  held_count_.store(held_.size(), std::memory_order_relaxed);
  Metrics::inc(metrics_.notifications_held_total);
  return true;
}

void Server::release_held_notifications() {
  std::deque<HeldNotification> ready;
  {
    std::lock_guard lock(held_mutex_);
    ready.swap(held_);
    held_count_.store(0, std::memory_order_relaxed);
  }
  for (auto& n : ready) {
    if (n.raised_here) {
      if (n.list) {
        on_list_changed(*n.list);
      } else {
        on_resource_updated(n.uri);
      }
    } else if (n.list) {
      deliver_list_changed(*n.list);
    } else {
      deliver_resource_updated(n.uri);
    }
  }
}

bool Server::delivers_to(std::string_view session_id, GateAnswer& last) {
  std::string_view owner;
  std::uint64_t epoch = 0;
  if (!gate_ || !parse_session_id(session_id, owner, epoch)) return true;
  if (!last.asked || owner != last.owner || epoch != last.epoch) {
    last = {std::string(owner), epoch, true, gate_->holds(owner, epoch)};
  }
  if (last.holds) return true;
  Metrics::inc(metrics_.notifications_stale_skipped_total);
  return false;
}

void Server::deliver_resource_updated(std::string_view uri) {
  if (hold({.uri = std::string(uri)})) return;
  auto subscribers = subscriptions_.subscribers(uri);
  if (subscribers.empty()) return;
  // One immutable payload shared by every subscriber's stream.
  auto payload = make_notification("notifications/resources/updated", json::object{{"uri", uri}});
  GateAnswer last;
  for (auto& id : subscribers) {
    if (!id.empty() && id.front() == '~') {
      std::lock_guard lock(listen_mutex_);
      auto it = listen_streams_.find(id);
      if (it == listen_streams_.end() || !it->second->acked) continue;
      auto& stream = *it->second;
      stream.reply->deliver(
          make_notification(
              "notifications/resources/updated",
              json::object{{"uri", uri},
                           {"_meta", {{kMetaSubscriptionId, stream.subscription_id}}}}),
          false);
      continue;
    }
    if (auto s = sessions_.find(id); s && delivers_to(id, last)) s->post_notification(payload);
  }
}

void Server::deliver_list_changed(ListKind kind) {
  if (hold({.list = kind})) return;
  std::string_view method = kind == ListKind::kTools       ? "notifications/tools/list_changed"
                            : kind == ListKind::kResources ? "notifications/resources/list_changed"
                                                           : "notifications/prompts/list_changed";
  auto payload = make_notification(method, {});
  GateAnswer last;
  sessions_.for_each([&](std::string_view id, const std::shared_ptr<Session>& s) {
    if (delivers_to(id, last)) s->post_notification(payload);
  });
  std::lock_guard lock(listen_mutex_);
  for (auto& [key, stream] : listen_streams_) {
    bool wanted = kind == ListKind::kTools       ? stream->tools
                  : kind == ListKind::kResources ? stream->resources
                                                 : stream->prompts;
    if (!wanted || !stream->acked) continue;
    stream->reply->deliver(
        make_notification(
            method, json::object{{"_meta", {{kMetaSubscriptionId, stream->subscription_id}}}}),
        false);
  }
}

}  // namespace mcpmesh::mcp
