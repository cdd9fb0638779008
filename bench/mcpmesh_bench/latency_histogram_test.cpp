#include "bench/mcpmesh_bench/latency_histogram.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

namespace mcpmesh::bench {
namespace {

TEST(LatencyHistogram, EmptyReportsZero) {
  LatencyHistogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.value_at(0.5), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.mean(), 0.0);
}

TEST(LatencyHistogram, SmallValuesAreExact) {
  LatencyHistogram h;
  for (std::uint64_t v = 1; v <= 100; ++v) h.record(v);
  EXPECT_EQ(h.value_at(0.5), 50u);
  EXPECT_EQ(h.value_at(0.9), 90u);
  EXPECT_EQ(h.value_at(0.99), 99u);
  EXPECT_EQ(h.value_at(1.0), 100u);
  EXPECT_EQ(h.value_at(0.0), 1u);
  EXPECT_EQ(h.min(), 1u);
  EXPECT_EQ(h.max(), 100u);
  EXPECT_DOUBLE_EQ(h.mean(), 50.5);
}

TEST(LatencyHistogram, BucketsTileTheRangeWithoutGaps) {
  for (std::uint32_t i = 0; i + 1 < LatencyHistogram::kBuckets; ++i) {
    ASSERT_EQ(LatencyHistogram::bucket_high(i) + 1, LatencyHistogram::bucket_low(i + 1)) << i;
    ASSERT_EQ(LatencyHistogram::bucket_of(LatencyHistogram::bucket_low(i)), i);
    ASSERT_EQ(LatencyHistogram::bucket_of(LatencyHistogram::bucket_high(i)), i);
  }
  EXPECT_EQ(LatencyHistogram::bucket_high(LatencyHistogram::kBuckets - 1),
            LatencyHistogram::kMaxValue);
  EXPECT_EQ(LatencyHistogram::bucket_of(UINT64_MAX), LatencyHistogram::kBuckets - 1);
}

TEST(LatencyHistogram, RelativeErrorIsBounded) {
  // Every bucket above the linear range is at most 1/128 of its low end wide.
  for (std::uint32_t i = 256; i < LatencyHistogram::kBuckets; ++i) {
    double low = static_cast<double>(LatencyHistogram::bucket_low(i));
    double width = static_cast<double>(LatencyHistogram::bucket_high(i)) - low + 1;
    ASSERT_LE(width / low, 1.0 / 128 + 1e-12) << i;
  }
}

TEST(LatencyHistogram, PercentilesMatchSortedSamplesWithinPrecision) {
  std::mt19937_64 rng(42);
  std::lognormal_distribution<double> dist(13.0, 1.2);  // ~0.4 ms median, long tail, in ns
  std::vector<std::uint64_t> samples;
  LatencyHistogram h;
  for (int i = 0; i < 200'000; ++i) {
    auto v = static_cast<std::uint64_t>(dist(rng)) + 1;
    samples.push_back(v);
    h.record(v);
  }
  std::sort(samples.begin(), samples.end());
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    auto exact = samples[static_cast<std::size_t>(std::ceil(q * samples.size())) - 1];
    auto got = h.value_at(q);
    // The reported value is the top of the exact value's bucket: never below, at most 1/128
    // above.
    EXPECT_GE(got, exact) << q;
    EXPECT_LE(static_cast<double>(got), static_cast<double>(exact) * (1.0 + 1.0 / 128) + 1) << q;
  }
  EXPECT_EQ(h.max(), samples.back());
  EXPECT_EQ(h.value_at(1.0), samples.back());
}

TEST(LatencyHistogram, HugeValuesAreClampedNotLost) {
  LatencyHistogram h;
  h.record(UINT64_MAX / 2);
  EXPECT_EQ(h.count(), 1u);
  EXPECT_EQ(h.value_at(0.5), UINT64_MAX / 2);  // clamped to max(), the exact value recorded
}

TEST(LatencyHistogram, MergeEqualsRecordingEverythingInOne) {
  LatencyHistogram a, b, all;
  for (std::uint64_t v = 1; v < 1'000'000; v += 997) {
    (v % 3 ? a : b).record(v);
    all.record(v);
  }
  a.merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.min(), all.min());
  EXPECT_EQ(a.max(), all.max());
  EXPECT_EQ(a.sum(), all.sum());
  for (double q : {0.1, 0.5, 0.9, 0.99}) EXPECT_EQ(a.value_at(q), all.value_at(q));
}

TEST(LatencyHistogram, RebuiltFromBucketsGivesTheSamePercentiles) {
  LatencyHistogram h;
  for (std::uint64_t v = 50; v < 5'000'000; v = v * 11 / 10 + 3) h.record(v);
  LatencyHistogram copy;
  for (auto [index, n] : h.buckets()) ASSERT_TRUE(copy.add(index, n));
  copy.add_extremes(h.min(), h.max(), h.sum());
  EXPECT_EQ(copy.count(), h.count());
  for (double q : {0.5, 0.9, 0.99, 0.999, 1.0}) EXPECT_EQ(copy.value_at(q), h.value_at(q));
  EXPECT_FALSE(copy.add(LatencyHistogram::kBuckets, 1));
}

}  // namespace
}  // namespace mcpmesh::bench
