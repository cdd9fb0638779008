// mcpmesh-cluster-agent: cluster membership alone (no MCP), for membership tests and
// benchmarks. The same cluster node as mcpmesh-node's, locked the same way (a cluster secret,
// optional mutual TLS). Prints "cluster listening on HOST:PORT" to stderr when bound.
// SIGTERM/SIGINT: graceful leave, exit 0.

#include <spdlog/spdlog.h>

#include <boost/program_options.hpp>
#include <csignal>
#include <iostream>
#include <sstream>

#include "cluster/mesh/cluster_node.hpp"

namespace po = boost::program_options;
namespace mc = mcpmesh::cluster;

int main(int argc, char** argv) {
  mc::ClusterNodeConfig cfg;
  std::string seeds, secret_file, tls_cert, tls_key, tls_ca;
  int leave_ms = 1000;
  std::string log_level = "info";
  po::options_description desc("mcpmesh-cluster-agent options");
  desc.add_options()("help,h", "show help")("node-id", po::value(&cfg.node_id)->required(),
                                            "node id")(
      "cluster", po::value(&cfg.listen)->default_value("127.0.0.1:0"),
      "HOST:PORT of the cluster gRPC server (port 0 = pick)")(
      "seeds", po::value(&seeds)->default_value(""), "comma-separated HOST:PORT seeds")(
      "advertise", po::value(&cfg.advertise),
      "HOST:PORT other nodes dial (default: the bound one)")(
      "http", po::value(&cfg.http_advertise)->default_value(""), "advertised HTTP address")(
      "cluster-name", po::value(&cfg.cluster_name)->default_value("mcpmesh"), "cluster name")(
      "cluster-profile", po::value(&cfg.profile)->default_value("fast"), "lan | fast")(
      "cluster-secret-file", po::value(&secret_file)->required(),
      "file holding the cluster secret")("cluster-tls-cert", po::value(&tls_cert),
                                         "PEM certificate for mutual TLS")(
      "cluster-tls-key", po::value(&tls_key), "PEM key of --cluster-tls-cert")(
      "cluster-tls-ca", po::value(&tls_ca), "PEM cluster CA")(
      "leave-ms", po::value(&leave_ms)->default_value(leave_ms), "graceful leave deadline")(
      "log-level", po::value(&log_level)->default_value(log_level), "spdlog level");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    if (vm.count("help")) {
      std::cout << desc << "\n";
      return 0;
    }
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n" << desc << "\n";
    return 2;
  }
  spdlog::set_level(spdlog::level::from_str(log_level));
  std::stringstream ss(seeds);
  for (std::string s; std::getline(ss, s, ',');)
    if (!s.empty()) cfg.seeds.push_back(s);
  cfg.version = "agent";
  if (!tls_cert.empty()) cfg.tls = mc::TlsFiles{tls_cert, tls_key, tls_ca};

  // Block the stop signals in every thread; this one waits for them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  std::unique_ptr<mc::ClusterNode> node;
  try {
    cfg.secret = mc::load_cluster_secret(secret_file);
    node = mc::ClusterNode::start(cfg);
  } catch (const std::exception& e) {
    std::cerr << "cluster start failed: " << e.what() << std::endl;
    return 1;
  }
  std::cerr << "cluster listening on " << node->bound_address() << std::endl;
  int sig = 0;
  sigwait(&set, &sig);
  node->leave(std::chrono::milliseconds(leave_ms));
  node.reset();
  return 0;
}
