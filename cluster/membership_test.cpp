#include "cluster/membership.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <optional>

#include "cluster/delegate.hpp"
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
  void make(int n, bool bootstrap = true, const MembershipConfig& cfg = MembershipConfig::lan()) {
    for (int i = 0; i < n; ++i) net.add_node("n" + std::to_string(i), cfg);
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

TEST_F(SimClusterTest, PingMembersReportsWhoAnswersNow) {
  make(4, true, MembershipConfig::fast());
  net.run_for(2s);
  auto ping = [&](int from, std::vector<std::string> ids) {
    std::optional<std::vector<std::string>> answered;
    net.membership(from)->ping_members(ids, [&](std::vector<std::string> a) {
      std::sort(a.begin(), a.end());
      answered = std::move(a);
    });
    net.run_for(1s);
    return answered;
  };
  auto all = ping(0, {"n1", "n2", "n3", "n0", "nobody"});  // itself and strangers are skipped
  ASSERT_TRUE(all);
  EXPECT_EQ(*all, (std::vector<std::string>{"n1", "n2", "n3"}));
  // Cut off a moment ago: its view still holds every member alive, and nobody answers.
  net.partition({0}, {1, 2, 3});
  EXPECT_EQ(state(0, 3), MemberState::kAlive);
  auto cut = ping(0, {"n1", "n2", "n3"});
  ASSERT_TRUE(cut);
  EXPECT_TRUE(cut->empty());
  // One way only: n1's answers to n0 are lost, n2 and n3 answer.
  net.heal();
  net.partition({1}, {0}, /*symmetric=*/false);
  auto oneway = ping(0, {"n1", "n2", "n3"});
  ASSERT_TRUE(oneway);
  EXPECT_EQ(*oneway, (std::vector<std::string>{"n2", "n3"}));
  // Nobody to ask: answered at once.
  auto none = ping(0, {});
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
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

// ---------------------------------------------------------------------------------------------
// Application delegate.

TEST(TransmitQueue, NewestWithTheSameKeyReplacesAndFewestSentGoFirst) {
  TransmitQueue q;
  q.queue("a", "a1");
  q.queue("b", "b1");
  EXPECT_EQ(q.get(100, 10), (std::vector<std::string>{"b1", "a1"}));  // newest first
  q.queue("a", "a2");  // replaces a1, transmissions start afresh
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.get(100, 10), (std::vector<std::string>{"a2", "b1"}));  // a2 sent 0 times, b1 once
  EXPECT_EQ(q.get(2, 10), (std::vector<std::string>{"a2"}));          // room for one only
  // An entry too big for the room left is skipped, not split; a smaller one still fits.
  q.queue("big", std::string(50, 'x'));
  EXPECT_EQ(q.get(10, 10), (std::vector<std::string>{"a2", "b1"}));
  EXPECT_EQ(q.get(100, 10, 1).size(), 1u);  // count bound
  EXPECT_EQ(q.dropped(), 0u);
}

TEST(TransmitQueue, SpentAfterTheLimitAndBoundedWithDropsCounted) {
  TransmitQueue q(3);
  q.queue("a", "a");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(q.get(100, 3).size(), 1u);
  EXPECT_EQ(q.size(), 0u);  // sent 3 times: gone
  EXPECT_TRUE(q.get(100, 3).empty());

  q.queue("a", "a");
  (void)q.get(100, 10);  // a sent once
  q.queue("b", "b");
  q.queue("c", "c");
  q.queue("d", "d");  // over the bound: the most sent (a) goes
  EXPECT_EQ(q.size(), 3u);
  EXPECT_EQ(q.dropped(), 1u);
  EXPECT_EQ(q.get(100, 10), (std::vector<std::string>{"d", "c", "b"}));
  q.queue("e", "e");  // all sent once now: the oldest (b) goes
  EXPECT_EQ(q.dropped(), 2u);
  EXPECT_EQ(q.get(100, 10), (std::vector<std::string>{"e", "d", "c"}));
}

/// Keeps key=value pairs and spreads each new one once more (an application-level epidemic on
/// top of the membership's piggybacking), and records the state exchanges.
class RecordingDelegate final : public Delegate {
 public:
  std::vector<std::string> broadcasts(size_t max_bytes) override {
    if (flood > 0) return std::vector<std::string>(flood, "x");
    return queue.get(max_bytes, 6);
  }
  void on_broadcast(std::string_view data, const std::string& from) override {
    received++;
    std::string d(data);
    auto eq = d.find('=');
    if (eq == std::string::npos || values.count(d.substr(0, eq))) return;
    values[d.substr(0, eq)] = d.substr(eq + 1);
    senders.push_back(from);
    queue.queue(d.substr(0, eq), d);
  }
  std::string local_state(bool join) override { return state; }
  void merge_remote_state(std::string_view remote, bool join, const std::string& from) override {
    merged.push_back({std::string(remote), join, from});
  }
  void put(const std::string& key, const std::string& value) {
    values[key] = value;
    queue.queue(key, key + "=" + value);
  }

  struct Merge {
    std::string state;
    bool join;
    std::string from;
  };
  TransmitQueue queue;
  std::map<std::string, std::string> values;
  std::vector<std::string> senders;
  std::string state;
  std::vector<Merge> merged;
  size_t flood = 0;  // > 0: return this many broadcasts, ignoring the byte budget
  uint64_t received = 0;
};

TEST_F(SimClusterTest, DelegateBroadcastsTravelOnGossipAlone) {
  // No probes or push-pulls in this window: only gossip ticks can carry the broadcast, and the
  // membership's own queue is empty by then, so they must send for the delegate alone.
  auto cfg = MembershipConfig::lan();
  cfg.probe_interval = std::chrono::hours(1);
  cfg.push_pull_interval = std::chrono::hours(1);
  make(8, true, cfg);
  std::vector<RecordingDelegate> d(8);
  for (int i = 0; i < 8; ++i) net.membership(i)->set_delegate(&d[i]);
  net.run_for(10s);  // the start-up alive updates are spent
  uint64_t sent_before = net.messages();
  net.run_for(2s);
  EXPECT_EQ(net.messages(), sent_before) << "nothing to say, nothing sent";

  d[3].put("model", "v7");
  double t = run_until(
      [&] {
        for (auto& x : d)
          if (x.values.count("model") == 0) return false;
        return true;
      },
      5s);
  ASSERT_GE(t, 0) << "broadcast did not reach every node";
  EXPECT_LE(t, 2.0);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(d[i].values["model"], "v7");
    if (i != 3) {
      ASSERT_EQ(d[i].senders.size(), 1u);
      EXPECT_EQ(net.index_of(d[i].senders[0]) >= 0, true) << d[i].senders[0];
      EXPECT_NE(d[i].senders[0], net.id(i));
    }
    EXPECT_EQ(net.membership(i)->counters().rejected_malformed, 0u);
  }
}

