#include "mcp/latency.hpp"

#include <algorithm>
#include <cstdio>

namespace mcpmesh::mcp {

void LatencyHistogram::observe(std::chrono::nanoseconds took) {
  const auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(took.count(), 0));
  const double seconds = static_cast<double>(ns) / 1e9;
  auto it = std::lower_bound(kBounds.begin(), kBounds.end(), seconds);
  buckets_[static_cast<std::size_t>(it - kBounds.begin())].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(ns, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

void LatencyHistogram::render(std::string& out, std::string_view name,
                              std::string_view labels) const {
  std::uint64_t cumulative = 0;
  char num[48];
  auto line = [&](std::string_view suffix, std::string_view le, const char* value) {
    out += name;
    out += suffix;
    if (!labels.empty() || !le.empty()) {
      out += '{';
      out += labels;
      if (!le.empty()) {
        if (!labels.empty()) out += ',';
        out += "le=\"";
        out += le;
        out += '"';
      }
      out += '}';
    }
    out += ' ';
    out += value;
    out += '\n';
  };
  for (std::size_t i = 0; i <= kBounds.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    char le[32];
    if (i < kBounds.size()) {
      std::snprintf(le, sizeof le, "%g", kBounds[i]);
    } else {
      std::snprintf(le, sizeof le, "+Inf");
    }
    std::snprintf(num, sizeof num, "%llu", static_cast<unsigned long long>(cumulative));
    line("_bucket", le, num);
  }
  std::snprintf(num, sizeof num, "%.9f",
                static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9);
  line("_sum", {}, num);
  std::snprintf(num, sizeof num, "%llu", static_cast<unsigned long long>(count()));
  line("_count", {}, num);
}

std::size_t timed_method_index(std::string_view method) {
  for (std::size_t i = 0; i + 1 < kTimedMethods.size(); ++i) {
    if (kTimedMethods[i] == method) return i;
  }
  return kTimedMethods.size() - 1;
}

}  // namespace mcpmesh::mcp
