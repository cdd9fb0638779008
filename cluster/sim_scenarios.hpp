#pragma once
// Standard simulator scenarios and their measurements (used by mcpmesh-sim and the tests).
// Thread-safety: each call is self-contained and single-threaded.

#include <cstdint>
#include <string>

#include "cluster/config.hpp"

namespace mcpmesh::cluster {

struct SteadyScenario {
  int nodes = 64;
  double loss = 0.0;
  uint64_t seed = 1;
  double duration_s = 600;  // virtual
  int kills = 10;           // crashes, evenly spaced, each measured for detection
  int joins = 5;            // new nodes joining through one seed, each measured
  std::string profile = "lan";
  double retransmit_mult = 0;  // 0 = profile default (tuning experiments)
  int max_piggyback = 0;       // 0 = profile default
  double verify_fraction = 0;  // 0 = profile default
};

struct PartitionScenario {
  int nodes = 64;
  int side_a = 32;  // nodes [0, side_a) vs the rest
  double loss = 0.0;
  uint64_t seed = 1;
  bool symmetric = true;
  double split_s = 60;     // long enough for each side to declare the other dead
  double max_heal_s = 60;  // give up measuring after this
  std::string profile = "lan";
};

struct ScenarioResult {
  std::string scenario;
  int nodes = 0;
  double loss = 0;
  uint64_t seed = 0;
  double virtual_s = 0;
  int kills = 0;
  int undetected = 0;
  double detection_p50_s = -1;
  double detection_p99_s = -1;
  double detection_max_s = -1;
  double join_convergence_999_s = -1;
  double join_convergence_100_s = -1;
  int false_positives = 0;  // distinct healthy nodes ever marked dead by anyone
  uint64_t false_positive_events = 0;
  double msgs_per_node_per_s = 0;
  double heal_s = -1;           // partition: heal -> identical member lists everywhere
  bool split_detected = false;  // partition: both sides saw the other dead before healing
  uint64_t suspicions = 0;
  uint64_t refutations = 0;
  uint64_t rejected = 0;
  double wall_s = 0;
  /// One JSON object on one line; identical for identical inputs except wall_s.
  [[nodiscard]] std::string to_json() const;
};

[[nodiscard]] ScenarioResult run_steady(const SteadyScenario& s);
[[nodiscard]] ScenarioResult run_partition(const PartitionScenario& s);

}  // namespace mcpmesh::cluster
