#include "bench/mcpmesh_bench/run_result.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>

namespace mcpmesh::bench {
namespace {

RunResult sample(std::uint64_t base) {
  RunResult r;
  for (std::uint64_t i = 1; i <= 1000; ++i) {
    r.ops[0].record(Outcome::kOk, base + i * 1000);
    r.count_status(200);
  }
  r.ops[0].record(Outcome::kTimeout, 0);
  r.ops[2].record(Outcome::kJsonRpcError, 0);
  r.count_status(429);
  r.sessions_requested = 4;
  r.sessions_created = 4;
  r.session_open.record(base + 5);
  r.sse_events = 3;
  r.measured_s = 2.0;
  r.cpu_user_s = 0.5;
  r.sample_error("tools_call: no answer within --timeout (receive)");
  return r;
}

TEST(RunResult, RawJsonRoundTrip) {
  RunResult r = sample(0);
  auto back = from_raw_json(boost::json::parse(boost::json::serialize(to_raw_json(r))));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->requests(), r.requests());
  EXPECT_EQ(back->ops[0].outcome(Outcome::kTimeout), 1u);
  EXPECT_EQ(back->ops[0].latency.value_at(0.99), r.ops[0].latency.value_at(0.99));
  EXPECT_EQ(back->ops[0].latency.max(), r.ops[0].latency.max());
  EXPECT_EQ(back->status_429, 1u);
  EXPECT_EQ(back->session_open.count(), 1u);
  EXPECT_EQ(back->error_samples, r.error_samples);
  EXPECT_FALSE(from_raw_json(boost::json::parse(R"({"ops":{}})")));
}

TEST(RunResult, MergeSumsCountsAndMergesHistograms) {
  RunResult a = sample(0), b = sample(1'000'000);
  b.measured_s = 2.5;
  RunResult m;
  merge(m, a);
  merge(m, b);
  EXPECT_EQ(m.requests(), a.requests() + b.requests());
  EXPECT_EQ(m.ops[0].latency.count(), 2000u);
  EXPECT_EQ(m.ops[0].latency.max(), b.ops[0].latency.max());
  EXPECT_EQ(m.ops[0].latency.min(), a.ops[0].latency.min());
  EXPECT_EQ(m.sessions_created, 8u);
  EXPECT_DOUBLE_EQ(m.cpu_user_s, 1.0);
  EXPECT_DOUBLE_EQ(m.measured_s, 2.5);    // side by side: the longest
  EXPECT_EQ(m.error_samples.size(), 1u);  // the same error once
}

TEST(RunResult, ReportHasRatesPercentilesAndStatuses) {
  BenchOptions o;
  std::string error;
  o.url = "http://127.0.0.1:1/mcp";
  o.mix = *parse_mix("tools_call=9,ping=1", error);
  RunResult r = sample(0);
  auto j = report_json(o, r);
  EXPECT_TRUE(j.at("ok").as_bool());
  EXPECT_EQ(j.at("requests").to_number<std::uint64_t>(), r.requests());
  const auto& call = j.at("ops").at("tools_call");
  EXPECT_EQ(call.at("count").to_number<std::uint64_t>(), 1001u);
  EXPECT_EQ(call.at("ok").to_number<std::uint64_t>(), 1000u);
  EXPECT_EQ(call.at("timeouts").to_number<std::uint64_t>(), 1u);
  EXPECT_NEAR(call.at("rate").to_number<double>(), 500.5, 0.1);
  double p50 = call.at("latency_ms").at("p50").to_number<double>();
  EXPECT_NEAR(p50, 0.5, 0.5 / 100);
  EXPECT_TRUE(j.at("ops").as_object().contains("ping"));
  EXPECT_FALSE(j.at("ops").as_object().contains("notify"));
  EXPECT_EQ(j.at("status").at("429").to_number<std::uint64_t>(), 1u);
  EXPECT_EQ(j.at("errors").at("jsonrpc").to_number<std::uint64_t>(), 1u);
  EXPECT_FALSE(j.contains("error"));
  r.fatal = "no session could be opened";
  auto failed = report_json(o, r);
  EXPECT_FALSE(failed.at("ok").as_bool());
  EXPECT_EQ(failed.at("error").as_string(), "no session could be opened");
}

}  // namespace
}  // namespace mcpmesh::bench
