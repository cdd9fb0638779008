#include "cluster/forward/forward_client.hpp"

#include "mcp/roaming_executor.hpp"
#include "proto/mesh.pb.h"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/verb.hpp>

#include <algorithm>
#include <unordered_map>
#include <vector>

namespace mcpmesh::cluster {

namespace {

namespace http = boost::beast::http;
using transport::RelayEvent;
using transport::RelayQueue;
using Clock = std::chrono::steady_clock;
namespace pb = ::mcpmesh::v1;
using tcp = boost::asio::ip::tcp;

/// Whether field name `name` is `lower` (given in lower case), whatever its case.
bool field_is(std::string_view name, std::string_view lower) {
  return name.size() == lower.size() &&
         std::equal(name.begin(), name.end(), lower.begin(),
                    [](char a, char b) { return (a >= 'A' && a <= 'Z' ? a + 32 : a) == b; });
}

/// Fields that describe one hop's connection, not the request: never relayed.
bool hop_by_hop(std::string_view name) {
  static constexpr std::string_view kDropped[] = {
      "connection", "keep-alive",       "transfer-encoding", "te",
      "upgrade",    "proxy-connection", "content-length"};
  return std::any_of(std::begin(kDropped), std::end(kDropped),
                     [name](std::string_view d) { return field_is(name, d); });
}

/// Fields of the W3C trace context: replaced by the relaying span's.
bool trace_field(std::string_view name) {
  return field_is(name, "traceparent") || field_is(name, "tracestate");
}

RelayEvent failure(std::string why, bool unreachable) {
  RelayEvent ev;
  ev.kind = RelayEvent::Kind::kFailed;
  ev.error = std::move(why);
  ev.unreachable = unreachable;
  return ev;
}

}  // namespace

struct ForwardClient::Shared {
  Shared(ClusterAuth& a, const std::optional<TlsFiles>& tls, ForwardClientConfig c)
      : auth(&a), config(std::move(c)) {
    if (tls) this->tls = std::make_unique<LinkTls>(*tls);
  }
  std::mutex mu;
  ClusterAuth* auth;  // guarded by mu; null once the client is gone
  ForwardClientConfig config;
  std::unique_ptr<LinkTls> tls;
  std::atomic<std::uint64_t> next_id{1};
  std::atomic<std::uint64_t> calls{0};
  std::atomic<std::uint64_t> failures{0};
  std::atomic<std::uint64_t> batches{0};
  std::atomic<std::uint64_t> streams{0};
};

/// The relay link to one holder, carrying every exchange this node relays there. Lives on the
/// I/O thread that opened it.
class RelayLink final : public FrameLink {
 public:
  RelayLink(std::shared_ptr<ForwardClient::Shared> shared, tcp::socket socket, std::string address)
      : FrameLink(std::move(socket), shared->config.link),
        shared_(std::move(shared)),
        address_(std::move(address)) {}

  void start() {
    auto self = std::static_pointer_cast<RelayLink>(shared_from_this());
    asio::co_spawn(
        executor_, [self]() { return self->open_link(); }, asio::detached);
  }

  /// Starts exchange `id`; false when this link is broken or full (the caller fails it).
  bool open(std::uint64_t id, pb::ForwardRequest request, std::shared_ptr<RelayQueue> queue) {
    {
      std::lock_guard lock(mu_);
      if (done_ || exchanges_.size() >= shared_->config.max_exchanges) return false;
      exchanges_.emplace(id, Exchange{std::move(queue), Clock::now() + shared_->config.timeout});
      pb::RelayFrame frame;
      frame.set_exchange(id);
      *frame.mutable_request() = std::move(request);
      outbox_.push_back(std::move(frame));
    }
    kick();
    return true;
  }

  /// The client went away: the holder stops the exchange.
  void cancel(std::uint64_t id) {
    {
      std::lock_guard lock(mu_);
      if (done_ || exchanges_.erase(id) == 0) return;  // answered already
      push_cancel(id);
    }
    kick();
  }

