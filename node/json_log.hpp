#pragma once
/// `--log-format json`: each log record one JSON object on its line, for log collectors:
/// {"ts":"2026-12-02T08:40:01.123456Z","level":"info","logger":"mcpmesh","thread":1234,
///  "msg":"..."} with the message escaped as JSON requires.
///
/// Thread-safety: spdlog calls a formatter from one thread at a time per sink; clone() gives
/// each sink its own.

#include <spdlog/formatter.h>

#include <memory>

namespace mcpmesh::node {

class JsonLogFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
  [[nodiscard]] std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonLogFormatter>();
  }
};

}  // namespace mcpmesh::node
