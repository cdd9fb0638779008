#include "cluster/forward/forward_client.hpp"

#include <boost/beast/http/verb.hpp>

#include <mutex>

namespace mcpmesh::cluster {

namespace {

namespace http = boost::beast::http;
using transport::RelayEvent;
using transport::RelayQueue;

/// Fields that describe one hop's connection, not the request: never relayed.
bool hop_by_hop(std::string_view name) {
  static constexpr std::string_view kDropped[] = {
      "connection", "keep-alive",       "transfer-encoding", "te",
      "upgrade",    "proxy-connection", "content-length"};
  for (auto d : kDropped) {
    if (name.size() == d.size() &&
        std::equal(name.begin(), name.end(), d.begin(),
                   [](char a, char b) { return (a >= 'A' && a <= 'Z' ? a + 32 : a) == b; })) {
      return true;
    }
  }
  return false;
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
      return "cancelled";
    default:
      return "gRPC status " + std::to_string(static_cast<int>(status.error_code()));
  }
}

/// One relayed exchange: reads the answer's chunks and pushes them to the relay queue. Keeps
/// itself alive until gRPC reports the call done.
class ExchangeCall final : public grpc::ClientReadReactor<pb::ForwardChunk> {
 public:
  ExchangeCall(std::shared_ptr<RelayQueue> queue, std::shared_ptr<PeerStubs> stubs,
               std::atomic<std::uint64_t>& failures)
      : queue_(std::move(queue)), stubs_(std::move(stubs)), failures_(failures) {}

  void start(std::shared_ptr<ExchangeCall> self) {
    self_ = std::move(self);
    stubs_->forward->async()->Exchange(&context_, &request_, this);
    StartRead(&chunk_);
    StartCall();
  }

  /// Cancels the call unless its answer arrived whole.
  void cancel() {
    if (!complete_.load(std::memory_order_acquire)) context_.TryCancel();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream ended; OnDone says how
    RelayEvent ev;
    ev.kind = chunk_.last() ? RelayEvent::Kind::kEnd : RelayEvent::Kind::kBytes;
    ev.bytes = std::move(*chunk_.mutable_data());
    ev.close = chunk_.close();
    bool last = chunk_.last();
    if (last) {
      got_last_ = true;
      complete_.store(true, std::memory_order_release);
    }
    if (!queue_->push(std::move(ev))) {
      // The client reads slower than the holder answers, or went away: stop the exchange.
      context_.TryCancel();
      return;
    }
    if (!last) StartRead(&chunk_);
  }

  void OnDone(const grpc::Status& status) override {
    if (!got_last_) {
      failures_.fetch_add(1, std::memory_order_relaxed);
      RelayEvent ev;
      ev.kind = RelayEvent::Kind::kFailed;
      ev.error = describe(status);
      ev.unreachable = status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                       status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
      queue_->push(std::move(ev));
    }
    self_.reset();  // may destroy this
  }

  grpc::ClientContext context_;
  pb::ForwardRequest request_;

 private:
  pb::ForwardChunk chunk_;
  std::shared_ptr<RelayQueue> queue_;
  std::shared_ptr<PeerStubs> stubs_;
  std::atomic<std::uint64_t>& failures_;
  bool got_last_ = false;
  std::atomic<bool> complete_{false};
  std::shared_ptr<ExchangeCall> self_;
};

/// Cancels the call when the exchange lets go of it before the answer is complete.
struct RelayHandle {
  std::weak_ptr<ExchangeCall> call;
  ~RelayHandle() {
    if (auto c = call.lock()) c->cancel();
  }
};

}  // namespace

class RemoteSession final : public transport::SessionTarget {
 public:
  RemoteSession(ForwardClient& client, std::string node, std::string address)
      : client_(client), node_(std::move(node)), address_(std::move(address)) {}

  std::shared_ptr<void> relay(const transport::HttpRequest& request, unsigned hops,
                              std::shared_ptr<RelayQueue> queue) override {
    client_.calls_.fetch_add(1, std::memory_order_relaxed);
    auto call = std::make_shared<ExchangeCall>(std::move(queue), client_.channels_.get(address_),
                                               client_.failures_);
    auto& req = call->request_;
    req.set_method(std::string(http::to_string(request.method())));
    req.set_target(std::string(request.target()));
    req.set_version(request.version());
    req.set_keep_alive(request.keep_alive());
    req.set_hops(hops);
    req.set_session_id(std::string(request["Mcp-Session-Id"]));
    req.set_from(client_.config_.self_id);
    request.for_each_field([&req](std::string_view name, std::string_view value) {
      if (hop_by_hop(name)) return;
      auto* h = req.add_headers();
      h->set_name(std::string(name));
      h->set_value(std::string(value));
    });
    req.set_body(request.body());
    call->context_.set_deadline(std::chrono::system_clock::now() + client_.config_.timeout);
    client_.auth_.stamp(call->context_, ForwardClient::kExchangeMethod);
    auto handle = std::make_shared<RelayHandle>();
    handle->call = call;
    call->start(call);
    return handle;
  }

  const std::string& node() const override { return node_; }

 private:
  ForwardClient& client_;
  std::string node_;
  std::string address_;
};

ForwardClient::ForwardClient(PeerChannels& channels, const ClusterAuth& auth,
                             ForwardClientConfig config)
    : channels_(channels), auth_(auth), config_(std::move(config)) {}

std::shared_ptr<transport::SessionTarget> ForwardClient::target(const std::string& node,
                                                                const std::string& address) {
  return std::make_shared<RemoteSession>(*this, node, address);
}

}  // namespace mcpmesh::cluster
