#include "bench/mcpmesh_bench/sse_parser.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mcpmesh::bench {
namespace {

std::vector<SseEvent> parse_in_pieces(std::string_view body, std::size_t piece,
                                      std::uint64_t* comments = nullptr) {
  SseParser p;
  std::vector<SseEvent> out;
  for (std::size_t i = 0; i < body.size(); i += piece) {
    EXPECT_TRUE(p.feed(body.substr(i, piece), out));
  }
  if (comments) *comments = p.comments();
  return out;
}

bool same(const std::vector<SseEvent>& a, const std::vector<SseEvent>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].type != b[i].type || a[i].data != b[i].data || a[i].id != b[i].id) return false;
  }
  return true;
}

// An MCP server's stream: a priming event, keep-alives, messages, every kind of line end.
constexpr std::string_view kStream =
    "\xEF\xBB\xBFid: 0\r\nretry: 1000\r\ndata:\r\n\r\n"
    ": keep-alive\n\n"
    "event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n"
    "data: line one\rdata: line two\r\r"
    ":\r\n"
    "data:no-space\r\nid\r\n\r\n"
    "event: custom\r\ndata:  two spaces\r\n\r\n"
    "unknown: field\ndata\n\n";

TEST(SseParser, ParsesEveryLineEndAndField) {
  std::uint64_t comments = 0;
  auto events = parse_in_pieces(kStream, kStream.size(), &comments);
  ASSERT_EQ(events.size(), 6u);
  EXPECT_EQ(events[0].type, "message");
  EXPECT_EQ(events[0].data, "");  // the priming event: an empty data line is still data
  EXPECT_EQ(events[0].id, "0");
  EXPECT_EQ(events[1].data, R"({"jsonrpc":"2.0","id":7,"result":{}})");
  EXPECT_EQ(events[1].id, "1");
  EXPECT_EQ(events[2].data, "line one\nline two");
  EXPECT_EQ(events[2].id, "1");  // the last event id persists
  EXPECT_EQ(events[3].data, "no-space");
  EXPECT_EQ(events[3].id, "");  // `id` with no value resets it
  EXPECT_EQ(events[4].type, "custom");
  EXPECT_EQ(events[4].data, " two spaces");  // only one leading space is dropped
  EXPECT_EQ(events[5].data, "");             // `data` without a colon
  EXPECT_EQ(comments, 2u);
}

TEST(SseParser, SplitAtEveryByteBoundaryGivesTheSameEvents) {
  auto whole = parse_in_pieces(kStream, kStream.size());
  for (std::size_t piece = 1; piece < kStream.size(); ++piece) {
    std::uint64_t comments = 0;
    ASSERT_TRUE(same(parse_in_pieces(kStream, piece, &comments), whole)) << "piece " << piece;
    ASSERT_EQ(comments, 2u) << "piece " << piece;
  }
  // Two pieces split at every position (a CRLF split in two is one line end, not two).
  for (std::size_t cut = 0; cut <= kStream.size(); ++cut) {
    SseParser p;
    std::vector<SseEvent> out;
    ASSERT_TRUE(p.feed(kStream.substr(0, cut), out));
    ASSERT_TRUE(p.feed(kStream.substr(cut), out));
    ASSERT_TRUE(same(out, whole)) << "cut at " << cut;
  }
}

TEST(SseParser, CrLfSplitIsOneLineEnd) {
  SseParser p;
  std::vector<SseEvent> out;
  ASSERT_TRUE(p.feed("data: a\r", out));
  ASSERT_TRUE(p.feed("\ndata: b\r", out));  // the LF completes the CRLF: no blank line
  EXPECT_TRUE(out.empty());
  ASSERT_TRUE(p.feed("\n\r", out));  // CRLF, then a lone CR: a blank line, dispatched at once
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].data, "a\nb");
  ASSERT_TRUE(p.feed("\n", out));  // the LF of that CR's CRLF: nothing more
  EXPECT_EQ(out.size(), 1u);
  EXPECT_FALSE(p.mid_event());
}

TEST(SseParser, RetryAndMidEvent) {
  SseParser p;
  std::vector<SseEvent> out;
  ASSERT_TRUE(p.feed("retry: 2500\nretry: soon\ndata: x", out));
  EXPECT_EQ(p.retry_ms(), 2500u);
  EXPECT_TRUE(p.mid_event());
  ASSERT_TRUE(p.feed("\n\n", out));
  EXPECT_FALSE(p.mid_event());
  EXPECT_EQ(out.size(), 1u);
}

TEST(SseParser, UnterminatedLastEventIsDropped) {
  auto events = parse_sse_body("data: one\n\ndata: two\n");
  ASSERT_TRUE(events);
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].data, "one");
}

TEST(SseParser, BoundsFailTheParser) {
  SseParser p(16, 32);
  std::vector<SseEvent> out;
  EXPECT_FALSE(p.feed("data: this line is longer than sixteen bytes\n", out));
  EXPECT_TRUE(p.failed());
  EXPECT_FALSE(p.feed("data: x\n\n", out));  // stays failed
  EXPECT_TRUE(out.empty());

  SseParser q(16, 32);
  std::string many;
  for (int i = 0; i < 10; ++i) many += "data: 0123456\n";
  EXPECT_FALSE(q.feed(many, out));  // 10 short lines, 80 bytes of data > 32
  EXPECT_TRUE(out.empty());

  SseParser r(16, 32);
  EXPECT_FALSE(r.feed(std::string(10, 'x'), out) && r.feed(std::string(10, 'x'), out));
}

}  // namespace
}  // namespace mcpmesh::bench
