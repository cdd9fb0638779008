#pragma once
/// Log formats. `--log-format json`: each log record one JSON object on its line, for log
/// collectors: {"ts":"2026-12-02T08:40:01.123456Z","level":"info","logger":"mcpmesh",
/// "thread":1234,"msg":"..."} with the message escaped as JSON requires, and "trace_id" and
/// "span_id" for a record logged while working for a trace (mcp::current_trace). The text
/// format ends such records with " trace_id=<32 hex digits>".
///
/// Thread-safety: spdlog calls a formatter from one thread at a time per sink; clone() gives
/// each sink its own.

#include <spdlog/formatter.h>
#include <spdlog/pattern_formatter.h>

#include <memory>

namespace mcpmesh::node {

/// The text format: spdlog's default pattern, then the trace id when there is one.
[[nodiscard]] std::unique_ptr<spdlog::formatter> make_text_formatter();

/// `%*` in a pattern: " trace_id=<hex>" while the logging thread works for a trace.
class TraceIdFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm& tm,
              spdlog::memory_buf_t& dest) override;
  [[nodiscard]] std::unique_ptr<spdlog::custom_flag_formatter> clone() const override {
    return std::make_unique<TraceIdFlag>();
  }
};

class JsonLogFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
  [[nodiscard]] std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonLogFormatter>();
  }
};

}  // namespace mcpmesh::node
