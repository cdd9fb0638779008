#include "bench/mcpmesh_bench/latency_histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace mcpmesh::bench {
namespace {

constexpr std::uint64_t kLinear = std::uint64_t{1} << LatencyHistogram::kLinearBits;  // 256
constexpr std::uint64_t kHalf = kLinear / 2;  // buckets per power of two above the linear range

}  // namespace

static_assert(LatencyHistogram::kBuckets == kLinear + (42 - LatencyHistogram::kLinearBits) * kHalf);

LatencyHistogram::LatencyHistogram() : counts_(kBuckets, 0) {}

std::uint32_t LatencyHistogram::bucket_of(std::uint64_t value) {
  value = std::min(value, kMaxValue);
  if (value < kLinear) return static_cast<std::uint32_t>(value);
  // 2^(width-1) <= value < 2^width; keep the top kLinearBits bits: kHalf..kLinear-1.
  int shift = std::bit_width(value) - kLinearBits;
  std::uint64_t mantissa = value >> shift;
  return static_cast<std::uint32_t>(kLinear + (shift - 1) * kHalf + (mantissa - kHalf));
}

std::uint64_t LatencyHistogram::bucket_low(std::uint32_t index) {
  if (index < kLinear) return index;
  std::uint64_t k = index - kLinear;
  std::uint64_t shift = k / kHalf + 1;
  return (kHalf + k % kHalf) << shift;
}

std::uint64_t LatencyHistogram::bucket_high(std::uint32_t index) {
  if (index < kLinear) return index;
  std::uint64_t k = index - kLinear;
  std::uint64_t shift = k / kHalf + 1;
  return ((kHalf + k % kHalf + 1) << shift) - 1;
}

void LatencyHistogram::record(std::uint64_t value) {
  ++counts_[bucket_of(value)];
  ++count_;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += value;
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
  for (std::uint32_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

double LatencyHistogram::mean() const {
  return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0.0;
}

std::uint64_t LatencyHistogram::value_at(double q) const {
  if (count_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));
  rank = std::clamp<std::uint64_t>(rank, 1, count_);
  std::uint64_t seen = 0;
  for (std::uint32_t i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(bucket_high(i), min(), max_);
  }
  return max_;
}

std::vector<std::pair<std::uint32_t, std::uint64_t>> LatencyHistogram::buckets() const {
  std::vector<std::pair<std::uint32_t, std::uint64_t>> out;
  for (std::uint32_t i = 0; i < kBuckets; ++i) {
    if (counts_[i] != 0) out.emplace_back(i, counts_[i]);
  }
  return out;
}

bool LatencyHistogram::add(std::uint32_t index, std::uint64_t n) {
  if (index >= kBuckets) return false;
  counts_[index] += n;
  count_ += n;
  return true;
}

void LatencyHistogram::add_extremes(std::uint64_t min, std::uint64_t max, std::uint64_t sum) {
  min_ = std::min(min_, min);
  max_ = std::max(max_, max);
  sum_ += sum;
}

}  // namespace mcpmesh::bench
