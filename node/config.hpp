#pragma once
// mcpmesh-node configuration: command-line flags and a config file whose keys are the flags'
// long names. Parsed once at start-up (exceptions allowed here, not on the data path).

#include "mcp/server.hpp"
#include "node/otlp_exporter.hpp"
#include "transport/http_server.hpp"
#include "transport/stdio_transport.hpp"

#include <optional>
#include <string>
#include <vector>

namespace mcpmesh::node {

struct NodeConfig {
  std::string app = "demo";
  bool stdio = false;
  std::optional<std::string> http;  // HOST:PORT; default 127.0.0.1:8080 unless --stdio
  std::size_t threads = 0;          // 0 = one per core
  std::string log_level = "info";
  std::string log_format = "text";  // text | json (one JSON object per line)
  mcp::ServerConfig server;
  std::size_t worker_threads = 4;
  /// While the node sheds requests (health zone red), each I/O thread handles what is ready
  /// and then sleeps this long (0 = never): many refusals per wake-up, not one.
  std::chrono::microseconds overload_batch{1000};
  transport::HttpConfig http_config;
  transport::StdioConfig stdio_config;
  /// SIGTERM (or `mcpmesh-ctl drain`): how long requests in flight may take to finish before
  /// they are answered with an error and the node exits.
  std::chrono::milliseconds drain_timeout{10000};
  // Cluster (optional).
  std::string cluster;  // HOST:PORT of the gRPC endpoint; empty = single node
  std::vector<std::string> seeds;
  std::string cluster_profile = "lan";
  std::string cluster_name = "mcpmesh";
  std::string cluster_secret_file;                                // required with --cluster
  std::string cluster_tls_cert, cluster_tls_key, cluster_tls_ca;  // all or none
  std::string advertise;              // cluster address other nodes dial; default: the bound one
  std::string advertise_http;         // HTTP address other nodes and balancers use
  std::size_t replicas = 1;           // nodes each session is replicated to
  bool adopt_without_quorum = false;  // continue sessions on a side without the quorum
  std::chrono::milliseconds forward_timeout{3600000};
  std::chrono::milliseconds relay_silence{5000};  // a relay link silent this long is dead
  std::size_t max_relay_links = 256;              // relay links from other nodes at once
  // Tracing: spans go to otlp.endpoint (OTLP/HTTP); none are made when it is empty.
  OtlpConfig otlp;
  double trace_sample_ratio = 1.0;  // share of new traces recorded (a sampled caller's always)
};

/// Parses argv (and --config FILE). Returns nullopt after printing --help or --version.
/// Throws std::runtime_error with a readable message on bad input.
std::optional<NodeConfig> parse_config(int argc, char** argv);

/// A listening address's host, numeric or a name ("localhost"), as a numeric address (IPv4
/// first). Throws naming `flag` when it does not resolve.
std::string resolve_listen_host(const std::string& host, std::string_view flag);

/// "HOST:PORT" or "[v6]:PORT" → host, port. Throws on malformed input.
std::pair<std::string, std::uint16_t> split_host_port(const std::string& text);

}  // namespace mcpmesh::node
