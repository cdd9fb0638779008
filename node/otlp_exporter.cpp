#include "node/otlp_exporter.hpp"

#include "mcp/metrics.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include <stdexcept>

namespace mcpmesh::node {

namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = boost::asio::ip::tcp;

namespace {

json::object key_value(std::string key, const mcp::AttributeValue& v) {
  json::object value;
  if (auto* s = std::get_if<std::string>(&v)) {
    value["stringValue"] = *s;
  } else if (auto* i = std::get_if<std::int64_t>(&v)) {
    value["intValue"] = std::to_string(*i);  // int64 as a decimal string (OTLP JSON)
  } else if (auto* d = std::get_if<double>(&v)) {
    value["doubleValue"] = *d;
  } else {
    value["boolValue"] = std::get<bool>(v);
  }
  return json::object{{"key", std::move(key)}, {"value", std::move(value)}};
}

}  // namespace

OtlpExporter::OtlpExporter(OtlpConfig config) : config_(std::move(config)) {
  auto url = boost::urls::parse_uri(config_.endpoint);
  if (!url || url->scheme() != "http" || url->host().empty()) {
    throw std::invalid_argument("OTLP endpoint must be http://HOST:PORT/PATH, got '" +
                                config_.endpoint + "'");
  }
  host_ = std::string(url->host());
  port_ = url->has_port() ? std::string(url->port()) : "4318";
  target_ = url->path().empty() ? "/v1/traces" : std::string(url->encoded_path());
  if (config_.max_batch == 0 || config_.max_queue == 0) {
    throw std::invalid_argument("OTLP queue and batch sizes must be at least 1");
  }
  thread_ = std::thread([this] { run(); });
}

OtlpExporter::~OtlpExporter() {
  flush(config_.timeout);
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void OtlpExporter::export_span(mcp::SpanData span) {
  bool full_batch = false;
  {
    std::lock_guard lock(mutex_);
    if (queue_.size() >= config_.max_queue) {
      dropped_full_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    queue_.push_back(std::move(span));
    ++queued_;
    full_batch = queue_.size() >= config_.max_batch;
  }
  if (full_batch) wake_.notify_one();
}

bool OtlpExporter::flush(std::chrono::milliseconds deadline) {
  std::unique_lock lock(mutex_);
  const std::uint64_t target = queued_;
  if (taken_ >= target) return true;
  flushing_ = true;
  wake_.notify_one();
  return drained_.wait_for(lock, deadline, [&] { return taken_ >= target || stopping_; });
}

void OtlpExporter::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    // A batch leaves when it is full, when the interval has passed, or on flush or stop.
    wake_.wait_for(lock, config_.interval,
                   [&] { return stopping_ || flushing_ || queue_.size() >= config_.max_batch; });
    if (queue_.empty()) {
      flushing_ = false;
      if (stopping_) return;
      continue;
    }
    std::vector<mcp::SpanData> batch;
    const std::size_t n = std::min(queue_.size(), config_.max_batch);
    batch.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    if (queue_.empty()) flushing_ = false;
    lock.unlock();
    const bool ok = post(encode(batch, config_.resource));
    batches_.fetch_add(1, std::memory_order_relaxed);
    (ok ? exported_ : dropped_failed_).fetch_add(batch.size(), std::memory_order_relaxed);
    lock.lock();
    taken_ += batch.size();
    drained_.notify_all();
  }
}

bool OtlpExporter::post(const std::string& body) {
  try {
    boost::asio::io_context io;
    beast::tcp_stream stream(io);
    stream.expires_after(config_.timeout);
    tcp::resolver resolver(io);
    stream.connect(resolver.resolve(host_, port_));
    http::request<http::string_body> req(http::verb::post, target_, 11);
    req.set(http::field::host, host_);
    req.set(http::field::content_type, "application/json");
    req.body() = body;
    req.prepare_payload();
    http::write(stream, req);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(1 << 20);
    http::read(stream, buffer, parser);
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    return parser.get().result_int() / 100 == 2;
  } catch (const std::exception&) {
    return false;
  }
}

std::string OtlpExporter::encode(const std::vector<mcp::SpanData>& spans,
                                 const std::vector<std::pair<std::string, std::string>>& resource) {
  json::array resource_attributes;
  for (auto& [k, v] : resource) resource_attributes.push_back(key_value(k, v));
  json::array out_spans;
  for (const auto& s : spans) {
    json::object o;
    o["traceId"] = mcp::to_hex(s.trace_id.data(), s.trace_id.size());
    o["spanId"] = mcp::to_hex(s.span_id.data(), s.span_id.size());
    if (s.parent) o["parentSpanId"] = mcp::to_hex(s.parent->data(), s.parent->size());
    o["name"] = s.name;
    o["kind"] = static_cast<int>(s.kind);
    o["startTimeUnixNano"] = std::to_string(s.start_unix_ns);
    o["endTimeUnixNano"] = std::to_string(s.end_unix_ns);
    json::array attributes;
    for (auto& [k, v] : s.attributes) attributes.push_back(key_value(k, v));
    o["attributes"] = std::move(attributes);
    json::object status{{"code", s.error ? 2 : 0}};
    if (s.error && !s.status_message.empty()) status["message"] = s.status_message;
    o["status"] = std::move(status);
    out_spans.push_back(std::move(o));
  }
  json::object scope_spans{{"scope", json::object{{"name", "mcpmesh"}}},
                           {"spans", std::move(out_spans)}};
  json::object resource_spans{
      {"resource", json::object{{"attributes", std::move(resource_attributes)}}},
      {"scopeSpans", json::array{std::move(scope_spans)}}};
  return json::serialize(json::object{{"resourceSpans", json::array{std::move(resource_spans)}}});
}

OtlpExporter::Counters OtlpExporter::counters() const {
  return {exported_.load(std::memory_order_relaxed), dropped_full_.load(std::memory_order_relaxed),
          dropped_failed_.load(std::memory_order_relaxed),
          batches_.load(std::memory_order_relaxed)};
}

void OtlpExporter::render_metrics(std::string& out) const {
  auto c = counters();
  mcp::append_sample(out, "mcpmesh_trace_spans_exported_total", "spans an OTLP receiver accepted",
                     "counter", "", c.exported);
  mcp::append_sample(out, "mcpmesh_trace_spans_dropped_total",
                     "spans dropped: the queue was full, or their batch was refused or timed out",
                     "counter", "{reason=\"queue_full\"}", c.dropped_full);
  mcp::append_sample(out, "mcpmesh_trace_spans_dropped_total", "", "counter",
                     "{reason=\"export_failed\"}", c.dropped_failed);
  mcp::append_sample(out, "mcpmesh_trace_batches_total", "OTLP export requests sent", "counter", "",
                     c.batches);
}

}  // namespace mcpmesh::node
