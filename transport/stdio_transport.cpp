#include "transport/stdio_transport.hpp"

#include "mcp/version.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>

#include <unistd.h>

#include <deque>

namespace mcpmesh::transport {

using mcp::ErrorCode;
using mcp::RpcError;

/// Writes messages to stdout, one per line, in order. Thread-safe `deliver`.
class StdoutChannel final : public mcp::ClientChannel,
                            public std::enable_shared_from_this<StdoutChannel> {
 public:
  StdoutChannel(asio::any_io_executor strand, int fd, std::size_t bound, mcp::Metrics& metrics)
      : strand_(strand), out_(strand, ::dup(fd)), bound_(bound), metrics_(metrics) {}

  void deliver(mcp::Payload message, bool completes_request) override {
    if (!message) return;
    asio::post(strand_, [self = shared_from_this(), message = std::move(message),
                         completes_request]() mutable {
      // Notifications beyond the bound are dropped (counted); answers never are: they are
      // bounded by the session's max in-flight requests, and a client waits for each.
      if (!completes_request && self->queue_.size() >= self->bound_) {
        mcp::Metrics::inc(self->metrics_.stdio_dropped_total);
        spdlog::warn("stdio: output queue full, dropping a notification");
        return;
      }
      self->queue_.push_back(std::move(message));
      if (!self->writing_) self->write_next();
    });
  }

  /// Calls `done` on the strand once everything queued so far is written.
  void when_drained(std::function<void()> done) {
    asio::post(strand_, [self = shared_from_this(), done = std::move(done)]() mutable {
      if (!self->writing_) return done();
      self->drained_ = std::move(done);
    });
  }

 private:
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
    current_ = *queue_.front();
    current_ += '\n';
    queue_.pop_front();
    asio::async_write(out_, asio::buffer(current_),
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                        if (ec) {
                          spdlog::error("stdio: write failed: {}", ec.message());
                          self->writing_ = false;
                          if (auto done = std::move(self->drained_)) done();
                          return;
                        }
                        self->write_next();
                      });
  }

  asio::any_io_executor strand_;
  asio::posix::stream_descriptor out_;
  std::size_t bound_;
  mcp::Metrics& metrics_;
  std::deque<mcp::Payload> queue_;
  std::string current_;
  bool writing_ = false;
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
    st.out->deliver(mcp::make_error(nullptr, *frame.frame_error), true);
    return;
  }
  if (frame.is_batch && !mcp::version_allows_batches(st.session->protocol_version())) {
    st.out->deliver(mcp::make_error(nullptr, RpcError(ErrorCode::kInvalidRequest,
                                                      "JSON-RPC batches are not allowed in "
                                                      "this protocol version")),
                    true);
    return;
  }
  for (auto& [id, error] : frame.errors) st.out->deliver(mcp::make_error(id, error), true);
  if (!frame.messages.empty()) st.session->post_frame(std::move(frame.messages), st.out);
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
          st->out->deliver(
              mcp::make_error(nullptr,
                              RpcError(ErrorCode::kInvalidRequest,
                                       "message longer than " +
                                           std::to_string(st->config.max_line_bytes) + " bytes")),
              true);
        } else {
          pending.append(piece);
        }
      }
      if (nl == std::string_view::npos) break;
      if (!discarding) handle_line(*st, pending);
      pending.clear();
      discarding = false;
      data.remove_prefix(nl + 1);
    }
  }
  if (!pending.empty() && !discarding) handle_line(*st, pending);
  st->server.close_session(st->session->id());
  // Answers already produced still go out; handlers still running were cancelled above.
  st->out->when_drained([on_eof = std::move(on_eof)] {
    if (on_eof) on_eof();
  });
}

}  // namespace

StdioTransport::StdioTransport(asio::io_context& io, mcp::Server& server, StdioConfig config)
    : state_(std::make_shared<State>(io, server, config)) {
  state_->out = std::make_shared<StdoutChannel>(state_->strand, config.out_fd,
                                                config.max_queued_messages, server.metrics());
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
