#include "cluster/forward/relay_link.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <stdexcept>

namespace mcpmesh::cluster {

namespace ssl = asio::ssl;

namespace {

/// A TLS context that presents this node's certificate and verifies the peer's against the
/// cluster CA (the client also checks the server's name, kClusterTlsName).
void configure(ssl::context& ctx, const TlsFiles& files, bool client) {
  auto use = [&files](const std::string& path, auto&& load) {
    boost::system::error_code ec;
    load(path, ec);
    if (ec) throw std::runtime_error("cluster TLS: cannot use " + path + ": " + ec.message());
  };
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                  ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  use(files.cert, [&ctx](const std::string& p, boost::system::error_code& ec) {
    ctx.use_certificate_chain_file(p, ec);
  });
  use(files.key, [&ctx](const std::string& p, boost::system::error_code& ec) {
    ctx.use_private_key_file(p, ssl::context::pem, ec);
  });
  use(files.ca,
      [&ctx](const std::string& p, boost::system::error_code& ec) { ctx.load_verify_file(p, ec); });
  ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  if (client) ctx.set_verify_callback(ssl::host_name_verification(std::string(kClusterTlsName)));
}

}  // namespace

LinkTls::LinkTls(const TlsFiles& files)
    : client(ssl::context::tls_client), server(ssl::context::tls_server) {
  configure(client, files, true);
  configure(server, files, false);
}

namespace {

/// The fields both heads of the switch end with: the protocol and a token.
std::string with_switch_fields(std::string out, std::string_view token) {
  out += "Connection: Upgrade\r\nUpgrade: ";
  out += kRelayProtocol;
  out += "\r\n";
  out += kRelayAuthField;
  out += ": ";
  out += token;
  out += "\r\n\r\n";
  return out;
}

}  // namespace

std::string relay_upgrade_request(std::string_view host, std::string_view token) {
  return with_switch_fields(
      "GET " + std::string(kRelayPath) + " HTTP/1.1\r\nHost: " + std::string(host) + "\r\n", token);
}

std::string relay_upgrade_answer(std::string_view token) {
  return with_switch_fields("HTTP/1.1 101 Switching Protocols\r\n", token);
}

void put_frame_length(char* at, std::uint32_t n) {
  at[0] = static_cast<char>(n >> 24);
  at[1] = static_cast<char>(n >> 16);
  at[2] = static_cast<char>(n >> 8);
  at[3] = static_cast<char>(n);
}

std::size_t frame_length(const char* at) {
  const auto* p = reinterpret_cast<const unsigned char*>(at);
  return (std::size_t{p[0]} << 24) | (std::size_t{p[1]} << 16) | (std::size_t{p[2]} << 8) |
         std::size_t{p[3]};
}

void append_frame(std::string& out, std::string_view payload) {
  char head[4];
  put_frame_length(head, static_cast<std::uint32_t>(payload.size()));
  out.append(head, 4);
  out.append(payload);
}

asio::awaitable<void> LinkStream::handshake(ssl::stream_base::handshake_type type) {
  co_await tls_->async_handshake(type, asio::use_awaitable);
}

asio::awaitable<std::size_t> LinkStream::read_some(asio::mutable_buffer buffer) {
  if (tls_) co_return co_await tls_->async_read_some(buffer, asio::use_awaitable);
  co_return co_await socket_.async_read_some(buffer, asio::use_awaitable);
}

asio::awaitable<void> LinkStream::write(asio::const_buffer buffer) {
  if (tls_) {
    co_await asio::async_write(*tls_, buffer, asio::use_awaitable);
  } else {
    co_await asio::async_write(socket_, buffer, asio::use_awaitable);
  }
}

void LinkStream::close() {
  boost::system::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
}

FrameLink::FrameLink(asio::ip::tcp::socket socket, LinkSettings settings)
    : stream_(std::move(socket)),
      executor_(stream_.socket().get_executor()),
      settings_(settings),
      wake_(executor_),
      watch_(executor_),
      last_read_(Clock::now()),
      last_write_(Clock::now()) {}

bool FrameLink::context_stopped() const {
  auto* io = executor_.target<asio::io_context::executor_type>();
  return io && io->context().stopped();
}

void FrameLink::kick() {
  // On the link's own thread the writer is woken at once (its resume still queues behind the
  // handlers already due, so what they queue joins the frame); from another thread, by a post
  // (none to a stopped context: the node is shutting down, and it would never run).
  if (auto* io = executor_.target<asio::io_context::executor_type>();
      io && io->running_in_this_thread()) {
    wake_.cancel();
    return;
  }
  if (context_stopped() || kick_posted_.exchange(true, std::memory_order_acq_rel)) return;
  asio::post(executor_, [self = shared_from_this()] {
    self->kick_posted_.store(false, std::memory_order_release);
    self->wake_.cancel();
  });
}

void FrameLink::close() {
  if (context_stopped()) return;
  asio::post(executor_, [self = shared_from_this()] { self->end("closed"); });
}

void FrameLink::end(std::string_view why) {
  if (over_.exchange(true, std::memory_order_acq_rel)) return;
  stream_.close();
  wake_.cancel();
  watch_.cancel();
  ended(why);
}

void FrameLink::watch() {
  last_read_ = Clock::now();
  asio::co_spawn(executor_, watchdog(), asio::detached);
}

asio::awaitable<void> FrameLink::watchdog() {
  auto self = shared_from_this();
  while (!over()) {
    watch_.expires_after(settings_.heartbeat);
    boost::system::error_code ec;
    co_await watch_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (over()) co_return;
    if (Clock::now() - last_read_ > settings_.silence) {
      end("no word from the peer for " + std::to_string(settings_.silence.count()) + " ms");
    }
  }
}

asio::awaitable<void> FrameLink::run_frames(std::string already_read) {
  auto self = shared_from_this();
  if (over()) co_return;
  last_read_ = last_write_ = Clock::now();
  asio::co_spawn(executor_, writer(), asio::detached);
  // The reader: whole frames are handed on as soon as they are in the buffer.
  std::string buf = std::move(already_read);
  std::size_t start = 0;
  try {
    for (;;) {
      while (buf.size() - start >= 4) {
        std::size_t n = frame_length(buf.data() + start);
        if (n > settings_.max_frame_bytes) {
          refused_frame();
          end("frame of " + std::to_string(n) + " bytes, over the limit");
          co_return;
        }
        if (buf.size() - start - 4 < n) break;
        if (n > 0 && !on_frame(std::string_view(buf.data() + start + 4, n))) {
          refused_frame();
          end("malformed frame");
          co_return;
        }
        if (over()) co_return;
        start += 4 + n;
      }
      buf.erase(0, start);
      start = 0;
      if (buf.empty() && buf.capacity() > (1u << 20)) std::string().swap(buf);  // after a big one
      std::size_t have = buf.size();
      buf.resize(have + std::max<std::size_t>(64 * 1024, have / 2));
      auto got = co_await stream_.read_some(asio::buffer(buf.data() + have, buf.size() - have));
      buf.resize(have + got);
      last_read_ = Clock::now();
    }
  } catch (const boost::system::system_error& e) {
    end(e.code() == asio::error::eof ? "closed by the peer" : e.code().message());
  }
}

asio::awaitable<void> FrameLink::writer() {
  auto self = shared_from_this();
  std::string out;
  try {
    while (!over()) {
      out.clear();
      out.resize(4);
      bool frame = fill(out);
      if (over()) co_return;
      if (!frame) {
        auto beat = last_write_ + settings_.heartbeat;
        if (Clock::now() < beat) {
          wake_.expires_at(beat);
          boost::system::error_code ec;
          co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
          continue;
        }
        out.clear();
        append_frame(out, {});  // heartbeat
      } else {
        put_frame_length(out.data(), static_cast<std::uint32_t>(out.size() - 4));
      }
      co_await stream_.write(asio::buffer(out));
      last_write_ = Clock::now();
      if (frame) written();
      if (out.capacity() > (1u << 20)) std::string().swap(out);
    }
  } catch (const boost::system::system_error& e) {
    end(e.code().message());
  }
}

}  // namespace mcpmesh::cluster
