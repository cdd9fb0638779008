#pragma once
/// \file
/// A blocking relay-link client (relay_link.hpp) that speaks the wire by hand, for tests and
/// diagnostics: it opens a link with any token (or none), sends any bytes, and reads the
/// holder's frames. Not used by the node.

#include "cluster/forward/relay_link.hpp"
#include "proto/mesh.pb.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>
#include <sys/time.h>

#include <chrono>
#include <optional>
#include <string>

namespace mcpmesh::cluster {

class RelayProbe {
 public:
  /// Connects to `http_address` ("host:port"); reads wait at most `timeout`.
  explicit RelayProbe(const std::string& http_address,
                      std::chrono::milliseconds timeout = std::chrono::seconds(10))
      : socket_(io_) {
    auto colon = http_address.rfind(':');
    asio::ip::tcp::resolver resolver(io_);
    asio::connect(socket_,
                  resolver.resolve(http_address.substr(0, colon), http_address.substr(colon + 1)));
    timeval tv{static_cast<time_t>(timeout.count() / 1000),
               static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
    ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  /// Asks to switch with `token` (empty: no token field); returns the answer's head (status
  /// line and fields). What follows the head is kept for read().
  std::string open(const std::string& token) {
    std::string request = relay_upgrade_request("probe", token);
    if (token.empty()) {
      auto field = request.find(std::string(kRelayAuthField));
      request.erase(field, request.find("\r\n", field) + 2 - field);
    }
    send_raw(request);
    boost::system::error_code ec;
    auto n = asio::read_until(socket_, asio::dynamic_buffer(in_), "\r\n\r\n", ec);
    if (ec) return {};
    std::string head = in_.substr(0, n);
    in_.erase(0, n);
    return head;
  }

  void send_raw(std::string_view bytes) { asio::write(socket_, asio::buffer(bytes)); }

  void send(const ::mcpmesh::v1::RelayBatch& batch) {
    std::string out;
    append_frame(out, batch.SerializeAsString());
    send_raw(out);
  }

  /// The next non-empty frame as an AnswerBatch; nullopt when the link ended (or the read
  /// timed out) first.
  std::optional<::mcpmesh::v1::AnswerBatch> read() {
    for (;;) {
      if (!fill(4)) return std::nullopt;
      std::size_t n = frame_length(in_.data());
      if (!fill(4 + n)) return std::nullopt;
      std::string payload = in_.substr(4, n);
      in_.erase(0, 4 + n);
      if (n == 0) continue;  // heartbeat
      ::mcpmesh::v1::AnswerBatch batch;
      if (!batch.ParseFromString(payload)) return std::nullopt;
      return batch;
    }
  }

  /// Whether the holder closed the link (reads until end of stream or `timeout`).
  bool closed_by_peer() {
    char buf[4096];
    for (;;) {
      boost::system::error_code ec;
      socket_.read_some(asio::buffer(buf), ec);
      if (ec) return ec == asio::error::eof || ec == asio::error::connection_reset;
    }
  }

 private:
  bool fill(std::size_t want) {
    while (in_.size() < want) {
      char buf[16384];
      boost::system::error_code ec;
      auto n = socket_.read_some(asio::buffer(buf), ec);
      if (ec) return false;
      in_.append(buf, n);
    }
    return true;
  }

  asio::io_context io_;
  asio::ip::tcp::socket socket_;
  std::string in_;
};

}  // namespace mcpmesh::cluster
