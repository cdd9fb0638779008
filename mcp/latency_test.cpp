#include "mcp/latency.hpp"

#include <gtest/gtest.h>

#include <string>

namespace mcpmesh::mcp {
namespace {

using namespace std::chrono_literals;

TEST(LatencyHistogram, BucketsAreCumulativeWithSumAndCount) {
  LatencyHistogram h;
  h.observe(30us);   // <= 50 µs
  h.observe(50us);   // <= 50 µs (bounds are inclusive)
  h.observe(700us);  // <= 1 ms
  h.observe(20s);    // +Inf only
  std::string out;
  h.render(out, "x_seconds", "method=\"ping\"");
  EXPECT_NE(out.find("x_seconds_bucket{method=\"ping\",le=\"5e-05\"} 2\n"), std::string::npos)
      << out;
  EXPECT_NE(out.find("x_seconds_bucket{method=\"ping\",le=\"0.0005\"} 2\n"), std::string::npos);
  EXPECT_NE(out.find("x_seconds_bucket{method=\"ping\",le=\"0.001\"} 3\n"), std::string::npos);
  EXPECT_NE(out.find("x_seconds_bucket{method=\"ping\",le=\"10\"} 3\n"), std::string::npos);
  EXPECT_NE(out.find("x_seconds_bucket{method=\"ping\",le=\"+Inf\"} 4\n"), std::string::npos);
  EXPECT_NE(out.find("x_seconds_sum{method=\"ping\"} 20.000780000\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_count{method=\"ping\"} 4\n"), std::string::npos);
  EXPECT_EQ(h.count(), 4u);
}

TEST(LatencyHistogram, MethodsOutsideTheListCountAsOther) {
  EXPECT_EQ(kTimedMethods[timed_method_index("tools/call")], "tools/call");
  EXPECT_EQ(kTimedMethods[timed_method_index("ping")], "ping");
  EXPECT_EQ(kTimedMethods[timed_method_index("no/such")], "other");
  EXPECT_EQ(kTimedMethods[timed_method_index("other")], "other");
}

}  // namespace
}  // namespace mcpmesh::mcp