  /// Fails the exchanges past their deadline (and tells the holder).
  void sweep(Clock::time_point now) {
    std::vector<std::shared_ptr<RelayQueue>> late;
    {
      std::lock_guard lock(mu_);
      for (auto it = exchanges_.begin(); it != exchanges_.end();) {
        if (it->second.deadline <= now) {
          late.push_back(std::move(it->second.queue));
          push_cancel(it->first);
          it = exchanges_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& q : late) {
      shared_->failures.fetch_add(1, std::memory_order_relaxed);
      q->push(failure("no answer in time", false));
    }
    if (!late.empty()) kick();
  }

  [[nodiscard]] bool done() const {
    std::lock_guard lock(mu_);
    return done_;
  }

 private:
  struct Exchange {
    std::shared_ptr<RelayQueue> queue;
    Clock::time_point deadline;
  };

  void push_cancel(std::uint64_t id) {  // mu_ held
    pb::RelayFrame frame;
    frame.set_exchange(id);
    frame.set_cancel(true);
    outbox_.push_back(std::move(frame));
  }

  /// Connects, switches protocols (checking the holder's token), then runs the frames.
  asio::awaitable<void> open_link() {
    auto self = shared_from_this();
    watch();  // the opening counts against `silence`
    std::string rest;
    try {
      auto colon = address_.rfind(':');
      if (colon == std::string::npos) throw std::runtime_error("bad address");
      std::string host = address_.substr(0, colon);
      if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
      }
      tcp::resolver resolver(executor_);
      auto endpoints =
          co_await resolver.async_resolve(host, address_.substr(colon + 1), asio::use_awaitable);
      co_await asio::async_connect(stream_.socket(), endpoints, asio::use_awaitable);
      stream_.socket().set_option(tcp::no_delay(true));
      std::string token;
      {
        std::lock_guard lock(shared_->mu);
        if (shared_->auth) token = shared_->auth->token(kRelayMethod);
      }
      auto request = relay_upgrade_request(address_, token);
      co_await asio::async_write(stream_.socket(), asio::buffer(request), asio::use_awaitable);
      std::string head;
      auto n = co_await asio::async_read_until(stream_.socket(), asio::dynamic_buffer(head, 16384),
                                               "\r\n\r\n", asio::use_awaitable);
      rest = head.substr(n);
      head.resize(n);
      if (auto refused = check_answer(head, token)) {
        refuse(*refused);
        co_return;
      }
      if (shared_->tls) {
        if (!rest.empty()) {
          refuse("bytes before the TLS handshake");
          co_return;
        }
        stream_.use_tls(shared_->tls->client);
        try {
          co_await stream_.handshake(asio::ssl::stream_base::client);
        } catch (const boost::system::system_error& e) {
          refuse("TLS handshake failed (" + e.code().message() + ")");
          co_return;
        }
      }
    } catch (const std::exception& e) {
      spdlog::debug("relay link to {}: {}", address_, e.what());
      end("unreachable");
      co_return;
    }
    co_await run_frames(std::move(rest));
  }

  /// Why the holder's answer to the switch is not a valid 101 from a holder of the secret.
  std::optional<std::string> check_answer(std::string_view head, const std::string& token) {
    http::response_parser<http::empty_body> parser;
    boost::system::error_code ec;
    parser.put(asio::buffer(head.data(), head.size()), ec);
    if (ec || !parser.is_header_done()) return "the holder's answer is not HTTP";
    const auto& answer = parser.get();
    if (answer.result() != http::status::switching_protocols) {
      if (answer.result() == http::status::unauthorized) return "cluster secret mismatch";
      return "the holder answered " + std::to_string(answer.result_int());
    }
    std::string_view theirs = answer[kRelayAuthField];
    std::lock_guard lock(shared_->mu);
    if (!shared_->auth) return "shutting down";
    auto ok = shared_->auth->check_token(theirs, std::string(kRelayAcceptMethod) + token);
    if (!ok.ok())
      return "the holder does not prove the cluster secret (" + ok.error_message() + ")";
    return std::nullopt;
  }

  /// Ends the link with every exchange refused (not unreachable: 502).
  void refuse(std::string why) {
    {
      std::lock_guard lock(mu_);
      refusal_ = "refused: " + why;
    }
    end(refusal_);
  }

  bool fill(std::string& out) override {
    pb::RelayBatch batch;
    {
      std::lock_guard lock(mu_);
      if (outbox_.empty()) return false;
      std::size_t bytes = 0;
      std::size_t taken = 0;
      for (auto& frame : outbox_) {
        if (taken > 0 && bytes >= shared_->config.max_batch_bytes) break;
        bytes += frame.request().body().size() + frame.request().fields().size() + 64;
        *batch.add_frames() = std::move(frame);
        ++taken;
      }
      outbox_.erase(outbox_.begin(), outbox_.begin() + static_cast<std::ptrdiff_t>(taken));
    }
    shared_->batches.fetch_add(1, std::memory_order_relaxed);
    return batch.AppendToString(&out);
  }

  void written() override {}

  bool on_frame(std::string_view payload) override {
    pb::AnswerBatch answers;
    if (!answers.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) return false;
    struct Delivery {
      std::uint64_t id;
      std::shared_ptr<RelayQueue> queue;
      RelayEvent ev;
    };
    std::vector<Delivery> deliveries;
    {
      std::lock_guard lock(mu_);
      for (auto& frame : *answers.mutable_frames()) {
        auto it = exchanges_.find(frame.exchange());
        if (it == exchanges_.end()) continue;  // cancelled or timed out meanwhile
        RelayEvent ev;
        if (!frame.refused().empty()) {
          ev = failure("refused: " + frame.refused(), false);
        } else {
          auto* chunk = frame.mutable_chunk();
          ev.kind = chunk->last() ? RelayEvent::Kind::kEnd : RelayEvent::Kind::kBytes;
          ev.bytes = std::move(*chunk->mutable_data());
          ev.close = chunk->close();
        }
        bool final_frame = ev.kind != RelayEvent::Kind::kBytes;
        deliveries.push_back({it->first, it->second.queue, std::move(ev)});
        if (final_frame) exchanges_.erase(it);
      }
    }
    bool cancelled_any = false;
    for (auto& d : deliveries) {
      bool final_frame = d.ev.kind != RelayEvent::Kind::kBytes;
      if (d.ev.kind == RelayEvent::Kind::kFailed) {
        shared_->failures.fetch_add(1, std::memory_order_relaxed);
      }
      if (!d.queue->push(std::move(d.ev)) && !final_frame) {
        // The client reads slower than the holder answers (its queue overflowed), or went
        // away: it stops reading, and the holder stops the exchange.
        std::lock_guard lock(mu_);
        if (exchanges_.erase(d.id) > 0) {
          push_cancel(d.id);
          cancelled_any = true;
        }
      }
    }
    if (cancelled_any) kick();
    return true;
  }

  void ended(std::string_view why) override {
    std::unordered_map<std::uint64_t, Exchange> failed;
    std::string refusal;
    {
      std::lock_guard lock(mu_);
      done_ = true;
      failed.swap(exchanges_);
      outbox_.clear();
      refusal = refusal_;
    }
    if (!failed.empty()) spdlog::debug("relay link to {} ended: {}", address_, why);
    // Refused by the holder: a fault (502). Anything else: it may be failing over (503).
    bool unreachable = refusal.empty();
    std::string reason =
        unreachable ? (why == "unreachable" ? "unreachable" : "connection lost") : refusal;
    for (auto& [id, ex] : failed) {
      shared_->failures.fetch_add(1, std::memory_order_relaxed);
      ex.queue->push(failure(reason, unreachable));
    }
  }

  std::shared_ptr<ForwardClient::Shared> shared_;
  std::string address_;
  mutable std::mutex mu_;
  std::unordered_map<std::uint64_t, Exchange> exchanges_;  // guarded by mu_
  std::vector<pb::RelayFrame> outbox_;                     // guarded by mu_
  std::string refusal_;                                    // guarded by mu_
  bool done_ = false;                                      // guarded by mu_
};

namespace {

/// Cancels the exchange when the relaying side lets go of it before the answer is complete.
struct RelayHandle {
  std::weak_ptr<RelayLink> link;
  std::uint64_t id;
  ~RelayHandle() {
    if (auto l = link.lock()) l->cancel(id);
  }
};

}  // namespace

class RemoteSession final : public transport::SessionTarget {
 public:
  RemoteSession(ForwardClient& client, std::string node, std::string address)
      : client_(client), node_(std::move(node)), address_(std::move(address)) {}