TEST_F(SimClusterTest, DelegateStateIsExchangedOnJoinAndPushPullBothWays) {
  auto cfg = MembershipConfig::lan();
  cfg.push_pull_interval = 4s;
  make(2, false, cfg);
  RecordingDelegate d0, d1;
  d0.state = "state-of-n0";
  d1.state = std::string(3 << 20, 's');  // needs several 1 MiB chunks over gRPC, not here
  net.membership(0)->set_delegate(&d0);
  net.membership(1)->set_delegate(&d1);
  net.start(0, {});
  net.start(1, {"n0"});
  net.run_for(100ms);
  // The join: the seed merges the joiner's state and the joiner the seed's, both as a join.
  ASSERT_EQ(d0.merged.size(), 1u);
  EXPECT_EQ(d0.merged[0].state, d1.state);
  EXPECT_TRUE(d0.merged[0].join);
  EXPECT_EQ(d0.merged[0].from, "n1");
  ASSERT_EQ(d1.merged.size(), 1u);
  EXPECT_EQ(d1.merged[0].state, "state-of-n0");
  EXPECT_TRUE(d1.merged[0].join);
  EXPECT_EQ(d1.merged[0].from, "n0");
  // Periodic push-pulls: each merges the other's state, not as a join.
  ASSERT_GE(run_until([&] { return d0.merged.size() >= 3 && d1.merged.size() >= 3; }, 20s), 0);
  for (auto* d : {&d0, &d1})
    for (size_t i = 1; i < d->merged.size(); ++i) EXPECT_FALSE(d->merged[i].join);
  // A delegate that has no state sends none, and none is merged.
  d0.state.clear();
  size_t merged_by_n1 = d1.merged.size();
  ASSERT_GE(run_until([&] { return d0.merged.size() >= 5; }, 20s), 0);
  EXPECT_EQ(d1.merged.size(), merged_by_n1);
}

