#pragma once
/// Tracing: W3C Trace Context (`traceparent`, `tracestate`) and spans handed to a sink (the
/// OTLP exporter, node/otlp_exporter.hpp). A span is a plain value filled while it runs and
/// handed over once, at its end; nothing here allocates for a request that is not sampled.
///
/// Thread-safety: parse/format are pure; a Tracer may be used from any thread (its sampler and
/// id source are per thread); a Span belongs to one thread at a time (its request's).

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace mcpmesh::mcp {

using TraceId = std::array<std::uint8_t, 16>;
using SpanId = std::array<std::uint8_t, 8>;

/// What crosses process boundaries: in `traceparent`/`tracestate` headers, in `_meta`, in gRPC
/// metadata.
struct TraceContext {
  TraceId trace_id{};
  SpanId span_id{};
  std::uint8_t flags = 0;  // bit 0: sampled
  std::string state;       // tracestate, passed on as received (bounded)

  [[nodiscard]] bool sampled() const { return (flags & 1) != 0; }
  [[nodiscard]] bool valid() const;
};

/// Longest tracestate passed on (the W3C limit is 32 members; longer ones are dropped whole).
inline constexpr std::size_t kMaxTraceStateBytes = 512;

/// `traceparent` → context, per W3C Trace Context level 1: version 00 exactly
/// `00-<32 hex>-<16 hex>-<2 hex>`; a later version is read by its first four fields; version ff,
/// upper-case hex, all-zero ids or a wrong length are refused (nullopt: start a new trace).
[[nodiscard]] std::optional<TraceContext> parse_traceparent(std::string_view header,
                                                            std::string_view tracestate = {});
/// Context → `traceparent` (version 00).
[[nodiscard]] std::string format_traceparent(const TraceContext& ctx);
[[nodiscard]] std::string to_hex(const std::uint8_t* bytes, std::size_t n);

enum class SpanKind : std::uint8_t { kInternal = 1, kServer = 2, kClient = 3 };

using AttributeValue = std::variant<std::string, std::int64_t, double, bool>;

/// A finished span, as the exporter sends it.
struct SpanData {
  TraceId trace_id{};
  SpanId span_id{};
  std::optional<SpanId> parent;
  std::string name;
  SpanKind kind = SpanKind::kInternal;
  std::uint64_t start_unix_ns = 0;
  std::uint64_t end_unix_ns = 0;
  std::vector<std::pair<std::string, AttributeValue>> attributes;
  bool error = false;
  std::string status_message;  // with error
};

/// Where finished spans go. export_span must not block (queue and return).
class SpanSink {
 public:
  virtual ~SpanSink() = default;
  virtual void export_span(SpanData span) = 0;
};

class Tracer;

/// A span while it runs. Empty (no-op, nothing allocated) when its trace is not sampled or no
/// tracer is configured; ends when end() is called or it is destroyed.
class Span {
 public:
  Span() = default;
  Span(Span&&) noexcept = default;
  Span& operator=(Span&& other) noexcept;
  Span(const Span&) = delete;
  Span& operator=(const Span&) = delete;
  ~Span() { end(); }

  [[nodiscard]] bool recording() const { return data_ != nullptr; }
  /// The context to pass on (child spans, outgoing calls); invalid when not recording.
  [[nodiscard]] const TraceContext& context() const { return context_; }
  void set_attribute(std::string key, AttributeValue value);
  void set_error(std::string message);
  void end();

 private:
  friend class Tracer;
  SpanSink* sink_ = nullptr;
  std::unique_ptr<SpanData> data_;
  TraceContext context_;
};

class Tracer {
 public:
  /// `sample_ratio` in [0, 1]: the share of new traces recorded (a request that carries a
  /// sampled parent is recorded whatever the ratio, so a trace is never cut in the middle).
  Tracer(SpanSink& sink, double sample_ratio) : sink_(sink), ratio_(sample_ratio) {}

  /// A span named `name`: a child of `parent` when it is valid, else the root of a new trace.
  [[nodiscard]] Span start(std::string name, SpanKind kind,
                           const std::optional<TraceContext>& parent = {});

 private:
  SpanSink& sink_;
  double ratio_;
};

/// Unix time now, in nanoseconds.
[[nodiscard]] std::uint64_t unix_now_ns();

/// A session id as spans and log lines show it: its node and epoch and the first 8 of its
/// random hex digits (the id is the session's credential; this is enough to find it in
/// `mcpmesh-ctl sessions`).
[[nodiscard]] std::string redact_session_id(std::string_view id);

/// The trace the calling thread is doing synchronous work for (its log lines carry the trace
/// id), or null. Set by a TraceScope; never across a suspension point.
[[nodiscard]] const TraceContext* current_trace();

/// Makes `ctx` the calling thread's current trace until the scope ends (nothing when `ctx` is
/// invalid). Scopes nest.
class TraceScope {
 public:
  explicit TraceScope(const TraceContext& ctx);
  ~TraceScope();
  TraceScope(const TraceScope&) = delete;
  TraceScope& operator=(const TraceScope&) = delete;

 private:
  const TraceContext* previous_;
  bool set_;
};

}  // namespace mcpmesh::mcp
