#pragma once
/// Request latency for /metrics: a Prometheus histogram with fixed buckets from 50 µs to 10 s
/// (the span between an answered ping and a slow tool), per method and per tool.
///
/// Thread-safety: observe() from any thread (relaxed atomics); render() reads a consistent
/// enough picture for a scrape (each bucket is exact; buckets, sum and count may be a few
/// observations apart).

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace mcpmesh::mcp {

class LatencyHistogram {
 public:
  /// Upper bounds of the buckets, in seconds (+Inf is implied).
  static constexpr std::array<double, 16> kBounds = {
      0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
      0.025,   0.05,   0.1,     0.25,   0.5,   1,      2.5,   10};

  void observe(std::chrono::nanoseconds took);
  /// Appends `<name>_bucket{<labels>,le="…"}`, `<name>_sum` and `<name>_count` lines (no HELP or
  /// TYPE: the caller writes them once per family). `labels` is `key="value"` text or empty.
  void render(std::string& out, std::string_view name, std::string_view labels) const;
  [[nodiscard]] std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  std::array<std::atomic<std::uint64_t>, kBounds.size() + 1> buckets_{};  // the last: +Inf
  std::atomic<std::uint64_t> sum_ns_{0};
  std::atomic<std::uint64_t> count_{0};
};

/// The methods whose latency /metrics keeps apart; every other method counts as "other".
inline constexpr std::array<std::string_view, 14> kTimedMethods = {"ping",
                                                                   "tools/list",
                                                                   "tools/call",
                                                                   "resources/list",
                                                                   "resources/read",
                                                                   "resources/templates/list",
                                                                   "resources/subscribe",
                                                                   "resources/unsubscribe",
                                                                   "prompts/list",
                                                                   "prompts/get",
                                                                   "completion/complete",
                                                                   "logging/setLevel",
                                                                   "server/discover",
                                                                   "other"};

/// Index of `method` in kTimedMethods ("other" for the rest).
[[nodiscard]] std::size_t timed_method_index(std::string_view method);

}  // namespace mcpmesh::mcp
