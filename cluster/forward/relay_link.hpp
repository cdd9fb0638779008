#pragma once
/// \file
/// The relay link: the one connection that carries every HTTP exchange a node relays to one
/// holder (forward_client.hpp) and the answers back (forward_service.hpp).
///
/// Opening. The relaying node connects to the holder's HTTP port (the address it advertises)
/// and asks to switch protocols:
///
///   GET /cluster/relay HTTP/1.1
///   Connection: Upgrade
///   Upgrade: mcpmesh-relay/1
///   X-Mcpmesh-Auth: <call token for "/mcpmesh.v1.Forward/Relay">
///
/// The holder checks the token (cluster/auth.hpp: HMAC of the cluster secret, once-only, inside
/// the clock-skew window) and answers `101 Switching Protocols` with a token of its own for
/// "/mcpmesh.v1.Forward/Relay/accept/" + the caller's token, which the caller checks: each side
/// knows the other holds the secret, and an old 101 cannot be replayed. Anything else is
/// refused (401) and counted. With cluster TLS a TLS handshake follows at once, with the
/// cluster certificates and the same checks as the gRPC port (both sides verified against the
/// cluster CA, the server by the name kClusterTlsName).
///
/// Frames. Then each side sends frames: a 4-byte big-endian length and that many bytes of one
/// protobuf message (proto/mesh.proto: RelayBatch from the relaying node, AnswerBatch from the
/// holder). An empty frame is a heartbeat, sent after `heartbeat` without any other write; a
/// side that hears nothing for `silence` (the peer stopped, paused or vanished) closes the link,
/// and so does a frame longer than `max_frame_bytes` or one that does not parse.
///
/// Threading. A link lives on one I/O thread (the io_context of its socket): its reader, its
/// writer and its watchdog run there, so a relayed exchange costs no wake-up of another thread
/// beyond the one of the socket it came from. Other threads queue frames under the subclass's
/// lock and `kick` the writer, which takes everything queued at the end of the current turn:
/// exchanges made in the same turn share one frame.
///
/// Why not a gRPC stream: gRPC 1.51's callback API runs every reaction on its own threads, so
/// a relayed exchange crossed threads about eight times on each node (docs/CLUSTER.md A9).

#include "cluster/auth.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace mcpmesh::cluster {

namespace asio = boost::asio;

/// Path and protocol of the switch, and the methods the two tokens are made for.
inline constexpr std::string_view kRelayPath = "/cluster/relay";
inline constexpr std::string_view kRelayProtocol = "mcpmesh-relay/1";
inline constexpr std::string_view kRelayMethod = "/mcpmesh.v1.Forward/Relay";
/// The holder's token answers the caller's: made for this method followed by the caller's token.
inline constexpr std::string_view kRelayAcceptMethod = "/mcpmesh.v1.Forward/Relay/accept/";
/// Header field of both tokens.
inline constexpr std::string_view kRelayAuthField = "X-Mcpmesh-Auth";

struct LinkSettings {
  /// An empty frame goes out after this long without a write.
  std::chrono::milliseconds heartbeat{1000};
  /// Nothing heard for this long (opening included): the link is dead.
  std::chrono::milliseconds silence{5000};
  /// Longest frame accepted.
  std::size_t max_frame_bytes = 8 * 1024 * 1024;
};

/// The TLS contexts of relay links, from the cluster's certificate files (nullopt: plain TCP).
/// Throws std::runtime_error naming the file that cannot be used (start-up).
struct LinkTls {
  explicit LinkTls(const TlsFiles& files);
  asio::ssl::context client;
  asio::ssl::context server;
};

/// The request that opens a link to `host` (the holder's advertised HTTP address).
[[nodiscard]] std::string relay_upgrade_request(std::string_view host, std::string_view token);
/// The holder's answer that accepts it, with the holder's token.
[[nodiscard]] std::string relay_upgrade_answer(std::string_view token);
/// Appends a frame carrying `payload` (its length, then the bytes).
void append_frame(std::string& out, std::string_view payload);
/// A frame's length field: 4 bytes, big-endian, at `at`.
void put_frame_length(char* at, std::uint32_t n);
[[nodiscard]] std::size_t frame_length(const char* at);

/// A link's byte stream: TCP, or TLS over it.
class LinkStream {
 public:
  explicit LinkStream(asio::ip::tcp::socket socket) : socket_(std::move(socket)) {}
  LinkStream(const LinkStream&) = delete;
  LinkStream& operator=(const LinkStream&) = delete;

  [[nodiscard]] asio::ip::tcp::socket& socket() { return socket_; }
  /// From now on, TLS with `context` (the handshake still to be made).
  void use_tls(asio::ssl::context& context) { tls_.emplace(socket_, context); }
  asio::awaitable<void> handshake(asio::ssl::stream_base::handshake_type type);
  asio::awaitable<std::size_t> read_some(asio::mutable_buffer buffer);
  asio::awaitable<void> write(asio::const_buffer buffer);
  void close();

 private:
  asio::ip::tcp::socket socket_;
  std::optional<asio::ssl::stream<asio::ip::tcp::socket&>> tls_;
};

/// Frames both ways on one LinkStream: the reader, the writer (with heartbeats) and the
/// watchdog. Subclasses say what to send and what to do with what arrives.
class FrameLink : public std::enable_shared_from_this<FrameLink> {
 public:
  virtual ~FrameLink() = default;

  /// Any thread: the writer looks at what is queued at the end of the link thread's turn.
  void kick();
  /// Any thread: ends the link (ended() follows on the link thread).
  void close();
  /// Any thread: whether the link has ended.
  [[nodiscard]] bool over() const { return over_.load(std::memory_order_acquire); }

 protected:
  FrameLink(asio::ip::tcp::socket socket, LinkSettings settings);

  /// Link thread: starts the watchdog (the opening counts against `silence` too).
  void watch();
  /// Link thread: runs the frames until the link ends; `already_read`: bytes read past the
  /// opening.
  asio::awaitable<void> run_frames(std::string already_read);
  /// Link thread: ends the link for `why` (once).
  void end(std::string_view why);

  /// Link thread: appends the payload of the next frame to `out` (under the subclass's lock);
  /// false when nothing is queued.
  virtual bool fill(std::string& out) = 0;
  /// Link thread: the frame of the last fill() went out.
  virtual void written() = 0;
  /// Link thread: a frame arrived; false when it is malformed (the link ends).
  virtual bool on_frame(std::string_view payload) = 0;
  /// Link thread, once: the link is over (`why` for logs and the exchanges that fail).
  virtual void ended(std::string_view why) = 0;
  /// Link thread: the peer sent a frame over the limit or one on_frame() refused (the link
  /// ends next).
  virtual void refused_frame() {}

  using Clock = std::chrono::steady_clock;
  LinkStream stream_;
  asio::any_io_executor executor_;
  LinkSettings settings_;

 private:
  asio::awaitable<void> writer();
  asio::awaitable<void> watchdog();
  /// The link's io_context was stopped (shutting down): posts would never run.
  [[nodiscard]] bool context_stopped() const;

  asio::steady_timer wake_;
  asio::steady_timer watch_;
  Clock::time_point last_read_;
  Clock::time_point last_write_;
  std::atomic<bool> kick_posted_{false};
  std::atomic<bool> over_{false};
};

}  // namespace mcpmesh::cluster
