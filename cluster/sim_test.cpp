#include <gtest/gtest.h>

#include <regex>

#include "cluster/sim_scenarios.hpp"

namespace mcpmesh::cluster {
namespace {

std::string without_wall(const std::string& json) {
  return std::regex_replace(json, std::regex(",\"wall_s\":[0-9.]+"), "");
}

TEST(MembershipSimulator, SameSeedSameOutput) {
  SteadyScenario s;
  s.nodes = 16;
  s.loss = 0.05;
  s.duration_s = 90;
  s.kills = 2;
  s.joins = 2;
  s.seed = 7;
  auto a = run_steady(s);
  auto b = run_steady(s);
  EXPECT_EQ(without_wall(a.to_json()), without_wall(b.to_json()));
  s.seed = 8;
  auto c = run_steady(s);
  EXPECT_NE(without_wall(a.to_json()), without_wall(c.to_json()));
}

TEST(MembershipSimulator, DetectsCrashesAndJoins) {
  SteadyScenario s;
  s.nodes = 48;
  s.duration_s = 200;
  s.kills = 6;
  s.joins = 3;
  auto r = run_steady(s);
  SCOPED_TRACE(r.to_json());
  EXPECT_EQ(r.kills, 6);
  EXPECT_EQ(r.undetected, 0);
  EXPECT_LE(r.detection_p99_s, 10.0);
  EXPECT_GE(r.join_convergence_100_s, 0.0);
  EXPECT_LE(r.join_convergence_100_s, 4.0);
  EXPECT_EQ(r.false_positives, 0);
}

TEST(MembershipSimulator, NoFalsePositivesAtTenPercentLoss) {
  SteadyScenario s;
  s.nodes = 64;
  s.loss = 0.10;
  s.duration_s = 600;  // ten virtual minutes
  s.kills = 4;
  s.joins = 3;
  auto r = run_steady(s);
  SCOPED_TRACE(r.to_json());
  EXPECT_EQ(r.false_positives, 0);
  EXPECT_EQ(r.undetected, 0);
}

TEST(MembershipSimulator, SmallClusterCrashRestartCycles) {
  SteadyScenario s;
  s.nodes = 4;
  s.duration_s = 300;
  s.kills = 10;  // each victim restarts after detection, so 4 nodes suffice
  s.joins = 0;
  auto r = run_steady(s);
  SCOPED_TRACE(r.to_json());
  EXPECT_EQ(r.kills, 10);
  EXPECT_EQ(r.undetected, 0);
  EXPECT_LE(r.detection_p99_s, 10.0);
  EXPECT_EQ(r.false_positives, 0);
}

TEST(MembershipSimulator, SymmetricPartitionsHeal) {
  for (int n : {4, 64}) {
    PartitionScenario p;
    p.nodes = n;
    p.side_a = n / 2;
    p.split_s = 40;
    auto r = run_partition(p);
    SCOPED_TRACE(r.to_json());
    EXPECT_TRUE(r.split_detected);
    EXPECT_GE(r.heal_s, 0.0);
    EXPECT_LE(r.heal_s, 10.0);
  }
}

TEST(MembershipSimulator, AsymmetricPartitionHeals) {
  PartitionScenario p;
  p.nodes = 16;
  p.side_a = 8;
  p.symmetric = false;
  p.split_s = 40;
  auto r = run_partition(p);
  SCOPED_TRACE(r.to_json());
  EXPECT_GE(r.heal_s, 0.0);
  EXPECT_LE(r.heal_s, 10.0);
}

}  // namespace
}  // namespace mcpmesh::cluster
