#include "cluster/sim_scenarios.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <set>
#include <unordered_map>
#include <vector>

#include "cluster/sim_network.hpp"

namespace mcpmesh::cluster {

namespace {

using WallClock = std::chrono::steady_clock;

Duration secs(double s) { return Duration(static_cast<int64_t>(s * 1e9)); }
double to_s(int64_t ns) { return static_cast<double>(ns) / 1e9; }

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size())));
  rank = std::clamp<size_t>(rank, 1, v.size());
  return v[rank - 1];
}

std::string node_name(int i) { return "n" + std::to_string(i); }

void add_counters(SimNetwork& net, ScenarioResult& r) {
  for (int i = 0; i < net.size(); ++i) {
    Membership* m = net.membership(i);
    if (!m) continue;
    const auto& c = m->counters();
    r.suspicions += c.suspicions_started;
    r.refutations += c.refutations;
    r.rejected +=
        c.rejected_malformed + c.rejected_replay + c.rejected_cluster + c.rejected_id_conflict;
  }
}

}  // namespace

std::string ScenarioResult::to_json() const {
  char buf[1024];
  std::snprintf(
      buf, sizeof buf,
      "{\"scenario\":\"%s\",\"nodes\":%d,\"loss\":%.3f,\"seed\":%llu,\"virtual_s\":%.1f,"
      "\"kills\":%d,\"undetected\":%d,\"detection_p50_s\":%.3f,\"detection_p99_s\":%.3f,"
      "\"detection_max_s\":%.3f,\"join_convergence_999_s\":%.3f,"
      "\"join_convergence_100_s\":%.3f,\"false_positives\":%d,\"false_positive_events\":%llu,"
      "\"msgs_per_node_per_s\":%.3f,\"heal_s\":%.3f,\"split_detected\":%s,"
      "\"suspicions\":%llu,\"refutations\":%llu,\"rejected\":%llu,\"wall_s\":%.2f}",
      scenario.c_str(), nodes, loss, static_cast<unsigned long long>(seed), virtual_s, kills,
      undetected, detection_p50_s, detection_p99_s, detection_max_s, join_convergence_999_s,
      join_convergence_100_s, false_positives,
      static_cast<unsigned long long>(false_positive_events), msgs_per_node_per_s, heal_s,
      split_detected ? "true" : "false", static_cast<unsigned long long>(suspicions),
      static_cast<unsigned long long>(refutations), static_cast<unsigned long long>(rejected),
      wall_s);
  return buf;
}

