#include "mcp/server.hpp"

#include "mcp/roaming_executor.hpp"

#include <boost/asio/post.hpp>

#include <sys/random.h>

#include <array>
#include <charconv>
#include <cstdio>
#include <stdexcept>

namespace mcpmesh::mcp {

Server::Server(asio::io_context& io, App& app, ServerConfig config, std::size_t worker_threads)
    : io_(io),
      app_(app),
      config_(std::move(config)),
      workers_(std::max<std::size_t>(worker_threads, 1)),
      sweep_timer_(io) {
  app_.set_listener({
      .resource_updated = [this](std::string_view uri) { on_resource_updated(uri); },
      .list_changed = [this](ListKind kind) { on_list_changed(kind); },
  });
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

Result<std::shared_ptr<Session>> Server::make_session(std::shared_ptr<ClientChannel> standalone,
                                                      SessionStreams* streams,
                                                      asio::io_context* context) {
  if (!accepting()) {
    Metrics::inc(metrics_.sessions_rejected_total);
    return RpcError(ErrorCode::kServerBusy, "this node is draining: not taking new sessions");
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

Result<std::shared_ptr<Session>> Server::create_streamed_session(asio::io_context* context) {
  auto streams = std::make_shared<SessionStreams>(config_.streams, metrics_);
  auto* raw = streams.get();
  return make_session(std::move(streams), raw, context);
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
  for (auto& uri : record.subscriptions) (void)subscriptions_.subscribe(uri, record.id);
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
  if (observer_) {
    observer_->on_record(record);
    for (auto& uri : record.subscriptions) observer_->on_subscription_changed(uri);
  }
  return session;
}

std::shared_ptr<Session> Server::find_session(std::string_view id) const {
  return sessions_.find(id);
}

bool Server::close_session(std::string_view id) {
  auto session = sessions_.extract(id);
  if (!session) return false;
  session->close();
  release_session_slot();
  Metrics::inc(metrics_.sessions_closed_total);
  Metrics::dec(metrics_.sessions_active);
  return true;
}

std::shared_ptr<Session> Server::release_session(std::string_view id) {
  auto session = sessions_.extract(id);
  if (!session) return nullptr;
  release_session_slot();
  Metrics::dec(metrics_.sessions_active);
  return session;
}

std::size_t Server::session_count() const { return sessions_.size(); }

std::vector<std::shared_ptr<Session>> Server::sessions() const {
  std::vector<std::shared_ptr<Session>> out;
  sessions_.for_each(
      [&](const std::string&, const std::shared_ptr<Session>& s) { out.push_back(s); });
  return out;
}

void Server::close_all() {
  std::vector<std::string> ids;
  sessions_.for_each(
      [&](const std::string& id, const std::shared_ptr<Session>&) { ids.push_back(id); });
  for (auto& id : ids) close_session(id);
}

void Server::start_idle_sweeper() {
  auto period = std::clamp<std::chrono::seconds>(config_.session_idle_timeout / 4,
                                                 std::chrono::seconds(1), std::chrono::seconds(60));
  sweep_timer_.expires_after(period);
  sweep_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    sweep_idle();
    start_idle_sweeper();
  });
}

void Server::sweep_idle() {
  auto cutoff = std::chrono::steady_clock::now() - config_.session_idle_timeout;
  std::vector<std::string> expired;
  sessions_.for_each([&](const std::string& id, const std::shared_ptr<Session>& s) {
    if (!s->pinned() && s->last_activity() < cutoff) expired.push_back(id);
  });
  for (auto& id : expired) {
    if (close_session(id)) Metrics::inc(metrics_.sessions_expired_total);
  }
}

json::value Server::initialize_result(std::string_view version) const {
  const auto& cfg = config_;
  json::object server_info{{"name", cfg.server_name}, {"version", cfg.server_version}};
  if (!cfg.server_title.empty()) server_info["title"] = cfg.server_title;
  json::object caps{
      {"tools", {{"listChanged", true}}},
      {"resources", {{"subscribe", true}, {"listChanged", true}}},
      {"prompts", {{"listChanged", true}}},
      {"logging", json::object{}},
  };
  if (version != "2024-11-05") caps["completions"] = json::object{};
  json::object result{
      {"protocolVersion", version}, {"capabilities", std::move(caps)}, {"serverInfo", server_info}};
  if (!cfg.instructions.empty()) result["instructions"] = cfg.instructions;
  return json::value(std::move(result));
}

void Server::on_resource_updated(std::string_view uri) {
  deliver_resource_updated(uri);
  if (fanout_) fanout_->resource_updated(uri);
}

void Server::on_list_changed(ListKind kind) {
  deliver_list_changed(kind);
  if (fanout_) fanout_->list_changed(kind);
}

void Server::deliver_resource_updated(std::string_view uri) {
  auto subscribers = subscriptions_.subscribers(uri);
  if (subscribers.empty()) return;
  // One immutable payload shared by every subscriber's stream.
  auto payload = make_notification("notifications/resources/updated", json::object{{"uri", uri}});
  for (auto& id : subscribers) {
    if (auto s = sessions_.find(id)) s->post_notification(payload);
  }
}

void Server::deliver_list_changed(ListKind kind) {
  std::string_view method = kind == ListKind::kTools       ? "notifications/tools/list_changed"
                            : kind == ListKind::kResources ? "notifications/resources/list_changed"
                                                           : "notifications/prompts/list_changed";
  auto payload = make_notification(method, {});
  sessions_.for_each([&](const std::string&, const std::shared_ptr<Session>& s) {
    s->post_notification(payload);
  });
}

}  // namespace mcpmesh::mcp
