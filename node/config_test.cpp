#include "node/config.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

namespace mcpmesh::node {
namespace {

/// parse_config over an argv built from `args` (argv[0] is added).
std::optional<NodeConfig> parse(const std::vector<std::string>& args) {
  std::vector<std::string> storage{"mcpmesh-node"};
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : storage) argv.push_back(s.data());
  argv.push_back(nullptr);
  return parse_config(static_cast<int>(storage.size()), argv.data());
}

NodeConfig parse_ok(std::initializer_list<std::string> args) {
  auto c = parse(args);
  EXPECT_TRUE(c.has_value());
  return c ? *c : NodeConfig{};
}

TEST(ParseConfig, Defaults) {
  auto c = parse_ok({});
  ASSERT_TRUE(c.http.has_value());
  EXPECT_EQ(*c.http, "127.0.0.1:8080");
  EXPECT_EQ(c.http_config.host, "127.0.0.1");
  EXPECT_EQ(c.http_config.port, 8080);
  EXPECT_EQ(c.app, "demo");
  EXPECT_FALSE(c.stdio);
  EXPECT_EQ(c.server.node_id, "n1");
  EXPECT_TRUE(c.http_config.allowed_origins.empty());
  EXPECT_TRUE(c.http_config.allowed_hosts.empty());
  EXPECT_TRUE(c.seeds.empty());
  EXPECT_TRUE(c.cluster.empty());
}

TEST(ParseConfig, HttpHostPort) {
  auto c = parse_ok({"--http", "0.0.0.0:9000"});
  EXPECT_EQ(c.http_config.host, "0.0.0.0");
  EXPECT_EQ(c.http_config.port, 9000);

  auto v6 = parse_ok({"--http=[::1]:0"});
  EXPECT_EQ(v6.http_config.host, "::1");
  EXPECT_EQ(v6.http_config.port, 0);

  auto no_host = parse_ok({"--http", ":81"});
  EXPECT_EQ(no_host.http_config.host, "127.0.0.1");
  EXPECT_EQ(no_host.http_config.port, 81);
}

TEST(ParseConfig, BadHttpAddressThrows) {
  for (std::string bad : {"localhost:99999", "localhost:abc", "localhost:", "localhost",
                          "localhost:80x", "localhost:-1", "[::1]"}) {
    EXPECT_THROW(parse({"--http", bad}), std::runtime_error) << bad;
  }
}

TEST(SplitHostPort, Forms) {
  EXPECT_EQ(split_host_port("a.example:1"),
            (std::pair<std::string, std::uint16_t>{"a.example", 1}));
  EXPECT_EQ(split_host_port("[fe80::1]:65535"),
            (std::pair<std::string, std::uint16_t>{"fe80::1", 65535}));
  EXPECT_THROW(split_host_port("h:65536"), std::runtime_error);
}

TEST(ParseConfig, StdioWithoutHttpServesNoHttp) {
  auto c = parse_ok({"--stdio"});
  EXPECT_TRUE(c.stdio);
  EXPECT_FALSE(c.http.has_value());

  auto both = parse_ok({"--stdio", "--http", "127.0.0.1:0"});
  EXPECT_TRUE(both.stdio);
  ASSERT_TRUE(both.http.has_value());
  EXPECT_EQ(both.http_config.port, 0);
}

class ConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::filesystem::path(::testing::TempDir()) /
            ("mcpmesh_config_test_" + std::to_string(::getpid()) + ".conf");
    std::ofstream out(path_);
    out << "# a comment\nhttp = 127.0.0.1:9999\napp = conformance\nallowed-hosts = a,b\n";
  }
  void TearDown() override { std::filesystem::remove(path_); }

  std::filesystem::path path_;
};

TEST_F(ConfigFileTest, FileSetsOptions) {
  auto c = parse_ok({"--config", path_.string()});
  EXPECT_EQ(c.http_config.port, 9999);
  EXPECT_EQ(c.app, "conformance");
  EXPECT_EQ(c.http_config.allowed_hosts, (std::vector<std::string>{"a", "b"}));
}

TEST_F(ConfigFileTest, CommandLineWins) {
  auto c = parse_ok({"--app", "demo", "--config", path_.string(), "--http", "127.0.0.1:1234"});
  EXPECT_EQ(c.app, "demo");
  EXPECT_EQ(c.http_config.port, 1234);
  EXPECT_EQ(c.http_config.allowed_hosts, (std::vector<std::string>{"a", "b"}));
}

