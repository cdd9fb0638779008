#include "cluster/forward/forward_service.hpp"

#include "proto/mesh.pb.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/verb.hpp>

#include <deque>
#include <functional>
#include <mutex>
#include <unordered_set>
#include <vector>

namespace mcpmesh::cluster {

namespace http = boost::beast::http;
namespace pb = ::mcpmesh::v1;
using tcp = boost::asio::ip::tcp;

namespace {

std::optional<std::string> check_request(const pb::ForwardRequest& request,
                                         transport::HttpRequest& out,
                                         const ForwardServiceLimits& limits) {
  auto verb = http::string_to_verb(request.method());
  if (verb != http::verb::post && verb != http::verb::get && verb != http::verb::delete_) {
    return "method must be POST, GET or DELETE";
  }
  if (request.version() != 10 && request.version() != 11) return "bad HTTP version";
  if (request.hops() == 0 || request.hops() > limits.max_hops) return "bad hop count";
  if (request.body().size() > limits.max_body_bytes) return "body too large";
  if (request.target().empty() || request.target().size() > limits.max_header_bytes) {
    return "bad target";
  }
  if (request.target().size() + request.fields().size() > limits.max_header_bytes) {
    return "headers too large";
  }
  out.assign(verb, request.target(), request.version(), request.keep_alive());
  // "Name: value\r\n" lines, as the relaying node's parser accepted them; checked again here.
  std::string_view fields = request.fields();
  std::size_t count = 0;
  while (!fields.empty()) {
    auto end = fields.find("\r\n");
    if (end == std::string_view::npos) return "malformed fields";
    auto line = fields.substr(0, end);
    fields.remove_prefix(end + 2);
    auto colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) return "malformed field";
    auto value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (++count > limits.max_headers) return "too many headers";
    out.add_field(line.substr(0, colon), value);
  }
  out.body() = request.body();
  return std::nullopt;
}

}  // namespace

class RelayServerLink;

struct ForwardService::Shared {
  std::mutex mu;
  ClusterAuth* auth = nullptr;            // guarded by mu; null once the service is gone
  transport::HttpServer* http = nullptr;  // guarded by mu; null once the service is gone
  ForwardServiceLimits limits;
  std::unique_ptr<LinkTls> tls;
  std::vector<std::weak_ptr<RelayServerLink>> links;  // guarded by mu
  std::atomic<std::uint64_t> refused{0};
  std::atomic<std::uint64_t> served{0};
  std::atomic<std::uint64_t> links_refused{0};

  /// Links still open; mu held.
  std::size_t prune() {
    std::erase_if(links, [](const std::weak_ptr<RelayServerLink>& l) { return l.expired(); });
    return links.size();
  }
};

/// One relay link from one node: the exchanges it relays here. Reads batches of requests,
/// starts each exchange, and writes the answers' parts in batches, one write at a time.
class RelayServerLink final : public FrameLink {
 public:
  RelayServerLink(std::shared_ptr<ForwardService::Shared> shared, tcp::socket socket,
                  std::string already_read, std::string accept_token)
      : FrameLink(std::move(socket), settings_of(shared->limits)),
        shared_(std::move(shared)),
        already_read_(std::move(already_read)),
        accept_token_(std::move(accept_token)) {}

  void start() {
    auto self = std::static_pointer_cast<RelayServerLink>(shared_from_this());
    asio::co_spawn(
        executor_, [self]() { return self->serve(); }, asio::detached);
  }

  /// Queues a part of exchange `id`'s answer; false (and nothing queued) when the link or the
  /// exchange is gone. Any thread.
  bool queue(std::uint64_t id, std::string bytes, bool last, bool close,
             std::function<void(bool)>& sent, std::size_t max_chunk) {
    bool gone = false;
    {
      std::lock_guard lock(mu_);
      gone = closed_ || cancelled_.contains(id);
      if (!gone) {
        // Large answers go out in parts, each far below the peer's frame limit; only the last
        // part carries the sender's callback (and the end of the answer).
        std::size_t offset = 0;
        do {
          std::size_t n = std::min(max_chunk, bytes.size() - offset);
          Part part;
          part.frame.set_exchange(id);
          auto* chunk = part.frame.mutable_chunk();
          chunk->set_data(bytes.data() + offset, n);
          offset += n;
          bool final_part = offset >= bytes.size();
          chunk->set_last(last && final_part);
          chunk->set_close(last && final_part && close);
          if (final_part) part.sent = std::move(sent);
          queued_.push_back(std::move(part));
        } while (offset < bytes.size());
      }
      if (last) {
        live_.erase(id);
        cancelled_.erase(id);
      }
    }
    if (!gone) kick();
    return !gone;
  }

