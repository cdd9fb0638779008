#include "bench/mcpmesh_bench/client_connection.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/read.hpp>
#include <cerrno>
#include <charconv>

namespace mcpmesh::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif
// Bound to a source address, a socket takes its port at connect(), unique per (source,
// destination) pair, instead of at bind(), where it would be unique per source address alone.
using BindAddressNoPort = asio::detail::socket_option::boolean<IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT>;

}  // namespace

ClientConnection::ClientConnection(asio::any_io_executor executor, asio::ip::tcp::endpoint server,
                                   std::optional<asio::ip::address> source)
    : stream_(std::move(executor)), server_(server), source_(source) {}

error_code ClientConnection::fail(error_code ec, const char* step) {
  failed_step_ = step;
  close();
  return ec;
}

void ClientConnection::close() {
  if (!open_) return;
  open_ = false;
  error_code ignored;
  stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  stream_.close();
  buffer_.clear();
}

asio::awaitable<error_code> ClientConnection::connect(Clock::time_point deadline) {
  error_code ec;
  auto& socket = stream_.socket();
  socket.open(server_.protocol(), ec);
  if (ec) co_return fail(ec, "socket");
  open_ = true;
  if (source_) {
    if (source_->is_v4()) socket.set_option(BindAddressNoPort(true), ec);
    if (!ec) socket.bind(asio::ip::tcp::endpoint(*source_, 0), ec);
    if (ec) co_return fail(ec, "bind");
  }
  stream_.expires_at(deadline);
  auto [cec] = co_await stream_.async_connect(server_, kAwait);
  if (cec) co_return fail(cec, "connect");
  socket.set_option(asio::ip::tcp::no_delay(true), ec);
  ++connects_;
  answers_on_socket_ = 0;
  co_return error_code{};
}

void ClientConnection::take_head(const http::fields& head, unsigned status, HttpAnswer& answer) {
  answer.status = status;
  answer.content_type = std::string(head[http::field::content_type]);
  answer.event_stream = beast::iequals(
      std::string_view(answer.content_type).substr(0, std::string_view("text/event-stream").size()),
      "text/event-stream");
  answer.session_id = std::string(head["Mcp-Session-Id"]);
  auto retry = head[http::field::retry_after];
  if (!retry.empty()) {
    std::uint32_t seconds = 0;
    auto [end, ec] = std::from_chars(retry.data(), retry.data() + retry.size(), seconds);
    if (ec == std::errc() && end == retry.data() + retry.size()) answer.retry_after_s = seconds;
  }
}

bool ClientConnection::closed_while_idle() {
  // Only a connection idle for a while is checked: under load none is, and the check costs a
  // system call.
  if (answers_on_socket_ == 0 || Clock::now() - last_answer_ < kIdleCheckAfter) return false;
  char byte = 0;
  ssize_t n = ::recv(stream_.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  // Alive and quiet: nothing to read. Anything else (the server's FIN, a reset, bytes nobody
  // asked for) means this connection cannot carry the next request.
  return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

asio::awaitable<error_code> ClientConnection::exchange(std::string_view request,
                                                       Clock::time_point deadline,
                                                       HttpAnswer& answer) {
  answer.clear();
  failed_step_ = "";
  if (open_ && closed_while_idle()) {
    close();
    ++idle_reconnects_;
  }
  if (!open_) {
    if (auto ec = co_await connect(deadline)) co_return ec;
  }
  stream_.expires_at(deadline);
  auto [wec, written] = co_await asio::async_write(stream_, asio::buffer(request), kAwait);
  if (wec) co_return fail(wec, "send");
  parser_.emplace();
  parser_->header_limit(kHeaderLimit);
  parser_->body_limit(kBodyLimit);
  auto [rec, read] = co_await http::async_read(stream_, buffer_, *parser_, kAwait);
  if (rec) co_return fail(rec, "receive");
  auto& res = parser_->get();
  take_head(res.base(), res.result_int(), answer);
  answer.body = std::move(res.body());
  ++answers_on_socket_;
  last_answer_ = Clock::now();
  if (!parser_->keep_alive()) close();
  co_return error_code{};
}

asio::awaitable<error_code> ClientConnection::open_stream(std::string_view request,
                                                          Clock::time_point deadline,
                                                          HttpAnswer& answer) {
  answer.clear();
  failed_step_ = "";
  if (!open_) {
    if (auto ec = co_await connect(deadline)) co_return ec;
  }
  stream_.expires_at(deadline);
  auto [wec, written] = co_await asio::async_write(stream_, asio::buffer(request), kAwait);
  if (wec) co_return fail(wec, "send");
  stream_parser_.emplace();
  stream_parser_->header_limit(kHeaderLimit);
  stream_parser_->body_limit(boost::none);  // a held stream has no end we could foresee
  auto [rec, read] = co_await http::async_read_header(stream_, buffer_, *stream_parser_, kAwait);
  if (rec) co_return fail(rec, "receive");
  const auto& res = stream_parser_->get();
  take_head(res.base(), res.result_int(), answer);
  co_return error_code{};
}

asio::awaitable<error_code> ClientConnection::read_body(char* buffer, std::size_t size,
                                                        Clock::time_point deadline,
                                                        std::size_t& got) {
  got = 0;
  if (!stream_parser_ || !open_) co_return asio::error::not_connected;
  stream_.expires_at(deadline);
  // A read may parse only framing (a chunk header) and yield no body byte: read on until a
  // byte, the end of the body or an error (each read waits for the socket, within deadline).
  while (got == 0 && !stream_parser_->is_done()) {
    auto& body = stream_parser_->get().body();
    body.data = buffer;
    body.size = size;
    auto [ec, read] = co_await http::async_read_some(stream_, buffer_, *stream_parser_, kAwait);
    if (ec == http::error::need_buffer) ec = {};
    got = size - body.size;
    if (ec && got == 0) co_return fail(ec, "receive");
    // With bytes and an error: hand the bytes out; the error comes again on the next read.
  }
  co_return error_code{};
}

}  // namespace mcpmesh::bench