ScenarioResult run_steady(const SteadyScenario& s) {
  auto wall_start = WallClock::now();
  MembershipConfig cfg = MembershipConfig::profile(s.profile);
  if (s.retransmit_mult > 0) cfg.retransmit_mult = s.retransmit_mult;
  if (s.max_piggyback > 0) cfg.max_piggyback = s.max_piggyback;
  if (s.verify_fraction > 0) cfg.verify_fraction = s.verify_fraction;
  SimNetwork net(s.seed);
  net.set_loss(s.loss);
  for (int i = 0; i < s.nodes; ++i) net.add_node(node_name(i), cfg);
  net.bootstrap_full_mesh();
  for (int i = 0; i < s.nodes; ++i) net.start(i, {});

  struct KillTrack {
    int64_t t = 0;
    std::vector<bool> needed;  // by observer index
    std::vector<bool> seen;
    int remaining = 0;
    double detected_s = -1;
  };
  struct JoinTrack {
    int64_t t = 0;
    std::vector<bool> needed;
    std::vector<bool> seen;
    int total = 0;
    int count = 0;
    double t999 = -1, t100 = -1;
  };
  std::vector<KillTrack> kill_log;        // one per kill
  std::unordered_map<int, size_t> kills;  // victim -> its current kill_log entry
  std::unordered_map<int, JoinTrack> joins;
  std::set<int> killed;
  std::set<int> falsely_dead;
  uint64_t fp_events = 0;

  const bool debug = std::getenv("MCPMESH_SIM_DEBUG") != nullptr;
  std::vector<std::string> trace;
  net.set_on_change([&](int observer, const MemberView& v, MemberState old) {
    int target = net.index_of(v.meta.node_id);
    if (target < 0) return;
    if (debug) {
      char line[160];
      std::snprintf(line, sizeof line, "%9.3f %s sees %s %s->%s inc+%llu", to_s(net.now().count()),
                    net.id(observer).c_str(), v.meta.node_id.c_str(),
                    std::string(to_string(old)).c_str(), std::string(to_string(v.state)).c_str(),
                    static_cast<unsigned long long>(v.incarnation - SimNetwork::kEpochMs));
      trace.push_back(line);
    }
    if (v.state == MemberState::kDead) {
      if (!killed.count(target)) {
        if (std::getenv("MCPMESH_SIM_DEBUG"))
          std::fprintf(stderr, "false positive: t=%.3f %s declares %s dead (inc %llu)\n",
                       to_s(net.now().count()), net.id(observer).c_str(), v.meta.node_id.c_str(),
                       static_cast<unsigned long long>(v.incarnation));
        if (debug)
          for (const auto& l : trace)
            if (l.find(" " + v.meta.node_id + " ") != std::string::npos &&
                to_s(net.now().count()) - std::atof(l.c_str()) < 20)
              std::fprintf(stderr, "  %s\n", l.c_str());
        fp_events++;
        falsely_dead.insert(target);
      }
      auto it = kills.find(target);
      if (it != kills.end()) {
        KillTrack& k = kill_log[it->second];
        if (observer < static_cast<int>(k.needed.size()) && k.needed[observer] &&
            !k.seen[observer]) {
          k.seen[observer] = true;
          if (--k.remaining == 0) k.detected_s = to_s(net.now().count() - k.t);
        }
      }
    } else if (v.state == MemberState::kAlive) {
      auto it = joins.find(target);
      if (it != joins.end()) {
        JoinTrack& j = it->second;
        if (observer < static_cast<int>(j.needed.size()) && j.needed[observer] &&
            !j.seen[observer]) {
          j.seen[observer] = true;
          j.count++;
          double t = to_s(net.now().count() - j.t);
          int need999 = static_cast<int>(std::ceil(0.999 * j.total));
          if (j.count >= need999 && j.t999 < 0) j.t999 = t;
          if (j.count == j.total) j.t100 = t;
          if (debug && t > 1.0)
            std::fprintf(stderr, "late join: %s sees %s alive after %.3f s (was %s)\n",
                         net.id(observer).c_str(), v.meta.node_id.c_str(), t,
                         std::string(to_string(old)).c_str());
          if (debug && t > 1.0)
            for (const auto& l : trace)
              if ((l.find(" " + net.id(observer) + " ") != std::string::npos ||
                   l.find(" " + v.meta.node_id + " ") != std::string::npos) &&
                  to_s(net.now().count()) - std::atof(l.c_str()) < 8)
                std::fprintf(stderr, "  %s\n", l.c_str());
        }
      }
    }
  });

  std::mt19937_64 rng(s.seed ^ 0xC0FFEEull);
  const double warmup = 10;
  int events = std::max(1, std::max(s.kills, s.joins));
  double spacing = (s.duration_s - warmup - 15) / events;
  struct Action {
    double t;
    bool kill;
  };
  std::vector<Action> plan;
  for (int k = 0; k < s.kills; ++k) plan.push_back({warmup + k * spacing, true});
  for (int j = 0; j < s.joins; ++j) plan.push_back({warmup + (j + 0.5) * spacing, false});
  std::stable_sort(plan.begin(), plan.end(), [](auto& a, auto& b) { return a.t < b.t; });

  auto up_mask = [&](int exclude) {
    std::vector<bool> m(net.size(), false);
    int count = 0;
    for (int i = 0; i < net.size(); ++i)
      if (net.is_up(i) && i != exclude) m[i] = true, count++;
    return std::make_pair(m, count);
  };

  int next_join = s.nodes;
  // Killed nodes come back (new process, same address) well after their detection, so the
  // cluster keeps its size and small clusters can be measured many times.
  std::vector<std::pair<double, int>> restarts;
  std::unordered_map<int, double> restarted_at;
  auto restart_due = [&](double until) {
    while (!restarts.empty() && restarts.front().first <= until) {
      auto [t, victim] = restarts.front();
      restarts.erase(restarts.begin());
      net.run_until(secs(t));
      killed.erase(victim);
      kills.erase(victim);
      restarted_at[victim] = t;
      std::vector<std::string> seeds;
      for (int i = 0; i < net.size() && seeds.size() < 3; ++i) {
        int c = static_cast<int>((static_cast<size_t>(victim) + 1 + i * 7919u) % net.size());
        if (c != victim && net.is_up(c)) seeds.push_back(net.id(c));
      }
      net.restart(victim, seeds);
    }
  };
  for (const Action& a : plan) {
    restart_due(a.t);
    net.run_until(secs(a.t));
    if (a.kill) {
      std::vector<int> candidates;
      for (int i = 0; i < s.nodes; ++i)
        if (net.is_up(i)) candidates.push_back(i);
      if (candidates.size() < 3) continue;
      int victim = candidates[std::uniform_int_distribution<size_t>(0, candidates.size() - 1)(rng)];
      killed.insert(victim);
      net.kill(victim);
      // A dead observer can no longer see anything: stop waiting for it.
      double now_s = to_s(net.now().count());
      for (auto& [j, t] : joins) {
        if (victim >= static_cast<int>(t.needed.size()) || !t.needed[victim] || t.seen[victim])
          continue;
        t.needed[victim] = false;
        t.total--;
        int need999 = static_cast<int>(std::ceil(0.999 * t.total));
        if (t.count >= need999 && t.t999 < 0) t.t999 = now_s - to_s(t.t);
        if (t.count >= t.total && t.t100 < 0) t.t100 = now_s - to_s(t.t);
      }
      for (auto& [v, idx] : kills) {
        KillTrack& k = kill_log[idx];
        if (victim >= static_cast<int>(k.needed.size()) || !k.needed[victim] || k.seen[victim] ||
            k.remaining == 0)
          continue;
        k.needed[victim] = false;
        if (--k.remaining == 0) k.detected_s = now_s - to_s(k.t);
      }
      restarts.emplace_back(a.t + 0.6 * spacing, victim);
      auto [mask, count] = up_mask(victim);
      KillTrack k;
      k.t = net.now().count();
      k.needed = mask;
      k.seen.assign(mask.size(), false);
      k.remaining = count;
      kills[victim] = kill_log.size();
      kill_log.push_back(std::move(k));
    } else {
      // The seed is a settled member: not one that restarted a moment ago and is still
      // rejoining itself (that measures the restart, not the join).
      std::vector<int> candidates;
      for (int i = 0; i < net.size(); ++i)
        if (net.is_up(i) && (!restarted_at.count(i) || a.t - restarted_at[i] > 5))
          candidates.push_back(i);
      int seed = candidates[std::uniform_int_distribution<size_t>(0, candidates.size() - 1)(rng)];
      auto [mask, count] = up_mask(-1);
      int j = net.add_node(node_name(next_join++), cfg);
      JoinTrack t;
      t.t = net.now().count();
      mask.push_back(false);
      t.needed = mask;
      t.seen.assign(mask.size(), false);
      t.total = count;
      joins[j] = std::move(t);
      net.start(j, {net.id(seed)});
    }
  }
  restart_due(s.duration_s);
  net.run_until(secs(s.duration_s));

  ScenarioResult r;
  r.scenario = "steady";
  r.nodes = s.nodes;
  r.loss = s.loss;
  r.seed = s.seed;
  r.virtual_s = s.duration_s;
  std::vector<double> det;
  for (const KillTrack& k : kill_log) {
    r.kills++;
    if (k.detected_s < 0)
      r.undetected++;
    else
      det.push_back(k.detected_s);
  }
  r.detection_p50_s = percentile(det, 0.50);
  r.detection_p99_s = percentile(det, 0.99);
  r.detection_max_s = det.empty() ? -1 : *std::max_element(det.begin(), det.end());
  double worst999 = -1, worst100 = -1;
  bool never = false;
  for (auto& [j, t] : joins) {
    if (t.t999 < 0 || t.t100 < 0) never = true;
    worst999 = std::max(worst999, t.t999);
    worst100 = std::max(worst100, t.t100);
  }
  r.join_convergence_999_s = never ? -1 : worst999;
  r.join_convergence_100_s = never ? -1 : worst100;
  r.false_positives = static_cast<int>(falsely_dead.size());
  r.false_positive_events = fp_events;
  r.msgs_per_node_per_s =
      static_cast<double>(net.messages()) / (static_cast<double>(s.nodes) * s.duration_s);
  add_counters(net, r);
  r.wall_s = std::chrono::duration<double>(WallClock::now() - wall_start).count();
  return r;
}