TEST_F(SimClusterTest, ApplicationDataBeyondTheBoundsIsMalformed) {
  make(3);
  net.run_for(3s);
  Membership& m = *net.membership(0);
  RecordingDelegate d0;
  m.set_delegate(&d0);
  const auto& cfg = m.config();
  uint64_t seq = 5'000'000;
  auto from_x = [&] {
    Message msg = forged("x1", 7, seq++);  // an unknown sender: no replay state to disturb
    return msg;
  };
  uint64_t malformed = m.counters().rejected_malformed;

  Message many = from_x();
  many.app_broadcasts.assign(cfg.max_app_broadcasts_per_message + 1, "b");
  net.inject(0, many, false);
  EXPECT_EQ(m.counters().rejected_malformed, ++malformed);

  Message heavy = from_x();
  heavy.app_broadcasts.assign(2, std::string(cfg.max_app_broadcast_bytes / 2 + 1, 'b'));
  net.inject(0, heavy, false);
  EXPECT_EQ(m.counters().rejected_malformed, ++malformed);

  Message state = from_x();
  state.type = MsgType::kPushPull;
  state.app_state.assign(cfg.max_app_state_bytes + 1, 's');
  net.inject(0, state, true);
  EXPECT_EQ(m.counters().rejected_malformed, ++malformed);

  Message meta = from_x();
  Update u;
  u.node_id = "n9";
  u.state = MemberState::kAlive;
  u.incarnation = 5;
  u.meta = std::make_shared<const MemberMeta>(
      MemberMeta{"n9", "n9", "", "x", 0, std::string(cfg.max_app_meta_bytes + 1, 'm')});
  meta.updates.push_back(u);
  net.inject(0, meta, false);
  EXPECT_EQ(m.counters().rejected_malformed, ++malformed);
  EXPECT_EQ(d0.received, 0u) << "a rejected message hands nothing to the delegate";

  // Exactly at the bounds: accepted, and every broadcast reaches the delegate.
  Message full = from_x();
  full.app_broadcasts.assign(
      cfg.max_app_broadcasts_per_message,
      std::string(cfg.max_app_broadcast_bytes / cfg.max_app_broadcasts_per_message, 'b'));
  net.inject(0, full, false);
  EXPECT_EQ(m.counters().rejected_malformed, malformed);
  EXPECT_EQ(d0.received, cfg.max_app_broadcasts_per_message);

  // Our own delegate asking for more than a message may carry: what fits goes, the rest is
  // counted, and the peers accept what we send.
  d0.flood = cfg.max_app_broadcasts_per_message + 6;
  RecordingDelegate d1;
  net.membership(1)->set_delegate(&d1);
  ASSERT_GE(run_until([&] { return d1.received > 0; }, 5s), 0);
  EXPECT_GT(m.counters().app_oversized, 0u);
  EXPECT_EQ(net.membership(1)->counters().rejected_malformed, 0u);
  d0.flood = 0;
}

// ---------------------------------------------------------------------------------------------
// Listeners and application metadata.

