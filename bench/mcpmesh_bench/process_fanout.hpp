#pragma once
/// \file
/// `--processes P`: one process may hold only RLIMIT_NOFILE descriptors (20,000 on the bench
/// machine), so a run of more connections and streams is spread over P forked processes. Each
/// gets an even share of the sessions, connections, streams, rate and request cap, and the
/// next source addresses in turn. They open their sessions and streams, report `ready` to the
/// parent, start together when every one is ready, and send their raw results (histograms
/// included) back through a pipe; the parent merges them into one result. SIGINT/SIGTERM to
/// the parent reach every child (the children have a process group of their own, so a
/// terminal's Ctrl-C goes to the parent alone, and they get SIGTERM if the parent dies).
///
/// Thread-safety: from main(), before any thread was started (it forks).

#include <functional>

#include "bench/mcpmesh_bench/options.hpp"
#include "bench/mcpmesh_bench/run_result.hpp"

namespace mcpmesh::bench {

struct ProcessShare;

/// The options of process `index` of `options.processes`, and its place among them.
[[nodiscard]] BenchOptions share_options(const BenchOptions& options, std::size_t index,
                                         ProcessShare& share);

/// Runs the processes and merges their results. `on_ready(sessions, streams)` is called once
/// all are ready (for --hold's `ready` line).
[[nodiscard]] RunResult run_processes(
    const BenchOptions& options,
    const std::function<void(std::uint64_t sessions, std::uint64_t streams)>& on_ready);

}  // namespace mcpmesh::bench
