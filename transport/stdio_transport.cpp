#include "transport/stdio_transport.hpp"

#include "mcp/version.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <unistd.h>

#include <atomic>
#include <deque>
#include <vector>

namespace mcpmesh::transport {

using mcp::ErrorCode;
using mcp::RpcError;

/// Writes messages to stdout, one per line, in order, and keeps the account the reader's
/// backpressure reads: messages and bytes queued, requests handed to the session and not
/// answered yet. Thread-safe `deliver`; everything else runs on the strand.
class StdoutChannel final : public mcp::ClientChannel,
                            public std::enable_shared_from_this<StdoutChannel> {
 public:
  StdoutChannel(asio::any_io_executor strand, int fd, const StdioConfig& config,
                std::size_t max_unanswered, mcp::Metrics& metrics)
      : strand_(strand),
        out_(strand, ::dup(fd)),
        wake_(strand),
        max_messages_(std::max<std::size_t>(config.max_queued_messages, 1)),
        max_bytes_(std::max<std::size_t>(config.max_queued_bytes, 1)),
        max_unanswered_(max_unanswered),
        metrics_(metrics) {}

  void deliver(mcp::Payload message, bool completes_request) override {
    if (completes_request) unanswered_.fetch_sub(1, std::memory_order_relaxed);
    if (!message) {  // a cancelled request: nothing to write, but an answer less to wait for
      if (completes_request && reader_waiting_.load(std::memory_order_relaxed)) {
        asio::post(strand_, [self = shared_from_this()] { self->wake_reader(); });
      }
      return;
    }
    // Notifications beyond the bounds are dropped (counted); answers never are: reading stops
    // while the bounds are reached, so no more requests come in to be answered.
    if (!completes_request && full()) {
      mcp::Metrics::inc(metrics_.stdio_dropped_total);
      spdlog::warn("stdio: output queue full, dropping a notification");
      return;
    }
    enqueue(std::move(message));
  }

  /// An answer the transport itself gives (a line it could not decode): never dropped.
  void send_error(mcp::Payload message) { enqueue(std::move(message)); }

  /// `n` requests were handed to the session: as many answers (or cancellations) will come.
  void expect_answers(std::size_t n) { unanswered_.fetch_add(n, std::memory_order_relaxed); }

  /// Strand: whether stdin should not be read for now.
  [[nodiscard]] bool over_bounds() const {
    return !broken_ && (queued_messages_.load(std::memory_order_relaxed) >= max_messages_ ||
                        queued_bytes_.load(std::memory_order_relaxed) >= max_bytes_ ||
                        unanswered_.load(std::memory_order_relaxed) > max_unanswered_);
  }
  /// Strand: stdout failed; nothing more can be answered.
  [[nodiscard]] bool broken() const { return broken_; }

  /// Strand: waits (counted) until the queue is down to half of its bounds, requests waiting
  /// for an answer within the session's in-flight bound, or stdout failed. Waits as long as
  /// the client does not read: re-checked every second besides the writer's wake-ups.
  asio::awaitable<void> wait_for_room() {
    mcp::Metrics::inc(metrics_.stdio_read_pauses_total);
    reader_waiting_.store(true, std::memory_order_relaxed);
    while (!may_resume()) {
      wake_.expires_after(std::chrono::seconds(1));
      boost::system::error_code ec;
      co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    reader_waiting_.store(false, std::memory_order_relaxed);
  }

  /// Calls `done` on the strand once everything queued so far is written.
  void when_drained(std::function<void()> done) {
    asio::post(strand_, [self = shared_from_this(), done = std::move(done)]() mutable {
      if (!self->writing_) return done();
      self->drained_ = std::move(done);
    });
  }

 private:
  /// Messages written by one system call at most (a gathered write).
  static constexpr std::size_t kMaxBatch = 64;

  [[nodiscard]] bool full() const {
    return queued_messages_.load(std::memory_order_relaxed) >= max_messages_ ||
           queued_bytes_.load(std::memory_order_relaxed) >= max_bytes_;
  }
  [[nodiscard]] bool may_resume() const {
    return broken_ || (queued_messages_.load(std::memory_order_relaxed) <= max_messages_ / 2 &&
                       queued_bytes_.load(std::memory_order_relaxed) <= max_bytes_ / 2 &&
                       unanswered_.load(std::memory_order_relaxed) <= max_unanswered_);
  }
  void wake_reader() {
    if (reader_waiting_.load(std::memory_order_relaxed) && may_resume()) wake_.cancel();
  }

  void enqueue(mcp::Payload message) {
    // Counted before the hop to the strand, so the reader sees it at once.
    account(1, message->size() + 1);
    asio::post(strand_, [self = shared_from_this(), message = std::move(message)]() mutable {
      if (self->broken_) {
        self->account_written(1, message->size() + 1);
        return;
      }
      self->queue_.push_back(std::move(message));
      if (!self->writing_) self->write_next();
      self->wake_reader();
    });
  }

  void account(std::size_t messages, std::size_t bytes) {
    queued_messages_.fetch_add(messages, std::memory_order_relaxed);
    queued_bytes_.fetch_add(bytes, std::memory_order_relaxed);
    mcp::Metrics::inc(metrics_.stdio_queued_messages, messages);
    mcp::Metrics::inc(metrics_.stdio_queued_bytes, bytes);
  }
  void account_written(std::size_t messages, std::size_t bytes) {
    queued_messages_.fetch_sub(messages, std::memory_order_relaxed);
    queued_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
    mcp::Metrics::dec(metrics_.stdio_queued_messages, messages);
    mcp::Metrics::dec(metrics_.stdio_queued_bytes, bytes);
  }

  void write_next() {
    if (queue_.empty()) {
      writing_ = false;
      if (auto done = std::move(drained_)) {
        drained_ = nullptr;
        done();
      }
      return;
    }
    writing_ = true;
    static constexpr char kNewline = '\n';
    while (!queue_.empty() && batch_.size() < kMaxBatch) {
      batch_.push_back(std::move(queue_.front()));
      queue_.pop_front();
      buffers_.push_back(asio::buffer(*batch_.back()));
      buffers_.push_back(asio::buffer(&kNewline, 1));
    }
    asio::async_write(out_, buffers_,
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                        self->on_written(ec);
                      });
  }

  void on_written(boost::system::error_code ec) {
    std::size_t bytes = 0;
    for (auto& m : batch_) bytes += m->size() + 1;
    account_written(batch_.size(), bytes);
    batch_.clear();
    buffers_.clear();
    if (ec) {
      // Nobody reads our answers any more: drop what is queued and let the reader end.
      spdlog::error("stdio: write failed: {}", ec.message());
      broken_ = true;
      bytes = 0;
      for (auto& m : queue_) bytes += m->size() + 1;
      account_written(queue_.size(), bytes);
      queue_.clear();
      writing_ = false;
      wake_.cancel();
      if (auto done = std::move(drained_)) {
        drained_ = nullptr;
        done();
      }
      return;
    }
    wake_reader();
    write_next();
  }

  asio::any_io_executor strand_;
  asio::posix::stream_descriptor out_;
  asio::steady_timer wake_;  // the paused reader waits on it; cancelled to wake it
  const std::size_t max_messages_;
  const std::size_t max_bytes_;
  const std::size_t max_unanswered_;
  mcp::Metrics& metrics_;
  // Any thread.
  std::atomic<std::size_t> queued_messages_{0};
  std::atomic<std::size_t> queued_bytes_{0};
  std::atomic<std::size_t> unanswered_{0};
  std::atomic<bool> reader_waiting_{false};
  // Strand only.
  std::deque<mcp::Payload> queue_;
  std::vector<mcp::Payload> batch_;  // being written
  std::vector<asio::const_buffer> buffers_;
  bool writing_ = false;
  bool broken_ = false;
  std::function<void()> drained_;
};

struct StdioTransport::State {
  State(asio::io_context& io, mcp::Server& s, StdioConfig c)
      : server(s), config(c), strand(asio::make_strand(io)), in(strand, ::dup(c.in_fd)) {}
  mcp::Server& server;
  StdioConfig config;
  asio::any_io_executor strand;
  asio::posix::stream_descriptor in;
  std::shared_ptr<StdoutChannel> out;
  std::shared_ptr<mcp::Session> session;
};

namespace {

void handle_line(StdioTransport::State& st, std::string_view line) {
  if (line.find_first_not_of(" \t\r") == std::string_view::npos) return;
  auto frame = mcp::parse_frame(line, {.max_depth = st.config.max_json_depth});
  if (frame.frame_error) {
    st.out->send_error(mcp::make_error(nullptr, *frame.frame_error));
    return;
  }
  if (frame.is_batch && !mcp::version_allows_batches(st.session->protocol_version())) {
    st.out->send_error(mcp::make_error(nullptr, RpcError(ErrorCode::kInvalidRequest,
                                                         "JSON-RPC batches are not allowed in "
                                                         "this protocol version")));
    return;
  }
  if (frame.is_batch && frame.messages.size() + frame.errors.size() > st.config.max_batch_size) {
    mcp::Metrics::inc(st.server.metrics().batches_rejected_total);
    st.out->send_error(mcp::make_error(
        nullptr,
        RpcError(ErrorCode::kInvalidRequest,
                 "batch longer than " + std::to_string(st.config.max_batch_size) + " messages")));
    return;
  }
  for (auto& [id, error] : frame.errors) st.out->send_error(mcp::make_error(id, error));
  if (frame.messages.empty()) return;
  std::size_t requests = 0;
  for (auto& m : frame.messages) requests += m.is_request() ? 1 : 0;
  st.out->expect_answers(requests);
  st.session->post_frame(std::move(frame.messages), st.out);
}

asio::awaitable<void> read_loop(std::shared_ptr<StdioTransport::State> st,
                                std::function<void()> on_eof) {
  std::string pending;
  std::vector<char> chunk(64 * 1024);
  bool discarding = false;  // inside a line that exceeded the limit
  for (;;) {
    boost::system::error_code ec;
    auto n = co_await st->in.async_read_some(asio::buffer(chunk),
                                             asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    std::string_view data(chunk.data(), n);
    while (!data.empty()) {
      auto nl = data.find('\n');
      auto piece = data.substr(0, nl);
      if (!discarding) {
        if (pending.size() + piece.size() > st->config.max_line_bytes) {
          discarding = true;
          pending.clear();
          st->out->send_error(mcp::make_error(
              nullptr, RpcError(ErrorCode::kInvalidRequest,
                                "message longer than " + std::to_string(st->config.max_line_bytes) +
                                    " bytes")));
        } else {
          pending.append(piece);
        }
      }
      if (nl == std::string_view::npos) break;
      if (!discarding) handle_line(*st, pending);
      pending.clear();
      discarding = false;
      data.remove_prefix(nl + 1);
      // Backpressure, line by line: the rest of the chunk waits with everything behind it.
      if (st->out->over_bounds()) co_await st->out->wait_for_room();
      if (st->out->broken()) break;
    }
    if (st->out->broken()) break;
  }
  if (!pending.empty() && !discarding) handle_line(*st, pending);
  st->server.close_session(st->session->id(), "stdin ended");
  // Answers already produced still go out; handlers still running were cancelled above.
  st->out->when_drained([on_eof = std::move(on_eof)] {
    if (on_eof) on_eof();
  });
}

}  // namespace

StdioTransport::StdioTransport(asio::io_context& io, mcp::Server& server, StdioConfig config)
    : state_(std::make_shared<State>(io, server, config)) {
  // More requests waiting for an answer than the session may have in flight are frames queued
  // on its strand, each answered at once when handled: reading waits for them too.
  state_->out =
      std::make_shared<StdoutChannel>(state_->strand, config.out_fd, config,
                                      server.config().max_inflight_per_session, server.metrics());
  auto made = server.create_session(state_->out);
  if (!made) throw std::runtime_error("stdio: cannot create the session");
  state_->session = *made;
  state_->session->pin();
}

StdioTransport::~StdioTransport() = default;

void StdioTransport::start(std::function<void()> on_eof) {
  asio::co_spawn(state_->strand, read_loop(state_, std::move(on_eof)), asio::detached);
}

}  // namespace mcpmesh::transport
