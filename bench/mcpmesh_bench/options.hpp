#pragma once
/// \file
/// mcpmesh-bench's command line: what a run does (BenchOptions) and the parsers of its
/// values (operation mix, source address ranges, durations, the endpoint URL). Every parser
/// refuses what it cannot read with a message naming the flag; nothing here touches a socket.
///
/// Thread-safety: plain values and pure functions.

#include <array>
#include <boost/asio/ip/address.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mcpmesh::bench {

/// What one measured operation is (one entry of --mix).
enum class Op : std::uint8_t {
  kToolsCall,   ///< tools/call --tool with --args on a session
  kInitialize,  ///< initialize + notifications/initialized + DELETE of a throwaway session
  kPing,        ///< ping on a session
  kNotify,      ///< a client notification on a session (202 expected)
};
inline constexpr std::size_t kOpCount = 4;
[[nodiscard]] std::string_view op_name(Op op);

/// Relative weights of the operations; at least one is positive.
struct OpMix {
  std::array<std::uint32_t, kOpCount> weights{};
  [[nodiscard]] std::uint32_t weight(Op op) const { return weights[static_cast<std::size_t>(op)]; }
};

/// Parses `tools_call=90,initialize=5,ping=5,notify=0` (names once each, weights 0..1000000,
/// names left out weigh 0).
[[nodiscard]] std::optional<OpMix> parse_mix(std::string_view spec, std::string& error);

/// Deals operations in the exact proportions of a mix, evenly spread (smooth weighted round
/// robin): with 90/5/5, every 20 operations hold 18, 1 and 1. `offset` starts the sequence
/// further on, so connections dealing the same mix do not all open sessions at once.
class MixDealer {
 public:
  MixDealer(const OpMix& mix, std::size_t offset);
  [[nodiscard]] Op next();

 private:
  OpMix mix_;
  std::array<std::int64_t, kOpCount> current_{};
  std::int64_t total_ = 0;
};

/// Parses local addresses to bind connections to: a comma-separated list of IPv4 or IPv6
/// addresses and IPv4 ranges `127.0.0.2-127.0.0.9` (or `127.0.0.2-9`, the last byte), at most
/// 65,536 in all, in the order given.
[[nodiscard]] std::optional<std::vector<boost::asio::ip::address>> parse_source_addresses(
    std::string_view spec, std::string& error);

/// Parses `250ms`, `10s`, `2m`, `1h`, `500us`, or a plain number of seconds (`1.5`).
[[nodiscard]] std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text);

/// Where the requests go: `http://HOST[:PORT]/PATH[?QUERY]`.
struct Endpoint {
  std::string host;         ///< name or address, without brackets
  std::uint16_t port = 80;  ///< 80 unless given
  std::string target;       ///< path and query, "/" at least
  std::string host_header;  ///< the Host header value (host[:port] as given)
};
[[nodiscard]] std::optional<Endpoint> parse_url(std::string_view url, std::string& error);

enum class Mode : std::uint8_t { kClosedLoop, kOpenLoop, kHold };

struct BenchOptions {
  std::string url;
  Endpoint endpoint;
  std::size_t sessions = 0;  ///< 0 on the command line: one per connection
  std::size_t connections = 8;
  std::size_t threads = 1;
  std::size_t processes = 1;
  std::chrono::nanoseconds duration = std::chrono::seconds(10);
  std::chrono::nanoseconds warmup = std::chrono::seconds(1);
  std::chrono::nanoseconds timeout = std::chrono::seconds(10);
  std::chrono::nanoseconds setup_timeout = std::chrono::seconds(120);
  Mode mode = Mode::kClosedLoop;
  double rate = 0;                 ///< operations per second over all connections (open loop)
  std::uint64_t max_requests = 0;  ///< 0: no cap besides --duration
  OpMix mix;
  std::string mix_spec = "tools_call=100";
  std::string tool = "echo";
  std::string tool_args = R"({"text":"hi"})";
  std::string notify_method = "notifications/roots/list_changed";
  std::string protocol_version = "2025-11-25";
  std::vector<std::string> headers;  ///< extra `Name: value` headers on every request
  std::size_t sse_streams = 0;
  std::vector<boost::asio::ip::address> source_addresses;
  std::string source_spec;
  bool keep_sessions = false;
  bool honour_retry_after = false;
  bool busy_poll = false;  ///< load threads poll without sleeping
  bool quiet = false;      ///< no summary on stderr
};

/// What parsing the command line led to: options to run with, or an exit (help, version,
/// a bad flag) with the text to print.
struct CommandLine {
  std::optional<BenchOptions> options;
  int exit_code = 0;
  std::string message;  ///< stdout for help/version (exit 0), stderr otherwise
};
[[nodiscard]] CommandLine parse_command_line(int argc, const char* const* argv);

/// Part `index` of `total` split into `parts` parts as even as can be (the first ones get one
/// more): how --processes deals sessions, connections, streams and requests.
[[nodiscard]] std::uint64_t even_share(std::uint64_t total, std::size_t parts, std::size_t index);

/// File descriptors one process needs for `connections` request connections and `streams`
/// SSE connections: one each, plus what the process itself holds (stdio, epoll, timers, the
/// control descriptors, a spare).
[[nodiscard]] std::uint64_t descriptors_needed(std::uint64_t connections, std::uint64_t streams,
                                               std::uint64_t threads);

}  // namespace mcpmesh::bench