 private:
  struct Part {
    pb::AnswerFrame frame;
    std::function<void(bool)> sent;
  };

  /// The limits of a request frame follow the limits of a request.
  static LinkSettings settings_of(const ForwardServiceLimits& limits) {
    // A batch is closed once it holds a megabyte, so it may end with one whole request.
    auto s = limits.link;
    s.max_frame_bytes = std::max(
        s.max_frame_bytes, 2 * (limits.max_body_bytes + limits.max_header_bytes) + (1u << 20));
    return s;
  }

  asio::awaitable<void> serve() {
    auto self = shared_from_this();
    watch();
    try {
      auto head = relay_upgrade_answer(accept_token_);
      co_await asio::async_write(stream_.socket(), asio::buffer(head), asio::use_awaitable);
      if (shared_->tls) {
        stream_.use_tls(shared_->tls->server);
        co_await stream_.handshake(asio::ssl::stream_base::server);
      }
    } catch (const boost::system::system_error& e) {
      end(e.code().message());
      co_return;
    }
    co_await run_frames(std::move(already_read_));
  }

  bool fill(std::string& out) override {
    pb::AnswerBatch batch;
    {
      std::lock_guard lock(mu_);
      if (queued_.empty()) return false;
      std::size_t bytes = 0;
      while (!queued_.empty() && (bytes == 0 || bytes < shared_->limits.max_batch_bytes)) {
        auto& part = queued_.front();
        bytes += part.frame.chunk().data().size() + 16;
        *batch.add_frames() = std::move(part.frame);
        if (part.sent) in_flight_.push_back(std::move(part.sent));
        queued_.pop_front();
      }
    }
    return batch.AppendToString(&out);
  }

  void written() override {
    std::vector<std::function<void(bool)>> sent;
    {
      std::lock_guard lock(mu_);
      sent.swap(in_flight_);
    }
    for (auto& cb : sent) cb(true);
  }

  bool on_frame(std::string_view payload) override;

  void refused_frame() override { shared_->links_refused.fetch_add(1, std::memory_order_relaxed); }

  void ended(std::string_view) override {
    std::deque<Part> dropped;
    std::vector<std::function<void(bool)>> in_flight;
    {
      std::lock_guard lock(mu_);
      closed_ = true;
      dropped.swap(queued_);
      in_flight.swap(in_flight_);
    }
    for (auto& cb : in_flight) cb(false);
    for (auto& p : dropped) {
      if (p.sent) p.sent(false);
    }
  }

  std::shared_ptr<ForwardService::Shared> shared_;
  std::string already_read_;
  std::string accept_token_;
  std::mutex mu_;
  std::deque<Part> queued_;                           // guarded by mu_
  std::vector<std::function<void(bool)>> in_flight_;  // senders of the frame being written
  std::unordered_set<std::uint64_t> live_;            // exchanges running; guarded by mu_
  std::unordered_set<std::uint64_t> cancelled_;       // running, but the relaying node let go
  bool closed_ = false;                               // guarded by mu_
};

namespace {

/// What one exchange writes its answer to.
class Answer final : public transport::ForwardedAnswer {
 public:
  Answer(std::shared_ptr<RelayServerLink> link, std::uint64_t id, std::size_t max_chunk)
      : link_(std::move(link)), id_(id), max_chunk_(max_chunk) {}

  void send(std::string bytes, std::function<void(bool)> sent) override {
    if (!link_->queue(id_, std::move(bytes), false, false, sent, max_chunk_) && sent) sent(false);
  }
  void finish(std::string bytes, bool close) override {
    std::function<void(bool)> none;
    link_->queue(id_, std::move(bytes), true, close, none, max_chunk_);
  }

 private:
  std::shared_ptr<RelayServerLink> link_;
  std::uint64_t id_;
  std::size_t max_chunk_;
};

}  // namespace

