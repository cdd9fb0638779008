#include "mcp/server.hpp"

#include "mcp/roaming_executor.hpp"

#include <boost/asio/post.hpp>

#include <sys/random.h>

#include <array>
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
  std::string id = config_.node_id;
  id.reserve(id.size() + 33);
  id += '.';
  for (unsigned char b : bytes) {
    id += kHex[b >> 4];
    id += kHex[b & 0xf];
  }
  return id;
}

Result<std::shared_ptr<Session>> Server::create_session(std::shared_ptr<ClientChannel> standalone,
                                                        asio::io_context* context) {
  if (sessions_.size() >= config_.max_sessions) {
    Metrics::inc(metrics_.sessions_rejected_total);
    return RpcError(ErrorCode::kServerBusy, "too many sessions on this node (max " +
                                                std::to_string(config_.max_sessions) + ")");
  }
  for (;;) {
    auto session = std::make_shared<Session>(
        *this, new_session_id(),
        asio::strand<RoamingExecutor>(RoamingExecutor(context ? *context : io_)), standalone);
    if (sessions_.insert(session->id(), session)) {
      Metrics::inc(metrics_.sessions_created_total);
      Metrics::inc(metrics_.sessions_active);
      return session;
    }
  }
}

std::shared_ptr<Session> Server::find_session(std::string_view id) const {
  return sessions_.find(id);
}

bool Server::close_session(std::string_view id) {
  auto session = sessions_.extract(id);
  if (!session) return false;
  session->close();
  Metrics::inc(metrics_.sessions_closed_total);
  Metrics::dec(metrics_.sessions_active);
  return true;
}

std::size_t Server::session_count() const { return sessions_.size(); }

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

void Server::on_resource_updated(std::string_view uri) {
  auto subscribers = subscriptions_.subscribers(uri);
  if (subscribers.empty()) return;
  // One immutable payload shared by every subscriber's stream.
  auto payload = make_notification("notifications/resources/updated", json::object{{"uri", uri}});
  for (auto& id : subscribers) {
    if (auto s = sessions_.find(id)) s->post_notification(payload);
  }
}

void Server::on_list_changed(ListKind kind) {
  std::string_view method = kind == ListKind::kTools       ? "notifications/tools/list_changed"
                            : kind == ListKind::kResources ? "notifications/resources/list_changed"
                                                           : "notifications/prompts/list_changed";
  auto payload = make_notification(method, {});
  sessions_.for_each([&](const std::string&, const std::shared_ptr<Session>& s) {
    s->post_notification(payload);
  });
}

}  // namespace mcpmesh::mcp
