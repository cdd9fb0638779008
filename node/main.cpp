// mcpmesh-node: wires the app, the MCP server core, the transports and (optionally) cluster
// membership together. Nothing here is protocol logic.

#include "mcp/server.hpp"
#include "node/apps/apps.hpp"
#include "node/config.hpp"
#include "node/json_log.hpp"
#include "node/process_metrics.hpp"
#include "transport/http_server.hpp"
#include "transport/stdio_transport.hpp"

#ifdef MCPMESH_WITH_CLUSTER
#include "cluster/mesh/cluster_node.hpp"
#endif

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <boost/asio/signal_set.hpp>

#include <sys/resource.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <thread>

using namespace mcpmesh;
namespace asio = boost::asio;

namespace {

/// Raises the open-file limit to its hard limit and returns connections that fit under it: the
/// rest stays for the node's own descriptors (listeners, the cluster's channels and streams,
/// logs, the event loops' own).
std::size_t connections_for_descriptors(bool cluster) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  std::size_t files = limit.rlim_cur == RLIM_INFINITY ? std::size_t{1} << 20 : limit.rlim_cur;
  std::size_t reserve = 64 + (cluster ? 192 : 0);
  return files > 2 * reserve ? files - reserve : files / 2;
}

/// An exception's message for people: a system error's own message (what() would carry a
/// library source location).
std::string message_of(const std::exception& e) {
  if (auto* se = dynamic_cast<const boost::system::system_error*>(&e)) return se->code().message();
  return e.what();
}

/// Why the TCP address HOST:PORT cannot be bound now, or nothing (also when it cannot tell:
/// the real bind then says). A check before anything binds, so that a taken cluster port does
/// not leave the HTTP port bound first.
std::optional<std::string> port_taken(const std::string& address) {
  try {
    auto [host, port] = node::split_host_port(address);
    if (port == 0) return std::nullopt;
    asio::io_context io;
    asio::ip::tcp::endpoint ep(asio::ip::make_address(node::resolve_listen_host(host, "--cluster")),
                               port);
    asio::ip::tcp::acceptor probe(io);
    boost::system::error_code ec;
    probe.open(ep.protocol(), ec);
    if (!ec) probe.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) probe.bind(ep, ec);
    if (ec == boost::system::errc::address_in_use ||
        ec == boost::system::errc::address_not_available) {
      return ec.message();
    }
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  // A peer that went away is an error code on its write, not a signal that ends the node.
  std::signal(SIGPIPE, SIG_IGN);
  // Logs go to stderr only: stdout belongs to the stdio transport.
  spdlog::set_default_logger(spdlog::stderr_color_mt("mcpmesh"));
  std::optional<node::NodeConfig> parsed;
  try {
    parsed = node::parse_config(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mcpmesh-node: %s\n(see --help)\n", e.what());
    return 2;
  }
  if (!parsed) return 0;
  auto& cfg = *parsed;
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));
  if (cfg.log_format == "json") {
    spdlog::set_formatter(std::make_unique<node::JsonLogFormatter>());
  } else {
    spdlog::set_formatter(node::make_text_formatter());
  }
  {
    auto fit = connections_for_descriptors(!cfg.cluster.empty());
    auto& max = cfg.http_config.max_connections;
    cfg.http_config.prepare_descriptors = true;
    if (max == 0) {
      max = fit;
    } else if (max > fit) {
      spdlog::warn(
          "--max-connections {} is more than the open-file limit allows ({} with room for the "
          "node's own files): past that, new connections get 503 when no descriptor is left",
          max, fit);
    }
  }

#ifdef MCPMESH_WITH_CLUSTER
  // What can be wrong with the cluster's secret and port is found before anything binds.
  std::string cluster_secret;
  if (!cfg.cluster.empty()) {
    try {
      cluster_secret = cluster::load_cluster_secret(cfg.cluster_secret_file);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mcpmesh-node: --cluster-secret-file: %s\n", e.what());
      return 2;
    }
    if (auto taken = port_taken(cfg.cluster)) {
      std::fprintf(stderr, "mcpmesh-node: cannot listen on %s (--cluster): %s\n",
                   cfg.cluster.c_str(), taken->c_str());
      return 1;
    }
  }
#endif

  std::size_t threads =
      cfg.threads ? cfg.threads : std::max(1u, std::thread::hardware_concurrency());
  transport::IoPool pool(threads);
  asio::io_context& io = pool.at(0);
  mcp::App app;
  auto app_state =
      cfg.app == "conformance" ? node::install_conformance_app(app) : node::install_demo_app(app);
