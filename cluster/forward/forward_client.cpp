#include "cluster/forward/forward_client.hpp"

#include <spdlog/spdlog.h>
#include "mcp/roaming_executor.hpp"

#include <boost/asio/post.hpp>
#include <boost/beast/http/verb.hpp>

#include <algorithm>
#include <thread>
#include <unordered_map>
#include <vector>

namespace mcpmesh::cluster {

namespace {

namespace http = boost::beast::http;
using transport::RelayEvent;
using transport::RelayQueue;
using Clock = std::chrono::steady_clock;

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

std::string describe(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return "unreachable";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "no answer in time";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "refused: cluster secret mismatch";
    case grpc::StatusCode::CANCELLED:
      return "connection lost";
    default:
      return "gRPC status " + std::to_string(static_cast<int>(status.error_code()));
  }
}

RelayEvent failure(std::string why, bool unreachable) {
  RelayEvent ev;
  ev.kind = RelayEvent::Kind::kFailed;
  ev.error = std::move(why);
  ev.unreachable = unreachable;
  return ev;
}

}  // namespace

/// One `Forward.Relay` stream to one holder, carrying every exchange this node relays there.
/// Keeps itself alive until gRPC reports the stream done.
class RelayLink final : public grpc::ClientBidiReactor<pb::RelayBatch, pb::AnswerBatch>,
                        public std::enable_shared_from_this<RelayLink> {
 public:
  RelayLink(ForwardClient& client, std::shared_ptr<PeerStubs> stubs)
      : client_(client), stubs_(std::move(stubs)) {
    client_.open_streams_.fetch_add(1, std::memory_order_acq_rel);
  }

  void start(std::shared_ptr<RelayLink> self) {
    self_ = std::move(self);
    client_.auth_.stamp(context_, ForwardClient::kRelayMethod);
    stubs_->forward->async()->Relay(&context_, this);
    StartRead(&reading_);
    // Writes start from any thread, whenever an exchange comes: the hold keeps OnDone from
    // running until the stream is ending and no write is in flight.
    AddHold();
    StartCall();
  }

  /// Starts exchange `id`; false when this stream is broken or full (the caller fails it).
  bool open(std::uint64_t id, pb::ForwardRequest request, std::shared_ptr<RelayQueue> queue) {
    {
      std::lock_guard lock(mu_);
      if (done_ || exchanges_.size() >= client_.config_.max_exchanges) return false;
      exchanges_.emplace(id, Exchange{std::move(queue), Clock::now() + client_.config_.timeout});
      pb::RelayFrame frame;
      frame.set_exchange(id);
      *frame.mutable_request() = std::move(request);
      outbox_.push_back(std::move(frame));
    }
    schedule_pump();
    return true;
  }

  /// The client went away: the holder stops the exchange.
  void cancel(std::uint64_t id) {
    {
      std::lock_guard lock(mu_);
      if (done_ || exchanges_.erase(id) == 0) return;  // answered already
      pb::RelayFrame frame;
      frame.set_exchange(id);
      frame.set_cancel(true);
      outbox_.push_back(std::move(frame));
    }
    pump();
  }

  /// Fails the exchanges past their deadline (and tells the holder).
  void sweep(Clock::time_point now) {
    std::vector<std::shared_ptr<RelayQueue>> late;
    {
      std::lock_guard lock(mu_);
      for (auto it = exchanges_.begin(); it != exchanges_.end();) {
        if (it->second.deadline <= now) {
          late.push_back(std::move(it->second.queue));
          pb::RelayFrame frame;
          frame.set_exchange(it->first);
          frame.set_cancel(true);
          outbox_.push_back(std::move(frame));
          it = exchanges_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& q : late) {
      client_.failures_.fetch_add(1, std::memory_order_relaxed);
      q->push(failure("no answer in time", false));
    }
    if (!late.empty()) pump();
  }

  /// Ends the stream (the peer restarted): every exchange fails.
  void shut() { context_.TryCancel(); }

  [[nodiscard]] bool done() const {
    std::lock_guard lock(mu_);
    return done_;
  }

  void OnWriteDone(bool ok) override {
    bool release = false;
    {
      std::lock_guard lock(mu_);
      writing_now_ = false;
      if (!ok) write_failed_ = true;  // the stream is ending; OnDone fails the exchanges
      release = closing_ && !hold_released_;
      if (release) hold_released_ = true;
    }
    if (release) {
      RemoveHold();
      return;
    }
    pump();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The stream is ending (the holder closed it or it broke); OnDone says how. Nothing more
      // is written; once no write is in flight the hold goes and OnDone can come.
      bool release = false;
      {
        std::lock_guard lock(mu_);
        closing_ = true;
        release = !writing_now_ && !hold_released_;
        if (release) hold_released_ = true;
      }
      if (release) RemoveHold();
      return;
    }
    struct Delivery {
      std::uint64_t id;
      std::shared_ptr<RelayQueue> queue;
      RelayEvent ev;
    };
    std::vector<Delivery> deliveries;
    {
      std::lock_guard lock(mu_);
      for (auto& frame : *reading_.mutable_frames()) {
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
        client_.failures_.fetch_add(1, std::memory_order_relaxed);
      }
      if (!d.queue->push(std::move(d.ev)) && !final_frame) {
        // The client reads slower than the holder answers (its queue overflowed), or went
        // away: it stops reading, and the holder stops the exchange.
        std::lock_guard lock(mu_);
        if (exchanges_.erase(d.id) > 0) {
          pb::RelayFrame frame;
          frame.set_exchange(d.id);
          frame.set_cancel(true);
          outbox_.push_back(std::move(frame));
          cancelled_any = true;
        }
      }
    }
    if (cancelled_any) pump();
    StartRead(&reading_);
  }

  void OnDone(const grpc::Status& status) override {
    std::unordered_map<std::uint64_t, Exchange> failed;
    {
      std::lock_guard lock(mu_);
      done_ = true;
      failed.swap(exchanges_);
    }
    if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      spdlog::debug("relay stream ended: {}", status.error_message());
    }
    bool unreachable = status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                       status.error_code() == grpc::StatusCode::CANCELLED ||
                       status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
    for (auto& [id, ex] : failed) {
      client_.failures_.fetch_add(1, std::memory_order_relaxed);
      ex.queue->push(failure(describe(status), unreachable));
    }
    auto& open = client_.open_streams_;
    self_.reset();                                 // may destroy this
    open.fetch_sub(1, std::memory_order_acq_rel);  // last: the client may go once it is 0
  }

 private:
  struct Exchange {
    std::shared_ptr<RelayQueue> queue;
    Clock::time_point deadline;
  };

  /// Sends the queued frames soon: on an I/O thread, at the end of its current turn, so that
  /// the exchanges read in the same turn (one epoll round) share one message.
  void schedule_pump() {
    auto* context = mcp::RoamingExecutor::thread_context();
    if (!context) return pump();
    {
      std::lock_guard lock(mu_);
      if (pump_posted_) return;
      pump_posted_ = true;
    }
    boost::asio::post(*context, [self = shared_from_this()] {
      {
        std::lock_guard lock(self->mu_);
        self->pump_posted_ = false;
      }
      self->pump();
    });
  }

  /// Sends the queued frames as one batch unless a write is in flight.
  void pump() {
    {
      std::lock_guard lock(mu_);
      if (writing_now_ || write_failed_ || done_ || closing_ || outbox_.empty()) return;
      writing_.Clear();
      std::size_t bytes = 0;
      std::size_t taken = 0;
      for (auto& frame : outbox_) {
        if (taken > 0 && bytes >= client_.config_.max_batch_bytes) break;
        bytes += frame.ByteSizeLong();
        *writing_.add_frames() = std::move(frame);
        ++taken;
      }
      outbox_.erase(outbox_.begin(), outbox_.begin() + static_cast<std::ptrdiff_t>(taken));
      writing_now_ = true;
    }
    client_.batches_.fetch_add(1, std::memory_order_relaxed);
    StartWrite(&writing_);
  }

  ForwardClient& client_;
  std::shared_ptr<PeerStubs> stubs_;
  grpc::ClientContext context_;
  pb::RelayBatch writing_;
  pb::AnswerBatch reading_;
  mutable std::mutex mu_;
  std::unordered_map<std::uint64_t, Exchange> exchanges_;  // guarded by mu_
  std::vector<pb::RelayFrame> outbox_;                     // guarded by mu_
  bool writing_now_ = false;                               // guarded by mu_
  bool write_failed_ = false;                              // guarded by mu_
  bool done_ = false;                                      // guarded by mu_
  bool closing_ = false;                                   // guarded by mu_
  bool pump_posted_ = false;                               // guarded by mu_
  bool hold_released_ = false;                             // guarded by mu_
  std::shared_ptr<RelayLink> self_;
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
    client_.calls_.fetch_add(1, std::memory_order_relaxed);
    pb::ForwardRequest req;
    req.set_method(std::string(http::to_string(request.method())));
    req.set_target(std::string(request.target()));
    req.set_version(request.version());
    req.set_keep_alive(request.keep_alive());
    req.set_hops(hops);
    req.set_session_id(std::string(request["Mcp-Session-Id"]));
    req.set_from(client_.config_.self_id);
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
    auto id = client_.next_id_.fetch_add(1, std::memory_order_relaxed);
    auto link = client_.link(address_);
    if (!link->open(id, std::move(req), queue)) {
      client_.failures_.fetch_add(1, std::memory_order_relaxed);
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

ForwardClient::ForwardClient(PeerChannels& channels, const ClusterAuth& auth,
                             boost::asio::any_io_executor executor, ForwardClientConfig config)
    : channels_(channels), auth_(auth), config_(std::move(config)), sweeper_(executor) {
  sweep();
}

ForwardClient::~ForwardClient() {
  *alive_ = false;
  sweeper_.cancel();
  std::map<std::string, std::shared_ptr<RelayLink>> links;
  {
    std::lock_guard lock(mutex_);
    links.swap(links_);
  }
  for (auto& [address, l] : links) l->shut();
  links.clear();
  // The streams' callbacks use this object: wait (bounded) until gRPC has finished them.
  auto until = Clock::now() + std::chrono::seconds(5);
  while (open_streams_.load(std::memory_order_acquire) > 0 && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
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

std::shared_ptr<RelayLink> ForwardClient::link(const std::string& address) {
  std::lock_guard lock(mutex_);
  auto it = links_.find(address);
  if (it != links_.end() && !it->second->done()) return it->second;
  if (it == links_.end() && links_.size() >= PeerChannels::kMaxPeers) {
    // Addresses come from the membership; past the bound, forget the broken streams.
    std::erase_if(links_, [](auto& kv) { return kv.second->done(); });
  }
  auto l = std::make_shared<RelayLink>(*this, channels_.get(address));
  streams_.fetch_add(1, std::memory_order_relaxed);
  l->start(l);
  links_[address] = l;
  return l;
}

void ForwardClient::reset(const std::string& address) {
  std::shared_ptr<RelayLink> old;
  {
    std::lock_guard lock(mutex_);
    auto it = links_.find(address);
    if (it == links_.end()) return;
    old = std::move(it->second);
    links_.erase(it);
  }
  old->shut();
}

std::shared_ptr<transport::SessionTarget> ForwardClient::target(const std::string& node,
                                                                const std::string& address) {
  return std::make_shared<RemoteSession>(*this, node, address);
}

}  // namespace mcpmesh::cluster
