#include "cluster/forward/forward_service.hpp"

#include "cluster/forward/forward_client.hpp"

#include "mcp/roaming_executor.hpp"

#include <boost/asio/post.hpp>
#include <boost/beast/http/verb.hpp>

#include <deque>
#include <mutex>
#include <unordered_set>

namespace mcpmesh::cluster {

namespace http = boost::beast::http;
namespace pb = ::mcpmesh::v1;

/// One `Forward.Relay` stream: the exchanges one node relays here. Reads batches of requests,
/// starts each exchange, and writes the answers' frames in batches, one write at a time.
/// Finish is called exactly once: when the relaying node has half-closed and every exchange has
/// ended, or when the stream is cancelled and no write is in flight.
class RelayServerStream final : public grpc::ServerBidiReactor<pb::RelayBatch, pb::AnswerBatch> {
 public:
  struct Part {
    pb::AnswerFrame frame;
    std::function<void(bool)> sent;
  };

  /// Shared with every exchange's answer; outlives the reactor.
  struct State {
    std::mutex mu;
    RelayServerStream* stream = nullptr;               // null once done; guarded by mu
    std::deque<Part> queued;                           // guarded by mu
    std::vector<std::function<void(bool)>> in_flight;  // senders of the batch being written
    std::unordered_set<std::uint64_t> live;            // exchanges running; guarded by mu
    std::unordered_set<std::uint64_t> cancelled;       // running, but the relaying node let go
    bool writing = false;
    bool read_done = false;
    bool cancelled_stream = false;
    bool finishing = false;
    bool pump_posted = false;
    std::size_t max_batch_bytes = 0;

    /// Writes soon: on an I/O thread, at the end of its current turn, so that the answers made
    /// in the same turn share one message.
    static void schedule_pump(const std::shared_ptr<State>& state) {
      auto* context = mcp::RoamingExecutor::thread_context();
      if (!context) return state->pump();
      {
        std::lock_guard lock(state->mu);
        if (state->pump_posted) return;
        state->pump_posted = true;
      }
      boost::asio::post(*context, [state] {
        {
          std::lock_guard lock(state->mu);
          state->pump_posted = false;
        }
        state->pump();
      });
    }

    /// Writes what is queued, or finishes the stream when it is over. `mu` not held.
    void pump() {
      RelayServerStream* s = nullptr;
      bool write = false;
      grpc::Status finish;
      {
        std::lock_guard lock(mu);
        if (!stream || writing || finishing) return;
        s = stream;
        if (cancelled_stream) {
          finishing = true;
          finish = grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
        } else if (!queued.empty()) {
          auto& batch = s->writing_;
          batch.Clear();
          std::size_t bytes = 0;
          while (!queued.empty() && (bytes == 0 || bytes < max_batch_bytes)) {
            auto& part = queued.front();
            bytes += part.frame.chunk().data().size() + 16;
            *batch.add_frames() = std::move(part.frame);
            if (part.sent) in_flight.push_back(std::move(part.sent));
            queued.pop_front();
          }
          writing = true;
          write = true;
        } else if (read_done && live.empty()) {
          finishing = true;
          finish = grpc::Status::OK;
        } else {
          return;
        }
      }
      if (write) {
        s->StartWrite(&s->writing_);
      } else {
        s->Finish(finish);
      }
    }
  };

  RelayServerStream(ForwardService& service, const grpc::Status& admitted)
      : service_(service), state_(std::make_shared<State>()) {
    state_->stream = this;
    state_->max_batch_bytes = service.limits_.max_batch_bytes;
    if (!admitted.ok()) {
      {
        std::lock_guard lock(state_->mu);
        state_->finishing = true;
      }
      Finish(admitted);
      return;
    }
    StartRead(&reading_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      {
        std::lock_guard lock(state_->mu);
        state_->read_done = true;
      }
      state_->pump();
      return;
    }
    for (auto& frame : *reading_.mutable_frames()) {
      auto id = frame.exchange();
      if (frame.cancel()) {
        std::lock_guard lock(state_->mu);
        if (state_->live.contains(id)) state_->cancelled.insert(id);
        continue;
      }
      transport::HttpRequest request;
      auto refused = service_.check(frame.request(), request);
      if (!refused) {
        std::lock_guard lock(state_->mu);
        if (state_->live.size() >= service_.limits_.max_exchanges) {
          refused = "too many exchanges on this stream";
        } else if (!state_->live.insert(id).second) {
          refused = "exchange id in use";
        }
      }
      if (refused) {
        service_.refused_.fetch_add(1, std::memory_order_relaxed);
        Part part;
        part.frame.set_exchange(id);
        part.frame.set_refused(*refused);
        std::lock_guard lock(state_->mu);
        state_->queued.push_back(std::move(part));
        continue;
      }
      service_.served_.fetch_add(1, std::memory_order_relaxed);
      service_.http_.serve_forwarded(
          std::move(request), frame.request().hops(),
          std::make_shared<Answer>(state_, id, service_.limits_.max_chunk_bytes));
    }
    state_->pump();
    StartRead(&reading_);
  }

