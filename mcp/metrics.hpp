#pragma once
// Node-wide counters, exported as Prometheus text at /metrics.
// Thread-safety: every counter is a relaxed atomic; increment from any thread.

#include "mcp/latency.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace mcpmesh::mcp {

// name, help. Counters end in _total; gauges do not.
#define MCPMESH_METRICS(X)                                                                        \
  X(requests_total, "JSON-RPC requests received")                                                 \
  X(request_errors_total, "JSON-RPC error responses sent")                                        \
  X(notifications_total, "JSON-RPC notifications received")                                       \
  X(tool_calls_total, "tools/call requests")                                                      \
  X(cancelled_total, "requests cancelled by the client; their responses were dropped")            \
  X(inflight_rejected_total, "requests refused because the session had too many in flight")       \
  X(client_requests_total, "server-to-client requests sent (sampling, elicitation, roots)")       \
  X(client_request_timeouts_total, "server-to-client requests that hit their deadline")           \
  X(sessions_created_total, "sessions created")                                                   \
  X(sessions_closed_total, "sessions closed (DELETE, idle expiry, shutdown)")                     \
  X(sessions_expired_total, "sessions removed after the idle timeout")                            \
  X(sessions_restored_total, "sessions continued here after another node held them")              \
  X(sessions_rejected_total, "initialize refused: max_sessions reached, draining, or no quorum")  \
  X(sessions_active, "sessions alive on this node")                                               \
  X(inflight_requests, "requests whose handler is running on this node")                          \
  X(connections_total, "TCP connections accepted")                                                \
  X(connections_active, "TCP connections open")                                                   \
  X(connections_rejected_total, "connections refused because max_connections was reached")        \
  X(http_requests_total, "HTTP requests")                                                         \
  X(http_4xx_total, "HTTP responses with a 4xx status")                                           \
  X(http_5xx_total, "HTTP responses with a 5xx status")                                           \
  X(body_too_large_total, "requests refused: body over max_body_bytes (413)")                     \
  X(header_too_large_total, "requests refused: headers over max_header_bytes (431)")              \
  X(json_too_deep_total, "messages refused: JSON nesting over max_json_depth")                    \
  X(parse_errors_total, "messages that were not valid JSON")                                      \
  X(origin_rejected_total, "requests refused: Origin not allowed (403)")                          \
  X(host_rejected_total, "requests refused: Host not allowed (403)")                              \
  X(read_timeouts_total, "connections closed: request not read within read_timeout")              \
  X(idle_timeouts_total, "keep-alive connections closed after idle_timeout")                      \
  X(slow_consumers_total, "SSE streams closed: client did not keep up (write timeout/queue)")     \
  X(sse_events_total, "SSE events written")                                                       \
  X(sse_replayed_total, "SSE events replayed after Last-Event-ID")                                \
  X(sse_buffer_evicted_total, "SSE events dropped from a full resumption buffer")                 \
  X(blocking_jobs_rejected_total, "blocking jobs refused: worker queue full")                     \
  X(subscriptions_rejected_total, "resources/subscribe refused: max_subscriptions_per_session")   \
  X(batches_rejected_total, "JSON-RPC batches refused: longer than max_batch_size")               \
  X(stdio_dropped_total, "stdio messages dropped: output queue full")                             \
  X(stdio_read_pauses_total, "times stdin reading paused: stdout's queue full (backpressure)")    \
  X(stdio_queued_bytes, "bytes queued for stdout")                                                \
  X(stdio_queued_messages, "messages queued for stdout")                                          \
  X(non_finite_numbers_total, "messages refused: a number JSON cannot carry (answered -32603)")   \
  X(uris_rejected_total, "resources/(un)subscribe refused: URI invalid or over max_uri_bytes")    \
  X(inflight_node_rejected_total, "requests refused: max_inflight in flight on this node")        \
  X(sessions_init_expired_total, "sessions removed: initialization not done within init_timeout") \
  X(forwarded_total, "HTTP exchanges relayed to the node holding their session")                  \
  X(forward_failures_total, "relayed exchanges that failed (holder unreachable or gone)")         \
  X(forwarded_in_total, "HTTP exchanges another node relayed here")                               \
  X(forward_hops_exceeded_total, "exchanges refused: relayed too often (session moving)")         \
  X(upgrades_total, "connections switched to another protocol (cluster relay links)")             \
  X(upgrades_refused_total, "protocol switches refused (no valid cluster token, too many)")       \
  X(sessions_unavailable_total, "requests refused with 503: the session's holder is failing")     \
  X(client_connections_rejected_total, "connections refused: max_connections_per_client (503)")   \
  X(client_sessions_rejected_total, "initialize refused: max_sessions_per_client (429)")          \
  X(session_rate_limited_total, "initialize refused by a new-session token bucket (429)")         \
  X(rate_limited_total, "requests refused by a request token bucket (429)")                       \
  X(shed_sessions_total, "initialize refused while shedding load (503; zone orange or red)")      \
  X(shed_requests_total, "requests refused while shedding load (503; zone red)")                  \
  X(accept_errors_total, "accept failures (out of descriptors: answered 503 when possible)")      \
  X(clients_overflow_total, "clients counted together because the client table was full")         \
  X(lingering_closes_total, "connections read to their end before closing after an error")        \
  X(transfer_coding_rejected_total, "requests refused: a transfer coding other than chunked")     \
  X(stateless_requests_total, "2026-07-28 requests (no session; context in _meta)")               \
  X(stateless_rejected_total, "2026-07-28 requests refused: _meta, version or headers (400)")     \
  X(input_required_total, "requests answered with an InputRequiredResult (multi round-trip)")     \
  X(request_states_rejected_total, "requestState refused: tampered, expired or for another call") \
  X(listen_streams_active, "subscriptions/listen streams open on this node")                      \
  X(listen_streams_rejected_total, "subscriptions/listen refused: max_listen_streams")            \
  X(tasks_created_total, "tools/call turned into tasks (tasks extension, 2025-11-25 sessions)")   \
  X(tasks_per_session_rejected_total,                                                             \
    "task-augmented calls refused (-32000): max_tasks_per_session unfinished in the session")     \
  X(task_messages_dropped_total,                                                                  \
    "messages of a session's task dropped: more than 32 waited for a tasks/result")               \
  X(tasks_rejected_total,                                                                         \
    "calls not made tasks: max_tasks live (2026-07-28: run as ordinary calls; sessions: -32000)") \
  X(notifications_held_total,                                                                     \
    "notifications held while this node could not tell which sessions are its own")               \
  X(notifications_held_dropped_total, "notifications dropped: max_held_notifications were held")  \
  X(notifications_stale_skipped_total,                                                            \
    "notifications not given to a stale copy of a session another node continues")

