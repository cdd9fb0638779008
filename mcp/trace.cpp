#include "mcp/trace.hpp"

#include <algorithm>
#include <random>

namespace mcpmesh::mcp {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // upper case is not allowed in traceparent
}

template <std::size_t N>
bool read_hex(std::string_view text, std::array<std::uint8_t, N>& out) {
  if (text.size() != 2 * N) return false;
  for (std::size_t i = 0; i < N; ++i) {
    int hi = hex_value(text[2 * i]), lo = hex_value(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return true;
}

template <std::size_t N>
bool all_zero(const std::array<std::uint8_t, N>& a) {
  return std::all_of(a.begin(), a.end(), [](std::uint8_t b) { return b == 0; });
}

/// Per-thread random source for ids and sampling.
std::mt19937_64& rng() {
  thread_local std::mt19937_64 gen{std::random_device{}()};
  return gen;
}

template <std::size_t N>
void random_id(std::array<std::uint8_t, N>& out) {
  do {
    for (std::size_t i = 0; i < N; i += 8) {
      auto v = rng()();
      for (std::size_t j = 0; j < 8 && i + j < N; ++j)
        out[i + j] = static_cast<std::uint8_t>(v >> (8 * j));
    }
  } while (all_zero(out));
}

}  // namespace

bool TraceContext::valid() const { return !all_zero(trace_id) && !all_zero(span_id); }

std::optional<TraceContext> parse_traceparent(std::string_view h, std::string_view tracestate) {
  // version "-" trace-id "-" parent-id "-" flags
  if (h.size() < 55 || h[2] != '-' || h[35] != '-' || h[52] != '-') return std::nullopt;
  std::array<std::uint8_t, 1> version{}, flags{};
  if (!read_hex(h.substr(0, 2), version) || version[0] == 0xff) return std::nullopt;
  if (version[0] == 0 && h.size() != 55) return std::nullopt;
  if (version[0] != 0 && h.size() > 55 && h[55] != '-') return std::nullopt;
  TraceContext ctx;
  if (!read_hex(h.substr(3, 32), ctx.trace_id) || !read_hex(h.substr(36, 16), ctx.span_id) ||
      !read_hex(h.substr(53, 2), flags)) {
    return std::nullopt;
  }
  if (!ctx.valid()) return std::nullopt;
  ctx.flags = flags[0];
  if (tracestate.size() <= kMaxTraceStateBytes) ctx.state = std::string(tracestate);
  return ctx;
}

std::string to_hex(const std::uint8_t* bytes, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (std::size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 15];
  }
  return out;
}

std::string format_traceparent(const TraceContext& ctx) {
  std::string out = "00-";
  out += to_hex(ctx.trace_id.data(), ctx.trace_id.size());
  out += '-';
  out += to_hex(ctx.span_id.data(), ctx.span_id.size());
  out += '-';
  out += to_hex(&ctx.flags, 1);
  return out;
}

std::uint64_t unix_now_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

std::string redact_session_id(std::string_view id) {
  constexpr std::size_t kShown = 8;
  auto dot = id.rfind('.');
  std::size_t keep = dot == std::string_view::npos ? kShown : dot + 1 + kShown;
  if (keep >= id.size()) return std::string(id);
  std::string out(id.substr(0, keep));
  out += "...";
  return out;
}

namespace {
thread_local const TraceContext* t_current = nullptr;
}  // namespace

const TraceContext* current_trace() { return t_current; }

TraceScope::TraceScope(const TraceContext& ctx) : previous_(t_current), set_(ctx.valid()) {
  if (set_) t_current = &ctx;
}

TraceScope::~TraceScope() {
  if (set_) t_current = previous_;
}

Span& Span::operator=(Span&& other) noexcept {
  if (this != &other) {
    end();
    sink_ = other.sink_;
    data_ = std::move(other.data_);
    context_ = std::move(other.context_);
  }
  return *this;
}

void Span::set_attribute(std::string key, AttributeValue value) {
  if (data_) data_->attributes.emplace_back(std::move(key), std::move(value));
}

void Span::set_error(std::string message) {
  if (!data_) return;
  data_->error = true;
  data_->status_message = std::move(message);
}

void Span::end() {
  if (!data_) return;
  data_->end_unix_ns = unix_now_ns();
  auto data = std::move(data_);
  sink_->export_span(std::move(*data));
}

Span Tracer::start(std::string name, SpanKind kind, const std::optional<TraceContext>& parent) {
  Span span;
  const bool has_parent = parent && parent->valid();
  bool sampled =
      has_parent ? parent->sampled() : std::uniform_real_distribution<double>(0, 1)(rng()) < ratio_;
  if (!sampled) {
    // Not recorded, but passed on as received: the next hop keeps the caller's decision.
    if (has_parent) span.context_ = *parent;
    return span;
  }
  span.sink_ = &sink_;
  span.data_ = std::make_unique<SpanData>();
  auto& d = *span.data_;
  d.name = std::move(name);
  d.kind = kind;
  d.start_unix_ns = unix_now_ns();
  if (has_parent) {
    d.trace_id = parent->trace_id;
    d.parent = parent->span_id;
    span.context_.state = parent->state;
  } else {
    random_id(d.trace_id);
  }
  random_id(d.span_id);
  span.context_.trace_id = d.trace_id;
  span.context_.span_id = d.span_id;
  span.context_.flags = 1;
  return span;
}

}  // namespace mcpmesh::mcp