  std::shared_ptr<void> relay(const transport::HttpRequest& request, unsigned hops,
                              std::shared_ptr<RelayQueue> queue,
                              const mcp::TraceContext* trace) override {
    auto& shared = *client_.shared_;
    shared.calls.fetch_add(1, std::memory_order_relaxed);
    pb::ForwardRequest req;
    req.set_method(std::string(http::to_string(request.method())));
    req.set_target(std::string(request.target()));
    req.set_version(request.version());
    req.set_keep_alive(request.keep_alive());
    req.set_hops(hops);
    req.set_session_id(std::string(request["Mcp-Session-Id"]));
    req.set_from(shared.config.self_id);
    auto* fields = req.mutable_fields();
    fields->reserve(512);
    request.for_each_field([fields, trace](std::string_view name, std::string_view value) {
      if (hop_by_hop(name) || (trace && trace_field(name))) return;
      fields->append(name);
      fields->append(": ");
      fields->append(value);
      fields->append("\r\n");
    });
    if (trace) {
      fields->append("traceparent: ");
      fields->append(mcp::format_traceparent(*trace));
      fields->append("\r\n");
      if (!trace->state.empty()) {
        fields->append("tracestate: ");
        fields->append(trace->state);
        fields->append("\r\n");
      }
    }
    req.set_body(request.body());
    auto id = shared.next_id.fetch_add(1, std::memory_order_relaxed);
    auto link = client_.link(address_);
    if (!link->open(id, std::move(req), queue)) {
      shared.failures.fetch_add(1, std::memory_order_relaxed);
      queue->push(failure("unreachable", true));
      return nullptr;
    }
    auto handle = std::make_shared<RelayHandle>();
    handle->link = link;
    handle->id = id;
    return handle;
  }