TEST_F(SimClusterTest, SeveralListenersHearEveryChangeAndCanBeRemoved) {
  make(4);
  net.run_for(3s);
  Membership& m = *net.membership(0);
  std::vector<std::pair<MemberState, MemberState>> a, b;
  int once = 0;
  auto la = m.add_listener([&](const MemberView& v, MemberState old) {
    if (v.meta.node_id == "n3") a.push_back({old, v.state});
  });
  m.add_listener([&](const MemberView& v, MemberState old) {
    if (v.meta.node_id == "n3") b.push_back({old, v.state});
  });
  Membership::ListenerId self_removing = 0;
  self_removing = m.add_listener([&](const MemberView&, MemberState) {
    once++;
    net.membership(0)->remove_listener(self_removing);
  });
  net.kill(3);
  ASSERT_GE(run_until([&] { return state(0, 3) == MemberState::kDead; }, 20s), 0);
  using P = std::pair<MemberState, MemberState>;
  const std::vector<P> died = {{MemberState::kAlive, MemberState::kSuspect},
                               {MemberState::kSuspect, MemberState::kDead}};
  EXPECT_EQ(a, died);
  EXPECT_EQ(b, died);
  EXPECT_EQ(once, 1);

  m.remove_listener(la);
  m.remove_listener(12345);  // unknown: ignored
  net.restart(3, {"n0"});
  ASSERT_GE(run_until([&] { return state(0, 3) == MemberState::kAlive; }, 5s), 0);
  EXPECT_EQ(a, died);  // removed: heard nothing more
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[2], P(MemberState::kDead, MemberState::kAlive));
  EXPECT_EQ(once, 1);
}

TEST_F(SimClusterTest, AppMetadataSpreadsWithOneIncarnationAndNotifiesListeners) {
  make(6);
  net.run_for(3s);
  struct Seen {
    MemberState old_state, state;
    std::string app;
    uint64_t incarnation;
  };
  std::vector<std::vector<Seen>> seen(6);
  for (int i = 0; i < 6; ++i)
    net.membership(i)->add_listener([&, i](const MemberView& v, MemberState old) {
      if (v.meta.node_id == "n2") seen[i].push_back({old, v.state, v.meta.app, v.incarnation});
    });
  Membership& n2 = *net.membership(2);
  uint64_t inc = n2.incarnation();
  n2.update_app_meta("shard=7");
  EXPECT_EQ(n2.incarnation(), inc + 1);
  EXPECT_EQ(n2.self().app, "shard=7");
  ASSERT_EQ(seen[2].size(), 1u);  // self, at once
  EXPECT_EQ(seen[2][0].old_state, MemberState::kAlive);
  EXPECT_EQ(seen[2][0].app, "shard=7");

  auto everyone_has = [&](const std::string& app) {
    for (int i = 0; i < 6; ++i)
      for (const auto& v : net.membership(i)->members())
        if (v.meta.node_id == "n2" && v.meta.app != app) return false;
    return true;
  };
  double t = run_until([&] { return everyone_has("shard=7"); }, 5s);
  ASSERT_GE(t, 0);
  EXPECT_LE(t, 1.0);
  for (int i = 0; i < 6; ++i) {
    if (i == 2) continue;
    ASSERT_EQ(seen[i].size(), 1u) << "observer n" << i;
    // Same state before and after: a metadata change.
    EXPECT_EQ(seen[i][0].old_state, MemberState::kAlive);
    EXPECT_EQ(seen[i][0].state, MemberState::kAlive);
    EXPECT_EQ(seen[i][0].app, "shard=7");
    EXPECT_EQ(seen[i][0].incarnation, inc + 1);
  }
  // A metadata change is not a refutation: no health penalty, nobody suspected anything.
  EXPECT_EQ(n2.counters().refutations, 0u);
  EXPECT_EQ(n2.local_health(), 0);
  // Stale alive updates with the old metadata still circulating are not conflicts.
  net.run_for(10s);
  EXPECT_TRUE(everyone_has("shard=7"));
  EXPECT_EQ(n2.counters().rejected_id_conflict, 0u);

  // Too large for the wire: refused, nothing changes.
  n2.update_app_meta(std::string(n2.config().max_app_meta_bytes + 1, 'x'));
  EXPECT_EQ(n2.incarnation(), inc + 1);
  EXPECT_EQ(n2.self().app, "shard=7");
}

// ---------------------------------------------------------------------------------------------
// Second-hand members (no ghosts).

