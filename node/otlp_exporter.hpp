#pragma once
/// OTLP/HTTP trace exporter (JSON encoding): finished spans are queued (bounded: beyond
/// `max_queue` they are dropped and counted) and sent in batches of up to `max_batch` from a
/// thread of its own, every `interval` or as soon as a batch is full, as POST <endpoint> with
/// `Content-Type: application/json` — what Jaeger, the OpenTelemetry Collector and other OTLP
/// receivers take on port 4318 (`/v1/traces`). A batch the receiver refuses or that times out
/// is dropped (counted), never retried in a loop.
///
/// Thread-safety: export_span from any thread, never blocks; counters from any thread.

#include "mcp/trace.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace mcpmesh::node {

struct OtlpConfig {
  std::string endpoint;  // http://HOST:PORT/v1/traces (http only)
  std::size_t max_queue = 4096;
  std::size_t max_batch = 512;
  std::chrono::milliseconds interval{1000};
  std::chrono::milliseconds timeout{5000};
  /// Resource attributes: service.name, service.instance.id (the node id), service.version.
  std::vector<std::pair<std::string, std::string>> resource;
};

class OtlpExporter final : public mcp::SpanSink {
 public:
  /// Throws std::invalid_argument when the endpoint is not an http:// URL (start-up).
  explicit OtlpExporter(OtlpConfig config);
  /// Sends what is queued (bounded by the timeout), then stops.
  ~OtlpExporter() override;

  void export_span(mcp::SpanData span) override;
  /// Waits (at most `deadline`) until everything queued before the call was sent or dropped.
  bool flush(std::chrono::milliseconds deadline);

  struct Counters {
    std::uint64_t exported = 0;        // spans a receiver accepted
    std::uint64_t dropped_full = 0;    // spans dropped: the queue was full
    std::uint64_t dropped_failed = 0;  // spans dropped: their batch was refused or timed out
    std::uint64_t batches = 0;         // POSTs sent
  };
  [[nodiscard]] Counters counters() const;
  /// Appends the counters to /metrics (mcpmesh_trace_*).
  void render_metrics(std::string& out) const;

  /// The JSON body of one export request (ExportTraceServiceRequest) for `spans`.
  [[nodiscard]] static std::string encode(
      const std::vector<mcp::SpanData>& spans,
      const std::vector<std::pair<std::string, std::string>>& resource);

 private:
  void run();
  bool post(const std::string& body);

  OtlpConfig config_;
  std::string host_, port_, target_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable drained_;
  std::deque<mcp::SpanData> queue_;  // guarded by mutex_
  std::uint64_t taken_ = 0;          // guarded: spans taken off the queue (sent or dropped)
  std::uint64_t queued_ = 0;         // guarded: spans ever queued
  bool stopping_ = false;            // guarded
  bool flushing_ = false;            // guarded: send what is queued now
  std::atomic<std::uint64_t> exported_{0}, dropped_full_{0}, dropped_failed_{0}, batches_{0};
  std::thread thread_;
};

}  // namespace mcpmesh::node
