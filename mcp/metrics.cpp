#include "mcp/metrics.hpp"

#include <cmath>
#include <cstdio>

#include <string_view>

namespace mcpmesh::mcp {

namespace {

/// The sample's HELP and TYPE lines (when `help` is set) and `<name><labels> `.
void append_head(std::string& out, std::string_view name, std::string_view help,
                 std::string_view type, std::string_view labels) {
  if (!help.empty()) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
  }
  out += name;
  out += labels;
  out += ' ';
}

}  // namespace

void append_sample(std::string& out, std::string_view name, std::string_view help,
                   std::string_view type, std::string_view labels, std::uint64_t value) {
  append_head(out, name, help, type, labels);
  out += std::to_string(value);
  out += '\n';
}

void append_sample(std::string& out, std::string_view name, std::string_view help,
                   std::string_view type, std::string_view labels, double value) {
  append_head(out, name, help, type, labels);
  char num[32];
  // Whole numbers (counters, bytes) in full; others to 15 significant digits (0.15, not
  // 0.14999999999999999; a Unix time to the hundredth of a second).
  if (value == std::floor(value) && std::fabs(value) < 9.2e18) {
    std::snprintf(num, sizeof num, "%lld", static_cast<long long>(value));
  } else {
    std::snprintf(num, sizeof num, "%.15g", value);
  }
  out += num;
  out += '\n';
}

std::string Metrics::render_prometheus() const {
  std::string out;
  out.reserve(4096);
  auto emit = [&out](std::string_view name, std::string_view help, std::uint64_t value) {
    bool counter = name.size() > 6 && name.substr(name.size() - 6) == "_total";
    append_sample(out, "mcpmesh_" + std::string(name), help, counter ? "counter" : "gauge", "",
                  value);
  };
#define MCPMESH_METRIC_EMIT(name, help) emit(#name, help, name.load(std::memory_order_relaxed));
  MCPMESH_METRICS(MCPMESH_METRIC_EMIT)
#undef MCPMESH_METRIC_EMIT
  out +=
      "# HELP mcpmesh_request_duration_seconds time from a request's arrival at its session to "
      "its answer, by method\n# TYPE mcpmesh_request_duration_seconds histogram\n";
  for (std::size_t i = 0; i < kTimedMethods.size(); ++i) {
    method_latency[i].render(out, "mcpmesh_request_duration_seconds",
                             "method=\"" + std::string(kTimedMethods[i]) + "\"");
  }
  return out;
}

}  // namespace mcpmesh::mcp