Update alive_update(const std::string& id, const std::string& addr, uint64_t inc) {
  Update u;
  u.node_id = id;
  u.state = MemberState::kAlive;
  u.incarnation = inc;
  u.meta = std::make_shared<const MemberMeta>(MemberMeta{id, addr, "", "x", 0, ""});
  return u;
}

TEST_F(SimClusterTest, SecondHandMemberCountsOnlyOnceItAnswers) {
  make(5, false);
  // n0..n3 know each other; n4 runs but nobody knows it and it knows nobody.
  std::vector<MemberMeta> metas;
  for (int i = 0; i < 4; ++i) metas.push_back(net.membership(i)->self());
  for (int i = 0; i < 4; ++i) net.membership(i)->seed_members(metas, 1);
  for (int i = 0; i < 5; ++i) net.start(i, {});
  net.run_for(3s);
  Membership& m = *net.membership(0);

  // A rumour (gossip from someone else) about n4, and one about a node that does not exist.
  Message rumour = forged("gossiper", 7, 1);
  rumour.updates.push_back(alive_update("n4", "n4", net.membership(4)->incarnation()));
  rumour.updates.push_back(alive_update("ghost", "nowhere", 5));
  net.inject(0, rumour, false);
  EXPECT_EQ(m.state_of("n4"), nullptr) << "second-hand: not a member yet";
  EXPECT_EQ(m.state_of("ghost"), nullptr);
  EXPECT_EQ(m.unverified_count(), 2u);
  EXPECT_EQ(m.live_count(), 4u);

  // n4 answers the verification ping: a member. The ping told it about n0 first-hand.
  ASSERT_GE(run_until([&] { return m.state_of("n4") != nullptr; }, 1s), 0);
  EXPECT_EQ(*m.state_of("n4"), MemberState::kAlive);
  EXPECT_EQ(m.counters().unverified_reached, 1u);
  EXPECT_NE(net.membership(4)->state_of("n0"), nullptr);
  // The ghost never answers: forgotten after a try and a retry, and nothing else changed.
  ASSERT_GE(run_until([&] { return m.unverified_count() == 0; }, 3s), 0);
  EXPECT_EQ(m.counters().unverified_dropped, 1u);
  EXPECT_EQ(m.state_of("ghost"), nullptr);
  EXPECT_EQ(m.local_health(), 0);
  EXPECT_EQ(m.counters().suspicions_started, 0u);

  // One introducer may have max_unverified_per_peer rumours waiting; more are ignored.
  const size_t cap = m.config().max_unverified_per_peer;
  Message flood = forged("gossiper", 7, 2);
  flood.type = MsgType::kPushPull;
  for (size_t i = 0; i < cap + 10; ++i)
    flood.updates.push_back(alive_update("g" + std::to_string(i), "nowhere", 5));
  net.inject(0, flood, true);
  EXPECT_EQ(m.unverified_count(), cap);
  EXPECT_EQ(m.counters().rejected_unverified, 10u);
  // Another introducer has its own allowance.
  Message other = forged("gossiper2", 7, 1);
  other.updates.push_back(alive_update("h0", "nowhere", 5));
  net.inject(0, other, false);
  EXPECT_EQ(m.unverified_count(), cap + 1);
  EXPECT_EQ(m.counters().rejected_unverified, 10u);
}

