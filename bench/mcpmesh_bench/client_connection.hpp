#pragma once
/// \file
/// ClientConnection: one keep-alive HTTP/1.1 connection to the endpoint, optionally bound to a
/// local source address, that carries one exchange at a time (request bytes out, the whole
/// answer in, Beast's parser) or, for a held SSE stream, an answer read piece by piece. It
/// connects lazily, closes itself on any failure or a `Connection: close`, and the next
/// exchange connects again. Every step has a deadline (the stream's expiry: a step past it
/// fails with beast::error::timeout).
///
/// Thread-safety: lives on one io_context, whose single thread makes every call.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <optional>
#include <string_view>

#include "bench/mcpmesh_bench/mcp_messages.hpp"

namespace mcpmesh::bench {

using Clock = std::chrono::steady_clock;

class ClientConnection {
 public:
  static constexpr std::size_t kHeaderLimit = 64 * 1024;
  static constexpr std::size_t kBodyLimit = 64 * 1024 * 1024;
  static constexpr std::chrono::seconds kIdleCheckAfter{1};

  ClientConnection(boost::asio::any_io_executor executor, boost::asio::ip::tcp::endpoint server,
                   std::optional<boost::asio::ip::address> source);

  /// Sends `request` (a whole HTTP/1.1 request) and reads the whole answer into `answer`;
  /// connects first when closed, or when the connection sat idle and the server has closed
  /// it meanwhile (its keep-alive timeout: checked before sending, so no request is ever sent
  /// twice). The error (empty on success) says what failed; `failed_step()` names the step.
  boost::asio::awaitable<boost::system::error_code> exchange(std::string_view request,
                                                             Clock::time_point deadline,
                                                             HttpAnswer& answer);

  /// Sends `request` and reads only the answer's head into `answer` (status, content type;
  /// no body), leaving the body to read_body().
  boost::asio::awaitable<boost::system::error_code> open_stream(std::string_view request,
                                                                Clock::time_point deadline,
                                                                HttpAnswer& answer);
  /// The next piece of the body opened by open_stream(), into `buffer`; 0 bytes and no
  /// error: the body ended. `deadline` bounds this read.
  boost::asio::awaitable<boost::system::error_code> read_body(char* buffer, std::size_t size,
                                                              Clock::time_point deadline,
                                                              std::size_t& got);

  /// Closes the socket; an operation in flight completes with operation_aborted.
  void close();
  [[nodiscard]] bool is_open() const { return open_; }
  [[nodiscard]] std::string_view failed_step() const { return failed_step_; }
  /// Connections established, and those of them made because the server had closed an idle
  /// one, so far.
  [[nodiscard]] std::uint64_t connects() const { return connects_; }
  [[nodiscard]] std::uint64_t idle_reconnects() const { return idle_reconnects_; }

 private:
  boost::asio::awaitable<boost::system::error_code> connect(Clock::time_point deadline);
  bool closed_while_idle();
  boost::system::error_code fail(boost::system::error_code ec, const char* step);
  static void take_head(const boost::beast::http::fields& head, unsigned status,
                        HttpAnswer& answer);

  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  boost::asio::ip::tcp::endpoint server_;
  std::optional<boost::asio::ip::address> source_;
  std::optional<boost::beast::http::response_parser<boost::beast::http::string_body>> parser_;
  std::optional<boost::beast::http::response_parser<boost::beast::http::buffer_body>>
      stream_parser_;
  const char* failed_step_ = "";
  std::uint64_t connects_ = 0;
  std::uint64_t idle_reconnects_ = 0;
  std::uint64_t answers_on_socket_ = 0;
  Clock::time_point last_answer_{};
  bool open_ = false;
};

}  // namespace mcpmesh::bench
