#include "node/process_metrics.hpp"

#include "mcp/metrics.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>

#ifndef MCPMESH_VERSION
#define MCPMESH_VERSION "unknown"
#endif
#ifndef MCPMESH_BUILD_TYPE
#define MCPMESH_BUILD_TYPE "unknown"
#endif

namespace mcpmesh::node {

namespace {

void gauge(std::string& out, std::string_view name, std::string_view help, std::string_view type,
           double value) {
  mcp::append_sample(out, name, help, type, "", value);
}

/// Entries of /proc/self/fd (the directory's own descriptor excluded).
std::optional<std::size_t> open_fds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (!dir) return std::nullopt;
  std::size_t n = 0;
  while (auto* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n > 0 ? n - 1 : 0;
}

/// utime + stime (seconds) and start time (seconds after boot) from /proc/self/stat.
std::optional<std::pair<double, double>> cpu_and_start() {
  std::ifstream in("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = text.rfind(')');  // the command name may hold spaces and parentheses
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(text.substr(close + 2));
  std::string f;
  unsigned long long utime = 0, stime = 0, start = 0;
  // Fields from 3 (state) on: utime is 14, stime 15, starttime 22.
  for (int i = 3; i <= 22 && fields >> f; ++i) {
    if (i == 14) utime = std::stoull(f);
    if (i == 15) stime = std::stoull(f);
    if (i == 22) start = std::stoull(f);
  }
  const double hz = static_cast<double>(::sysconf(_SC_CLK_TCK));
  if (hz <= 0) return std::nullopt;
  return std::pair{static_cast<double>(utime + stime) / hz, static_cast<double>(start) / hz};
}

std::optional<double> boot_time() {
  std::ifstream in("/proc/stat");
  std::string key;
  while (in >> key) {
    if (key == "btime") {
      double t = 0;
      if (in >> t) return t;
      return std::nullopt;
    }
    in.ignore(1 << 20, '\n');
  }
  return std::nullopt;
}

std::optional<double> resident_bytes() {
  std::ifstream in("/proc/self/statm");
  unsigned long long size = 0, resident = 0;
  if (!(in >> size >> resident)) return std::nullopt;
  return static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE));
}

std::string label_value(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

BuildInfo build_info() {
#if defined(__clang__)
  std::string compiler = "clang " __clang_version__;
#elif defined(__GNUC__)
  std::string compiler = "gcc " __VERSION__;
#else
  std::string compiler = "unknown";
#endif
  return {MCPMESH_VERSION, std::move(compiler), MCPMESH_BUILD_TYPE};
}

void render_process_metrics(std::string& out) {
  if (auto cpu = cpu_and_start()) {
    gauge(out, "process_cpu_seconds_total", "user and system CPU time spent, in seconds", "counter",
          cpu->first);
    if (auto boot = boot_time()) {
      gauge(out, "process_start_time_seconds", "start time of the process since the Unix epoch",
            "gauge", *boot + cpu->second);
    }
  }
  if (auto fds = open_fds()) {
    gauge(out, "process_open_fds", "open file descriptors", "gauge", static_cast<double>(*fds));
  }
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    gauge(out, "process_max_fds", "the open-file limit (soft)", "gauge",
          static_cast<double>(limit.rlim_cur));
  }
  if (auto rss = resident_bytes()) {
    gauge(out, "process_resident_memory_bytes", "resident memory, in bytes", "gauge", *rss);
  }
  auto info = build_info();
  out += "# HELP mcpmesh_build_info the version, compiler and build type of this binary\n";
  out += "# TYPE mcpmesh_build_info gauge\n";
  out += "mcpmesh_build_info{version=\"" + label_value(info.version) + "\",compiler=\"" +
         label_value(info.compiler) + "\",build_type=\"" + label_value(info.build_type) + "\"} 1\n";
}

}  // namespace mcpmesh::node