TEST_F(SimClusterTest, RumourHeardAgainDuringTheLastTryIsVerifiedAgain) {
  make(6, false);
  // n0..n3 know each other; n4 and n5 run, unknown to them.
  std::vector<MemberMeta> metas;
  for (int i = 0; i < 4; ++i) metas.push_back(net.membership(i)->self());
  for (int i = 0; i < 4; ++i) net.membership(i)->seed_members(metas, 1);
  for (int i = 0; i < 6; ++i) net.start(i, {});
  net.run_for(3s);
  Membership& m = *net.membership(0);
  const Duration timeout = m.config().probe_timeout;
  auto rumour_of = [&](int node, uint64_t seq) {
    Message r = forged("gossiper", 7, seq);
    r.updates.push_back(alive_update(net.id(node), net.id(node), 5));
    return r;
  };
  // Both tries lost, the rumour heard once: forgotten, though n5 is reachable afterwards.
  net.set_link_loss(0, 5, 1.0);
  net.inject(0, rumour_of(5, 1), false);
  net.run_for(timeout + timeout / 2);
  net.set_link_loss(0, 5, 0.0);
  ASSERT_GE(run_until([&] { return m.unverified_count() == 0; }, 2s), 0);
  EXPECT_EQ(m.counters().unverified_dropped, 1u);
  EXPECT_EQ(m.state_of("n5"), nullptr);

  // The same, but the rumour comes again while the last try runs: had it come a moment later
  // it would start a new verification, so it does, and n4 answers that one.
  net.set_link_loss(0, 4, 1.0);
  net.inject(0, rumour_of(4, 2), false);
  net.run_for(timeout + timeout / 4);  // into the retry
  net.inject(0, rumour_of(4, 3), false);
  net.run_for(timeout / 4);
  net.set_link_loss(0, 4, 0.0);
  ASSERT_GE(run_until([&] { return m.state_of("n4") != nullptr; }, 2s), 0);
  EXPECT_EQ(m.counters().unverified_dropped, 1u);
  EXPECT_EQ(m.counters().unverified_reached, 1u);
}