ScenarioResult run_partition(const PartitionScenario& s) {
  auto wall_start = WallClock::now();
  MembershipConfig cfg = MembershipConfig::profile(s.profile);
  SimNetwork net(s.seed);
  net.set_loss(s.loss);
  for (int i = 0; i < s.nodes; ++i) net.add_node(node_name(i), cfg);
  net.bootstrap_full_mesh();
  for (int i = 0; i < s.nodes; ++i) net.start(i, {});
  std::vector<int> alive_count(s.nodes, s.nodes);
  net.set_on_change([&](int observer, const MemberView& v, MemberState old) {
    bool was = old == MemberState::kAlive, is = v.state == MemberState::kAlive;
    // A brand-new member is reported with old == dead; none appear in this scenario.
    if (was && !is) alive_count[observer]--;
    if (!was && is) alive_count[observer]++;
  });

  const double warmup = 10;
  net.run_until(secs(warmup));
  std::vector<int> a, b;
  for (int i = 0; i < s.nodes; ++i) (i < s.side_a ? a : b).push_back(i);
  net.partition(a, b, s.symmetric);
  net.run_until(secs(warmup + s.split_s));

  auto sees_dead = [&](int observer, const std::vector<int>& others) {
    for (int o : others) {
      const MemberState* st = net.membership(observer)->state_of(net.id(o));
      if (!st || *st != MemberState::kDead) return false;
    }
    return true;
  };
  ScenarioResult r;
  r.scenario = s.symmetric ? "partition" : "partition_asym";
  r.nodes = s.nodes;
  r.loss = s.loss;
  r.seed = s.seed;
  r.split_detected = sees_dead(a.front(), b) && sees_dead(b.front(), a);

  net.heal();
  int64_t healed_at = net.now().count();
  auto identical = [&] {
    for (int i = 0; i < s.nodes; ++i)
      if (alive_count[i] != s.nodes) return false;
    auto ref = net.membership(0)->members();
    for (int i = 1; i < s.nodes; ++i) {
      auto other = net.membership(i)->members();
      if (other.size() != ref.size()) return false;
      for (size_t k = 0; k < ref.size(); ++k)
        if (other[k].meta.node_id != ref[k].meta.node_id || other[k].state != ref[k].state ||
            other[k].incarnation != ref[k].incarnation)
          return false;
    }
    return true;
  };
  const Duration step = std::chrono::milliseconds(100);
  while (net.now().count() - healed_at < secs(s.max_heal_s).count()) {
    net.run_for(step);
    if (identical()) {
      r.heal_s = to_s(net.now().count() - healed_at);
      break;
    }
  }
  r.virtual_s = to_s(net.now().count());
  r.msgs_per_node_per_s =
      static_cast<double>(net.messages()) / (static_cast<double>(s.nodes) * r.virtual_s);
  add_counters(net, r);
  r.wall_s = std::chrono::duration<double>(WallClock::now() - wall_start).count();
  return r;
}

}  // namespace mcpmesh::cluster
