#include "bench/mcpmesh_bench/options.hpp"

#include <boost/json/parse.hpp>
#include <boost/program_options.hpp>
#include <boost/url/parse.hpp>
#include <charconv>
#include <cmath>
#include <sstream>

namespace mcpmesh::bench {
namespace {

namespace po = boost::program_options;
namespace ip = boost::asio::ip;

constexpr std::array<std::string_view, kOpCount> kOpNames = {"tools_call", "initialize", "ping",
                                                             "notify"};
constexpr std::uint32_t kMaxWeight = 1'000'000;
constexpr std::size_t kMaxSourceAddresses = 65'536;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

template <typename T>
std::optional<T> parse_unsigned(std::string_view text) {
  T value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

std::optional<double> parse_number(std::string_view text) {
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  if (!std::isfinite(value)) return std::nullopt;
  return value;
}

std::optional<ip::address_v4> parse_v4(std::string_view text) {
  boost::system::error_code ec;
  auto a = ip::make_address_v4(std::string(text), ec);
  if (ec) return std::nullopt;
  return a;
}

}  // namespace

std::string_view op_name(Op op) { return kOpNames[static_cast<std::size_t>(op)]; }

std::optional<OpMix> parse_mix(std::string_view spec, std::string& error) {
  OpMix mix;
  std::array<bool, kOpCount> seen{};
  std::uint64_t total = 0;
  spec = trim(spec);
  if (spec.empty()) {
    error = "--mix: empty (e.g. tools_call=90,ping=10)";
    return std::nullopt;
  }
  while (true) {
    std::size_t comma = spec.find(',');
    std::string_view item = trim(spec.substr(0, comma));
    std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      error = "--mix: '" + std::string(item) + "' is not NAME=WEIGHT";
      return std::nullopt;
    }
    std::string_view name = trim(item.substr(0, eq));
    std::string_view weight_text = trim(item.substr(eq + 1));
    std::size_t index = kOpCount;
    for (std::size_t i = 0; i < kOpCount; ++i) {
      if (kOpNames[i] == name) index = i;
    }
    if (index == kOpCount) {
      error = "--mix: unknown operation '" + std::string(name) +
              "' (tools_call, initialize, ping, notify)";
      return std::nullopt;
    }
    if (seen[index]) {
      error = "--mix: '" + std::string(name) + "' given twice";
      return std::nullopt;
    }
    seen[index] = true;
    auto weight = parse_unsigned<std::uint32_t>(weight_text);
    if (!weight || *weight > kMaxWeight) {
      error = "--mix: weight of '" + std::string(name) + "' must be an integer 0.." +
              std::to_string(kMaxWeight) + ", not '" + std::string(weight_text) + "'";
      return std::nullopt;
    }
    mix.weights[index] = *weight;
    total += *weight;
    if (comma == std::string_view::npos) break;
    spec.remove_prefix(comma + 1);
  }
  if (total == 0) {
    error = "--mix: every weight is 0";
    return std::nullopt;
  }
  return mix;
}

MixDealer::MixDealer(const OpMix& mix, std::size_t offset) : mix_(mix) {
  for (auto w : mix_.weights) total_ += w;
  for (std::size_t i = 0; i < offset % static_cast<std::size_t>(total_); ++i) (void)next();
}

Op MixDealer::next() {
  std::size_t best = 0;
  for (std::size_t i = 0; i < kOpCount; ++i) {
    current_[i] += mix_.weights[i];
    if (current_[i] > current_[best]) best = i;
  }
  current_[best] -= total_;
  return static_cast<Op>(best);
}

std::optional<std::vector<ip::address>> parse_source_addresses(std::string_view spec,
                                                               std::string& error) {
  std::vector<ip::address> out;
  spec = trim(spec);
  if (spec.empty()) {
    error = "--source-addresses: empty";
    return std::nullopt;
  }
  while (true) {
    std::size_t comma = spec.find(',');
    std::string_view item = trim(spec.substr(0, comma));
    std::size_t dash = item.find('-');
    if (dash == std::string_view::npos) {
      boost::system::error_code ec;
      auto a = ip::make_address(std::string(item), ec);
      if (ec) {
        error = "--source-addresses: '" + std::string(item) + "' is not an IP address";
        return std::nullopt;
      }
      out.push_back(a);
    } else {
      std::string_view first_text = trim(item.substr(0, dash));
      std::string_view last_text = trim(item.substr(dash + 1));
      auto first = parse_v4(first_text);
      std::optional<ip::address_v4> last;
      if (auto byte = parse_unsigned<unsigned>(last_text); byte && first) {
        // 127.0.0.2-9: the last byte of the range's end
        if (*byte <= 255) last = ip::address_v4((first->to_uint() & 0xFFFFFF00u) | *byte);
      } else {
        last = parse_v4(last_text);
      }
      if (!first || !last) {
        error = "--source-addresses: '" + std::string(item) +
                "' is not an IPv4 range (A.B.C.D-A.B.C.E or A.B.C.D-E)";
        return std::nullopt;
      }
      if (last->to_uint() < first->to_uint()) {
        error = "--source-addresses: range '" + std::string(item) + "' ends before it starts";
        return std::nullopt;
      }
      if (last->to_uint() - first->to_uint() >= kMaxSourceAddresses) {
        error = "--source-addresses: range '" + std::string(item) + "' is too large";
        return std::nullopt;
      }
      for (std::uint32_t a = first->to_uint();; ++a) {
        out.emplace_back(ip::address_v4(a));
        if (a == last->to_uint() || out.size() > kMaxSourceAddresses) break;
      }
    }
    if (out.size() > kMaxSourceAddresses) {
      error = "--source-addresses: more than " + std::to_string(kMaxSourceAddresses) + " addresses";
      return std::nullopt;
    }
    if (comma == std::string_view::npos) break;
    spec.remove_prefix(comma + 1);
  }
  return out;
}

std::optional<std::chrono::nanoseconds> parse_duration(std::string_view text) {
  text = trim(text);
  struct Unit {
    std::string_view suffix;
    double ns;
  };
  // Longest suffixes first: "ms" and "us" before "s".
  static constexpr Unit kUnits[] = {{"ms", 1e6}, {"us", 1e3}, {"ns", 1.0},
                                    {"s", 1e9},  {"m", 60e9}, {"h", 3600e9}};
  double scale = 1e9;
  for (const auto& u : kUnits) {
    if (text.ends_with(u.suffix)) {
      scale = u.ns;
      text.remove_suffix(u.suffix.size());
      break;
    }
  }
  auto value = parse_number(text);
  if (!value || *value < 0) return std::nullopt;
  double ns = *value * scale;
  if (ns > 1e9 * 86400 * 366) return std::nullopt;  // a year: beyond any run
  return std::chrono::nanoseconds(static_cast<std::int64_t>(std::llround(ns)));
}

std::optional<Endpoint> parse_url(std::string_view url, std::string& error) {
  auto parsed = boost::urls::parse_uri(url);
  if (!parsed) {
    error = "--url: '" + std::string(url) + "' is not a URL (" + parsed.error().message() + ")";
    return std::nullopt;
  }
  const auto& u = *parsed;
  if (u.scheme() != "http") {
    error = "--url: only http:// is supported, not '" + std::string(u.scheme()) + "'";
    return std::nullopt;
  }
  if (u.has_userinfo() || u.has_fragment()) {
    error = "--url: no user info or fragment, please";
    return std::nullopt;
  }
  Endpoint e;
  if (u.host_type() == boost::urls::host_type::ipv6) {
    e.host = u.host_address();
  } else {
    e.host = u.host();
  }
  if (e.host.empty()) {
    error = "--url: no host in '" + std::string(url) + "'";
    return std::nullopt;
  }
  if (u.has_port()) {
    auto port = parse_unsigned<std::uint16_t>(u.port());
    if (!port || *port == 0) {
      error = "--url: bad port '" + std::string(u.port()) + "'";
      return std::nullopt;
    }
    e.port = *port;
  }
  e.target = u.encoded_path().empty() ? "/" : std::string(u.encoded_path());
  if (u.has_query()) e.target += "?" + std::string(u.encoded_query());
  e.host_header = std::string(u.encoded_host_and_port());
  return e;
}

std::uint64_t even_share(std::uint64_t total, std::size_t parts, std::size_t index) {
  return total / parts + (index < total % parts ? 1 : 0);
}

std::uint64_t descriptors_needed(std::uint64_t connections, std::uint64_t streams,
                                 std::uint64_t threads) {
  // stdin/stdout/stderr, the signal and wake-up descriptors and a few spares, and per thread
  // the io_context's epoll, eventfd and timerfd.
  constexpr std::uint64_t kFixed = 16;
  return connections + streams + kFixed + 3 * threads;
}

CommandLine parse_command_line(int argc, const char* const* argv) {
  CommandLine out;
  BenchOptions o;
  std::string sessions, connections = "8", threads = "1", processes = "1", duration = "10s",
                        warmup = "1s", timeout = "10s", setup_timeout = "120s", rate = "0",
                        requests = "0", sse = "0";
  bool hold = false;
  po::options_description desc(
      "mcpmesh-bench: load generator for any Streamable HTTP MCP endpoint (MCP 2025-11-25)\n\n"
      "Usage: mcpmesh-bench --url http://HOST:PORT/PATH [options]\n\n"
      "Prints one JSON object on stdout and a short summary on stderr. Exit codes: 0 the run\n"
      "happened (server errors are counted in the JSON), 1 it could not (no session could be\n"
      "opened, not every session or stream opened, a descriptor shortage), 2 bad flags.\n\n"
      "Options",
      100, 60);
  // clang-format off
  desc.add_options()
      ("help,h", "print this help and exit")
      ("url", po::value(&o.url), "endpoint, http:// only (required)")
      ("sessions", po::value(&sessions),
       "sessions opened with initialize + notifications/initialized before the run and "
       "closed with DELETE after it (default: one per connection)")
      ("connections", po::value(&connections)->default_value(connections),
       "keep-alive connections the requests go over; closed loop: the concurrency")
      ("threads", po::value(&threads)->default_value(threads),
       "I/O threads, one io_context each")
      ("processes", po::value(&processes)->default_value(processes),
       "processes (forked) sharing the sessions, connections, streams and rate; the "
       "results are merged (histograms included). For more descriptors than one process "
       "may open")
      ("duration", po::value(&duration)->default_value(duration),
       "measured time (after --warmup); --hold: how long to hold (250ms, 10s, 2m, 1h)")
      ("warmup", po::value(&warmup)->default_value(warmup),
       "time before the measured part: load sent, nothing recorded")
      ("rate", po::value(&rate)->default_value(rate),
       "open loop: operations per second over all connections, sent on a fixed schedule; "
       "latency counts from the scheduled time. 0 = closed loop")
      ("requests", po::value(&requests)->default_value(requests),
       "closed loop: stop after this many measured operations (0 = --duration only)")
      ("mix", po::value(&o.mix_spec)->default_value(o.mix_spec),
       "operations and weights: tools_call, initialize (a throwaway session: initialize, "
       "notifications/initialized, DELETE), ping, notify (a client notification, 202)")
      ("tool", po::value(&o.tool)->default_value(o.tool), "tool that tools_call calls")
      ("args", po::value(&o.tool_args)->default_value(o.tool_args),
       "its arguments, a JSON object")
      ("notify-method", po::value(&o.notify_method)->default_value(o.notify_method),
       "method of the notify operation")
      ("sse-streams", po::value(&sse)->default_value(sse),
       "GET SSE streams held open through the run, on that many of the sessions (one "
       "connection each); their events, keep-alives and early ends are counted")
      ("hold", po::bool_switch(&hold),
       "open the sessions and streams, print `ready SESSIONS STREAMS` on stderr, hold them "
       "until --duration passes or SIGTERM/SIGINT, then close them (no load)")
      ("source-addresses", po::value(&o.source_spec),
       "local addresses the connections bind to, round robin: 127.0.0.2-127.0.0.9, "
       "127.0.0.2-9 or a list (each address has its own ephemeral ports)")
      ("timeout", po::value(&timeout)->default_value(timeout),
       "deadline of one request (connect, send, whole answer); an SSE answer's stream too")
      ("setup-timeout", po::value(&setup_timeout)->default_value(setup_timeout),
       "deadline for opening all sessions and streams, and for closing them")
      ("keep-sessions", po::bool_switch(&o.keep_sessions),
       "do not DELETE the sessions at the end")
      ("honour-retry-after", po::bool_switch(&o.honour_retry_after),
       "after a 429 or 503 with Retry-After (seconds), that connection waits so long; an "
       "initialize so refused while opening the sessions is sent again after the wait")
      ("busy-poll", po::bool_switch(&o.busy_poll),
       "load threads poll their sockets without ever sleeping (a core each): on loopback the "
       "server then does not pay for waking the generator on every answer, as it would not "
       "for a client on another machine")
      ("protocol-version", po::value(&o.protocol_version)->default_value(o.protocol_version),
       "protocolVersion asked for in initialize")
      ("header", po::value(&o.headers)->composing(),
       "extra request header `Name: value` (repeatable), e.g. Authorization")
      ("quiet", po::bool_switch(&o.quiet), "no summary on stderr");
  // clang-format on
  po::variables_map vm;
  auto usage_error = [&](const std::string& what) {
    out.exit_code = 2;
    out.message = "mcpmesh-bench: " + what + "\n(mcpmesh-bench --help lists the options)";
    return out;
  };
  try {
    po::positional_options_description none;  // a stray word is an error, not ignored
    po::store(po::command_line_parser(argc, argv).options(desc).positional(none).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    return usage_error(e.what());
  }
  if (vm.count("help")) {
    std::ostringstream text;
    text << desc;
    out.message = text.str();
    return out;
  }
  if (o.url.empty()) return usage_error("--url is required");
  std::string error;
  auto endpoint = parse_url(o.url, error);
  if (!endpoint) return usage_error(error);
  o.endpoint = *endpoint;

  auto count = [&](const std::string& flag, const std::string& text, std::size_t min,
                   std::size_t max, std::size_t& into) {
    auto v = parse_unsigned<std::size_t>(text);
    if (!v || *v < min || *v > max) {
      error = "--" + flag + ": must be an integer " + std::to_string(min) + ".." +
              std::to_string(max) + ", not '" + text + "'";
      return false;
    }
    into = *v;
    return true;
  };
  auto span = [&](const std::string& flag, const std::string& text, bool allow_zero,
                  std::chrono::nanoseconds& into) {
    auto v = parse_duration(text);
    if (!v || (!allow_zero && v->count() == 0)) {
      error = "--" + flag + ": '" + text + "' is not a duration (e.g. 500ms, 10s, 2m)";
      return false;
    }
    into = *v;
    return true;
  };
  std::size_t max_requests = 0;
  if (!count("connections", connections, 1, 1'000'000, o.connections) ||
      !count("threads", threads, 1, 256, o.threads) ||
      !count("processes", processes, 1, 256, o.processes) ||
      !count("sse-streams", sse, 0, 10'000'000, o.sse_streams) ||
      !count("requests", requests, 0, SIZE_MAX, max_requests) ||
      !span("duration", duration, false, o.duration) || !span("warmup", warmup, true, o.warmup) ||
      !span("timeout", timeout, false, o.timeout) ||
      !span("setup-timeout", setup_timeout, false, o.setup_timeout)) {
    return usage_error(error);
  }
  o.max_requests = max_requests;
  o.sessions = o.connections;
  if (!sessions.empty() && !count("sessions", sessions, 1, 10'000'000, o.sessions)) {
    return usage_error(error);
  }
  auto r = parse_number(rate);
  if (!r || *r < 0 || *r > 1e9) return usage_error("--rate: '" + rate + "' is not a rate 0..1e9");
  o.rate = *r;
  auto mix = parse_mix(o.mix_spec, error);
  if (!mix) return usage_error(error);
  o.mix = *mix;
  if (!o.source_spec.empty()) {
    auto addrs = parse_source_addresses(o.source_spec, error);
    if (!addrs) return usage_error(error);
    o.source_addresses = std::move(*addrs);
  }
  boost::system::error_code ec;
  auto args = boost::json::parse(o.tool_args, ec);
  if (ec || !args.is_object()) return usage_error("--args: not a JSON object: " + o.tool_args);
  for (const auto& h : o.headers) {
    auto colon = h.find(':');
    if (colon == std::string::npos || colon == 0 || h.find_first_of("\r\n") != std::string::npos) {
      return usage_error("--header: '" + h + "' is not `Name: value`");
    }
  }
  if (o.sse_streams > o.sessions) {
    return usage_error("--sse-streams (" + std::to_string(o.sse_streams) +
                       ") cannot exceed --sessions (" + std::to_string(o.sessions) + ")");
  }
  if (o.processes > o.connections) {
    return usage_error("--processes cannot exceed --connections (each needs one)");
  }
  if (o.processes > o.sessions) {
    return usage_error("--processes cannot exceed --sessions (each needs one)");
  }
  if (hold) {
    if (o.rate > 0 || max_requests > 0) {
      return usage_error("--hold sends no load: --rate and --requests do not apply");
    }
    o.mode = Mode::kHold;
  } else if (o.rate > 0) {
    if (max_requests > 0) return usage_error("--requests is for the closed loop, not --rate");
    o.mode = Mode::kOpenLoop;
  }
  out.options = std::move(o);
  return out;
}

}  // namespace mcpmesh::bench
