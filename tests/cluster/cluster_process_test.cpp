// Real processes on loopback: formation, crash detection, pause/resume, restart (and no
// suspicion of the restarted node), graceful leave, bad input. Loose bounds here; with
// MCPMESH_CLUSTER_TRIALS=N each timing scenario runs N times and prints "BENCH <metric> <seconds>"
// lines (bench/cluster_bench.sh aggregates them).

#include <gtest/gtest.h>

#include <cstdio>
#include <memory>

#include "process_cluster.hpp"
#include "proto/membership.grpc.pb.h"

namespace mcpmesh::testing {
namespace {

using namespace std::chrono_literals;

int trials() {
  const char* t = std::getenv("MCPMESH_CLUSTER_TRIALS");
  return t ? std::max(1, std::atoi(t)) : 1;
}

void bench(const char* metric, double seconds) {
  std::printf("BENCH %s %.3f\n", metric, seconds);
  std::fflush(stdout);
}

class ClusterProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto start = SteadyClock::now();
    NodeProcess* n1 = cluster.start("n1", {});
    ASSERT_NE(n1, nullptr) << "cannot start " << node_binary();
    seed = n1->addr;
    for (const char* id : {"n2", "n3", "n4"}) ASSERT_NE(cluster.start(id, {seed}), nullptr);
    double t = wait_for([&] { return cluster.all_alive(4); }, 10s);
    ASSERT_GE(t, 0) << "4 nodes did not converge";
    formed_s = std::chrono::duration<double>(SteadyClock::now() - start).count();
  }
  void TearDown() override {
    if (HasFailure()) cluster.keep_logs();
  }
  ProcessCluster cluster{::testing::UnitTest::GetInstance()->current_test_info()->name()};
  std::string seed;
  double formed_s = 0;
};

TEST_F(ClusterProcessTest, FormsFromOneSeedAndCtlListsMembers) {
  bench("form_4_nodes_s", formed_s);
  EXPECT_LE(formed_s, 5.0);
  std::string cmd = std::string(MCPMESH_CTL_BIN) + " --node " + seed + " --cluster-secret-file " +
                    cluster.secret_file() + " members --json";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  EXPECT_EQ(pclose(p), 0);
  size_t alive = 0;
  for (size_t pos = 0; (pos = out.find("\"state\":\"alive\"", pos)) != std::string::npos; ++pos)
    alive++;
  EXPECT_EQ(alive, 4u) << out;
  EXPECT_NE(out.find("\"local_health\""), std::string::npos);
}

TEST_F(ClusterProcessTest, SigkillDetectedAndRestartSeenAlive) {
  for (int i = 0; i < trials(); ++i) {
    NodeProcess& victim = *cluster.find("n4");
    std::string addr = victim.addr;
    cluster.kill_hard(victim);
    double dead = wait_for([&] { return cluster.all_see("n4", pb::MEMBER_STATE_DEAD); }, 10s);
    ASSERT_GE(dead, 0) << "crash not detected everywhere";
    bench("sigkill_detect_s", dead);
    EXPECT_LE(dead, 8.0);
    auto spawned = SteadyClock::now();                      // includes process start-up and bind
    ASSERT_NE(cluster.start("n4", {seed}, addr), nullptr);  // same address, new process
    double alive = wait_for([&] { return cluster.all_see("n4", pb::MEMBER_STATE_ALIVE); }, 10s);
    ASSERT_GE(alive, 0) << "restarted node not seen alive everywhere";
    alive = std::chrono::duration<double>(SteadyClock::now() - spawned).count();
    bench("restart_alive_s", alive);
    EXPECT_LE(alive, 6.0);
  }
}

