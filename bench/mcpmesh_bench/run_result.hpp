#pragma once
/// \file
/// RunResult: everything a run counted, per thread while it runs, then merged over the
/// threads and over the processes of `--processes` (through its raw JSON form, histograms
/// included, so percentiles are computed over every sample, not averaged). The report is the
/// one JSON object printed on stdout and the summary printed on stderr.
///
/// Thread-safety: plain data; a RunResult is filled by one thread at a time.

#include <array>
#include <boost/json/object.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bench/mcpmesh_bench/latency_histogram.hpp"
#include "bench/mcpmesh_bench/mcp_messages.hpp"
#include "bench/mcpmesh_bench/options.hpp"

namespace mcpmesh::bench {

/// One operation's measured results (operations started after the warm-up).
struct OpResult {
  LatencyHistogram latency;                 ///< successful operations only, ns
  std::uint64_t count = 0;                  ///< completed, whatever the outcome
  std::array<std::uint64_t, 7> outcomes{};  ///< by Outcome, kOk..kSocketError

  [[nodiscard]] std::uint64_t outcome(Outcome o) const {
    return outcomes[static_cast<std::size_t>(o)];
  }
  void record(Outcome o, std::uint64_t latency_ns);
};

struct RunResult {
  std::array<OpResult, kOpCount> ops;
  // HTTP exchanges of measured operations, by status.
  std::uint64_t http_requests = 0;
  std::uint64_t status_200 = 0, status_202 = 0, status_429 = 0, status_503 = 0, status_other = 0;
  std::uint64_t warmup_ops = 0;  ///< operations completed in the warm-up (not measured)
  std::uint64_t connects = 0;    ///< TCP connections established, setup included
  std::uint64_t idle_reconnects = 0;
  std::uint64_t retry_after_seen = 0, retry_after_honoured = 0;
  double retry_after_waited_s = 0;
  // Open loop: sends due in the measured window, and those never sent because their
  // connection was still busy when the window ended.
  std::uint64_t intended = 0, unsent = 0;
  // Sessions.
  std::uint64_t sessions_requested = 0, sessions_created = 0, sessions_failed = 0;
  std::uint64_t sessions_deleted = 0, sessions_delete_failed = 0;
  /// --honour-retry-after: initialize refused with 429/503 + Retry-After, waited and sent again.
  std::uint64_t sessions_retried = 0;
  LatencyHistogram session_open;  ///< initialize + notifications/initialized, ns
  // Held SSE streams.
  std::uint64_t sse_requested = 0, sse_opened = 0, sse_failed = 0, sse_ended_early = 0;
  std::uint64_t sse_events = 0, sse_messages = 0, sse_keepalives = 0, sse_bytes = 0;
  // Time and CPU.
  double setup_s = 0;                                 ///< opening the sessions and the streams
  double measured_s = 0;                              ///< the measured window (the hold, in --hold)
  double cpu_user_s = 0, cpu_system_s = 0;            ///< the whole process(es)
  double load_cpu_user_s = 0, load_cpu_system_s = 0;  ///< warm-up + measured window
  std::uint64_t load_ops = 0;              ///< operations completed in warm-up + measured window
  std::vector<std::string> error_samples;  ///< the first few distinct errors
  std::string fatal;                       ///< why the run failed, when it did

  static constexpr std::size_t kMaxErrorSamples = 8;
  void sample_error(std::string_view what);
  void count_status(unsigned status);

  [[nodiscard]] std::uint64_t requests() const;
  [[nodiscard]] std::uint64_t outcome_total(Outcome o) const;
};

/// Adds `from` into `into` (counts summed, histograms merged, times: the longest).
void merge(RunResult& into, const RunResult& from);

/// The raw form exchanged between processes, and back.
[[nodiscard]] boost::json::object to_raw_json(const RunResult& r);
[[nodiscard]] std::optional<RunResult> from_raw_json(const boost::json::value& v);

/// The report: the run's configuration and results, as printed on stdout.
[[nodiscard]] boost::json::object report_json(const BenchOptions& options, const RunResult& r);
/// A few lines for people (stderr).
[[nodiscard]] std::string summary_text(const BenchOptions& options, const RunResult& r);

}  // namespace mcpmesh::bench
