#pragma once
/// \file
/// One process's run: open the sessions (initialize + notifications/initialized), open the
/// held SSE streams, send the load (closed or open loop) or hold, close the streams, DELETE
/// the sessions. The connections are spread over `--threads` io_contexts, one thread each; a
/// connection, its sessions and its counters stay on one thread. The main thread only starts
/// the phases and waits for them (ControlChannel), every wait with a deadline; SIGINT/SIGTERM
/// end the load or the hold early, and a second one cuts the closing short.
///
/// Thread-safety: run_load() from the main thread, after the ControlChannel was made and
/// before any other thread started.

#include <cstddef>
#include <functional>

#include "bench/mcpmesh_bench/control_channel.hpp"
#include "bench/mcpmesh_bench/options.hpp"
#include "bench/mcpmesh_bench/run_result.hpp"

namespace mcpmesh::bench {

/// This process's place among the processes of `--processes` (options hold its share).
struct ProcessShare {
  std::size_t connection_offset = 0;  ///< global index of its first connection
  std::size_t stream_offset = 0;      ///< global index of its first stream connection
};

/// Called once the sessions and streams are open (`opened` holds their counts), before the
/// load or hold starts. Returns false to skip the load (stop). May wait through `control`.
using ReadyHook = std::function<bool(ControlChannel& control, const RunResult& opened)>;

/// User and system CPU time of this process so far, every thread (getrusage).
struct CpuTimes {
  double user_s = 0, system_s = 0;
};
[[nodiscard]] CpuTimes process_cpu_times();

[[nodiscard]] RunResult run_load(const BenchOptions& options, const ProcessShare& share,
                                 ControlChannel& control, const ReadyHook& ready);

}  // namespace mcpmesh::bench