bool RelayServerLink::on_frame(std::string_view payload) {
  pb::RelayBatch batch;
  if (!batch.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) return false;
  auto self = std::static_pointer_cast<RelayServerLink>(shared_from_this());
  bool refused_any = false;
  for (auto& frame : *batch.mutable_frames()) {
    auto id = frame.exchange();
    if (frame.cancel()) {
      std::lock_guard lock(mu_);
      if (live_.contains(id)) cancelled_.insert(id);
      continue;
    }
    transport::HttpRequest request;
    auto refused = check_request(frame.request(), request, shared_->limits);
    if (!refused) {
      std::lock_guard lock(mu_);
      if (live_.size() >= shared_->limits.max_exchanges) {
        refused = "too many exchanges on this link";
      } else if (!live_.insert(id).second) {
        refused = "exchange id in use";
      }
    }
    if (!refused) {
      std::lock_guard lock(shared_->mu);
      if (!shared_->http) refused = "shutting down";
      if (!refused) {
        shared_->served.fetch_add(1, std::memory_order_relaxed);
        shared_->http->serve_forwarded(
            std::move(request), frame.request().hops(),
            std::make_shared<Answer>(self, id, shared_->limits.max_chunk_bytes));
        continue;
      }
    }
    shared_->refused.fetch_add(1, std::memory_order_relaxed);
    Part part;
    part.frame.set_exchange(id);
    part.frame.set_refused(*refused);
    std::lock_guard lock(mu_);
    live_.erase(id);
    queued_.push_back(std::move(part));
    refused_any = true;
  }
  if (refused_any) kick();
  return true;
}

ForwardService::ForwardService(ClusterAuth& auth, transport::HttpServer& http,
                               ForwardServiceLimits limits, const std::optional<TlsFiles>& tls)
    : shared_(std::make_shared<Shared>()), http_(http) {
  shared_->auth = &auth;
  shared_->http = &http;
  shared_->limits = limits;
  if (tls) shared_->tls = std::make_unique<LinkTls>(*tls);
  http.set_upgrade(transport::UpgradeRoute{
      .path = std::string(kRelayPath),
      .protocol = std::string(kRelayProtocol),
      .accept = [shared = shared_](
                    const transport::HttpRequest& req, tcp::socket& socket,
                    std::string leftover) -> std::optional<transport::UpgradeRoute::Refusal> {
        auto token = req[kRelayAuthField];
        std::shared_ptr<RelayServerLink> link;
        {
          std::lock_guard lock(shared->mu);
          if (!shared->auth || !shared->http) return {{503, "the node is shutting down"}};
          auto status = shared->auth->check_token(token, kRelayMethod);
          if (!status.ok()) return {{401, "relay link refused: " + status.error_message()}};
          if (shared->prune() >= shared->limits.max_links) {
            shared->links_refused.fetch_add(1, std::memory_order_relaxed);
            return {{503, "too many relay links open"}};
          }
          if (shared->tls && !leftover.empty()) {
            return {{400, "bytes before the TLS handshake"}};
          }
          auto accept = shared->auth->token(std::string(kRelayAcceptMethod) + std::string(token));
          boost::system::error_code ec;
          socket.set_option(tcp::no_delay(true), ec);
          link = std::make_shared<RelayServerLink>(shared, std::move(socket), std::move(leftover),
                                                   std::move(accept));
          shared->links.push_back(link);
        }
        link->start();
        return std::nullopt;
      }});
}

ForwardService::~ForwardService() {
  http_.set_upgrade(std::nullopt);
  std::vector<std::weak_ptr<RelayServerLink>> links;
  {
    std::lock_guard lock(shared_->mu);
    shared_->auth = nullptr;
    shared_->http = nullptr;
    links.swap(shared_->links);
  }
  for (auto& weak : links) {
    if (auto l = weak.lock()) l->close();
  }
}

std::uint64_t ForwardService::refused() const {
  return shared_->refused.load(std::memory_order_relaxed);
}
std::uint64_t ForwardService::served() const {
  return shared_->served.load(std::memory_order_relaxed);
}
std::uint64_t ForwardService::links_refused() const {
  return shared_->links_refused.load(std::memory_order_relaxed);
}
std::size_t ForwardService::links() const {
  std::lock_guard lock(shared_->mu);
  return shared_->prune();
}

}  // namespace mcpmesh::cluster
