#include "registry/cluster_view.hpp"

#include <gtest/gtest.h>

#include <map>

namespace mcpmesh::registry {
namespace {

using Kind = ClusterView::Route::Kind;
using State = ClusterView::NodeState;

class ClusterViewTest : public ::testing::Test {
 protected:
  ClusterViewTest() {
    view.set_self_epoch(100);
    view.set_converged(true);
    add("n1", State::kAlive, 100, {"n2"});
    add("n2", State::kAlive, 200, {"n3"});
    add("n3", State::kAlive, 300, {"n1"});
    add("n4", State::kAlive, 400, {"n1", "n2"});
  }
  void add(const std::string& id, State state, std::uint64_t epoch,
           std::vector<std::string> replicas) {
    ASSERT_TRUE(view.set_member({id, state, epoch, id + ":7000", std::move(replicas)}));
  }
  void set_state(const std::string& id, State state) {
    auto m = *view.member(id);
    m.state = state;
    view.set_member(m);
  }
  ClusterView view{"n1"};
};

TEST_F(ClusterViewTest, OwnSessionsAreAnsweredHere) {
  EXPECT_EQ(view.resolve("n1", 100).kind, Kind::kHere);
  // An earlier epoch of ours that nobody continued is gone.
  EXPECT_EQ(view.resolve("n1", 50).kind, Kind::kHere);
}

TEST_F(ClusterViewTest, OwnSessionsHandedOverAreRelayedToTheirHolder) {
  ASSERT_TRUE(view.apply_adoption({"n1", 100, "n2", 1}));  // this node drained to n2
  auto r = view.resolve("n1", 100);
  EXPECT_EQ(r.kind, Kind::kRemote);
  EXPECT_EQ(r.node, "n2");
}

TEST_F(ClusterViewTest, LiveOwnerIsAskedDirectly) {
  auto r = view.resolve("n2", 200);
  EXPECT_EQ(r.kind, Kind::kRemote);
  EXPECT_EQ(r.node, "n2");
  EXPECT_EQ(r.address, "n2:7000");
  set_state("n2", State::kSuspect);  // a suspicion moves nothing
  EXPECT_EQ(view.resolve("n2", 200).node, "n2");
}

TEST_F(ClusterViewTest, DeadOwnersSessionsGoToItsHeirUntilAdoptedThenToTheHolder) {
  set_state("n2", State::kDead);
  // n2 announced n3 as its heir: ask n3 (it answers 503 itself until it has taken over).
  auto r = view.resolve("n2", 200);
  EXPECT_EQ(r.kind, Kind::kRemote);
  EXPECT_EQ(r.node, "n3");
  ASSERT_TRUE(view.apply_adoption({"n2", 200, "n3", 1}));
  EXPECT_EQ(view.resolve("n2", 200).node, "n3");
  // The holder dies in turn: its heir (n1, this node) continues both sets.
  set_state("n3", State::kDead);
  EXPECT_EQ(view.resolve("n2", 200).kind, Kind::kUnavailable) << "taking over, not gone";
  EXPECT_EQ(view.resolve("n3", 300).kind, Kind::kUnavailable);
  view.mark_adopted_here("n3", 300);
  EXPECT_EQ(view.resolve("n2", 200).kind, Kind::kHere) << "taken over and not here: gone";
  EXPECT_EQ(view.resolve("n3", 300).kind, Kind::kHere);
}

TEST_F(ClusterViewTest, HeirIsTheFirstLiveAnnouncedReplica) {
  EXPECT_EQ(view.heir_of("n4"), "n1");
  set_state("n1", State::kDead);
  EXPECT_EQ(view.heir_of("n4"), "n2");
  set_state("n2", State::kLeft);
  EXPECT_EQ(view.heir_of("n4"), std::nullopt) << "every copy is gone";
  set_state("n4", State::kDead);
  EXPECT_EQ(view.resolve("n4", 400).kind, Kind::kHere) << "nobody holds a copy: 404";
}

TEST_F(ClusterViewTest, WithoutAnnouncementTheHeirIsTheRendezvousChoice) {
  add("n5", State::kAlive, 500, {});
  std::vector<std::string> live;
  for (auto& m : view.members()) {
    if (m.id != "n5") live.push_back(m.id);
  }
  EXPECT_EQ(view.heir_of("n5"), ClusterView::rendezvous("n5", live, 1).front());
}

TEST_F(ClusterViewTest, ARestartedOwnersEarlierSessionsAreAskedOfItsHeirUntilTheAdoptionIsKnown) {
  add("n2", State::kAlive, 250, {"n4"});  // n2 restarted: a later epoch, and new replicas
  EXPECT_EQ(view.resolve("n2", 250).node, "n2");
  // The life before (200) announced n3: n3 has continued its sessions or says they are gone,
  // whether or not the news of an adoption has reached this node yet.
  auto r = view.resolve("n2", 200);
  EXPECT_EQ(r.kind, Kind::kRemote);
  EXPECT_EQ(r.node, "n3");
  EXPECT_EQ(r.address, "n3:7000");
  // An older life: gone.
  EXPECT_EQ(view.resolve("n2", 150).kind, Kind::kHere);
  // With an adoption, the old epoch's sessions live on with their holder.
  view.apply_adoption({"n2", 200, "n4", 1});
  EXPECT_EQ(view.resolve("n2", 200).node, "n4");
}

TEST_F(ClusterViewTest, ARestartedOwnersEarlierSessionsAreGoneWhenTheirHeirIsThisNode) {
  // n3's life 300 announced n1 (this node), which does not hold the session asked about.
  add("n3", State::kAlive, 350, {"n1"});
  EXPECT_EQ(view.resolve("n3", 300).kind, Kind::kHere);
  // n2's life 200 announced n3; with n3 gone as well, nobody holds a copy.
  add("n2", State::kAlive, 250, {"n1"});
  set_state("n3", State::kDead);
  EXPECT_EQ(view.resolve("n2", 200).kind, Kind::kHere);
}

TEST_F(ClusterViewTest, ARestartedOwnerThatInheritedItsEarlierSessionsServesThem) {
  // n2's first life (200) was continued by n3; n2 restarted (250); then n3 died and n2, its
  // heir, continued them back: n2 holds its own earlier sessions again.
  add("n2", State::kAlive, 250, {"n3"});
  ASSERT_TRUE(view.apply_adoption({"n2", 200, "n2", 2}));
  auto r = view.resolve("n2", 200);
  EXPECT_EQ(r.kind, Kind::kRemote) << "not gone: n2 holds them";
  EXPECT_EQ(r.node, "n2");
}

TEST_F(ClusterViewTest, UnknownOwnerIsUnavailableUntilConverged) {
  EXPECT_EQ(view.resolve("n9", 1).kind, Kind::kHere);
  view.set_converged(false);
  EXPECT_EQ(view.resolve("n9", 1).kind, Kind::kUnavailable);
}

TEST_F(ClusterViewTest, AdoptionsOnlyMoveForward) {
  EXPECT_TRUE(view.apply_adoption({"n2", 200, "n3", 5}));
  EXPECT_FALSE(view.apply_adoption({"n2", 200, "n4", 5})) << "same version is not news";
  EXPECT_FALSE(view.apply_adoption({"n2", 200, "n4", 4}));
  EXPECT_TRUE(view.apply_adoption({"n2", 200, "n4", 6}));
  EXPECT_EQ(view.adoption("n2", 200)->holder, "n4");
  EXPECT_EQ(view.max_adoption_version(), 6u);
  EXPECT_FALSE(view.apply_adoption({"", 1, "n4", 7}));
  EXPECT_EQ(view.refused(), 1u);
}

TEST_F(ClusterViewTest, QuorumIsAMajorityOfTheMembersThatDidNotLeave) {
  EXPECT_TRUE(view.quorate());
  set_state("n4", State::kDead);  // 3 of 4
  EXPECT_TRUE(view.quorate());
  set_state("n3", State::kSuspect);  // 2 of 4, n1 (the lowest id) among them
  EXPECT_TRUE(view.quorate());
  set_state("n3", State::kLeft);  // 2 of 3
  EXPECT_TRUE(view.quorate());
  set_state("n2", State::kDead);  // 1 of 3
  EXPECT_FALSE(view.quorate());
}

TEST_F(ClusterViewTest, TwoSidesOfAPartitionNeverBothHoldTheQuorum) {
  // n1 isolated: it sees every other member suspect, then dead.
  for (auto* id : {"n2", "n3", "n4"}) set_state(id, State::kSuspect);
  EXPECT_FALSE(view.quorate());
  for (auto* id : {"n2", "n3", "n4"}) set_state(id, State::kDead);
  EXPECT_FALSE(view.quorate());
  // The other side of that cut, seen from n2.
  ClusterView n2{"n2"};
  for (auto* id : {"n2", "n3", "n4"}) ASSERT_TRUE(n2.set_member({id, State::kAlive, 1, "", {}}));
  ASSERT_TRUE(n2.set_member({"n1", State::kDead, 1, "", {}}));
  EXPECT_TRUE(n2.quorate());
  // Halves: {n1, n2} | {n3, n4}. Only the half with the lowest id continues sessions.
  for (auto* id : {"n2", "n3", "n4"}) set_state(id, State::kAlive);
  set_state("n3", State::kDead);
  set_state("n4", State::kDead);
  EXPECT_TRUE(view.quorate());
  ClusterView n3{"n3"};
  for (auto* id : {"n3", "n4"}) ASSERT_TRUE(n3.set_member({id, State::kAlive, 1, "", {}}));
  for (auto* id : {"n1", "n2"}) ASSERT_TRUE(n3.set_member({id, State::kDead, 1, "", {}}));
  EXPECT_FALSE(n3.quorate());
  // A node alone, before it heard of anyone, holds it.
  ClusterView alone{"n9"};
  EXPECT_TRUE(alone.quorate());
}

TEST_F(ClusterViewTest, WithAnswersOnlyMembersThatAnsweredCount) {
  // Cut off a moment ago: n1 declared n2 dead, n3 is suspect, n4 still alive in its view; a
  // ping to n4 goes unanswered.
  set_state("n2", State::kDead);
  set_state("n3", State::kSuspect);
  EXPECT_TRUE(view.quorate());  // n1 and n4: half, with the lowest id
  const std::vector<std::string> nobody, n4{"n4"}, n3_n4{"n3", "n4"};
  EXPECT_FALSE(view.quorate(&nobody));
  EXPECT_TRUE(view.quorate(&n4));
  EXPECT_TRUE(view.quorate(&n3_n4));
  // An answer counts only with the view's own verdict: a suspect member that answered is not up.
  set_state("n4", State::kSuspect);
  EXPECT_FALSE(view.quorate(&n3_n4));
  // From n4's side, where n1 is the lowest id: n4 and n1 are half only if n1 counts.
  ClusterView n4_view{"n4"};
  for (auto* id : {"n1", "n4"}) ASSERT_TRUE(n4_view.set_member({id, State::kAlive, 1, "", {}}));
  for (auto* id : {"n2", "n3"}) ASSERT_TRUE(n4_view.set_member({id, State::kDead, 1, "", {}}));
  const std::vector<std::string> n1{"n1"};
  EXPECT_TRUE(n4_view.quorate(&n1));
  EXPECT_FALSE(n4_view.quorate(&nobody));
}

TEST(ClusterViewLimits, AdoptionTableAndMembersAreBounded) {
  ClusterView view("n1", {.max_members = 3, .max_adoptions = 2});
  EXPECT_TRUE(view.apply_adoption({"a", 1, "h", 1}));
  EXPECT_TRUE(view.apply_adoption({"b", 1, "h", 1}));
  EXPECT_FALSE(view.apply_adoption({"c", 1, "h", 1}));
  EXPECT_TRUE(view.apply_adoption({"a", 1, "g", 2})) << "updates still apply when full";
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(view.set_member({"m" + std::to_string(i)}));
  EXPECT_FALSE(view.set_member({"m9"}));
  EXPECT_FALSE(view.set_member({"x", State::kAlive, 1, "x:1", std::vector<std::string>(9, "r")}));
  EXPECT_EQ(view.refused(), 3u);
}

TEST(Rendezvous, DeterministicAndSpread) {
  std::vector<std::string> nodes{"n1", "n2", "n3", "n4"};
  EXPECT_EQ(ClusterView::rendezvous("k", nodes, 2), ClusterView::rendezvous("k", nodes, 2));
  std::map<std::string, int> first;
  for (int i = 0; i < 4000; ++i) ++first[ClusterView::rendezvous(std::to_string(i), nodes, 1)[0]];
  for (auto& n : nodes) EXPECT_GT(first[n], 800) << n;  // ~1000 each
  // Removing a node only moves the keys it ranked first.
  std::vector<std::string> three{"n1", "n2", "n4"};
  for (int i = 0; i < 500; ++i) {
    auto k = std::to_string(i);
    auto before = ClusterView::rendezvous(k, nodes, 1)[0];
    if (before != "n3") {
      EXPECT_EQ(ClusterView::rendezvous(k, three, 1)[0], before);
    }
  }
}

TEST(ClusterViewInterest, DeltasApplyInOrderAndGapsAreReported) {
  ClusterView view("n1");
  using R = ClusterView::DeltaResult;
  EXPECT_EQ(view.apply_interest_delta("n2", 0, 1, {"a", "b"}, {}), R::kApplied);
  EXPECT_EQ(view.apply_interest_delta("n3", 0, 1, {"b"}, {}), R::kApplied);
  auto nodes = view.interested("b");
  std::sort(nodes.begin(), nodes.end());
  EXPECT_EQ(nodes, (std::vector<std::string>{"n2", "n3"}));
  EXPECT_EQ(view.apply_interest_delta("n2", 1, 2, {}, {"a"}), R::kApplied);
  EXPECT_TRUE(view.interested("a").empty());
  EXPECT_EQ(view.apply_interest_delta("n2", 1, 2, {"z"}, {}), R::kStale);
  EXPECT_EQ(view.apply_interest_delta("n2", 5, 6, {"z"}, {}), R::kGap);
  EXPECT_TRUE(view.interested("z").empty()) << "a gap changes nothing";
  EXPECT_TRUE(view.set_interest("n2", 6, {"z"}));
  EXPECT_EQ(view.interested("z"), std::vector<std::string>{"n2"});
  EXPECT_TRUE(view.interested("b").size() == 1) << "n2's b went with its full set";
  EXPECT_FALSE(view.set_interest("n2", 6, {"y"})) << "not newer";
  EXPECT_EQ(view.interest_version("n2"), 6u);
  view.drop_interest("n2");
  EXPECT_TRUE(view.interested("z").empty());
  EXPECT_EQ(view.apply_interest_delta("n1", 0, 1, {"self"}, {}), R::kRefused);
  EXPECT_EQ(view.apply_interest_delta("n4", 0, 1, {std::string(5000, 'u')}, {}), R::kRefused);
}

TEST(ClusterViewInterest, SetsAreBoundedPerNode) {
  ClusterView view("n1", {.max_interest_uris = 3});
  using R = ClusterView::DeltaResult;
  EXPECT_EQ(view.apply_interest_delta("n2", 0, 1, {"a", "b", "c"}, {}), R::kApplied);
  EXPECT_EQ(view.apply_interest_delta("n2", 1, 2, {"d"}, {}), R::kRefused);
  EXPECT_EQ(view.apply_interest_delta("n2", 1, 2, {"d"}, {"a"}), R::kApplied);
  EXPECT_FALSE(view.set_interest("n3", 1, {"a", "b", "c", "d"}));
  EXPECT_EQ(view.interest_uri_count(), 3u);
}

}  // namespace
}  // namespace mcpmesh::registry
