#pragma once
/// Process figures for /metrics, under the names Prometheus' client libraries use
/// (process_cpu_seconds_total, process_open_fds, process_max_fds,
/// process_resident_memory_bytes, process_start_time_seconds), and mcpmesh_build_info.
///
/// Thread-safety: any thread; reads /proc/self on every call (a scrape, not the request path).

#include <string>
#include <string_view>

namespace mcpmesh::node {

struct BuildInfo {
  std::string version;
  std::string compiler;
  std::string build_type;
};

/// This binary's version (the project's), compiler and build type.
[[nodiscard]] BuildInfo build_info();

/// Appends the process figures and the build info to `out` (Prometheus text). A figure that
/// cannot be read (no /proc) is left out, never made up.
void render_process_metrics(std::string& out);

}  // namespace mcpmesh::node
