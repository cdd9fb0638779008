#include "cluster/forward/forward_service.hpp"

#include "cluster/forward/forward_client.hpp"

#include <boost/beast/http/verb.hpp>

#include <deque>
#include <mutex>

namespace mcpmesh::cluster {

namespace {

namespace http = boost::beast::http;
namespace pb = ::mcpmesh::v1;

/// The writer of one relayed answer. The exchange (on an I/O thread) queues parts; the reactor
/// writes them one at a time. Finish is called exactly once: after the last part is written, or
/// when the caller cancelled and no write is outstanding.
class AnswerWriter final : public grpc::ServerWriteReactor<pb::ForwardChunk> {
 public:
  struct Part {
    pb::ForwardChunk chunk;
    std::function<void(bool)> sent;
  };

  /// State shared with the exchange's ForwardedAnswer; outlives the reactor.
  struct State {
    std::mutex mu;
    AnswerWriter* writer = nullptr;  // null once the call is done; guarded by mu
    std::deque<Part> queued;         // guarded by mu
    bool writing = false;            // a write (or WriteAndFinish) is outstanding
    bool cancelled = false;
    bool finishing = false;  // Finish or WriteAndFinish was called

    /// Starts the next write if none is outstanding. Called with `mu` not held.
    void pump() {
      AnswerWriter* w = nullptr;
      Part* part = nullptr;
      bool finish_cancelled = false;
      {
        std::lock_guard lock(mu);
        if (!writer || writing || finishing) return;
        if (cancelled) {
          finishing = true;
          finish_cancelled = true;
          w = writer;
        } else if (!queued.empty()) {
          writing = true;
          w = writer;
          w->current_ = std::move(queued.front());
          queued.pop_front();
          part = &w->current_;
          if (part->chunk.last()) finishing = true;
        } else {
          return;
        }
      }
      if (finish_cancelled) {
        w->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the caller"));
      } else if (part->chunk.last()) {
        w->StartWriteAndFinish(&part->chunk, grpc::WriteOptions(), grpc::Status::OK);
      } else {
        w->StartWrite(&part->chunk);
      }
    }

    /// Every queued part's sender learns it will never leave.
    void fail_queued() {
      std::deque<Part> dropped;
      {
        std::lock_guard lock(mu);
        dropped.swap(queued);
      }
      for (auto& p : dropped) {
        if (p.sent) p.sent(false);
      }
    }
  };

  explicit AnswerWriter(std::shared_ptr<State> state) : state_(std::move(state)) {
    state_->writer = this;
  }

  void OnWriteDone(bool ok) override {
    auto sent = std::move(current_.sent);
    {
      std::lock_guard lock(state_->mu);
      state_->writing = false;
      if (!ok) state_->cancelled = true;
    }
    if (sent) sent(ok);
    state_->pump();
  }

  void OnCancel() override {
    {
      std::lock_guard lock(state_->mu);
      state_->cancelled = true;
    }
    state_->pump();  // finishes now unless a write is outstanding (its completion will)
  }

  void OnDone() override {
    {
      std::lock_guard lock(state_->mu);
      state_->writer = nullptr;
    }
    if (current_.sent) current_.sent(false);
    state_->fail_queued();
    delete this;
  }

 private:
  std::shared_ptr<State> state_;
  Part current_;
};

/// What the HTTP exchange writes its answer to.
class RelayedAnswer final : public transport::ForwardedAnswer {
 public:
  RelayedAnswer(std::shared_ptr<AnswerWriter::State> state, std::size_t max_chunk)
      : state_(std::move(state)), max_chunk_(max_chunk) {}

  void send(std::string bytes, std::function<void(bool)> sent) override {
    queue(std::move(bytes), false, false, std::move(sent));
  }

  void finish(std::string bytes, bool close) override { queue(std::move(bytes), true, close, {}); }

 private:
  void queue(std::string bytes, bool last, bool close, std::function<void(bool)> sent) {
    bool refused = false;
    {
      std::lock_guard lock(state_->mu);
      if (!state_->writer || state_->cancelled || state_->finishing) {
        refused = true;
      } else {
        // Large answers go out in parts, each far below the peer's message limit; only the
        // last part carries the sender's callback (and the end of the answer).
        std::size_t offset = 0;
        do {
          std::size_t n = std::min(max_chunk_, bytes.size() - offset);
          AnswerWriter::Part part;
          part.chunk.set_data(bytes.substr(offset, n));
          offset += n;
          bool final_part = offset >= bytes.size();
          part.chunk.set_last(last && final_part);
          part.chunk.set_close(last && final_part && close);
          if (final_part) part.sent = std::move(sent);
          state_->queued.push_back(std::move(part));
        } while (offset < bytes.size());
      }
    }
    if (refused) {
      if (sent) sent(false);
      return;
    }
    state_->pump();
  }

  std::shared_ptr<AnswerWriter::State> state_;
  std::size_t max_chunk_;
};

class Refusal final : public grpc::ServerWriteReactor<pb::ForwardChunk> {
 public:
  explicit Refusal(grpc::Status status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

ForwardService::ForwardService(ClusterAuth& auth, transport::HttpServer& http,
                               ForwardServiceLimits limits)
    : auth_(auth), http_(http), limits_(limits) {}

grpc::ServerWriteReactor<pb::ForwardChunk>* ForwardService::Exchange(
    grpc::CallbackServerContext* context, const pb::ForwardRequest* request) {
  if (auto status = auth_.check(*context, ForwardClient::kExchangeMethod); !status.ok()) {
    return new Refusal(status);
  }
  auto refuse = [this](std::string why) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    return new Refusal(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::move(why)));
  };
  auto verb = http::string_to_verb(request->method());
  if (verb != http::verb::post && verb != http::verb::get && verb != http::verb::delete_) {
    return refuse("method must be POST, GET or DELETE");
  }
  if (request->version() != 10 && request->version() != 11) return refuse("bad HTTP version");
  if (request->hops() == 0 || request->hops() > limits_.max_hops) return refuse("bad hop count");
  if (request->body().size() > limits_.max_body_bytes) return refuse("body too large");
  if (request->target().empty() || request->target().size() > limits_.max_header_bytes) {
    return refuse("bad target");
  }
  if (request->headers_size() > static_cast<int>(limits_.max_headers)) {
    return refuse("too many headers");
  }
  std::size_t header_bytes = request->target().size();
  for (const auto& h : request->headers()) header_bytes += h.name().size() + h.value().size();
  if (header_bytes > limits_.max_header_bytes) return refuse("headers too large");
  transport::HttpRequest http_request;
  http_request.assign(verb, request->target(), request->version(), request->keep_alive());
  for (const auto& h : request->headers()) {
    if (h.name().empty()) return refuse("empty header name");
    http_request.add_field(h.name(), h.value());
  }
  http_request.body() = request->body();
  served_.fetch_add(1, std::memory_order_relaxed);
  auto state = std::make_shared<AnswerWriter::State>();
  auto* writer = new AnswerWriter(state);
  http_.serve_forwarded(std::move(http_request), request->hops(),
                        std::make_shared<RelayedAnswer>(state, limits_.max_chunk_bytes));
  return writer;
}

}  // namespace mcpmesh::cluster
