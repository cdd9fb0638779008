#include "node/json_log.hpp"

#include "mcp/trace.hpp"

#include <gtest/gtest.h>
#include <spdlog/logger.h>
#include <spdlog/sinks/ostream_sink.h>

#include <boost/json.hpp>

#include <sstream>
#include <string>

namespace mcpmesh::node {
namespace {

TEST(JsonLog, EveryRecordIsOneJsonObjectOnItsLineWithItsTextEscaped) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_st>(out);
  spdlog::logger logger("mcpmesh", sink);
  logger.set_formatter(std::make_unique<JsonLogFormatter>());
  logger.set_level(spdlog::level::debug);
  logger.info("plain");
  logger.warn("quotes \" and \\ backslash\nnew line\ttab \x01 control, é");
  logger.debug("session {} closed", "n1.abc");
  std::istringstream lines(out.str());
  std::string line;
  std::vector<boost::json::object> records;
  while (std::getline(lines, line)) {
    boost::system::error_code ec;
    auto v = boost::json::parse(line, ec);
    ASSERT_FALSE(ec) << line;
    ASSERT_TRUE(v.is_object()) << line;
    records.push_back(v.get_object());
  }
  ASSERT_EQ(records.size(), 3u) << out.str();
  EXPECT_EQ(records[0].at("msg").as_string(), "plain");
  EXPECT_EQ(records[0].at("level").as_string(), "info");
  EXPECT_EQ(records[0].at("logger").as_string(), "mcpmesh");
  EXPECT_TRUE(records[0].at("thread").is_number());
  auto ts = std::string(records[0].at("ts").as_string());
  EXPECT_EQ(ts.size(), 27u) << ts;  // 2026-12-02T08:40:01.123456Z
  EXPECT_EQ(ts.back(), 'Z');
  EXPECT_EQ(records[1].at("msg").as_string(),
            "quotes \" and \\ backslash\nnew line\ttab \x01 control, é");
  EXPECT_EQ(records[1].at("level").as_string(), "warning");
  EXPECT_EQ(records[2].at("msg").as_string(), "session n1.abc closed");
  EXPECT_EQ(records[2].at("level").as_string(), "debug");
}

TEST(LogFormats, RecordsLoggedForATraceCarryItsId) {
  auto trace = *mcp::parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  std::ostringstream json_out, text_out;
  spdlog::logger json("mcpmesh", std::make_shared<spdlog::sinks::ostream_sink_st>(json_out));
  json.set_formatter(std::make_unique<JsonLogFormatter>());
  spdlog::logger text("mcpmesh", std::make_shared<spdlog::sinks::ostream_sink_st>(text_out));
  text.set_formatter(make_text_formatter());
  json.info("outside");
  text.info("outside");
  {
    mcp::TraceScope scope(trace);
    json.info("inside");
    text.info("inside");
  }
  std::istringstream lines(json_out.str());
  std::string outside, inside;
  std::getline(lines, outside);
  std::getline(lines, inside);
  auto a = boost::json::parse(outside).as_object();
  auto b = boost::json::parse(inside).as_object();
  EXPECT_FALSE(a.contains("trace_id")) << outside;
  EXPECT_EQ(b.at("trace_id").as_string(), "4bf92f3577b34da6a3ce929d0e0e4736") << inside;
  EXPECT_EQ(b.at("span_id").as_string(), "00f067aa0ba902b7") << inside;
  auto t = text_out.str();
  EXPECT_NE(t.find("] outside\n"), std::string::npos) << t;
  EXPECT_NE(t.find("] inside trace_id=4bf92f3577b34da6a3ce929d0e0e4736\n"), std::string::npos) << t;
  EXPECT_NE(t.find("[mcpmesh] [info] inside"), std::string::npos) << t;
}

}  // namespace
}  // namespace mcpmesh::node
