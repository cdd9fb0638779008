// mcpmesh-cluster-agent: membership only, for integration tests and benchmarks until (and
// besides) mcpmesh-node wiring. Prints "cluster listening on HOST:PORT" to stderr when bound.
// SIGTERM/SIGINT: graceful leave, exit 0.

#include <spdlog/spdlog.h>

#include <boost/program_options.hpp>
#include <csignal>
#include <iostream>
#include <sstream>

#include "cluster/node_membership.hpp"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  mcpmesh::cluster::NodeClusterConfig cfg;
  std::string seeds;
  int leave_ms = 1000;
  std::string log_level = "info";
  cfg.profile = "fast";
  po::options_description desc("mcpmesh-cluster-agent options");
  desc.add_options()("help,h", "show help")("node-id", po::value(&cfg.node_id)->required(),
                                            "node id")(
      "cluster", po::value(&cfg.cluster_addr)->default_value("127.0.0.1:0"),
      "HOST:PORT of the membership gRPC server (port 0 = pick)")(
      "seeds", po::value(&seeds)->default_value(""), "comma-separated HOST:PORT seeds")(
      "http", po::value(&cfg.http_addr)->default_value(""), "advertised HTTP address")(
      "cluster-name", po::value(&cfg.cluster_name)->default_value("mcpmesh"), "cluster name")(
      "cluster-profile", po::value(&cfg.profile)->default_value("fast"), "lan | fast")(
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
  spdlog::set_default_logger(spdlog::default_logger());
  spdlog::set_level(spdlog::level::from_str(log_level));
  std::stringstream ss(seeds);
  for (std::string s; std::getline(ss, s, ',');)
    if (!s.empty()) cfg.seeds.push_back(s);
  cfg.version = "agent";

  // Block the stop signals in every thread; this one waits for them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  std::unique_ptr<mcpmesh::cluster::NodeMembership> node;
  try {
    node = mcpmesh::cluster::NodeMembership::start(cfg);
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
