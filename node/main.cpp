// mcpmesh-node: wires the app, the MCP server core, the transports and (optionally) cluster
// membership together. Nothing here is protocol logic.

#include "mcp/server.hpp"
#include "node/apps/apps.hpp"
#include "node/config.hpp"
#include "transport/http_server.hpp"
#include "transport/stdio_transport.hpp"

#ifdef MCPMESH_WITH_CLUSTER
#include "cluster/node_membership.hpp"
#endif

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <thread>

using namespace mcpmesh;
namespace asio = boost::asio;

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

  std::size_t threads =
      cfg.threads ? cfg.threads : std::max(1u, std::thread::hardware_concurrency());
  transport::IoPool pool(threads);
  asio::io_context& io = pool.at(0);
  mcp::App app;
  auto app_state =
      cfg.app == "conformance" ? node::install_conformance_app(app) : node::install_demo_app(app);
  mcp::Server server(io, app, cfg.server, cfg.worker_threads);
  // Session ids carry the ownership epoch: this process's start, in wall-clock milliseconds.
  server.set_epoch(
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count()));
  server.start_idle_sweeper();

  std::unique_ptr<transport::HttpServer> http;
  std::unique_ptr<transport::StdioTransport> stdio;
  try {
    if (cfg.http) {
      http = std::make_unique<transport::HttpServer>(pool, server, cfg.http_config);
      http->start();
      auto ep = http->local_endpoint();
      std::string host =
          ep.address().is_v6() ? "[" + ep.address().to_string() + "]" : ep.address().to_string();
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
    std::fprintf(stderr, "mcpmesh-node: cannot start: %s\n", e.what());
    return 1;
  }

#ifdef MCPMESH_WITH_CLUSTER
  std::unique_ptr<cluster::NodeMembership> membership;
  if (!cfg.cluster.empty()) {
    try {
      membership = cluster::NodeMembership::start({
          .node_id = cfg.server.node_id,
          .cluster_addr = cfg.cluster,
          .seeds = cfg.seeds,
          .http_addr = cfg.http.value_or(""),
          .cluster_name = cfg.cluster_name,
          .profile = cfg.cluster_profile,
          .version = cfg.server.server_version,
      });
      std::fprintf(stderr, "cluster listening on %s\n", membership->bound_address().c_str());
      std::fflush(stderr);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mcpmesh-node: cannot join the cluster: %s\n", e.what());
      return 1;
    }
  }
#else
  if (!cfg.cluster.empty()) {
    std::fprintf(stderr, "mcpmesh-node: built without cluster support\n");
    return 1;
  }
#endif

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code ec, int) {
    if (ec) return;
    spdlog::info("shutting down");
#ifdef MCPMESH_WITH_CLUSTER
    if (membership) membership->leave(std::chrono::milliseconds(2000));
#endif
    if (http) http->stop();
    server.close_all();
    pool.stop();
  });

  pool.run();
  return 0;
}
