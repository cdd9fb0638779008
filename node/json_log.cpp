#include "node/json_log.hpp"

#include "mcp/trace.hpp"

#include <spdlog/common.h>
#include <spdlog/details/log_msg.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string_view>

namespace mcpmesh::node {

namespace {

void append(spdlog::memory_buf_t& dest, std::string_view s) {
  dest.append(s.data(), s.data() + s.size());
}

/// `s` as the inside of a JSON string.
void append_escaped(spdlog::memory_buf_t& dest, std::string_view s) {
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        append(dest, "\\\"");
        break;
      case '\\':
        append(dest, "\\\\");
        break;
      case '\n':
        append(dest, "\\n");
        break;
      case '\r':
        append(dest, "\\r");
        break;
      case '\t':
        append(dest, "\\t");
        break;
      default:
        if (c < 0x20) {
          char u[8];
          std::snprintf(u, sizeof u, "\\u%04x", c);
          append(dest, u);
        } else {
          dest.push_back(static_cast<char>(c));
        }
    }
  }
}

}  // namespace

void JsonLogFormatter::format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) {
  using namespace std::chrono;
  auto since = msg.time.time_since_epoch();
  auto secs = duration_cast<seconds>(since);
  auto micros = duration_cast<microseconds>(since - secs).count();
  std::time_t t = secs.count();
  std::tm tm{};
  gmtime_r(&t, &tm);
  char ts[48];
  std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(micros));
  append(dest, "{\"ts\":\"");
  append(dest, ts);
  append(dest, "\",\"level\":\"");
  auto level = spdlog::level::to_string_view(msg.level);
  append(dest, std::string_view(level.data(), level.size()));
  append(dest, "\",\"logger\":\"");
  append_escaped(dest, std::string_view(msg.logger_name.data(), msg.logger_name.size()));
  append(dest, "\",\"thread\":");
  append(dest, std::to_string(msg.thread_id));
  append(dest, ",\"msg\":\"");
  append_escaped(dest, std::string_view(msg.payload.data(), msg.payload.size()));
  append(dest, "\"");
  if (auto* trace = mcp::current_trace()) {
    append(dest, ",\"trace_id\":\"");
    append(dest, mcp::to_hex(trace->trace_id.data(), trace->trace_id.size()));
    append(dest, "\",\"span_id\":\"");
    append(dest, mcp::to_hex(trace->span_id.data(), trace->span_id.size()));
    append(dest, "\"");
  }
  append(dest, "}\n");
}

void TraceIdFlag::format(const spdlog::details::log_msg&, const std::tm&,
                         spdlog::memory_buf_t& dest) {
  if (auto* trace = mcp::current_trace()) {
    append(dest, " trace_id=");
    append(dest, mcp::to_hex(trace->trace_id.data(), trace->trace_id.size()));
  }
}

std::unique_ptr<spdlog::formatter> make_text_formatter() {
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<TraceIdFlag>('*').set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%n] [%^%l%$] %v%*");
  return formatter;
}

}  // namespace mcpmesh::node
