#include "node/process_metrics.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <regex>
#include <string>

namespace mcpmesh::node {
namespace {

/// The value of the sample `name` (no labels) in Prometheus text, or -1.
double sample(const std::string& text, const std::string& name) {
  std::smatch m;
  std::regex re("(^|\n)" + name + " ([0-9.e+]+)\n");
  if (!std::regex_search(text, m, re)) return -1;
  return std::stod(m[2]);
}

TEST(ProcessMetrics, FiguresComeFromTheProcess) {
  std::string before;
  render_process_metrics(before);
  // Three more open descriptors show as three more.
  int fds[3];
  for (int& fd : fds) fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  std::string after;
  render_process_metrics(after);
  for (int fd : fds) ::close(fd);
  EXPECT_EQ(sample(after, "process_open_fds"), sample(before, "process_open_fds") + 3) << after;
  EXPECT_GT(sample(after, "process_max_fds"), sample(after, "process_open_fds"));
  EXPECT_GT(sample(after, "process_resident_memory_bytes"), 1 << 20);
  EXPECT_GE(sample(after, "process_cpu_seconds_total"), 0);
  // Started in the last day (a test process), after 2020.
  double start = sample(after, "process_start_time_seconds");
  EXPECT_GT(start, 1.6e9);
  EXPECT_LT(start, static_cast<double>(::time(nullptr)) + 1);
  EXPECT_NE(after.find("# TYPE process_cpu_seconds_total counter\n"), std::string::npos);
}

TEST(ProcessMetrics, BuildInfoNamesVersionCompilerAndBuildType) {
  auto info = build_info();
  EXPECT_EQ(info.version, "0.1.0");
  EXPECT_FALSE(info.compiler.empty());
  EXPECT_NE(info.build_type, "unknown");
  std::string text;
  render_process_metrics(text);
  EXPECT_NE(text.find("mcpmesh_build_info{version=\"0.1.0\",compiler=\""), std::string::npos)
      << text;
  EXPECT_NE(text.find("\"} 1\n"), std::string::npos);
}

}  // namespace
}  // namespace mcpmesh::node
