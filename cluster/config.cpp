#include "cluster/config.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace mcpmesh::cluster {

using std::chrono::milliseconds;

std::string_view to_string(MemberState s) {
  switch (s) {
    case MemberState::kAlive:
      return "alive";
    case MemberState::kSuspect:
      return "suspect";
    case MemberState::kDead:
      return "dead";
    case MemberState::kLeft:
      return "left";
  }
  return "unknown";
}

MembershipConfig MembershipConfig::fast() {
  MembershipConfig c;
  c.probe_interval = milliseconds(200);
  c.probe_timeout = milliseconds(80);
  c.suspicion_alpha = 2.0;
  c.suspicion_beta = 4.0;
  c.gossip_interval = milliseconds(50);
  c.push_pull_interval = std::chrono::seconds(5);
  c.reconnect_interval = milliseconds(400);
  c.join_retry_min = milliseconds(100);
  c.join_retry_max = milliseconds(1000);
  c.join_timeout = milliseconds(500);
  c.bulk_timeout = std::chrono::seconds(2);
  c.state_exchange_limit = std::chrono::seconds(4);
  c.oneway_timeout = milliseconds(200);
  c.stale_epoch_after = std::chrono::seconds(1);  // 3 * 200 ms, raised to the 1 s floor
  return c;
}

MembershipConfig MembershipConfig::profile(std::string_view name) {
  if (name == "lan") return lan();
  if (name == "fast") return fast();
  throw std::invalid_argument("unknown cluster profile: " + std::string(name));
}

Duration MembershipConfig::suspicion_min(size_t n) const {
  double scale = std::max(1.0, std::log10(static_cast<double>(std::max<size_t>(n, 1))));
  return Duration(static_cast<int64_t>(suspicion_alpha * scale * probe_interval.count()));
}

Duration MembershipConfig::suspicion_max(size_t n) const {
  return Duration(static_cast<int64_t>(suspicion_beta * suspicion_min(n).count()));
}

int MembershipConfig::expected_confirmations(size_t n) const {
  int others = static_cast<int>(n) - 2;
  return std::max(0, std::min(suspicion_confirmations, others));
}

Duration MembershipConfig::suspicion_timeout(size_t n, int confirmations) const {
  Duration lo = suspicion_min(n);
  Duration hi = suspicion_max(n);
  int k = expected_confirmations(n);
  if (k <= 0) return hi;
  double frac = std::log(confirmations + 1.0) / std::log(k + 1.0);
  auto t = static_cast<int64_t>(hi.count() - (hi - lo).count() * std::min(1.0, frac));
  return std::max(lo, Duration(t));
}

int MembershipConfig::retransmit_limit(size_t n) const {
  return std::max(
      min_retransmits,
      static_cast<int>(std::ceil(retransmit_mult * std::log10(static_cast<double>(n) + 1.0))));
}

Duration MembershipConfig::push_pull_period(size_t n) const {
  double scale = 1.0;
  if (n > 32) scale = 1.0 + std::log2(static_cast<double>(n) / 32.0);
  return Duration(static_cast<int64_t>(scale * push_pull_interval.count()));
}

}  // namespace mcpmesh::cluster
