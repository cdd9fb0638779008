#include "bench/mcpmesh_bench/options.hpp"

#include <gtest/gtest.h>

#include <array>
#include <string>
#include <vector>

namespace mcpmesh::bench {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(ParseMix, WeightsByName) {
  std::string error;
  auto mix = parse_mix("tools_call=90, initialize=5,ping=5 ,notify=0", error);
  ASSERT_TRUE(mix) << error;
  EXPECT_EQ(mix->weight(Op::kToolsCall), 90u);
  EXPECT_EQ(mix->weight(Op::kInitialize), 5u);
  EXPECT_EQ(mix->weight(Op::kPing), 5u);
  EXPECT_EQ(mix->weight(Op::kNotify), 0u);
  auto only = parse_mix("ping=1", error);
  ASSERT_TRUE(only);
  EXPECT_EQ(only->weight(Op::kToolsCall), 0u);
}

TEST(ParseMix, RefusesWhatItCannotRead) {
  for (const char* bad :
       {"", "tools_call", "tools_call=", "tools_call=-1", "tools_call=1.5", "call=10",
        "ping=1,ping=2", "ping=0,notify=0", "ping=1,,notify=1", "tools_call=1000001", "ping=1x"}) {
    std::string error;
    EXPECT_FALSE(parse_mix(bad, error)) << bad;
    EXPECT_NE(error.find("--mix"), std::string::npos) << bad;
  }
}

TEST(MixDealer, DealsExactProportionsEvenlySpread) {
  std::string error;
  auto mix = parse_mix("tools_call=90,initialize=5,ping=5", error);
  ASSERT_TRUE(mix);
  MixDealer dealer(*mix, 0);
  std::array<int, kOpCount> counts{};
  for (int i = 0; i < 20; ++i) ++counts[static_cast<std::size_t>(dealer.next())];
  EXPECT_EQ(counts[0], 18);
  EXPECT_EQ(counts[1], 1);
  EXPECT_EQ(counts[2], 1);
  EXPECT_EQ(counts[3], 0);
  // Every window of 20 holds the same.
  counts = {};
  for (int i = 0; i < 2000; ++i) ++counts[static_cast<std::size_t>(dealer.next())];
  EXPECT_EQ(counts[0], 1800);
  EXPECT_EQ(counts[1], 100);
}

TEST(MixDealer, OffsetsShiftTheSequence) {
  std::string error;
  auto mix = parse_mix("tools_call=3,ping=1", error);
  ASSERT_TRUE(mix);
  MixDealer a(*mix, 0), b(*mix, 1);
  std::vector<Op> seq_a, seq_b;
  for (int i = 0; i < 8; ++i) {
    seq_a.push_back(a.next());
    seq_b.push_back(b.next());
  }
  for (int i = 0; i < 7; ++i) EXPECT_EQ(seq_b[i], seq_a[i + 1]);
}

TEST(ParseSourceAddresses, RangesAndLists) {
  std::string error;
  auto a = parse_source_addresses("127.0.0.2-127.0.0.9", error);
  ASSERT_TRUE(a) << error;
  ASSERT_EQ(a->size(), 8u);
  EXPECT_EQ(a->front().to_string(), "127.0.0.2");
  EXPECT_EQ(a->back().to_string(), "127.0.0.9");

  auto b = parse_source_addresses("127.0.0.2-4, 127.0.1.1,::1", error);
  ASSERT_TRUE(b) << error;
  ASSERT_EQ(b->size(), 5u);
  EXPECT_EQ((*b)[2].to_string(), "127.0.0.4");
  EXPECT_EQ((*b)[3].to_string(), "127.0.1.1");
  EXPECT_TRUE((*b)[4].is_v6());

  auto across = parse_source_addresses("127.0.0.254-127.0.1.1", error);
  ASSERT_TRUE(across) << error;
  EXPECT_EQ(across->size(), 4u);

  auto one = parse_source_addresses("127.0.0.5-5", error);
  ASSERT_TRUE(one);
  EXPECT_EQ(one->size(), 1u);
}

TEST(ParseSourceAddresses, RefusesBadRanges) {
  for (const char* bad :
       {"", "127.0.0.9-127.0.0.2", "127.0.0.9-2", "127.0.0.2-256", "127.0.0.1-127.2.0.0",
        "localhost", "127.0.0.2-x", "::1-::2", "127.0.0.1,", "10.0.0.0-10.1.0.0"}) {
    std::string error;
    EXPECT_FALSE(parse_source_addresses(bad, error)) << bad;
    EXPECT_NE(error.find("--source-addresses"), std::string::npos) << bad;
  }
}

TEST(ParseDuration, UnitsAndPlainSeconds) {
  EXPECT_EQ(parse_duration("250ms"), milliseconds(250));
  EXPECT_EQ(parse_duration("10s"), seconds(10));
  EXPECT_EQ(parse_duration("2m"), seconds(120));
  EXPECT_EQ(parse_duration("1h"), seconds(3600));
  EXPECT_EQ(parse_duration("500us"), std::chrono::microseconds(500));
  EXPECT_EQ(parse_duration("1.5"), milliseconds(1500));
  EXPECT_EQ(parse_duration("0"), seconds(0));
  for (const char* bad : {"", "s", "-1s", "10x", "1e400", "ten", "1.5.2s"}) {
    EXPECT_FALSE(parse_duration(bad)) << bad;
  }
}

TEST(ParseUrl, HttpOnly) {
  std::string error;
  auto e = parse_url("http://127.0.0.1:8080/mcp", error);
  ASSERT_TRUE(e) << error;
  EXPECT_EQ(e->host, "127.0.0.1");
  EXPECT_EQ(e->port, 8080);
  EXPECT_EQ(e->target, "/mcp");
  EXPECT_EQ(e->host_header, "127.0.0.1:8080");

  auto v6 = parse_url("http://[::1]:9/a/b?x=1", error);
  ASSERT_TRUE(v6) << error;
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->target, "/a/b?x=1");
  EXPECT_EQ(v6->host_header, "[::1]:9");