TEST_F(ClusterProcessTest, RestartedNodeIsNotSuspectedAgain) {
  // Peers used to suspect a node about a second after it came back on its address: their
  // channels to it were still in reconnect backoff from its downtime (calls failed at once),
  // and a probe begun before its death could finish after its return and count against it.
  auto counter = [&](NodeProcess& n, const char* name) -> std::optional<uint64_t> {
    auto r = cluster.members(n.addr);
    if (!r || !r->counters().count(name)) return std::nullopt;
    return r->counters().at(name);
  };
  const int rounds = std::max(3, trials());
  for (int i = 0; i < rounds; ++i) {
    NodeProcess& victim = *cluster.find("n4");
    std::string addr = victim.addr;
    cluster.kill_hard(victim);
    ASSERT_GE(wait_for([&] { return cluster.all_see("n4", pb::MEMBER_STATE_DEAD); }, 10s), 0)
        << "crash not detected everywhere (round " << i << ")";
    std::map<std::string, uint64_t> suspicions;
    for (auto& n : cluster.nodes()) {
      if (n.id == "n4") continue;
      auto s = counter(n, "suspicions_started");
      ASSERT_TRUE(s.has_value()) << n.id << " did not answer";
      suspicions[n.id] = *s;
    }
    ASSERT_NE(cluster.start("n4", {seed}, addr), nullptr);  // same address, new process
    ASSERT_GE(wait_for([&] { return cluster.all_see("n4", pb::MEMBER_STATE_ALIVE); }, 10s), 0)
        << "restarted node not seen alive everywhere (round " << i << ")";
    // Watch for 3 s (the observation window, not synchronisation): stop at the first relapse.
    std::string relapse;
    wait_for(
        [&] {
          for (auto& n : cluster.nodes()) {
            if (n.id == "n4") {
              auto r = counter(n, "refutations");
              if (r && *r > 0) relapse = "n4 refuted a suspicion";
            } else {
              auto s = counter(n, "suspicions_started");
              if (s && *s > suspicions[n.id]) relapse = n.id + " suspected n4";
            }
          }
          return !relapse.empty();
        },
        3000ms);
    EXPECT_EQ(relapse, "") << "round " << i;
    auto resets = counter(*cluster.find("n1"), "transport_resets");
    EXPECT_TRUE(resets && *resets > 0) << "n1 never reset its connection to the restarted n4";
    ASSERT_TRUE(cluster.all_alive(4));
  }
}

TEST_F(ClusterProcessTest, ShortPauseSurvivesLongPauseDiesAndComesBack) {
  for (int i = 0; i < trials(); ++i) {
    NodeProcess& n3 = *cluster.find("n3");
    // Shorter than the suspicion timeout: nobody may ever see it dead.
    n3.stopped = true;
    cluster.signal(n3, SIGSTOP);
    std::this_thread::sleep_for(150ms);  // the pause itself, not synchronisation
    cluster.signal(n3, SIGCONT);
    n3.stopped = false;
    bool ever_dead = false;
    wait_for(
        [&] {
          for (auto& n : cluster.nodes())
            if (n.id != "n3" && cluster.state(n, "n3") == pb::MEMBER_STATE_DEAD) ever_dead = true;
          return false;
        },
        2s);
    EXPECT_FALSE(ever_dead) << "a short pause was declared dead";

    // Longer than the suspicion timeout: dead everywhere, then alive again after SIGCONT.
    n3.stopped = true;
    cluster.signal(n3, SIGSTOP);
    double dead = wait_for([&] { return cluster.all_see("n3", pb::MEMBER_STATE_DEAD); }, 10s);
    EXPECT_GE(dead, 0) << "long pause not declared dead";
    bench("sigstop_detect_s", dead);
    cluster.signal(n3, SIGCONT);
    n3.stopped = false;
    double alive = wait_for([&] { return cluster.all_see("n3", pb::MEMBER_STATE_ALIVE); }, 10s);
    ASSERT_GE(alive, 0) << "resumed node not alive everywhere";
    bench("sigcont_alive_s", alive);
    EXPECT_LE(alive, 6.0);
    ASSERT_GE(wait_for([&] { return cluster.all_alive(4); }, 10s), 0);
  }
}

TEST_F(ClusterProcessTest, GracefulLeaveShowsLeftAtOnce) {
  for (int i = 0; i < trials(); ++i) {
    NodeProcess& n2 = *cluster.find("n2");
    std::string addr = n2.addr;
    n2.stopped = true;  // leaving: no longer an observer
    cluster.signal(n2, SIGTERM);
    double left = wait_for([&] { return cluster.all_see("n2", pb::MEMBER_STATE_LEFT); }, 5s);
    ASSERT_GE(left, 0) << "leave not seen as left everywhere";
    bench("leave_seen_s", left);
    EXPECT_LE(left, 2.0);
    EXPECT_TRUE(cluster.terminate(n2, 5000ms, /*already_signalled=*/true))
        << "leave did not exit cleanly";
    if (i + 1 < trials()) {
      ASSERT_NE(cluster.start("n2", {seed}, addr), nullptr);
      ASSERT_GE(wait_for([&] { return cluster.all_alive(4); }, 10s), 0);
    }
  }
}

