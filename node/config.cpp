#include "node/config.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/program_options.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <array>
#include <fstream>
#include <iostream>

namespace mcpmesh::node {

namespace po = boost::program_options;

std::pair<std::string, std::uint16_t> split_host_port(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size()) {
    throw std::runtime_error("expected HOST:PORT, got '" + text + "'");
  }
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  unsigned long port = 0;
  try {
    std::size_t used = 0;
    port = std::stoul(text.substr(colon + 1), &used);
    if (used != text.size() - colon - 1) throw std::invalid_argument("trailing");
  } catch (const std::exception&) {
    throw std::runtime_error("bad port in '" + text + "'");
  }
  if (port > 65535) throw std::runtime_error("port out of range in '" + text + "'");
  return {host.empty() ? "127.0.0.1" : host, static_cast<std::uint16_t>(port)};
}

std::string resolve_listen_host(const std::string& host, std::string_view flag) {
  boost::system::error_code ec;
  auto numeric = boost::asio::ip::make_address(host, ec);
  if (!ec) return numeric.to_string();
  boost::asio::io_context io;
  boost::asio::ip::tcp::resolver resolver(io);
  auto found = resolver.resolve(host, "", boost::asio::ip::resolver_base::passive, ec);
  if (ec || found.empty()) {
    throw std::runtime_error(std::string(flag) + ": cannot resolve '" + host +
                             "': " + (ec ? ec.message() : std::string("no address")));
  }
  // IPv4 first: "localhost" is 127.0.0.1 to most clients.
  for (const auto& entry : found) {
    if (entry.endpoint().address().is_v4()) return entry.endpoint().address().to_string();
  }
  return found.begin()->endpoint().address().to_string();
}

namespace {
std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    auto comma = s.find(',', start);
    auto item = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!item.empty()) out.push_back(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}
}  // namespace