  auto bare = parse_url("http://localhost", error);
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->port, 80);
  EXPECT_EQ(bare->target, "/");

  for (const char* bad : {"https://127.0.0.1/mcp", "127.0.0.1:80/mcp", "http://:80/mcp",
                          "http://u:p@h/mcp", "http://h:0/", "http://h:99999/", "http://h/#f"}) {
    EXPECT_FALSE(parse_url(bad, error)) << bad;
  }
}

CommandLine parse(std::vector<const char*> args) {
  args.insert(args.begin(), "mcpmesh-bench");
  return parse_command_line(static_cast<int>(args.size()), args.data());
}

TEST(CommandLine, Defaults) {
  auto cl = parse({"--url", "http://127.0.0.1:1/mcp"});
  ASSERT_TRUE(cl.options) << cl.message;
  const BenchOptions& o = *cl.options;
  EXPECT_EQ(o.connections, 8u);
  EXPECT_EQ(o.sessions, 8u);  // one per connection
  EXPECT_EQ(o.mode, Mode::kClosedLoop);
  EXPECT_EQ(o.tool, "echo");
  EXPECT_EQ(o.mix.weight(Op::kToolsCall), 100u);
  EXPECT_EQ(o.duration, seconds(10));
}

TEST(CommandLine, ModesAndValues) {
  auto open = parse({"--url", "http://h/mcp", "--rate", "500", "--connections", "4", "--sessions",
                     "16", "--sse-streams", "2", "--source-addresses", "127.0.0.2-3", "--header",
                     "Authorization: Bearer x", "--duration", "2s"});
  ASSERT_TRUE(open.options) << open.message;
  EXPECT_EQ(open.options->mode, Mode::kOpenLoop);
  EXPECT_EQ(open.options->rate, 500.0);
  EXPECT_EQ(open.options->sessions, 16u);
  EXPECT_EQ(open.options->source_addresses.size(), 2u);
  auto hold = parse({"--url", "http://h/mcp", "--hold", "--sse-streams", "8"});
  ASSERT_TRUE(hold.options) << hold.message;
  EXPECT_EQ(hold.options->mode, Mode::kHold);
  auto help = parse({"--help"});
  EXPECT_FALSE(help.options);
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.message.find("--source-addresses"), std::string::npos);
}

TEST(CommandLine, BadFlagsExitTwoWithAMessage) {
  const std::vector<std::vector<const char*>> bad = {
      {},
      {"--url", "https://h/mcp"},
      {"--url", "http://h/mcp", "--connections", "0"},
      {"--url", "http://h/mcp", "--connections", "-1"},
      {"--url", "http://h/mcp", "--threads", "x"},
      {"--url", "http://h/mcp", "--mix", "bogus=1"},
      {"--url", "http://h/mcp", "--duration", "soon"},
      {"--url", "http://h/mcp", "--rate", "-5"},
      {"--url", "http://h/mcp", "--args", "[1]"},
      {"--url", "http://h/mcp", "--sessions", "2", "--sse-streams", "3"},
      {"--url", "http://h/mcp", "--hold", "--rate", "10"},
      {"--url", "http://h/mcp", "--rate", "10", "--requests", "5"},
      {"--url", "http://h/mcp", "--header", "no colon"},
      {"--url", "http://h/mcp", "--processes", "9"},
      {"--url", "http://h/mcp", "--source-addresses", "1.2.3.4-1"},
      {"--url", "http://h/mcp", "--no-such-flag"},
      {"--url", "http://h/mcp", "positional"},
  };
  for (const auto& args : bad) {
    auto cl = parse(args);
    std::string joined;
    for (const char* a : args) joined += std::string(a) + " ";
    EXPECT_FALSE(cl.options) << joined;
    EXPECT_EQ(cl.exit_code, 2) << joined;
    EXPECT_NE(cl.message.find("mcpmesh-bench: "), std::string::npos) << joined;
  }
}

TEST(EvenShare, SplitsWithoutLosingAny) {
  for (std::uint64_t total : {0u, 1u, 7u, 100u, 20001u}) {
    for (std::size_t parts : {1u, 2u, 3u, 8u}) {
      std::uint64_t sum = 0;
      for (std::size_t i = 0; i < parts; ++i) {
        std::uint64_t share = even_share(total, parts, i);
        EXPECT_LE(share, even_share(total, parts, 0));
        EXPECT_GE(share + 1, even_share(total, parts, 0));
        sum += share;
      }
      EXPECT_EQ(sum, total) << total << "/" << parts;
    }
  }
}

TEST(Descriptors, CountConnectionsStreamsAndThreads) {
  EXPECT_GT(descriptors_needed(100, 10, 2), 110u);
  EXPECT_EQ(descriptors_needed(100, 10, 2) - descriptors_needed(0, 0, 2), 110u);
}

}  // namespace
}  // namespace mcpmesh::bench