TEST_F(ClusterProcessTest, BadInputIsRejectedAndCounted) {
  // From a peer holding the cluster secret (an insider): the membership's own checks.
  auto channel = grpc::CreateChannel(seed, grpc::InsecureChannelCredentials());
  auto stub = pb::Membership::NewStub(channel);
  std::string method;  // of the next call, for its call token
  auto call = [&](auto fn) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 1s);
    cluster.auth().stamp(ctx, method);
    return fn(ctx);
  };
  method = "/mcpmesh.v1.Membership/Ping";
  // Unknown cluster.
  pb::PingRequest ping;
  ping.mutable_env()->set_cluster("other-cluster");
  ping.mutable_env()->set_sender_id("x1");
  ping.mutable_env()->set_sender_addr("127.0.0.1:1");
  ping.mutable_env()->set_boot_epoch(1);
  ping.mutable_env()->set_seq(1);
  ping.set_target_id("n1");
  pb::PingResponse pong;
  ASSERT_TRUE(call([&](grpc::ClientContext& c) { return stub->Ping(&c, ping, &pong); }).ok());
  EXPECT_FALSE(pong.ack());
  // Someone claiming n2's id from another address.
  auto n2 = cluster.find("n2");
  pb::GossipRequest g;
  g.mutable_env()->set_cluster("mcpmesh");
  g.mutable_env()->set_sender_id("n2");
  g.mutable_env()->set_sender_addr("127.0.0.1:1");
  // A plausible epoch (now): one far ahead of the receiver's clock is malformed before anything.
  g.mutable_env()->set_boot_epoch(
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count()));
  g.mutable_env()->set_seq(1);
  pb::GossipResponse gr;
  method = "/mcpmesh.v1.Membership/Gossip";
  ASSERT_TRUE(call([&](grpc::ClientContext& c) { return stub->Gossip(&c, g, &gr); }).ok());
  // A replay from n2's previous life (older boot epoch).
  g.mutable_env()->set_sender_addr(n2->addr);
  g.mutable_env()->set_boot_epoch(1);
  ASSERT_TRUE(call([&](grpc::ClientContext& c) { return stub->Gossip(&c, g, &gr); }).ok());
  // Malformed: an update with no state and no incarnation.
  pb::GossipRequest bad;
  bad.mutable_env()->set_cluster("mcpmesh");
  bad.mutable_env()->set_sender_id("ghost");
  bad.mutable_env()->set_sender_addr("127.0.0.1:2");
  bad.mutable_env()->set_boot_epoch(5);
  bad.mutable_env()->set_seq(1);
  bad.mutable_env()->add_gossip()->set_node_id("n3");
  ASSERT_TRUE(call([&](grpc::ClientContext& c) { return stub->Gossip(&c, bad, &gr); }).ok());

  double t = wait_for(
      [&] {
        auto r = cluster.members(seed);
        if (!r) return false;
        const auto& c = r->counters();
        return c.at("rejected_cluster") >= 1 && c.at("rejected_id_conflict") >= 1 &&
               c.at("rejected_replay") >= 1 && c.at("rejected_malformed") >= 1;
      },
      5s);
  EXPECT_GE(t, 0) << "rejections not counted";
  if (t < 0) {
    auto r = cluster.members(seed);
    if (r)
      for (const auto& [k, v] : r->counters())
        std::printf("%s=%llu\n", k.c_str(), static_cast<unsigned long long>(v));
  }
  std::this_thread::sleep_for(500ms);  // let any damage (there should be none) spread
  EXPECT_TRUE(cluster.all_alive(4));
  auto final_view = cluster.members(seed);
  ASSERT_TRUE(final_view.has_value());
  for (const auto& m : final_view->members())
    EXPECT_NE(m.grpc_addr(), "127.0.0.1:1") << "impostor address accepted";
}

}  // namespace
}  // namespace mcpmesh::testing
