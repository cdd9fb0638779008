#include "cluster/membership.hpp"

#include <gtest/gtest.h>

#include "cluster/sim_network.hpp"

namespace mcpmesh::cluster {
namespace {

using namespace std::chrono_literals;

TEST(MembershipConfig, FormulasFollowTheDocs) {
  auto c = MembershipConfig::lan();
  EXPECT_EQ(c.suspicion_min(4), c.probe_interval);  // log10 floor of 1
  EXPECT_EQ(c.suspicion_min(1000), Duration(static_cast<int64_t>(3 * c.probe_interval.count())));
  EXPECT_EQ(c.suspicion_max(1000),
            Duration(static_cast<int64_t>(c.suspicion_beta * 3 * c.probe_interval.count())));
  EXPECT_EQ(c.suspicion_timeout(1000, 0), c.suspicion_max(1000));
  EXPECT_EQ(c.suspicion_timeout(1000, 3), c.suspicion_min(1000));
  EXPECT_LT(c.suspicion_timeout(1000, 1), c.suspicion_max(1000));
  EXPECT_GT(c.suspicion_timeout(1000, 1), c.suspicion_timeout(1000, 2));
  EXPECT_EQ(c.expected_confirmations(3), 1);
  EXPECT_EQ(c.retransmit_limit(1000), 13);  // ceil(4 * log10(1001))
  EXPECT_EQ(c.push_pull_period(32), c.push_pull_interval);
  EXPECT_GT(c.push_pull_period(1024), c.push_pull_interval);
  EXPECT_THROW(MembershipConfig::profile("wan"), std::invalid_argument);
}

class SimClusterTest : public ::testing::Test {
 protected:
  void make(int n, bool bootstrap = true) {
    for (int i = 0; i < n; ++i) net.add_node("n" + std::to_string(i), MembershipConfig::lan());
    if (bootstrap) {
      net.bootstrap_full_mesh();
      for (int i = 0; i < n; ++i) net.start(i, {});
    }
  }
  MemberState state(int observer, int target) {
    const MemberState* s = net.membership(observer)->state_of(net.id(target));
    return s ? *s : MemberState::kDead;
  }
  bool all_see(int target, MemberState st) {
    for (int i = 0; i < net.size(); ++i) {
      if (i == target || !net.is_up(i) || net.is_paused(i)) continue;
      const MemberState* s = net.membership(i)->state_of(net.id(target));
      if (!s || *s != st) return false;
    }
    return true;
  }
  /// Runs until pred() or `limit` of virtual time; returns the virtual seconds it took.
  template <typename Pred>
  double run_until(Pred pred, Duration limit) {
    TimePoint start = net.now();
    while (net.now() - start < limit) {
      net.run_for(10ms);
      if (pred()) return std::chrono::duration<double>(net.now() - start).count();
    }
    return -1;
  }
  Message forged(const std::string& from, uint64_t boot, uint64_t seq) {
    Message m;
    m.type = MsgType::kGossip;
    m.cluster = "mcpmesh";
    m.sender_id = from;
    m.sender_addr = from;
    m.boot_epoch = boot;
    m.seq = seq;
    return m;
  }
  SimNetwork net{42};
};

TEST_F(SimClusterTest, JoinThroughOneSeed) {
  make(8, false);
  net.start(0, {});
  for (int i = 1; i < 8; ++i) net.start(i, {"n0"});
  double t = run_until(
      [&] {
        for (int i = 0; i < 8; ++i)
          if (net.membership(i)->live_count() != 8) return false;
        return true;
      },
      10s);
  EXPECT_GE(t, 0);
  EXPECT_LE(t, 3.0);
}

TEST_F(SimClusterTest, JoinRetriesUntilSeedAppears) {
  make(3, false);
  net.start(1, {"n0"});
  net.start(2, {"n0"});
  net.run_for(3s);  // n0 not running: joins keep retrying with backoff
  EXPECT_FALSE(net.membership(1)->joined());
  net.start(0, {});
  double t = run_until([&] { return net.membership(0)->live_count() == 3; }, 15s);
  EXPECT_GE(t, 0);
}

TEST_F(SimClusterTest, GracefulLeaveShowsLeftAtOnce) {
  make(8);
  net.run_for(5s);
  net.leave(3);
  double t = run_until([&] { return all_see(3, MemberState::kLeft); }, 5s);
  EXPECT_GE(t, 0);
  EXPECT_LE(t, 0.1);
  net.kill(3);
  net.run_for(30s);
  EXPECT_TRUE(all_see(3, MemberState::kLeft));  // never turns into dead
}

TEST_F(SimClusterTest, CrashDetectedAndRestartRejoinsWithHigherIncarnation) {
  make(8);
  net.run_for(5s);
  uint64_t before = net.membership(5)->incarnation();
  net.kill(5);
  EXPECT_GE(run_until([&] { return all_see(5, MemberState::kDead); }, 20s), 0);
  net.restart(5, {"n0"});
  EXPECT_GT(net.membership(5)->incarnation(), before);
  EXPECT_GE(run_until([&] { return all_see(5, MemberState::kAlive); }, 5s), 0);
}

TEST_F(SimClusterTest, ShortPauseSurvivesLongPauseIsDeadThenAlive) {
  make(8);
  net.run_for(5s);
  auto cfg = MembershipConfig::lan();
  net.pause(2);
  net.run_for(cfg.suspicion_min(8) / 2);
  net.resume(2);
  net.run_for(20s);
  EXPECT_TRUE(all_see(2, MemberState::kAlive));
  for (int i = 0; i < 8; ++i)
    if (i != 2) {
      EXPECT_EQ(net.membership(i)->counters().declared_dead, 0u);
    }

  net.pause(2);
  EXPECT_GE(run_until([&] { return all_see(2, MemberState::kDead); }, 30s), 0);
  net.resume(2);
  EXPECT_GE(run_until([&] { return all_see(2, MemberState::kAlive); }, 5s), 0);
}

TEST_F(SimClusterTest, BadInputIsRejectedCountedAndHarmless) {
  make(6);
  net.run_for(3s);
  Membership& m = *net.membership(0);
  uint64_t boot1 = net.membership(1)->incarnation();  // boot epoch: no refutations yet

  Message wrong_cluster = forged("n1", boot1, 1'000'000);
  wrong_cluster.cluster = "other";
  net.inject(0, wrong_cluster, false);
  EXPECT_EQ(m.counters().rejected_cluster, 1u);

  Message ok = forged("n1", boot1, 2'000'000);
  net.inject(0, ok, false);
  EXPECT_EQ(m.counters().rejected_replay, 0u);
  net.inject(0, ok, false);  // replay
  EXPECT_EQ(m.counters().rejected_replay, 1u);
  net.inject(0, forged("n1", boot1 - 1, 3'000'000), false);  // older life
  EXPECT_EQ(m.counters().rejected_replay, 2u);

  Message malformed = forged("n1", boot1, 2'000'001);
  Update u;
  u.node_id = "n2";
  u.state = MemberState::kAlive;
  u.incarnation = 99;  // alive without metadata
  malformed.updates.push_back(u);
  net.inject(0, malformed, false);
  Message empty_sender = forged("", boot1, 5);
  net.inject(0, empty_sender, true);
  EXPECT_EQ(m.counters().rejected_malformed, 2u);

  // Someone claiming n1's id from another address, or claiming to be n0 itself.
  Message impostor = forged("n1", boot1 + 1, 1);
  impostor.sender_addr = "evil";
  net.inject(0, impostor, false);
  net.inject(0, forged("n0", 1, 1), false);
  EXPECT_EQ(m.counters().rejected_id_conflict, 2u);

  // A gossip update moving live n2 to another address (id takeover) is refused too.
  Message takeover = forged("n1", boot1, 2'000'002);
  Update t;
  t.node_id = "n2";
  t.state = MemberState::kAlive;
  t.incarnation = net.membership(2)->incarnation() + 100;
  t.meta = std::make_shared<const MemberMeta>(MemberMeta{"n2", "evil", "", "x", 0});
  takeover.updates.push_back(t);
  net.inject(0, takeover, false);
  EXPECT_EQ(m.counters().rejected_id_conflict, 3u);

  // A forged incarnation far beyond any wall clock (which no refutation could beat) is
  // malformed, and n2 stays alive everywhere.
  Message huge = forged("n1", boot1, 2'000'003);
  Update h;
  h.node_id = "n2";
  h.state = MemberState::kSuspect;
  h.incarnation = ~uint64_t{0};
  h.from = "n1";
  huge.updates.push_back(h);
  net.inject(0, huge, false);
  EXPECT_EQ(m.counters().rejected_malformed, 3u);

  net.run_for(30s);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(net.membership(i)->live_count(), 6u);
    EXPECT_EQ(net.membership(i)->counters().declared_dead, 0u);
  }
  for (const auto& v : m.members()) EXPECT_NE(v.meta.grpc_addr, "evil");
}

}  // namespace
}  // namespace mcpmesh::cluster