TEST_F(SimClusterTest, ForgedJoinListingThousandsOfGhostsChangesNothing) {
  make(8);
  net.run_for(5s);
  bool ghost_listed = false;
  net.set_on_change([&](int, const MemberView& v, MemberState) {
    if (v.meta.node_id.rfind("ghost", 0) == 0) ghost_listed = true;
  });
  // One forged join: 2000 live members that do not exist, from a sender nobody knows.
  Message join = forged("intruder", SimNetwork::kEpochMs, 1);
  join.type = MsgType::kPushPull;
  join.join = true;
  for (int i = 0; i < 2000; ++i)
    join.updates.push_back(
        alive_update("ghost" + std::to_string(i), "ghost-addr" + std::to_string(i), 5));
  net.inject(0, join, true);
  Membership& m = *net.membership(0);
  const auto& cfg = m.config();
  EXPECT_EQ(m.counters().rejected_unverified, 2000 - cfg.max_unverified_per_peer);
  EXPECT_EQ(m.live_count(), 8u);

  // A real crash right after is detected as fast as ever, and n0 stays healthy throughout.
  net.kill(5);
  TimePoint killed = net.now();
  int worst_health = 0;
  double t = run_until(
      [&] {
        worst_health = std::max(worst_health, m.local_health());
        return all_see(5, MemberState::kDead);
      },
      30s);
  ASSERT_GE(t, 0) << "crash not detected";
  // The slowest the protocol may take at 8 nodes (docs/CLUSTER.md §3): the last member probes
  // it after T·(n-1) at worst, one probe interval, then the longest suspicion.
  Duration bound = cfg.probe_interval * 7 + cfg.probe_interval + cfg.suspicion_max(8);
  EXPECT_LE(net.now() - killed, bound);
  ASSERT_GE(run_until(
                [&] {
                  worst_health = std::max(worst_health, m.local_health());
                  return m.unverified_count() == 0;
                },
                10s),
            0);
  EXPECT_EQ(worst_health, 0);
  EXPECT_EQ(m.counters().unverified_dropped, cfg.max_unverified_per_peer);
  EXPECT_FALSE(ghost_listed) << "a ghost was listed somewhere";
  for (int i = 0; i < 8; ++i) {
    if (!net.is_up(i)) continue;
    for (const auto& v : net.membership(i)->members())
      EXPECT_NE(v.meta.node_id.rfind("ghost", 0), 0u) << "n" << i << " lists " << v.meta.node_id;
    EXPECT_EQ(net.membership(i)->live_count(), 7u);
    if (i != 0) {
      EXPECT_EQ(net.membership(i)->unverified_count(), 0u) << "ghosts spread to n" << i;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Boot epochs.

TEST_F(SimClusterTest, ForgedBootEpochShutsAMemberOutOnlyForAWhile) {
  make(4);
  net.run_for(3s);
  bool ever_dead = false;
  net.set_on_change([&](int, const MemberView& v, MemberState) {
    if (v.meta.node_id == "n1" && v.state == MemberState::kDead) ever_dead = true;
  });
  Membership& m = *net.membership(0);
  const auto& cfg = m.config();
  uint64_t boot1 = net.membership(1)->incarnation();  // boot epoch: no refutations yet
  uint64_t wall = static_cast<uint64_t>(SimNetwork::kEpochMs) +
                  static_cast<uint64_t>(net.now().count() / 1'000'000);

  // Far beyond any clock skew: malformed.
  uint64_t malformed = m.counters().rejected_malformed;
  net.inject(0, forged("n1", wall + 61'000, 1), false);
  EXPECT_EQ(m.counters().rejected_malformed, malformed + 1);

  // A little ahead of n1's real epoch: believed (it could be a restart), so n1's real messages
  // now look like an older life and are refused...
  uint64_t replays = m.counters().rejected_replay;
  net.inject(0, forged("n1", boot1 + 10'000, 1), false);
  EXPECT_EQ(m.counters().rejected_replay, replays);
  EXPECT_EQ(m.counters().rejected_malformed, malformed + 1);
  TimePoint forged_at = net.now();
  double reset = run_until([&] { return m.counters().epoch_resets > 0; }, 20s);
  ASSERT_GE(reset, 0) << "n1 shut out for good";
  EXPECT_GT(m.counters().rejected_replay, replays) << "n1's real messages were not refused";
  // ...until the forged epoch has gone unheard for stale_epoch_after: then n1's real epoch
  // wins again, and its messages are accepted from then on.
  EXPECT_GE(net.now() - forged_at, cfg.stale_epoch_after);
  EXPECT_LE(net.now() - forged_at, cfg.stale_epoch_after + 5 * cfg.probe_interval);
  EXPECT_EQ(m.counters().epoch_resets, 1u);
  replays = m.counters().rejected_replay;
  net.run_for(20s);
  EXPECT_EQ(m.counters().rejected_replay, replays);
  EXPECT_EQ(m.counters().epoch_resets, 1u);
  EXPECT_FALSE(ever_dead) << "n1 declared dead because of a forged epoch";
  EXPECT_TRUE(all_see(1, MemberState::kAlive));
}

// ---------------------------------------------------------------------------------------------
// Restarts.

TEST_F(SimClusterTest, RestartedMemberIsNotSuspectedAgain) {
  // Both ways a peer used to suspect a node that had just come back, with no loss at all:
  // - like a gRPC channel, a link that pinged the dead address is in reconnect backoff, where
  //   calls fail at once even after a new process listens there, until the transport is reset;
  // - a probe begun while the node was suspect, still running when it was declared dead and
  //   came back, failed against the old life and must not suspect the new one.
  net.set_reconnect_backoff(1s);
  make(4, true, MembershipConfig::fast());  // pings a dead member every 400 ms: always in backoff
  net.run_for(3s);
  for (int round = 0; round < 6; ++round) {
    net.kill(3);
    ASSERT_GE(run_until([&] { return all_see(3, MemberState::kDead); }, 10s), 0);
    // Back at once (a probe begun while n3 was suspect may still be running: its failure is
    // about the old life), or a second later (reconnect pings keep the links in backoff).
    if (round % 2 == 1) net.run_for(1s);
    std::vector<uint64_t> suspicions, resets;
    for (int i = 0; i < 3; ++i) {
      suspicions.push_back(net.membership(i)->counters().suspicions_started);
      resets.push_back(net.transport_resets(i));
    }
    net.restart(3, {"n0"});
    ASSERT_GE(run_until([&] { return all_see(3, MemberState::kAlive); }, 5s), 0);
    net.run_for(3s);
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(net.membership(i)->counters().suspicions_started, suspicions[i])
          << "n" << i << " suspected the restarted n3 (round " << round << ")";
      EXPECT_GT(net.transport_resets(i), resets[i]) << "n" << i;
    }
    EXPECT_EQ(net.membership(3)->counters().refutations, 0u) << "round " << round;
    EXPECT_TRUE(all_see(3, MemberState::kAlive));
  }
}

}  // namespace
}  // namespace mcpmesh::cluster
