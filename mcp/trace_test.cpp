#include "mcp/trace.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace mcpmesh::mcp {
namespace {

constexpr const char* kValid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(TraceParent, AValidHeaderRoundTrips) {
  auto ctx = parse_traceparent(kValid, "congo=t61rcWkgMzE");
  ASSERT_TRUE(ctx);
  EXPECT_TRUE(ctx->sampled());
  EXPECT_EQ(ctx->state, "congo=t61rcWkgMzE");
  EXPECT_EQ(to_hex(ctx->trace_id.data(), 16), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(format_traceparent(*ctx), kValid);
  auto unsampled = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  ASSERT_TRUE(unsampled);
  EXPECT_FALSE(unsampled->sampled());
}

TEST(TraceParent, MalformedHeadersStartANewTrace) {
  for (const char* bad : {
           "",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",    // short flags
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",  // v00 with more
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",   // upper case
           "00-00000000000000000000000000000000-00f067aa0ba902b7-01",   // zero trace id
           "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",   // zero span id
           "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   // version ff
           "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   // separator
           "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",   // not hex
           "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",  // later version, junk
       }) {
    EXPECT_FALSE(parse_traceparent(bad)) << bad;
  }
  // A later version is read by its first four fields.
  EXPECT_TRUE(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what"));
  // An oversized tracestate is dropped, the traceparent kept.
  auto ctx = parse_traceparent(kValid, std::string(kMaxTraceStateBytes + 1, 'a'));
  ASSERT_TRUE(ctx);
  EXPECT_TRUE(ctx->state.empty());
}

class Collect final : public SpanSink {
 public:
  void export_span(SpanData span) override { spans.push_back(std::move(span)); }
  std::vector<SpanData> spans;
};

TEST(Tracer, ChildrenShareTheTraceAndNameTheirParent) {
  Collect sink;
  Tracer tracer(sink, 1.0);
  auto parent = parse_traceparent(kValid);
  {
    auto server = tracer.start("POST /mcp", SpanKind::kServer, parent);
    ASSERT_TRUE(server.recording());
    server.set_attribute("rpc.method", std::string("tools/call"));
    auto handler = tracer.start("tools/call echo", SpanKind::kInternal, server.context());
    handler.set_error("boom");
    EXPECT_EQ(server.context().trace_id, parent->trace_id);
    EXPECT_NE(server.context().span_id, parent->span_id);
  }
  ASSERT_EQ(sink.spans.size(), 2u);
  const auto& handler = sink.spans[0];  // ended first
  const auto& server = sink.spans[1];
  EXPECT_EQ(server.trace_id, parent->trace_id);
  EXPECT_EQ(server.parent, parent->span_id);
  EXPECT_EQ(handler.parent, server.span_id);
  EXPECT_TRUE(handler.error);
  EXPECT_EQ(handler.status_message, "boom");
  EXPECT_GE(server.end_unix_ns, server.start_unix_ns);
  ASSERT_EQ(server.attributes.size(), 1u);
  EXPECT_EQ(std::get<std::string>(server.attributes[0].second), "tools/call");
}

TEST(Tracer, TheSamplingDecisionIsTheCallersOrTheRatio) {
  Collect sink;
  Tracer never(sink, 0.0);
  auto root = never.start("root", SpanKind::kServer);
  EXPECT_FALSE(root.recording());
  EXPECT_FALSE(root.context().valid());
  // A sampled parent is recorded even at ratio 0; an unsampled one is passed on, unrecorded.
  EXPECT_TRUE(never.start("child", SpanKind::kServer, parse_traceparent(kValid)).recording());
  auto passed =
      never.start("child", SpanKind::kServer,
                  parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"));
  EXPECT_FALSE(passed.recording());
  EXPECT_TRUE(passed.context().valid());
  EXPECT_FALSE(passed.context().sampled());
  Tracer always(sink, 1.0);
  sink.spans.clear();
  for (int i = 0; i < 50; ++i) always.start("root", SpanKind::kServer);
  ASSERT_EQ(sink.spans.size(), 50u);
  EXPECT_NE(sink.spans[0].trace_id, sink.spans[1].trace_id) << "each root starts its own trace";
  Tracer half(sink, 0.5);
  sink.spans.clear();
  for (int i = 0; i < 2000; ++i) half.start("root", SpanKind::kServer);
  EXPECT_GT(sink.spans.size(), 800u);
  EXPECT_LT(sink.spans.size(), 1200u);
}

TEST(TraceScope, TheCurrentTraceIsTheInnermostValidScope) {
  EXPECT_EQ(current_trace(), nullptr);
  auto outer = *parse_traceparent(kValid);
  {
    TraceScope a(outer);
    ASSERT_NE(current_trace(), nullptr);
    EXPECT_EQ(current_trace()->span_id, outer.span_id);
    auto inner = *parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01");
    {
      TraceScope b(inner);
      EXPECT_EQ(current_trace()->span_id, inner.span_id);
      TraceScope none(TraceContext{});  // an invalid context changes nothing
      EXPECT_EQ(current_trace()->span_id, inner.span_id);
    }
    EXPECT_EQ(current_trace()->span_id, outer.span_id);
  }
  EXPECT_EQ(current_trace(), nullptr);
}

TEST(RedactSessionId, KeepsNodeEpochAndEightRandomDigits) {
  EXPECT_EQ(redact_session_id("n1.18c2f.0123456789abcdef0123456789abcdef"), "n1.18c2f.01234567...");
  EXPECT_EQ(redact_session_id("n1.18c2f.0123"), "n1.18c2f.0123");  // nothing to cut
  EXPECT_EQ(redact_session_id("0123456789abcdef"), "01234567...");
}

}  // namespace
}  // namespace mcpmesh::mcp
