#include "transport/stdio_transport.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <thread>

namespace mcpmesh::transport {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

/// A node's stdio transport on two pipes, driven from the test thread.
class StdioTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::pipe(to_node_), 0);
    ASSERT_EQ(::pipe(from_node_), 0);
    server_ = std::make_unique<mcp::Server>(io_, app_, mcp::ServerConfig{}, 1);
    StdioConfig cfg;
    cfg.in_fd = to_node_[0];
    cfg.out_fd = from_node_[1];
    cfg.max_line_bytes = 256;
    configure(cfg);
    stdio_ = std::make_unique<StdioTransport>(io_, *server_, cfg);
    stdio_->start([this] { eof_seen_ = true; });
    thread_ = std::thread([this] { io_.run_for(20s); });
  }

  virtual void configure(StdioConfig&) {}

  void TearDown() override {
    if (to_node_[1] >= 0) ::close(to_node_[1]);
    io_.stop();
    thread_.join();
    stdio_.reset();
    server_.reset();
    ::close(to_node_[0]);
    ::close(from_node_[0]);
    ::close(from_node_[1]);
  }

  void send_line(std::string_view line) {
    std::string text(line);
    text += '\n';
    ASSERT_EQ(::write(to_node_[1], text.data(), text.size()), static_cast<ssize_t>(text.size()));
  }

  /// Reads one line the node wrote, waiting at most 10 s.
  json::value read_message() {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto nl = pending_.find('\n');
      if (nl != std::string::npos) {
        auto line = pending_.substr(0, nl);
        pending_.erase(0, nl + 1);
        return json::parse(line);
      }
      fd_set set;
      FD_ZERO(&set);
      FD_SET(from_node_[0], &set);
      timeval tv{0, 100000};
      if (::select(from_node_[0] + 1, &set, nullptr, nullptr, &tv) > 0) {
        char buf[4096];
        auto n = ::read(from_node_[0], buf, sizeof buf);
        if (n > 0) pending_.append(buf, static_cast<std::size_t>(n));
      }
    }
    ADD_FAILURE() << "no message from the node within 10 s";
    return nullptr;
  }

  int to_node_[2] = {-1, -1};
  int from_node_[2] = {-1, -1};
  std::string pending_;
  std::atomic<bool> eof_seen_{false};
  mcp::App app_;
  boost::asio::io_context io_;
  std::unique_ptr<mcp::Server> server_;
  std::unique_ptr<StdioTransport> stdio_;
  std::thread thread_;
};

TEST_F(StdioTransportTest, InitializeAndPingOneLineEach) {
  send_line(R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":)"
            R"("2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}})");
  auto init = read_message();
  EXPECT_EQ(init.at("result").at("protocolVersion"), "2025-06-18");
  send_line(R"({"jsonrpc":"2.0","id":"p","method":"ping"})");
  auto pong = read_message();
  EXPECT_EQ(pong.at("id"), "p");
  EXPECT_TRUE(pong.at("result").as_object().empty());
}

TEST_F(StdioTransportTest, OversizeAndMalformedLinesGetErrorsAndTheStreamGoesOn) {
  send_line(std::string(1000, 'x'));
  EXPECT_EQ(read_message().at("error").at("code"), -32600);
  send_line("{not json");
  EXPECT_EQ(read_message().at("error").at("code"), -32700);
  send_line(R"({"jsonrpc":"2.0","id":2,"method":"ping"})");
  auto pong = read_message();
  EXPECT_EQ(pong.at("id"), 2);
  EXPECT_TRUE(pong.as_object().contains("result"));
}

TEST_F(StdioTransportTest, EndOfInputEndsTheSessionAfterPendingOutput) {
  send_line(R"({"jsonrpc":"2.0","id":3,"method":"ping"})");
  ::close(to_node_[1]);
  to_node_[1] = -1;
  EXPECT_EQ(read_message().at("id"), 3);
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!eof_seen_ && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);  // polling a flag the node sets, bounded
  }
  EXPECT_TRUE(eof_seen_);
  EXPECT_EQ(server_->session_count(), 0u);
}

class StdioBackpressureTest : public StdioTransportTest {
 protected:
  static constexpr std::size_t kMaxMessages = 32;
  static constexpr std::size_t kMaxBytes = 4096;
  void configure(StdioConfig& cfg) override {
    cfg.max_queued_messages = kMaxMessages;
    cfg.max_queued_bytes = kMaxBytes;
  }
};

TEST_F(StdioBackpressureTest, AnUnreadStdoutStopsReadingAndEveryAnswerArrivesLater) {
  constexpr int kPings = 20000;  // ~0.9 MB of requests: far more than the pipes hold
  std::atomic<int> written{0};
  int fd = to_node_[1];
  // The client writes without reading: its writes block once the node stops reading stdin.
  std::thread writer([&] {
    for (int i = 0; i < kPings; ++i) {
      std::string line = R"({"jsonrpc":"2.0","id":)" + std::to_string(i) + R"(,"method":"ping"})";
      line += '\n';
      if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return;
      ++written;
    }
  });
  auto& metrics = server_->metrics();
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (metrics.stdio_read_pauses_total == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);  // polling a counter the node sets, bounded
  }
  ASSERT_GE(metrics.stdio_read_pauses_total.load(), 1u);
  // While nobody reads, what waits for stdout stays within its bounds (plus the answers to
  // requests already handed to the session: at most its in-flight bound, and the line read).
  const std::size_t slack = mcp::ServerConfig{}.max_inflight_per_session + 1;
  for (int sample = 0; sample < 50; ++sample) {
    EXPECT_LE(metrics.stdio_queued_messages.load(), kMaxMessages + slack);
    EXPECT_LE(metrics.stdio_queued_bytes.load(), kMaxBytes + slack * 64);
    std::this_thread::sleep_for(5ms);  // samples over a quarter second, not a synchronisation
  }
  EXPECT_LT(written.load(), kPings) << "the node kept reading";
  // Once the client reads, every answer arrives, once and in order.
  for (int i = 0; i < kPings; ++i) {
    auto m = read_message();
    ASSERT_TRUE(m.is_object()) << "answer " << i;
    ASSERT_EQ(m.at("id"), i);
  }
  writer.join();
  EXPECT_EQ(written.load(), kPings);
  EXPECT_EQ(metrics.stdio_dropped_total.load(), 0u);
}

}  // namespace
}  // namespace mcpmesh::transport
