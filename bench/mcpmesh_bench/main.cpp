// mcpmesh-bench: load generator and meter for any Streamable HTTP MCP endpoint (ours or a
// peer's). Flags: `mcpmesh-bench --help`; method and figures: docs/BENCHMARKS.md.
//
// Prints exactly one JSON object on stdout once the flags were understood (also when the run
// could not happen: then "ok" is false and "error" says why), a short summary on stderr.
// Exit: 0 the run happened, 1 it could not, 2 bad flags.
//
// Thread-safety: main() runs on the main thread; the load runs on --threads I/O threads of
// its own (load_run.hpp), or in --processes forked processes (process_fanout.hpp).

#include <sys/resource.h>

#include <boost/json/serialize.hpp>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>

#include "bench/mcpmesh_bench/control_channel.hpp"
#include "bench/mcpmesh_bench/load_run.hpp"
#include "bench/mcpmesh_bench/options.hpp"
#include "bench/mcpmesh_bench/process_fanout.hpp"
#include "bench/mcpmesh_bench/run_result.hpp"

namespace {

using namespace mcpmesh::bench;

/// Makes room for the descriptors the busiest process needs, raising the soft limit up to the
/// hard one. Empty when there is room; otherwise what to do about it.
std::string ensure_descriptors(const BenchOptions& o) {
  auto per_process = [&](std::size_t processes) {  // the busiest: the first one
    return descriptors_needed(even_share(o.connections, processes, 0),
                              even_share(o.sse_streams, processes, 0), o.threads);
  };
  const std::uint64_t need = per_process(o.processes);
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return {};
  if (need <= lim.rlim_cur) return {};
  if (need <= lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) return {};
  }
  std::size_t enough = o.processes;
  while (enough < 4096 && per_process(enough) > lim.rlim_max) ++enough;
  return "a process would need " + std::to_string(need) + " file descriptors (" +
         std::to_string(o.connections) + " connections + " + std::to_string(o.sse_streams) +
         " SSE streams over " + std::to_string(o.processes) +
         " process(es), and its own), but RLIMIT_NOFILE allows " + std::to_string(lim.rlim_max) +
         ": spread the run with --processes " + std::to_string(enough) +
         " (or more), or raise the hard limit (ulimit -Hn)";
}

int report(const BenchOptions& o, const RunResult& r) {
  std::cout << boost::json::serialize(report_json(o, r)) << std::endl;
  if (!o.quiet || !r.fatal.empty()) std::cerr << summary_text(o, r) << std::flush;
  return r.fatal.empty() ? 0 : 1;
}

void print_ready(std::uint64_t sessions, std::uint64_t streams) {
  std::fprintf(stderr, "ready %llu %llu\n", static_cast<unsigned long long>(sessions),
               static_cast<unsigned long long>(streams));
  std::fflush(stderr);
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  CommandLine cl = parse_command_line(argc, argv);
  if (!cl.options) {
    (cl.exit_code == 0 ? std::cout : std::cerr) << cl.message << std::endl;
    return cl.exit_code;
  }
  const BenchOptions& o = *cl.options;
  if (std::string shortage = ensure_descriptors(o); !shortage.empty()) {
    RunResult r;
    r.sessions_requested = o.sessions;
    r.sse_requested = o.sse_streams;
    r.fatal = shortage;
    return report(o, r);
  }
  const bool hold = o.mode == Mode::kHold;
  RunResult result;
  if (o.processes > 1) {
    result = run_processes(o, [&](std::uint64_t sessions, std::uint64_t streams) {
      if (hold) print_ready(sessions, streams);
    });
  } else {
    ControlChannel control;
    ReadyHook ready;
    if (hold) {
      ready = [](ControlChannel&, const RunResult& opened) {
        print_ready(opened.sessions_created, opened.sse_opened);
        return true;
      };
    }
    result = run_load(o, ProcessShare{}, control, ready);
  }
  return report(o, result);
}