TEST(ParseConfig, MissingConfigFileThrows) {
  EXPECT_THROW(parse({"--config", "/nonexistent/mcpmesh.conf"}), std::runtime_error);
}

TEST(ParseConfig, BadAppThrows) {
  EXPECT_THROW(parse({"--app", "nope"}), std::runtime_error);
  EXPECT_EQ(parse_ok({"--app", "conformance"}).app, "conformance");
}

TEST(ParseConfig, NodeId) {
  EXPECT_EQ(parse_ok({"--node-id", "edge-7"}).server.node_id, "edge-7");
  EXPECT_THROW(parse({"--node-id", "a.b"}), std::runtime_error);
  EXPECT_THROW(parse({"--node-id", ""}), std::runtime_error);
  EXPECT_THROW(parse({"--node-id", "has space"}), std::runtime_error);
}

TEST(ParseConfig, UnknownOptionAndMissingValueThrow) {
  EXPECT_THROW(parse({"--no-such-flag"}), std::runtime_error);
  EXPECT_THROW(parse({"--http"}), std::runtime_error);
  EXPECT_THROW(parse({"--max-body-bytes", "lots"}), std::runtime_error);
}

TEST(ParseConfig, ListsSplitOnCommas) {
  auto c = parse_ok({"--allowed-origins", "http://a.example,https://b.example:8443",
                     "--allowed-hosts", "x,,y,", "--seeds", "h1:7000,h2:7000"});
  EXPECT_EQ(c.http_config.allowed_origins,
            (std::vector<std::string>{"http://a.example", "https://b.example:8443"}));
  EXPECT_EQ(c.http_config.allowed_hosts, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(c.seeds, (std::vector<std::string>{"h1:7000", "h2:7000"}));
  EXPECT_EQ(parse_ok({"--allowed-origins", "*"}).http_config.allowed_origins,
            (std::vector<std::string>{"*"}));
}

TEST(ParseConfig, LimitsReachTheirConfigs) {
  auto c = parse_ok({"--max-body-bytes",
                     "1000",
                     "--max-json-depth",
                     "8",
                     "--read-timeout-ms",
                     "250",
                     "--session-idle-timeout-s",
                     "30",
                     "--page-size",
                     "5",
                     "--max-inflight-per-session",
                     "3",
                     "--max-inflight",
                     "9",
                     "--sse-buffer-events",
                     "7",
                     "--max-uri-bytes",
                     "300",
                     "--init-timeout-ms",
                     "1500",
                     "--stdio-queue-messages",
                     "11",
                     "--stdio-queue-bytes",
                     "8192",
                     "--max-batch-size",
                     "4"});
  EXPECT_EQ(c.http_config.max_body_bytes, 1000u);
  EXPECT_EQ(c.stdio_config.max_line_bytes, 1000u);
  EXPECT_EQ(c.http_config.max_json_depth, 8u);
  EXPECT_EQ(c.stdio_config.max_json_depth, 8u);
  EXPECT_EQ(c.http_config.read_timeout, std::chrono::milliseconds(250));
  EXPECT_EQ(c.server.session_idle_timeout, std::chrono::seconds(30));
  EXPECT_EQ(c.server.page_size, 5u);
  EXPECT_EQ(c.server.max_inflight_per_session, 3u);
  EXPECT_EQ(c.server.max_inflight, 9u);
  EXPECT_EQ(c.server.streams.buffer_events, 7u);
  EXPECT_EQ(c.server.max_uri_bytes, 300u);
  EXPECT_EQ(c.server.init_timeout, std::chrono::milliseconds(1500));
  EXPECT_EQ(c.stdio_config.max_queued_messages, 11u);
  EXPECT_EQ(c.stdio_config.max_queued_bytes, 8192u);
  EXPECT_EQ(c.stdio_config.max_batch_size, 4u);
  EXPECT_THROW(parse({"--max-json-depth", "1"}), std::runtime_error);
  EXPECT_THROW(parse({"--max-inflight", "0"}), std::runtime_error);
  EXPECT_THROW(parse({"--init-timeout-ms", "0"}), std::runtime_error);
}

TEST(ParseConfig, TaskBoundsReachTheirConfig) {
  auto defaults = parse_ok({});
  EXPECT_EQ(defaults.server.max_tasks_per_session, 32u);
  auto c = parse_ok({"--max-tasks", "50", "--max-tasks-per-session", "4", "--task-ttl-ms", "900"});
  EXPECT_EQ(c.server.max_tasks, 50u);
  EXPECT_EQ(c.server.max_tasks_per_session, 4u);
  EXPECT_EQ(c.server.task_ttl, std::chrono::milliseconds(900));
  EXPECT_THROW(parse({"--max-tasks-per-session", "0"}), std::runtime_error);
}

TEST(ParseConfig, RelayLinkBoundsReachTheirConfig) {
  auto defaults = parse_ok({});
  EXPECT_EQ(defaults.relay_silence, std::chrono::milliseconds(5000));
  EXPECT_EQ(defaults.max_relay_links, 256u);
  auto c = parse_ok({"--relay-silence-ms", "2000", "--max-relay-links", "8"});
  EXPECT_EQ(c.relay_silence, std::chrono::milliseconds(2000));
  EXPECT_EQ(c.max_relay_links, 8u);
  EXPECT_THROW(parse({"--relay-silence-ms", "50"}), std::runtime_error);
  EXPECT_THROW(parse({"--max-relay-links", "0"}), std::runtime_error);
}

TEST(ParseConfig, OverloadBatchingReachesItsConfig) {
  EXPECT_EQ(parse_ok({}).overload_batch, std::chrono::microseconds(1000));
  EXPECT_EQ(parse_ok({"--overload-batch-us", "250"}).overload_batch,
            std::chrono::microseconds(250));
  EXPECT_EQ(parse_ok({"--overload-batch-us", "0"}).overload_batch, std::chrono::microseconds(0));
  EXPECT_THROW(parse({"--overload-batch-us", "-1"}), std::runtime_error);
  EXPECT_THROW(parse({"--overload-batch-us", "100001"}), std::runtime_error);
}

TEST(ParseConfig, ReplicatedSubscriptionsMustFitARecord) {
  std::vector<std::string> cluster = {"--cluster", "127.0.0.1:0", "--cluster-secret-file", "s"};
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), cluster.begin(), cluster.end());
    return more;
  };
  EXPECT_NO_THROW(parse(with({})));  // the defaults fit: 100 URIs of 2,048 bytes
  EXPECT_THROW(parse(with({"--max-subscriptions", "1000"})), std::runtime_error);
  EXPECT_NO_THROW(parse(with({"--max-subscriptions", "1000", "--max-uri-bytes", "200"})));
  // Nothing is replicated without replicas, or without a cluster.
  EXPECT_NO_THROW(parse(with({"--max-subscriptions", "1000", "--replicas", "0"})));
  EXPECT_NO_THROW(parse({"--max-subscriptions", "1000"}));
}