  void OnWriteDone(bool ok) override {
    std::vector<std::function<void(bool)>> sent;
    {
      std::lock_guard lock(state_->mu);
      state_->writing = false;
      if (!ok) state_->cancelled_stream = true;
      sent.swap(state_->in_flight);
    }
    for (auto& cb : sent) cb(ok);
    state_->pump();
  }

  void OnCancel() override {
    {
      std::lock_guard lock(state_->mu);
      state_->cancelled_stream = true;
    }
    state_->pump();  // finishes now unless a write is in flight (its completion will)
  }

  void OnDone() override {
    std::deque<Part> dropped;
    std::vector<std::function<void(bool)>> in_flight;
    {
      std::lock_guard lock(state_->mu);
      state_->stream = nullptr;
      dropped.swap(state_->queued);
      in_flight.swap(state_->in_flight);
    }
    for (auto& cb : in_flight) cb(false);
    for (auto& p : dropped) {
      if (p.sent) p.sent(false);
    }
    delete this;
  }

 private:
  /// What one exchange writes its answer to.
  class Answer final : public transport::ForwardedAnswer {
   public:
    Answer(std::shared_ptr<State> state, std::uint64_t id, std::size_t max_chunk)
        : state_(std::move(state)), id_(id), max_chunk_(max_chunk) {}

    void send(std::string bytes, std::function<void(bool)> sent) override {
      queue(std::move(bytes), false, false, std::move(sent));
    }
    void finish(std::string bytes, bool close) override {
      queue(std::move(bytes), true, close, {});
    }

   private:
    void queue(std::string bytes, bool last, bool close, std::function<void(bool)> sent) {
      bool refused = false;
      {
        std::lock_guard lock(state_->mu);
        bool gone = !state_->stream || state_->cancelled_stream || state_->finishing ||
                    state_->cancelled.contains(id_);
        if (gone) {
          refused = true;
        } else {
          // Large answers go out in parts, each far below the peer's message limit; only the
          // last part carries the sender's callback (and the end of the answer).
          std::size_t offset = 0;
          do {
            std::size_t n = std::min(max_chunk_, bytes.size() - offset);
            Part part;
            part.frame.set_exchange(id_);
            auto* chunk = part.frame.mutable_chunk();
            chunk->set_data(bytes.data() + offset, n);
            offset += n;
            bool final_part = offset >= bytes.size();
            chunk->set_last(last && final_part);
            chunk->set_close(last && final_part && close);
            if (final_part) part.sent = std::move(sent);
            state_->queued.push_back(std::move(part));
          } while (offset < bytes.size());
        }
        if (last) {
          state_->live.erase(id_);
          state_->cancelled.erase(id_);
        }
      }
      if (refused && sent) sent(false);
      State::schedule_pump(state_);
    }

    std::shared_ptr<State> state_;
    std::uint64_t id_;
    std::size_t max_chunk_;
  };

  ForwardService& service_;
  std::shared_ptr<State> state_;
  pb::RelayBatch reading_;
  pb::AnswerBatch writing_;
};

ForwardService::ForwardService(ClusterAuth& auth, transport::HttpServer& http,
                               ForwardServiceLimits limits)
    : auth_(auth), http_(http), limits_(limits) {}

std::optional<std::string> ForwardService::check(const pb::ForwardRequest& request,
                                                 transport::HttpRequest& out) const {
  auto verb = http::string_to_verb(request.method());
  if (verb != http::verb::post && verb != http::verb::get && verb != http::verb::delete_) {
    return "method must be POST, GET or DELETE";
  }
  if (request.version() != 10 && request.version() != 11) return "bad HTTP version";
  if (request.hops() == 0 || request.hops() > limits_.max_hops) return "bad hop count";
  if (request.body().size() > limits_.max_body_bytes) return "body too large";
  if (request.target().empty() || request.target().size() > limits_.max_header_bytes) {
    return "bad target";
  }
  if (request.target().size() + request.fields().size() > limits_.max_header_bytes) {
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
    if (++count > limits_.max_headers) return "too many headers";
    out.add_field(line.substr(0, colon), value);
  }
  out.body() = request.body();
  return std::nullopt;
}

grpc::ServerBidiReactor<pb::RelayBatch, pb::AnswerBatch>* ForwardService::Relay(
    grpc::CallbackServerContext* context) {
  return new RelayServerStream(*this, auth_.check(*context, ForwardClient::kRelayMethod));
}

}  // namespace mcpmesh::cluster