struct Metrics {
#define MCPMESH_METRIC_FIELD(name, help) std::atomic<std::uint64_t> name{0};
  MCPMESH_METRICS(MCPMESH_METRIC_FIELD)
#undef MCPMESH_METRIC_FIELD

  static void inc(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) {
    c.fetch_add(n, std::memory_order_relaxed);
  }
  static void dec(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) {
    c.fetch_sub(n, std::memory_order_relaxed);
  }

  /// Time from a request's arrival at its session to its answer, by method (kTimedMethods;
  /// initialize is the session's own and not among them).
  std::array<LatencyHistogram, kTimedMethods.size()> method_latency;

  /// Prometheus text exposition format, metric names prefixed with `mcpmesh_`.
  [[nodiscard]] std::string render_prometheus() const;
};

/// Appends one sample of Prometheus text: `# HELP` and `# TYPE` lines first when `help` is not
/// empty (the first sample of a family), then `<name><labels> <value>`. `labels` is "" or
/// `{key="value",...}`; `type` is "gauge" or "counter".
void append_sample(std::string& out, std::string_view name, std::string_view help,
                   std::string_view type, std::string_view labels, double value);
/// The same for a counter's exact value.
void append_sample(std::string& out, std::string_view name, std::string_view help,
                   std::string_view type, std::string_view labels, std::uint64_t value);

}  // namespace mcpmesh::mcp