TEST(ParseConfig, HelpAndVersionReturnNothing) {
  ::testing::internal::CaptureStdout();
  EXPECT_FALSE(parse({"--help"}).has_value());
  EXPECT_FALSE(parse({"--version"}).has_value());
  auto out = ::testing::internal::GetCapturedStdout();
  EXPECT_NE(out.find("--http"), std::string::npos);
}

}  // namespace
}  // namespace mcpmesh::node

namespace mcpmesh::node {
namespace {

TEST(ParseConfig, ClusterNeedsASecretFileAndSaneAdvertisedAddresses) {
  EXPECT_THROW(parse({"--cluster", "127.0.0.1:7001"}), std::runtime_error);
  auto c = parse_ok({"--cluster", "127.0.0.1:7001", "--cluster-secret-file", "/run/s",
                     "--advertise", "10.0.0.5:7001", "--advertise-http", "10.0.0.5:8080",
                     "--replicas", "2", "--drain-timeout-ms", "2500"});
  EXPECT_EQ(c.cluster_secret_file, "/run/s");
  EXPECT_EQ(c.advertise, "10.0.0.5:7001");
  EXPECT_EQ(c.advertise_http, "10.0.0.5:8080");
  EXPECT_EQ(c.replicas, 2u);
  EXPECT_EQ(c.drain_timeout, std::chrono::milliseconds(2500));
  for (const char* bad : {"0.0.0.0:7001", "10.0.0.5:0", "[::]:7001"}) {
    EXPECT_THROW(parse({"--cluster", "127.0.0.1:7001", "--cluster-secret-file", "/run/s",
                        "--advertise", bad}),
                 std::runtime_error)
        << bad;
  }
  EXPECT_THROW(parse({"--cluster", "127.0.0.1:7001", "--cluster-secret-file", "/run/s",
                      "--cluster-tls-cert", "c.pem"}),
               std::runtime_error);
  EXPECT_THROW(
      parse({"--cluster", "127.0.0.1:7001", "--cluster-secret-file", "/run/s", "--replicas", "9"}),
      std::runtime_error);
}

/// The message parse() throws for `args`, or "" when it does not throw.
std::string refusal(const std::vector<std::string>& args) {
  try {
    parse(args);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(ParseConfig, LogLevelsAreCheckedNotSilentlyTurnedOff) {
  for (const char* level : {"trace", "debug", "info", "warn", "error", "critical", "off"}) {
    EXPECT_EQ(parse_ok({"--log-level", level}).log_level, level);
  }
  for (const char* bad : {"verbose", "INFO", "", "warning2"}) {
    auto why = refusal({"--log-level", bad});
    EXPECT_NE(why.find("--log-level"), std::string::npos) << bad << ": " << why;
    EXPECT_NE(why.find("trace | debug"), std::string::npos) << why;
  }
}

TEST(ParseConfig, LogFormatIsTextOrJson) {
  EXPECT_EQ(parse_ok({}).log_format, "text");
  EXPECT_EQ(parse_ok({"--log-format", "json"}).log_format, "json");
  EXPECT_NE(refusal({"--log-format", "xml"}).find("--log-format 'xml' is not text | json"),
            std::string::npos);
}

TEST(ParseConfig, TracingFlagsAreChecked) {
  auto none = parse_ok({});
  EXPECT_TRUE(none.otlp.endpoint.empty());
  EXPECT_EQ(none.trace_sample_ratio, 1.0);
  auto c = parse_ok({"--otlp-endpoint", "http://jaeger:4318/v1/traces", "--trace-sample-ratio",
                     "0.25", "--otlp-max-queue", "100"});
  EXPECT_EQ(c.otlp.endpoint, "http://jaeger:4318/v1/traces");
  EXPECT_EQ(c.trace_sample_ratio, 0.25);
  EXPECT_EQ(c.otlp.max_queue, 100u);
  EXPECT_LE(c.otlp.max_batch, 100u);
  for (const char* bad : {"jaeger:4318", "https://jaeger:4318/v1/traces", "http:///v1/traces"}) {
    auto why = refusal({"--otlp-endpoint", bad});
    EXPECT_NE(why.find("--otlp-endpoint"), std::string::npos) << bad << ": " << why;
  }
  for (const char* bad : {"-0.1", "1.5", "nan"}) {
    auto why = refusal({"--trace-sample-ratio", bad});
    EXPECT_NE(why.find("--trace-sample-ratio"), std::string::npos) << bad << ": " << why;
  }
  EXPECT_NE(refusal({"--otlp-max-queue", "0"}).find("--otlp-max-queue"), std::string::npos);
}

TEST(ParseConfig, AnUnknownClusterProfileIsRefusedWhileParsing) {
  EXPECT_EQ(parse_ok({"--cluster-profile", "fast"}).cluster_profile, "fast");
  auto why = refusal({"--cluster", "127.0.0.1:7001", "--cluster-secret-file", "/run/s",
                      "--cluster-profile", "bogus"});
  EXPECT_NE(why.find("--cluster-profile 'bogus'"), std::string::npos) << why;
}

TEST(ParseConfig, HttpHostNamesResolve) {
  auto c = parse_ok({"--http", "localhost:0"});
  EXPECT_EQ(c.http_config.host, "127.0.0.1");
  EXPECT_EQ(c.http_config.port, 0);
  EXPECT_EQ(parse_ok({"--http", "[::1]:0"}).http_config.host, "::1");
  // (A name that does not resolve is not tried here: that would ask a DNS server.)
}

}  // namespace
}  // namespace mcpmesh::node
