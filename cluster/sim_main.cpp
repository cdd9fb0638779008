// mcpmesh-sim: runs membership scenarios in the deterministic simulator and prints one JSON
// object per scenario on stdout. Same arguments and seed -> same output (except wall_s).

#include <boost/program_options.hpp>

#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "cluster/sim_scenarios.hpp"

namespace po = boost::program_options;
using namespace mcpmesh::cluster;

namespace {
template <typename T>
std::vector<T> parse_list(const std::string& s) {
  std::vector<T> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    std::stringstream is(item);
    T v{};
    is >> v;
    out.push_back(v);
  }
  return out;
}
}  // namespace

int main(int argc, char** argv) {
  std::string scenario = "steady", nodes_s = "64", loss_s = "0", profile = "lan";
  uint64_t seed = 1;
  double duration = 600, split = 60;
  int kills = 10, joins = 5;
  bool asymmetric = false;
  double retransmit_mult = 0;
  int max_piggyback = 0;
  double verify_fraction = 0;
  po::options_description desc("mcpmesh-sim options");
  desc.add_options()("help,h", "show help")(
      "scenario", po::value(&scenario)->default_value(scenario),
      "steady (kills + joins + loss) | partition (half|half, heal)")(
      "nodes", po::value(&nodes_s)->default_value(nodes_s), "comma-separated cluster sizes")(
      "loss", po::value(&loss_s)->default_value(loss_s), "comma-separated uniform loss rates")(
      "seed", po::value(&seed)->default_value(seed), "random seed")(
      "duration", po::value(&duration)->default_value(duration), "virtual seconds (steady)")(
      "kills", po::value(&kills)->default_value(kills), "crashes to measure (steady)")(
      "joins", po::value(&joins)->default_value(joins), "joins to measure (steady)")(
      "split", po::value(&split)->default_value(split), "partition length, virtual seconds")(
      "asymmetric", po::bool_switch(&asymmetric), "partition one direction only")(
      "profile", po::value(&profile)->default_value(profile), "lan | fast")(
      "retransmit-mult", po::value(&retransmit_mult), "override λ (tuning)")(
      "max-piggyback", po::value(&max_piggyback), "override updates per message (tuning)")(
      "verify-fraction", po::value(&verify_fraction), "override verification period (tuning)");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n" << desc << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  for (int n : parse_list<int>(nodes_s)) {
    for (double loss : parse_list<double>(loss_s)) {
      ScenarioResult r;
      if (scenario == "steady") {
        SteadyScenario s;
        s.nodes = n;
        s.loss = loss;
        s.seed = seed;
        s.duration_s = duration;
        s.kills = kills;
        s.joins = joins;
        s.profile = profile;
        s.retransmit_mult = retransmit_mult;
        s.max_piggyback = max_piggyback;
        s.verify_fraction = verify_fraction;
        r = run_steady(s);
      } else if (scenario == "partition") {
        PartitionScenario s;
        s.nodes = n;
        s.side_a = n / 2;
        s.loss = loss;
        s.seed = seed;
        s.split_s = split;
        s.symmetric = !asymmetric;
        s.profile = profile;
        r = run_partition(s);
      } else {
        std::cerr << "unknown scenario " << scenario << "\n";
        return 2;
      }
      std::printf("%s\n", r.to_json().c_str());
      std::fflush(stdout);
    }
  }
  return 0;
}
