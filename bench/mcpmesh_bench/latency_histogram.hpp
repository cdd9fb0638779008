#pragma once
/// \file
/// LatencyHistogram: log-linear buckets over nanoseconds, in the manner of HdrHistogram.
/// Values below 2^kLinearBits are counted exactly; above, every power of two is split into
/// 2^(kLinearBits-1) equal buckets, so a reported value is at most 1/128 (0.8%) above the
/// value it stands for. Fixed size (4,608 buckets, 36 KiB), no allocation after construction,
/// recording is a few shifts and an increment.
///
/// Thread-safety: none. Each load thread records into its own histograms; they are merged
/// once the threads have ended (and across processes through `buckets()` / `add()`).

#include <cstdint>
#include <utility>
#include <vector>

namespace mcpmesh::bench {

class LatencyHistogram {
 public:
  static constexpr int kLinearBits = 8;
  /// Largest value told apart (~73 minutes in ns); larger values count as this one.
  static constexpr std::uint64_t kMaxValue = (std::uint64_t{1} << 42) - 1;
  static constexpr std::uint32_t kBuckets = 4608;

  LatencyHistogram();

  void record(std::uint64_t value);
  void merge(const LatencyHistogram& other);

  [[nodiscard]] std::uint64_t count() const { return count_; }
  [[nodiscard]] std::uint64_t min() const { return count_ ? min_ : 0; }
  [[nodiscard]] std::uint64_t max() const { return max_; }
  [[nodiscard]] std::uint64_t sum() const { return sum_; }
  [[nodiscard]] double mean() const;

  /// The value at quantile `q` (0..1): the top of the bucket that holds the ceil(q*count)-th
  /// smallest value, never above max() nor below min(). 0 when empty.
  [[nodiscard]] std::uint64_t value_at(double q) const;

  /// The non-empty buckets as (index, count), ascending: enough, with min/max/sum, to rebuild
  /// the histogram elsewhere.
  [[nodiscard]] std::vector<std::pair<std::uint32_t, std::uint64_t>> buckets() const;
  /// Adds `n` values to bucket `index` (from another histogram's buckets()); with min/max/sum
  /// restored by `add_extremes`. False when the index is out of range (nothing changes).
  [[nodiscard]] bool add(std::uint32_t index, std::uint64_t n);
  void add_extremes(std::uint64_t min, std::uint64_t max, std::uint64_t sum);

  [[nodiscard]] static std::uint32_t bucket_of(std::uint64_t value);
  /// The smallest and the largest value counted in bucket `index`.
  [[nodiscard]] static std::uint64_t bucket_low(std::uint32_t index);
  [[nodiscard]] static std::uint64_t bucket_high(std::uint32_t index);

 private:
  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  std::uint64_t min_ = UINT64_MAX;
  std::uint64_t max_ = 0;
  std::uint64_t sum_ = 0;
};

}  // namespace mcpmesh::bench