std::optional<NodeConfig> parse_config(int argc, char** argv) {
  NodeConfig c;
  auto& s = c.server;
  auto& h = c.http_config;
  auto& a = h.admission;
  std::string config_file, allowed_origins, allowed_hosts, seeds, trusted_proxies;
  long shed_lag_ms = a.shed_lag.count(), linger_ms = h.linger_timeout.count();
  long overload_batch_us = c.overload_batch.count();
  std::uint64_t memory_limit_mb = 0;
  std::size_t max_body = h.max_body_bytes, max_header = h.max_header_bytes,
              json_depth = h.max_json_depth;
  long read_ms = h.read_timeout.count(), idle_ms = h.idle_timeout.count(),
       write_ms = h.write_timeout.count(), keepalive_ms = h.sse_keepalive.count(),
       retry_ms = h.sse_retry.count(), client_timeout_ms = s.client_request_timeout.count(),
       session_idle_s = s.session_idle_timeout.count(), init_ms = s.init_timeout.count(),
       drain_ms = c.drain_timeout.count(), forward_ms = c.forward_timeout.count(),
       relay_silence_ms = c.relay_silence.count();

  po::options_description general("General");
  general.add_options()("help,h", "print this help and exit")("version",
                                                              "print the version and exit")(
      "config", po::value(&config_file),
      "read options from FILE (lines `key = value`, keys "
      "are the long option names without --); flags on the command line win")(
      "app", po::value(&c.app)->default_value(c.app), "built-in app to serve: demo | conformance")(
      "node-id", po::value(&s.node_id)->default_value(s.node_id),
      "this node's id; prefixes every session id (visible ASCII, no '.')")(
      "http", po::value<std::string>(),
      "serve Streamable HTTP on HOST:PORT (port 0 = any); "
      "default 127.0.0.1:8080 unless --stdio")(
      "stdio", po::bool_switch(&c.stdio), "serve one session on stdin/stdout (logs go to stderr)")(
      "legacy-sse-path", po::value(&h.legacy_sse_path)->default_value(h.legacy_sse_path),
      "the deprecated HTTP+SSE transport of 2024-11-05: GET here opens a session's stream, whose "
      "first event names where to POST (--legacy-messages-path); empty = not served")(
      "legacy-messages-path",
      po::value(&h.legacy_messages_path)->default_value(h.legacy_messages_path),
      "where clients of the HTTP+SSE transport POST their messages (?sessionId=…)")(
      "threads", po::value(&c.threads)->default_value(0), "I/O threads (0 = one per core)")(
      "worker-threads", po::value(&c.worker_threads)->default_value(c.worker_threads),
      "threads of the pool that runs blocking handler work")(
      "log-level", po::value(&c.log_level)->default_value(c.log_level),
      "trace | debug | info | warn | error | critical | off")(
      "log-format", po::value(&c.log_format)->default_value(c.log_format),
      "text | json (each record one JSON object on its line: ts, level, logger, thread, msg)")(
      "drain-timeout-ms", po::value(&drain_ms)->default_value(drain_ms),
      "on SIGTERM or `mcpmesh-ctl drain`: time requests in flight get to finish before they "
      "are answered with an error and the node exits");
  po::options_description limits("Limits (each counted in /metrics when it bites)");
  limits.add_options()("max-body-bytes", po::value(&max_body)->default_value(max_body),
                       "largest accepted HTTP body (413 above)")(
      "max-header-bytes", po::value(&max_header)->default_value(max_header),
      "largest accepted HTTP header block (431 above)")(
      "max-json-depth", po::value(&json_depth)->default_value(json_depth),
      "deepest accepted JSON nesting (-32600 above)")(
      "max-connections", po::value(&h.max_connections)->default_value(0),
      "open connections before new ones get 503 (0 = the open-file limit less room for the "
      "node's own descriptors)")(
      "max-connections-per-client",
      po::value(&a.max_connections_per_client)->default_value(a.max_connections_per_client),
      "open connections per client address (0 = a quarter of --max-connections; trusted "
      "proxies are exempt) before 503")(
      "max-sessions-per-client",
      po::value(&a.max_sessions_per_client)->default_value(a.max_sessions_per_client),
      "sessions per client (0 = a tenth of --max-sessions) before initialize gets 429")(
      "client-rate-limit", po::value(&a.client_request_rate)->default_value(a.client_request_rate),
      "requests a second per client, bursts of two seconds' worth (0 = no limit); 429 above")(
      "client-session-rate-limit",
      po::value(&a.client_session_rate)->default_value(a.client_session_rate),
      "new sessions a second per client (0 = no limit); 429 above")(
      "rate-limit", po::value(&a.node_request_rate)->default_value(a.node_request_rate),
      "requests a second over all clients (0 = no limit: the load shedder protects the node)")(
      "session-rate-limit", po::value(&a.node_session_rate)->default_value(a.node_session_rate),
      "new sessions a second over all clients (0 = no limit)")(
      "max-clients", po::value(&a.max_clients)->default_value(a.max_clients),
      "client addresses tracked at once; beyond, new clients share one set of limits")(
      "trusted-proxies", po::value(&trusted_proxies),
      "comma-separated addresses or CIDR blocks of proxies (nginx) whose X-Forwarded-For names "
      "the client")("shed-lag-ms", po::value(&shed_lag_ms)->default_value(shed_lag_ms),
                    "event-loop lag load shedding keeps an overloaded node under (0 = never "
                    "shed; the health zone is still exported)")(
      "overload-batch-us", po::value(&overload_batch_us)->default_value(overload_batch_us),
      "while the node sheds requests (zone red), each I/O thread handles what is ready and "
      "then sleeps this long, so that it refuses many requests per wake-up (0 = off; at most "
      "100000)")(
      "memory-limit-mb", po::value(&memory_limit_mb)->default_value(0),
      "resident memory for the health zones (0 = the cgroup limit, else 80% of RAM): new "
      "sessions are refused at 85%, new requests too at 95%")(
      "linger-timeout-ms", po::value(&linger_ms)->default_value(linger_ms),
      "after an error that closes the connection (400/408/413/431/501), how long what the client "
      "still sends is read and dropped so that it reads the answer")(
      "linger-bytes", po::value(&h.linger_bytes)->default_value(h.linger_bytes),
      "most bytes read and dropped in such a lingering close")(
      "max-sessions", po::value(&s.max_sessions)->default_value(s.max_sessions),
      "sessions on this node before initialize gets 503")(
      "max-blocking-jobs", po::value(&s.max_blocking_jobs)->default_value(s.max_blocking_jobs),
      "blocking handler jobs queued or running on the worker pool before -32000")(
      "max-batch-size", po::value(&h.max_batch_size)->default_value(h.max_batch_size),
      "messages in one JSON-RPC batch (2025-03-26 sessions) before 400")(
      "max-subscriptions",
      po::value(&s.max_subscriptions_per_session)->default_value(s.max_subscriptions_per_session),
      "resources/subscribe URIs per session before -32000 (with --replicas, times "
      "--max-uri-bytes must fit a replicated session record: 224 KiB)")(
      "max-uri-bytes", po::value(&s.max_uri_bytes)->default_value(s.max_uri_bytes),
      "longest URI resources/subscribe and unsubscribe take before -32602")(
      "max-inflight-per-session",
      po::value(&s.max_inflight_per_session)->default_value(s.max_inflight_per_session),
      "requests of one session (any kind, ping included) not answered yet before -32000")(
      "max-inflight", po::value(&s.max_inflight)->default_value(s.max_inflight),
      "requests on the whole node (any kind) not answered yet before -32000")(
      "init-timeout-ms", po::value(&init_ms)->default_value(init_ms),
      "a session whose client has not sent notifications/initialized (or any later request) "
      "this long after initialize is removed")(
      "stdio-queue-messages",
      po::value(&c.stdio_config.max_queued_messages)
          ->default_value(c.stdio_config.max_queued_messages),
      "--stdio: messages waiting for stdout before stdin is no longer read (backpressure)")(
      "stdio-queue-bytes",
      po::value(&c.stdio_config.max_queued_bytes)->default_value(c.stdio_config.max_queued_bytes),
      "--stdio: bytes waiting for stdout before stdin is no longer read (backpressure)")(
      "read-timeout-ms", po::value(&read_ms)->default_value(read_ms),
      "time to receive one whole request once its first byte arrived")(
      "idle-timeout-ms", po::value(&idle_ms)->default_value(idle_ms),
      "keep-alive connection idle time before it is closed")(
      "write-timeout-ms", po::value(&write_ms)->default_value(write_ms),
      "time one write may take before the client counts as a slow consumer")(
      "sse-keepalive-ms", po::value(&keepalive_ms)->default_value(keepalive_ms),
      "SSE keep-alive comment interval")("sse-retry-ms",
                                         po::value(&retry_ms)->default_value(retry_ms),
                                         "retry hint sent with the SSE priming event")(
      "sse-buffer-events",
      po::value(&s.streams.buffer_events)->default_value(s.streams.buffer_events),
      "events kept per stream for Last-Event-ID resumption")(
      "sse-queue-events", po::value(&s.streams.queue_events)->default_value(s.streams.queue_events),
      "events queued for a live SSE connection before it counts as a slow consumer")(
      "client-request-timeout-ms", po::value(&client_timeout_ms)->default_value(client_timeout_ms),
      "default deadline for sampling / elicitation / roots requests to the client")(
      "session-idle-timeout-s", po::value(&session_idle_s)->default_value(session_idle_s),
      "idle sessions are removed after this long")(
      "page-size", po::value(&s.page_size)->default_value(s.page_size),
      "items per page of the list methods")(
      "allowed-origins", po::value(&allowed_origins),
      "comma-separated allowed Origin values, or *; default: loopback origins only")(
      "allowed-hosts", po::value(&allowed_hosts),
      "comma-separated allowed Host names, or *; default: loopback names (and the bound "
      "address)");
  po::options_description cluster("Cluster");
  cluster.add_options()("cluster", po::value(&c.cluster),
                        "join a cluster: gRPC membership/admin on HOST:PORT")(
      "seeds", po::value(&seeds), "comma-separated HOST:PORT of other nodes' --cluster address")(
      "cluster-profile", po::value(&c.cluster_profile)->default_value(c.cluster_profile),
      "membership timings: lan | fast (see docs/CLUSTER.md)")(
      "cluster-name", po::value(&c.cluster_name)->default_value(c.cluster_name),
      "nodes only talk to nodes with the same cluster name")(
      "cluster-secret-file", po::value(&c.cluster_secret_file),
      "file holding the cluster secret (at least 16 bytes) that authenticates every cluster "
      "RPC; required with --cluster (never pass the secret itself on the command line)")(
      "cluster-tls-cert", po::value(&c.cluster_tls_cert),
      "PEM certificate of this node for mutual TLS between nodes (with --cluster-tls-key and "
      "--cluster-tls-ca; see docs/CLUSTER.md)")("cluster-tls-key", po::value(&c.cluster_tls_key),
                                                "PEM private key for --cluster-tls-cert")(
      "cluster-tls-ca", po::value(&c.cluster_tls_ca),
      "PEM CA certificate that signs every node's certificate")(
      "advertise", po::value(&c.advertise),
      "HOST:PORT other nodes dial for this node's cluster port (default: the bound address; "
      "required when binding a wildcard address)")(
      "advertise-http", po::value(&c.advertise_http),
      "HOST:PORT of this node's HTTP endpoint as others reach it (default: the bound address)")(
      "replicas", po::value(&c.replicas)->default_value(c.replicas),
      "other nodes each session's state is replicated to (0 = sessions die with their node)")(
      "adopt-without-quorum", po::bool_switch(&c.adopt_without_quorum),
      "continue a failed node's sessions even when this node sees at most half of the cluster "
      "alive (a two-node cluster; two sides of a partition may then both continue them)")(
      "forward-timeout-ms", po::value(&forward_ms)->default_value(forward_ms),
      "deadline of one exchange relayed to the node holding its session (an SSE stream "
      "ends there and the client resumes it)")(
      "relay-silence-ms", po::value(&relay_silence_ms)->default_value(relay_silence_ms),
      "a relay link to or from another node that hears nothing for this long (heartbeats "
      "every fifth of it) is taken for dead; its exchanges fail with 503")(
      "max-relay-links", po::value(&c.max_relay_links)->default_value(c.max_relay_links),
      "relay links other nodes may have open to this one (more: 503, counted)");
  std::string state_key_file;
  long state_ttl_ms = s.request_state_ttl.count(), cache_ttl_ms = s.cache_ttl.count(),
       task_ttl_ms = s.task_ttl.count();
  po::options_description stateless("Stateless requests (protocol 2026-07-28)");
  stateless.add_options()(
      "request-state-key-file", po::value(&state_key_file),
      "file of keys (one per line, at least 16 bytes each) that seal the requestState of "
      "multi round-trip requests: the first seals, every one opens (rotate by adding the new "
      "key first). Default: derived from the cluster secret in a cluster, else a random key per "
      "process")("request-state-ttl-ms", po::value(&state_ttl_ms)->default_value(state_ttl_ms),
                 "how long a requestState stays valid")(
      "max-request-state-bytes",
      po::value(&s.max_request_state_bytes)->default_value(s.max_request_state_bytes),
      "largest requestState sealed (the input one request collects over its rounds); -32602 "
      "above")("max-listen-streams",
               po::value(&s.max_listen_streams)->default_value(s.max_listen_streams),
               "subscriptions/listen streams open on this node before -32000")(
      "cache-ttl-ms", po::value(&cache_ttl_ms)->default_value(cache_ttl_ms),
      "ttlMs hint on the lists, resources/read and server/discover (0 = refetch each time)")(
      "max-tasks", po::value(&s.max_tasks)->default_value(s.max_tasks),
      "tasks alive on this node, of both eras (finished ones until their ttl ends); beyond, a "
      "2026-07-28 call runs as an ordinary call, a task-augmented 2025-11-25 call gets -32000")(
      "max-tasks-per-session",
      po::value(&s.max_tasks_per_session)->default_value(s.max_tasks_per_session),
      "unfinished tasks of one 2025-11-25 session; a task-augmented call beyond gets -32000")(
      "task-ttl-ms", po::value(&task_ttl_ms)->default_value(task_ttl_ms),
      "how long a finished task stays readable with tasks/get, from its creation (a 2025-11-25 "
      "client may ask for less)");
  po::options_description tracing("Tracing (OpenTelemetry)");
  std::size_t otlp_queue = c.otlp.max_queue;
  tracing.add_options()(
      "otlp-endpoint", po::value(&c.otlp.endpoint),
      "send spans to this OTLP/HTTP receiver, e.g. http://jaeger:4318/v1/traces (JSON "
      "encoding); none are made without it")(
      "trace-sample-ratio", po::value(&c.trace_sample_ratio)->default_value(c.trace_sample_ratio),
      "share of new traces recorded, 0 to 1 (a request whose traceparent is sampled is always "
      "recorded, one that is not never)")(
      "otlp-max-queue", po::value(&otlp_queue)->default_value(otlp_queue),
      "spans waiting for export; beyond, new ones are dropped (mcpmesh_trace_spans_dropped_total)");
  po::options_description all;
  all.add(general).add(limits).add(stateless).add(cluster).add(tracing);

  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, all), vm);
    if (vm.count("config")) {
      auto path = vm["config"].as<std::string>();
      std::ifstream in(path);
      if (!in) throw std::runtime_error("cannot open config file '" + path + "'");
      po::store(po::parse_config_file(in, all), vm);
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw std::runtime_error(e.what());
  }
  if (vm.count("help")) {
    std::cout << "mcpmesh-node: a clustered MCP server node\n\n"
                 "Usage: mcpmesh-node [--http HOST:PORT | --stdio] [--app NAME] [options]\n"
              << all << "\n";
    return std::nullopt;
  }
  if (vm.count("version")) {
    std::cout << "mcpmesh-node " << s.server_version << "\n";
    return std::nullopt;
  }
  if (s.node_id.empty() || s.node_id.find('.') != std::string::npos ||
      std::any_of(s.node_id.begin(), s.node_id.end(),
                  [](unsigned char ch) { return ch < 0x21 || ch > 0x7e; })) {
    throw std::runtime_error("--node-id must be visible ASCII without '.'");
  }
  if (vm.count("http")) c.http = vm["http"].as<std::string>();
  if (!c.http && !c.stdio) c.http = "127.0.0.1:8080";
  if (c.http) {
    std::tie(h.host, h.port) = split_host_port(*c.http);
    h.host = resolve_listen_host(h.host, "--http");
  }
  static constexpr std::array<std::string_view, 7> kLogLevels = {
      "trace", "debug", "info", "warn", "error", "critical", "off"};
  if (std::find(kLogLevels.begin(), kLogLevels.end(), c.log_level) == kLogLevels.end()) {
    throw std::runtime_error(
        "--log-level '" + c.log_level +
        "' is not one of trace | debug | info | warn | error | critical | off");
  }
  if (c.log_format != "text" && c.log_format != "json") {
    throw std::runtime_error("--log-format '" + c.log_format + "' is not text | json");
  }
  if (!(c.trace_sample_ratio >= 0.0 && c.trace_sample_ratio <= 1.0)) {
    throw std::runtime_error("--trace-sample-ratio must be from 0 to 1");
  }
  if (otlp_queue == 0) throw std::runtime_error("--otlp-max-queue must be at least 1");
  c.otlp.max_queue = otlp_queue;
  c.otlp.max_batch = std::min(c.otlp.max_batch, otlp_queue);
  if (!c.otlp.endpoint.empty()) {
    auto url = boost::urls::parse_uri(c.otlp.endpoint);
    if (!url || url->scheme() != "http" || url->host().empty()) {
      throw std::runtime_error("--otlp-endpoint '" + c.otlp.endpoint +
                               "' is not an http://HOST:PORT/PATH URL");
    }
  }
  if (c.cluster_profile != "lan" && c.cluster_profile != "fast") {
    throw std::runtime_error("--cluster-profile '" + c.cluster_profile + "' is not lan | fast");
  }
  h.max_body_bytes = max_body;
  h.max_header_bytes = max_header;
  h.max_json_depth = json_depth;
  c.stdio_config.max_line_bytes = max_body;
  c.stdio_config.max_json_depth = json_depth;
  c.stdio_config.max_batch_size = h.max_batch_size;
  h.read_timeout = std::chrono::milliseconds(read_ms);
  h.idle_timeout = std::chrono::milliseconds(idle_ms);
  h.write_timeout = std::chrono::milliseconds(write_ms);
  h.sse_keepalive = std::chrono::milliseconds(keepalive_ms);
  h.sse_retry = std::chrono::milliseconds(retry_ms);
  s.client_request_timeout = std::chrono::milliseconds(client_timeout_ms);
  s.session_idle_timeout = std::chrono::seconds(session_idle_s);
  s.init_timeout = std::chrono::milliseconds(init_ms);
  c.drain_timeout = std::chrono::milliseconds(drain_ms);
  if (state_ttl_ms <= 0 || cache_ttl_ms < 0) {
    throw std::runtime_error(
        "--request-state-ttl-ms must be positive, --cache-ttl-ms not negative");
  }
  s.request_state_ttl = std::chrono::milliseconds(state_ttl_ms);
  s.cache_ttl = std::chrono::milliseconds(cache_ttl_ms);
  if (task_ttl_ms <= 0) throw std::runtime_error("--task-ttl-ms must be positive");
  if (s.max_tasks_per_session == 0) {
    throw std::runtime_error("--max-tasks-per-session must be at least 1");
  }
  s.task_ttl = std::chrono::milliseconds(task_ttl_ms);
  if (!state_key_file.empty()) {
    std::ifstream in(state_key_file);
    if (!in)
      throw std::runtime_error("--request-state-key-file: cannot open '" + state_key_file + "'");
    std::string line;
    while (std::getline(in, line)) {
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) {
        line.pop_back();
      }
      if (line.empty()) continue;
      if (line.size() < 16) {
        throw std::runtime_error("--request-state-key-file: every key needs at least 16 bytes");
      }
      s.request_state_keys.push_back(line);
    }
    if (s.request_state_keys.empty()) {
      throw std::runtime_error("--request-state-key-file: no key in '" + state_key_file + "'");
    }
  }
  c.forward_timeout = std::chrono::milliseconds(forward_ms);
  c.relay_silence = std::chrono::milliseconds(relay_silence_ms);
  if (drain_ms < 0 || forward_ms <= 0) throw std::runtime_error("timeouts must be positive");
  if (relay_silence_ms < 100) throw std::runtime_error("--relay-silence-ms: at least 100");
  if (c.max_relay_links == 0) throw std::runtime_error("--max-relay-links: at least 1");
  if (!c.cluster.empty()) {
    if (c.cluster_secret_file.empty()) {
      throw std::runtime_error(
          "--cluster needs --cluster-secret-file: every cluster RPC is authenticated");
    }
    int tls = !c.cluster_tls_cert.empty() + !c.cluster_tls_key.empty() + !c.cluster_tls_ca.empty();
    if (tls != 0 && tls != 3) {
      throw std::runtime_error(
          "--cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca go together");
    }
    for (const auto* addr : {&c.advertise, &c.advertise_http}) {
      if (addr->empty()) continue;
      auto [host, port] = split_host_port(*addr);
      if (port == 0 || host == "0.0.0.0" || host == "::" || host.empty()) {
        throw std::runtime_error("cannot advertise '" + *addr +
                                 "': give the address and port other nodes reach");
      }
    }
    if (c.replicas > 8) throw std::runtime_error("--replicas must be at most 8");
    // A replica refuses a record over kMaxRecordBytes: a session's subscriptions (each URI
    // with its quotes and comma) leave room for the rest of it.
    if (c.replicas > 0 && s.max_subscriptions_per_session * (s.max_uri_bytes + 3) >
                              mcp::kMaxRecordBytes - 32 * 1024) {
      throw std::runtime_error(
          "--max-subscriptions times --max-uri-bytes must fit a replicated session record "
          "(224 KiB): lower one of them");
    }
  }
  a.trusted_proxies = split_list(trusted_proxies);
  if (shed_lag_ms < 0 || linger_ms < 0) throw std::runtime_error("timeouts must not be negative");
  if (overload_batch_us < 0 || overload_batch_us > 100000) {
    throw std::runtime_error("--overload-batch-us must be within 0..100000");
  }
  c.overload_batch = std::chrono::microseconds(overload_batch_us);
  a.shed = shed_lag_ms > 0;
  if (a.shed) a.shed_lag = std::chrono::milliseconds(shed_lag_ms);
  a.memory_limit_bytes = memory_limit_mb << 20;
  h.linger_timeout = std::chrono::milliseconds(linger_ms);
  if (a.client_request_rate < 0 || a.client_session_rate < 0 || a.node_request_rate < 0 ||
      a.node_session_rate < 0) {
    throw std::runtime_error("rate limits must not be negative");
  }
  if (a.max_clients < 1) throw std::runtime_error("--max-clients must be at least 1");
  h.allowed_origins = split_list(allowed_origins);
  h.allowed_hosts = split_list(allowed_hosts);
  c.seeds = split_list(seeds);
  if (json_depth < 2) throw std::runtime_error("--max-json-depth must be at least 2");
  if (keepalive_ms < 10) throw std::runtime_error("--sse-keepalive-ms must be at least 10");
  if (s.streams.queue_events < 16)
    throw std::runtime_error("--sse-queue-events must be at least 16");
  if (h.max_batch_size < 1) throw std::runtime_error("--max-batch-size must be at least 1");
  if (s.max_inflight < 1 || s.max_inflight_per_session < 1) {
    throw std::runtime_error("--max-inflight and --max-inflight-per-session must be at least 1");
  }
  if (s.max_uri_bytes < 8) throw std::runtime_error("--max-uri-bytes must be at least 8");
  if (c.stdio_config.max_queued_messages < 2 || c.stdio_config.max_queued_bytes < 4096) {
    throw std::runtime_error(
        "--stdio-queue-messages must be at least 2 and --stdio-queue-bytes at least 4096");
  }
  if (c.threads > 1024) throw std::runtime_error("--threads must be at most 1024");
  if (read_ms <= 0 || idle_ms <= 0 || write_ms <= 0 || retry_ms < 0 || client_timeout_ms <= 0 ||
      session_idle_s <= 0 || init_ms <= 0) {
    throw std::runtime_error("timeouts must be positive");
  }
  if (c.app != "demo" && c.app != "conformance") {
    throw std::runtime_error("unknown --app '" + c.app + "' (demo | conformance)");
  }
  return c;
}

}  // namespace mcpmesh::node
