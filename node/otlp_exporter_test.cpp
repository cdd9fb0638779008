#include "node/otlp_exporter.hpp"

#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

namespace mcpmesh::node {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = boost::asio::ip::tcp;
using namespace std::chrono_literals;

/// A one-thread OTLP/HTTP receiver on loopback: keeps every POST body, answers `status`.
class Receiver {
 public:
  explicit Receiver(unsigned status = 200) : status_(status), acceptor_(io_, {tcp::v4(), 0}) {
    acceptor_.listen();
    thread_ = std::thread([this] { serve(); });
  }
  ~Receiver() {
    stop_ = true;
    boost::system::error_code ec;
    tcp::socket poke(io_);
    poke.connect(acceptor_.local_endpoint(), ec);  // wakes accept()
    thread_.join();
  }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + "/v1/traces";
  }
  std::vector<std::string> bodies() {
    std::lock_guard lock(mu_);
    return bodies_;
  }
  std::vector<std::string> targets() {
    std::lock_guard lock(mu_);
    return targets_;
  }

 private:
  void serve() {
    while (!stop_) {
      tcp::socket socket(io_);
      boost::system::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec || stop_) continue;
      beast::flat_buffer buffer;
      http::request<http::string_body> req;
      http::read(socket, buffer, req, ec);
      if (ec) continue;
      {
        std::lock_guard lock(mu_);
        bodies_.push_back(req.body());
        targets_.emplace_back(req.target());
        if (req[http::field::content_type] != "application/json") bodies_.back() = "bad type";
      }
      http::response<http::string_body> res(static_cast<http::status>(status_), 11);
      res.body() = "{}";
      res.prepare_payload();
      http::write(socket, res, ec);
    }
  }

  unsigned status_;
  boost::asio::io_context io_;
  tcp::acceptor acceptor_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::string> bodies_, targets_;
  std::thread thread_;
};

mcp::SpanData span(std::string name, bool child) {
  mcp::SpanData s;
  s.trace_id.fill(0xab);
  s.span_id.fill(child ? 0x02 : 0x01);
  if (child) s.parent = mcp::SpanId{1, 1, 1, 1, 1, 1, 1, 1};
  s.name = std::move(name);
  s.kind = child ? mcp::SpanKind::kInternal : mcp::SpanKind::kServer;
  s.start_unix_ns = 1'700'000'000'000'000'000ULL;
  s.end_unix_ns = s.start_unix_ns + 1500;
  s.attributes = {{"mcp.method.name", std::string("tools/call")},
                  {"mcpmesh.hops", std::int64_t{1}},
                  {"ok", true}};
  return s;
}

TEST(OtlpExporter, SpansReachTheReceiverAsOtlpJson) {
  Receiver receiver;
  {
    OtlpExporter exporter(
        {.endpoint = receiver.url(),
         .interval = 10s,  // only flush() sends here
         .resource = {{"service.name", "mcpmesh"}, {"service.instance.id", "n1"}}});
    exporter.export_span(span("POST /mcp", false));
    auto child = span("tools/call echo", true);
    child.error = true;
    child.status_message = "boom";
    exporter.export_span(std::move(child));
    ASSERT_TRUE(exporter.flush(5s));
    auto c = exporter.counters();
    EXPECT_EQ(c.exported, 2u);
    EXPECT_EQ(c.batches, 1u);
    std::string metrics;
    exporter.render_metrics(metrics);
    EXPECT_NE(metrics.find("mcpmesh_trace_spans_exported_total 2\n"), std::string::npos);
  }
  auto bodies = receiver.bodies();
  ASSERT_EQ(bodies.size(), 1u);
  EXPECT_EQ(receiver.targets()[0], "/v1/traces");
  auto doc = json::parse(bodies[0]).as_object();
  auto& rs = doc.at("resourceSpans").as_array().at(0).as_object();
  auto& rattrs = rs.at("resource").as_object().at("attributes").as_array();
  EXPECT_EQ(rattrs.at(0).at("key").as_string(), "service.name");
  EXPECT_EQ(rattrs.at(0).at("value").at("stringValue").as_string(), "mcpmesh");
  auto& spans = rs.at("scopeSpans").as_array().at(0).at("spans").as_array();
  ASSERT_EQ(spans.size(), 2u);
  auto& root = spans.at(0).as_object();
  EXPECT_EQ(root.at("traceId").as_string(), "abababababababababababababababab");
  EXPECT_EQ(root.at("spanId").as_string(), "0101010101010101");
  EXPECT_FALSE(root.contains("parentSpanId"));
  EXPECT_EQ(root.at("kind").as_int64(), 2);
  EXPECT_EQ(root.at("startTimeUnixNano").as_string(), "1700000000000000000");
  EXPECT_EQ(root.at("endTimeUnixNano").as_string(), "1700000000000001500");
  auto& attrs = root.at("attributes").as_array();
  EXPECT_EQ(attrs.at(1).at("value").at("intValue").as_string(), "1");
  EXPECT_EQ(attrs.at(2).at("value").at("boolValue").as_bool(), true);
  auto& child = spans.at(1).as_object();
  EXPECT_EQ(child.at("parentSpanId").as_string(), "0101010101010101");
  EXPECT_EQ(child.at("status").at("code").as_int64(), 2);
  EXPECT_EQ(child.at("status").at("message").as_string(), "boom");
}

TEST(OtlpExporter, TheQueueIsBoundedAndFailedBatchesAreCountedNotRetried) {
  Receiver refusing(503);
  OtlpExporter exporter(
      {.endpoint = refusing.url(), .max_queue = 3, .max_batch = 10, .interval = 10s});
  for (int i = 0; i < 5; ++i) exporter.export_span(span("s", false));
  ASSERT_TRUE(exporter.flush(5s));
  auto c = exporter.counters();
  EXPECT_EQ(c.dropped_full, 2u);
  EXPECT_EQ(c.dropped_failed, 3u);
  EXPECT_EQ(c.exported, 0u);
  EXPECT_EQ(refusing.bodies().size(), 1u) << "one POST, no retry loop";
}

TEST(OtlpExporter, AFullBatchLeavesWithoutWaitingForTheInterval) {
  Receiver receiver;
  OtlpExporter exporter({.endpoint = receiver.url(), .max_batch = 4, .interval = 60s});
  for (int i = 0; i < 8; ++i) exporter.export_span(span("s", false));
  // Two full batches go at once; poll (bounded) for them.
  auto until = std::chrono::steady_clock::now() + 5s;
  while (exporter.counters().exported < 8 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(exporter.counters().exported, 8u);
  EXPECT_EQ(exporter.counters().batches, 2u);
}

TEST(OtlpExporter, AnUnreachableReceiverCostsNothingButItsBatch) {
  // Port 1 on loopback: connection refused at once.
  OtlpExporter exporter(
      {.endpoint = "http://127.0.0.1:1/v1/traces", .interval = 10s, .timeout = 2s});
  exporter.export_span(span("s", false));
  ASSERT_TRUE(exporter.flush(5s));
  EXPECT_EQ(exporter.counters().dropped_failed, 1u);
  EXPECT_THROW(OtlpExporter({.endpoint = "https://collector:4318/v1/traces"}),
               std::invalid_argument);
  EXPECT_THROW(OtlpExporter({.endpoint = "not a url"}), std::invalid_argument);
}

}  // namespace
}  // namespace mcpmesh::node