  const std::string& node() const override { return node_; }

 private:
  ForwardClient& client_;
  std::string node_;
  std::string address_;
};

ForwardClient::ForwardClient(ClusterAuth& auth, const std::optional<TlsFiles>& tls,
                             boost::asio::any_io_executor executor, ForwardClientConfig config)
    : shared_(std::make_shared<Shared>(auth, tls, std::move(config))),
      executor_(executor),
      sweeper_(executor) {
  sweep();
}

ForwardClient::~ForwardClient() {
  *alive_ = false;
  sweeper_.cancel();
  {
    std::lock_guard lock(shared_->mu);
    shared_->auth = nullptr;  // links still opening fail
  }
  std::map<std::string, std::shared_ptr<RelayLink>> links;
  {
    std::lock_guard lock(mutex_);
    links.swap(links_);
  }
  for (auto& [address, l] : links) l->close();
}

std::uint64_t ForwardClient::calls() const {
  return shared_->calls.load(std::memory_order_relaxed);
}
std::uint64_t ForwardClient::failures() const {
  return shared_->failures.load(std::memory_order_relaxed);
}
std::uint64_t ForwardClient::batches() const {
  return shared_->batches.load(std::memory_order_relaxed);
}
std::uint64_t ForwardClient::streams() const {
  return shared_->streams.load(std::memory_order_relaxed);
}

void ForwardClient::sweep() {
  auto now = Clock::now();
  std::vector<std::shared_ptr<RelayLink>> links;
  {
    std::lock_guard lock(mutex_);
    for (auto& [address, l] : links_) links.push_back(l);
  }
  for (auto& l : links) l->sweep(now);
  sweeper_.expires_after(std::chrono::seconds(1));
  sweeper_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
    if (!ec && alive.lock()) sweep();
  });
}

std::shared_ptr<RelayLink> ForwardClient::link(const std::string& http_address) {
  std::lock_guard lock(mutex_);
  auto it = links_.find(http_address);
  if (it != links_.end() && !it->second->done()) return it->second;
  if (it == links_.end() && links_.size() >= shared_->config.max_links) {
    // Addresses come from the membership; past the bound, forget the broken links.
    std::erase_if(links_, [](auto& kv) { return kv.second->done(); });
  }
  // On the I/O thread that asks, so that its exchanges cross no thread; else the fallback.
  auto* here = mcp::RoamingExecutor::thread_context();
  tcp::socket socket = here ? tcp::socket(*here) : tcp::socket(executor_);
  auto l = std::make_shared<RelayLink>(shared_, std::move(socket), http_address);
  shared_->streams.fetch_add(1, std::memory_order_relaxed);
  l->start();
  links_[http_address] = l;
  return l;
}

void ForwardClient::reset(const std::string& http_address) {
  std::shared_ptr<RelayLink> old;
  {
    std::lock_guard lock(mutex_);
    auto it = links_.find(http_address);
    if (it == links_.end()) return;
    old = std::move(it->second);
    links_.erase(it);
  }
  old->close();
}

std::shared_ptr<transport::SessionTarget> ForwardClient::target(const std::string& node,
                                                                const std::string& http_address) {
  return std::make_shared<RemoteSession>(*this, node, http_address);
}

}  // namespace mcpmesh::cluster