#ifdef MCPMESH_WITH_CLUSTER
  // A retry of a multi round-trip request may reach any node: all seal with the same key.
  if (cfg.server.request_state_keys.empty() && !cluster_secret.empty()) {
    cfg.server.request_state_keys.push_back(mcp::RequestStateSealer::derive_key(cluster_secret));
  }
#endif
  // Spans (when --otlp-endpoint is set) go to the exporter; it outlives everything that makes
  // them.
  std::unique_ptr<node::OtlpExporter> exporter;
  std::unique_ptr<mcp::Tracer> tracer;
  if (!cfg.otlp.endpoint.empty()) {
    cfg.otlp.resource = {{"service.name", "mcpmesh"},
                         {"service.instance.id", cfg.server.node_id},
                         {"service.version", cfg.server.server_version}};
    exporter = std::make_unique<node::OtlpExporter>(cfg.otlp);
    tracer = std::make_unique<mcp::Tracer>(*exporter, cfg.trace_sample_ratio);
  }
  mcp::Server server(io, app, cfg.server, cfg.worker_threads);
  server.set_tracer(tracer.get());
  // Session ids carry the ownership epoch: this process's start, in wall-clock milliseconds.
  server.set_epoch(
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count()));
  server.start_idle_sweeper();

  std::unique_ptr<transport::HttpServer> http;
  std::string http_address;  // HOST:PORT as bound
  std::unique_ptr<transport::StdioTransport> stdio;
  try {
    if (cfg.http) {
      try {
        http = std::make_unique<transport::HttpServer>(pool, server, cfg.http_config);
        http->set_extra_metrics([&exporter, &pool](std::string& out) {
          node::render_process_metrics(out);
          mcp::append_sample(out, "mcpmesh_io_batch_pauses_total",
                             "pauses of an I/O thread that batched work while the node shed "
                             "requests (--overload-batch-us)",
                             "counter", "", static_cast<double>(pool.batch_pauses()));
          if (exporter) exporter->render_metrics(out);
        });
        pool.set_batching(cfg.overload_batch, [server = http.get()] {
          return server->admission().zone() == transport::Zone::kRed;
        });
      } catch (const boost::system::system_error& e) {
        // The code's message only: what() would carry a library source location.
        std::fprintf(stderr, "mcpmesh-node: cannot listen on %s (--http): %s\n", cfg.http->c_str(),
                     e.code().message().c_str());
        return 1;
      }
      http->start();
      auto ep = http->local_endpoint();
      std::string host =
          ep.address().is_v6() ? "[" + ep.address().to_string() + "]" : ep.address().to_string();
      http_address = host + ":" + std::to_string(ep.port());
      // Tests and scripts wait for this exact line.
      std::fprintf(stderr, "listening on http://%s:%u%s\n", host.c_str(), ep.port(),
                   cfg.http_config.path.c_str());
      std::fflush(stderr);
    }
    if (cfg.stdio) {
      stdio = std::make_unique<transport::StdioTransport>(io, server, cfg.stdio_config);
      // stdin's end ends a stdio-only node; beside HTTP it only ends the stdio session.
      bool stop_at_eof = !http;
      stdio->start([&pool, stop_at_eof] {
        if (stop_at_eof) pool.stop();
      });
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mcpmesh-node: cannot start: %s\n", message_of(e).c_str());
    return 1;
  }

#ifdef MCPMESH_WITH_CLUSTER
  std::unique_ptr<cluster::ClusterNode> cluster_node;
  if (!cfg.cluster.empty()) {
    try {
      std::optional<cluster::TlsFiles> tls;
      if (!cfg.cluster_tls_cert.empty()) {
        tls = cluster::TlsFiles{cfg.cluster_tls_cert, cfg.cluster_tls_key, cfg.cluster_tls_ca};
      }
      cluster_node = cluster::ClusterNode::start(
          {
              .node_id = cfg.server.node_id,
              .listen = cfg.cluster,
              .advertise = cfg.advertise,
              .http_advertise = !cfg.advertise_http.empty() ? cfg.advertise_http : http_address,
              .seeds = cfg.seeds,
              .cluster_name = cfg.cluster_name,
              .profile = cfg.cluster_profile,
              .version = cfg.server.server_version,
              .secret = std::move(cluster_secret),
              .tls = tls,
              .replicas = cfg.replicas,
              .forward_timeout = cfg.forward_timeout,
              .relay_silence = cfg.relay_silence,
              .max_relay_links = cfg.max_relay_links,
              .max_body_bytes = cfg.http_config.max_body_bytes,
              .max_header_bytes = cfg.http_config.max_header_bytes,
              .max_forward_hops = cfg.http_config.max_forward_hops,
              .adopt_without_quorum = cfg.adopt_without_quorum,
          },
          {.server = &server, .http = http.get(), .pool = &pool});
      if (http) {
        http->set_extra_metrics([node = cluster_node.get(), &exporter](std::string& out) {
          node::render_process_metrics(out);
          if (exporter) exporter->render_metrics(out);
          node->render_metrics(out);
        });
      }
      // Tests and scripts wait for this exact line.
      std::fprintf(stderr, "cluster listening on %s\n", cluster_node->bound_address().c_str());
      std::fflush(stderr);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mcpmesh-node: cannot join the cluster: %s\n", message_of(e).c_str());
      return 1;
    }
  }
#else
  if (!cfg.cluster.empty()) {
    std::fprintf(stderr, "mcpmesh-node: built without cluster support\n");
    return 1;
  }
#endif

  // Graceful drain (SIGTERM, SIGINT, `mcpmesh-ctl drain`): stop taking sessions (/readyz turns
  // 503), hand the sessions to the heir, let requests in flight finish within
  // --drain-timeout-ms, answer what is left with an error, leave the cluster, exit 0. It runs on
  // a thread of its own: its waits are bounded but must not hold an I/O thread.
  std::atomic<bool> draining{false};
  std::thread drain_thread;
  auto drain = [&] {
    auto until = std::chrono::steady_clock::now() + cfg.drain_timeout;
    spdlog::info("draining: no new sessions; {} sessions, {} requests in flight",
                 server.session_count(), server.metrics().inflight_requests.load());
    // Listen streams end now with their result (their clients listen again elsewhere).
    server.end_listen_streams();
    std::vector<std::shared_ptr<mcp::Session>> handed;
#ifdef MCPMESH_WITH_CLUSTER
    if (cluster_node) {
      auto budget =
          std::min<std::chrono::milliseconds>(cfg.drain_timeout, std::chrono::milliseconds(5000));
      if (auto taken = cluster_node->hand_over(budget)) {
        // From here the heir serves these sessions: requests for them that reach this node are
        // relayed there. Their GET streams end so that clients resume them on the heir; the
        // requests they are running finish here and answer on their own streams.
        for (auto& s : server.sessions()) {
          if (auto released = server.release_session(s->id())) {
            if (released->streams()) released->streams()->close_standalone();
            handed.push_back(std::move(released));
          }
        }
      }
    }
#endif
    auto inflight = [&] {
      return server.metrics().inflight_requests.load() +
             server.metrics().listen_streams_active.load();
    };
    while (inflight() > 0 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (inflight() > 0) {
      spdlog::warn("drain: {} requests still running after {} ms: answered with an error",
                   inflight(), cfg.drain_timeout.count());
      mcp::RpcError error(mcp::ErrorCode::kServerBusy,
                          "the node is shutting down: the request did not complete; retry it");
      for (auto& s : handed) s->abort_inflight(error);
      for (auto& s : server.sessions()) s->abort_inflight(error);
      auto grace = std::chrono::steady_clock::now() + std::chrono::milliseconds(1000);
      while (inflight() > 0 && std::chrono::steady_clock::now() < grace) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    }
#ifdef MCPMESH_WITH_CLUSTER
    if (cluster_node) cluster_node->leave(std::chrono::milliseconds(2000));
#endif
    if (http) http->stop();
    server.close_all();
    handed.clear();
    // Let the closes run (they free what the sessions hold) before the threads stop.
    auto grace = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
    while (server.session_count() > 0 && std::chrono::steady_clock::now() < grace) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    spdlog::info("drained");
    pool.stop();
  };
  auto start_drain = [&]() -> bool {
    // New sessions are refused from here, before /readyz can answer 503: a client that sees
    // the node not ready and sends initialize at once must not get a session on it.
    server.set_accepting(false);
    if (draining.exchange(true)) return false;
    drain_thread = std::thread(drain);
    return true;
  };
#ifdef MCPMESH_WITH_CLUSTER
  if (cluster_node) cluster_node->set_drain_handler(start_drain);
#endif
  if (http)
    http->set_readiness([&] { return server.accepting() && server.quorate() && !draining.load(); });

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int) {
    if (ec) return;
    start_drain();
  });

  pool.run();
  if (drain_thread.joinable()) drain_thread.join();
  return 0;
}
