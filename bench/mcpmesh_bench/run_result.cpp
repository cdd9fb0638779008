#include "bench/mcpmesh_bench/run_result.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <cstdio>
#include <utility>

namespace mcpmesh::bench {
namespace {

namespace json = boost::json;

// The fields summed over threads and processes, and their JSON names (raw form).
constexpr std::pair<const char*, std::uint64_t RunResult::*> kCounters[] = {
    {"http_requests", &RunResult::http_requests},
    {"status_200", &RunResult::status_200},
    {"status_202", &RunResult::status_202},
    {"status_429", &RunResult::status_429},
    {"status_503", &RunResult::status_503},
    {"status_other", &RunResult::status_other},
    {"warmup_ops", &RunResult::warmup_ops},
    {"connects", &RunResult::connects},
    {"idle_reconnects", &RunResult::idle_reconnects},
    {"retry_after_seen", &RunResult::retry_after_seen},
    {"retry_after_honoured", &RunResult::retry_after_honoured},
    {"intended", &RunResult::intended},
    {"unsent", &RunResult::unsent},
    {"sessions_requested", &RunResult::sessions_requested},
    {"sessions_created", &RunResult::sessions_created},
    {"sessions_failed", &RunResult::sessions_failed},
    {"sessions_deleted", &RunResult::sessions_deleted},
    {"sessions_delete_failed", &RunResult::sessions_delete_failed},
    {"sessions_retried", &RunResult::sessions_retried},
    {"sse_requested", &RunResult::sse_requested},
    {"sse_opened", &RunResult::sse_opened},
    {"sse_failed", &RunResult::sse_failed},
    {"sse_ended_early", &RunResult::sse_ended_early},
    {"sse_events", &RunResult::sse_events},
    {"sse_messages", &RunResult::sse_messages},
    {"sse_keepalives", &RunResult::sse_keepalives},
    {"sse_bytes", &RunResult::sse_bytes},
    {"load_ops", &RunResult::load_ops},
};
constexpr std::pair<const char*, double RunResult::*> kSums[] = {
    {"retry_after_waited_s", &RunResult::retry_after_waited_s},
    {"cpu_user_s", &RunResult::cpu_user_s},
    {"cpu_system_s", &RunResult::cpu_system_s},
    {"load_cpu_user_s", &RunResult::load_cpu_user_s},
    {"load_cpu_system_s", &RunResult::load_cpu_system_s},
};
// Spans of time the processes went through side by side: the longest counts.
constexpr std::pair<const char*, double RunResult::*> kSpans[] = {
    {"setup_s", &RunResult::setup_s},
    {"measured_s", &RunResult::measured_s},
};
constexpr std::array<const char*, 7> kOutcomeNames = {
    "ok",          "http_errors", "jsonrpc_errors", "tool_errors",
    "bad_answers", "timeouts",    "socket_errors"};

json::object histogram_raw(const LatencyHistogram& h) {
  json::array buckets;
  for (auto [index, n] : h.buckets()) buckets.push_back(json::array{index, n});
  return {{"min", h.min()}, {"max", h.max()}, {"sum", h.sum()}, {"buckets", std::move(buckets)}};
}

bool histogram_from_raw(const json::value& v, LatencyHistogram& h) {
  const json::object* o = v.if_object();
  if (o == nullptr) return false;
  const json::array* buckets = o->contains("buckets") ? o->at("buckets").if_array() : nullptr;
  if (buckets == nullptr) return false;
  for (const auto& b : *buckets) {
    const json::array* pair = b.if_array();
    if (pair == nullptr || pair->size() != 2 || !(*pair)[0].is_number() ||
        !(*pair)[1].is_number()) {
      return false;
    }
    boost::system::error_code ec;
    auto index = (*pair)[0].to_number<std::uint32_t>(ec);
    auto n = (*pair)[1].to_number<std::uint64_t>(ec);
    if (ec || !h.add(index, n)) return false;
  }
  boost::system::error_code ec;
  auto field = [&](const char* name) {
    return o->contains(name) ? o->at(name).to_number<std::uint64_t>(ec) : 0;
  };
  std::uint64_t min = field("min"), max = field("max"), sum = field("sum");
  if (ec) return false;
  if (h.count() > 0) h.add_extremes(min, max, sum);
  return true;
}

double ms(std::uint64_t ns) { return std::round(static_cast<double>(ns) / 1e3) / 1e3; }

/// `v` with `decimals` decimals (for the figures in the report; the histograms stay exact).
double rounded(double v, int decimals) {
  double scale = std::pow(10.0, decimals);
  return std::round(v * scale) / scale;
}

json::object latency_json(const LatencyHistogram& h) {
  return {{"min", ms(h.min())},          {"mean", ms(static_cast<std::uint64_t>(h.mean()))},
          {"p50", ms(h.value_at(0.50))}, {"p90", ms(h.value_at(0.90))},
          {"p99", ms(h.value_at(0.99))}, {"p999", ms(h.value_at(0.999))},
          {"max", ms(h.max())}};
}

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::kClosedLoop:
      return "closed";
    case Mode::kOpenLoop:
      return "open";
    case Mode::kHold:
      return "hold";
  }
  return "?";
}

std::string duration_text(std::chrono::nanoseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%gs", static_cast<double>(d.count()) / 1e9);
  return buf;
}

}  // namespace

void OpResult::record(Outcome o, std::uint64_t latency_ns) {
  if (o == Outcome::kCancelled) return;  // stopped in flight: no outcome to count
  ++count;
  ++outcomes[static_cast<std::size_t>(o)];
  if (o == Outcome::kOk) latency.record(latency_ns);
}

void RunResult::sample_error(std::string_view what) {
  if (error_samples.size() >= kMaxErrorSamples) return;
  if (std::find(error_samples.begin(), error_samples.end(), what) != error_samples.end()) return;
  error_samples.emplace_back(what);
}

void RunResult::count_status(unsigned status) {
  ++http_requests;
  switch (status) {
    case 200:
      ++status_200;
      break;
    case 202:
      ++status_202;
      break;
    case 429:
      ++status_429;
      break;
    case 503:
      ++status_503;
      break;
    default:
      ++status_other;
  }
}

std::uint64_t RunResult::requests() const {
  std::uint64_t n = 0;
  for (const auto& op : ops) n += op.count;
  return n;
}

std::uint64_t RunResult::outcome_total(Outcome o) const {
  std::uint64_t n = 0;
  for (const auto& op : ops) n += op.outcome(o);
  return n;
}

void merge(RunResult& into, const RunResult& from) {
  for (std::size_t i = 0; i < kOpCount; ++i) {
    into.ops[i].latency.merge(from.ops[i].latency);
    into.ops[i].count += from.ops[i].count;
    for (std::size_t k = 0; k < into.ops[i].outcomes.size(); ++k) {
      into.ops[i].outcomes[k] += from.ops[i].outcomes[k];
    }
  }
  for (auto [name, field] : kCounters) into.*field += from.*field;
  for (auto [name, field] : kSums) into.*field += from.*field;
  for (auto [name, field] : kSpans) into.*field = std::max(into.*field, from.*field);
  into.session_open.merge(from.session_open);
  for (const auto& e : from.error_samples) into.sample_error(e);
  if (into.fatal.empty()) into.fatal = from.fatal;
}

json::object to_raw_json(const RunResult& r) {
  json::object out;
  for (auto [name, field] : kCounters) out[name] = r.*field;
  for (auto [name, field] : kSums) out[name] = r.*field;
  for (auto [name, field] : kSpans) out[name] = r.*field;
  json::object ops;
  for (std::size_t i = 0; i < kOpCount; ++i) {
    const OpResult& op = r.ops[i];
    json::array outcomes;
    for (auto n : op.outcomes) outcomes.push_back(n);
    ops[op_name(static_cast<Op>(i))] = json::object{{"count", op.count},
                                                    {"outcomes", std::move(outcomes)},
                                                    {"latency", histogram_raw(op.latency)}};
  }
  out["ops"] = std::move(ops);
  out["session_open"] = histogram_raw(r.session_open);
  json::array samples;
  for (const auto& e : r.error_samples) samples.emplace_back(e);
  out["error_samples"] = std::move(samples);
  out["fatal"] = r.fatal;
  return out;
}

std::optional<RunResult> from_raw_json(const json::value& v) {
  const json::object* o = v.if_object();
  if (o == nullptr) return std::nullopt;
  RunResult r;
  boost::system::error_code ec;
  for (auto [name, field] : kCounters) {
    if (!o->contains(name)) return std::nullopt;
    r.*field = o->at(name).to_number<std::uint64_t>(ec);
  }
  for (auto [name, field] : kSums) {
    if (!o->contains(name)) return std::nullopt;
    r.*field = o->at(name).to_number<double>(ec);
  }
  for (auto [name, field] : kSpans) {
    if (!o->contains(name)) return std::nullopt;
    r.*field = o->at(name).to_number<double>(ec);
  }
  if (ec) return std::nullopt;
  const json::object* ops = o->contains("ops") ? o->at("ops").if_object() : nullptr;
  if (ops == nullptr) return std::nullopt;
  for (std::size_t i = 0; i < kOpCount; ++i) {
    auto it = ops->find(op_name(static_cast<Op>(i)));
    if (it == ops->end() || !it->value().is_object()) return std::nullopt;
    const json::object& op = it->value().get_object();
    const json::array* outcomes = op.contains("outcomes") ? op.at("outcomes").if_array() : nullptr;
    if (!op.contains("count") || outcomes == nullptr ||
        outcomes->size() != r.ops[i].outcomes.size() || !op.contains("latency")) {
      return std::nullopt;
    }
    r.ops[i].count = op.at("count").to_number<std::uint64_t>(ec);
    for (std::size_t k = 0; k < outcomes->size(); ++k) {
      r.ops[i].outcomes[k] = (*outcomes)[k].to_number<std::uint64_t>(ec);
    }
    if (ec || !histogram_from_raw(op.at("latency"), r.ops[i].latency)) return std::nullopt;
  }
  if (!o->contains("session_open") || !histogram_from_raw(o->at("session_open"), r.session_open)) {
    return std::nullopt;
  }
  if (const json::value* samples = o->if_contains("error_samples");
      samples && samples->is_array()) {
    for (const auto& s : samples->get_array()) {
      if (s.is_string()) r.sample_error(s.get_string());
    }
  }
  if (const json::value* fatal = o->if_contains("fatal"); fatal && fatal->is_string()) {
    r.fatal = std::string(fatal->get_string());
  }
  return r;
}

json::object report_json(const BenchOptions& o, const RunResult& r) {
  const double window = r.measured_s > 0 ? r.measured_s : 0;
  auto per_second = [&](std::uint64_t n) {
    return window > 0 ? rounded(static_cast<double>(n) / window, 1) : 0.0;
  };
  json::object mix;
  for (std::size_t i = 0; i < kOpCount; ++i) {
    if (o.mix.weights[i] > 0) mix[op_name(static_cast<Op>(i))] = o.mix.weights[i];
  }
  json::array sources;
  for (const auto& a : o.source_addresses) sources.emplace_back(a.to_string());
  json::array headers;
  for (const auto& h : o.headers) {
    // Names only: header values may be credentials.
    headers.emplace_back(h.substr(0, h.find(':')));
  }
  json::object config{{"url", o.url},
                      {"mode", mode_name(o.mode)},
                      {"sessions", o.sessions},
                      {"connections", o.connections},
                      {"threads", o.threads},
                      {"processes", o.processes},
                      {"duration_s", static_cast<double>(o.duration.count()) / 1e9},
                      {"warmup_s", static_cast<double>(o.warmup.count()) / 1e9},
                      {"timeout_s", static_cast<double>(o.timeout.count()) / 1e9},
                      {"rate", o.rate},
                      {"requests_cap", o.max_requests},
                      {"mix", std::move(mix)},
                      {"tool", o.tool},
                      {"args", json::parse(o.tool_args)},
                      {"notify_method", o.notify_method},
                      {"protocol_version", o.protocol_version},
                      {"sse_streams", o.sse_streams},
                      {"source_addresses", std::move(sources)},
                      {"headers", std::move(headers)},
                      {"keep_sessions", o.keep_sessions},
                      {"honour_retry_after", o.honour_retry_after},
                      {"busy_poll", o.busy_poll}};

  json::object ops;
  for (std::size_t i = 0; i < kOpCount; ++i) {
    const OpResult& op = r.ops[i];
    if (o.mix.weights[i] == 0 && op.count == 0) continue;
    json::object entry{{"count", op.count}, {"rate", per_second(op.count)}};
    for (std::size_t k = 0; k < op.outcomes.size(); ++k) entry[kOutcomeNames[k]] = op.outcomes[k];
    entry["latency_ms"] = latency_json(op.latency);
    entry["histogram_ns"] = histogram_raw(op.latency);
    ops[op_name(static_cast<Op>(i))] = std::move(entry);
  }
  const std::uint64_t requests = r.requests();
  const double load_cpu = r.load_cpu_user_s + r.load_cpu_system_s;
  json::object out{
      {"mcpmesh_bench", 1},
      {"ok", r.fatal.empty()},
      {"config", std::move(config)},
      {"sessions", json::object{{"requested", r.sessions_requested},
                                {"created", r.sessions_created},
                                {"failed", r.sessions_failed},
                                {"retried", r.sessions_retried},
                                {"deleted", r.sessions_deleted},
                                {"delete_failed", r.sessions_delete_failed},
                                {"kept", o.keep_sessions},
                                {"setup_s", rounded(r.setup_s, 3)},
                                {"open_latency_ms", latency_json(r.session_open)}}},
      {"measured_s", rounded(window, 3)},
      {"requests", requests},
      {"rate", per_second(requests)},
      {"http_requests", r.http_requests},
      {"warmup_requests", r.warmup_ops},
      {"ops", std::move(ops)},
      {"status", json::object{{"200", r.status_200},
                              {"202", r.status_202},
                              {"429", r.status_429},
                              {"503", r.status_503},
                              {"other", r.status_other}}},
      {"errors", json::object{{"http", r.outcome_total(Outcome::kHttpStatus)},
                              {"jsonrpc", r.outcome_total(Outcome::kJsonRpcError)},
                              {"tool", r.outcome_total(Outcome::kToolError)},
                              {"bad_answer", r.outcome_total(Outcome::kBadAnswer)},
                              {"socket", r.outcome_total(Outcome::kSocketError)},
                              {"timeout", r.outcome_total(Outcome::kTimeout)}}},
      {"connections",
       json::object{{"connects", r.connects}, {"idle_reconnects", r.idle_reconnects}}},
      {"retry_after", json::object{{"seen", r.retry_after_seen},
                                   {"honoured", r.retry_after_honoured},
                                   {"waited_s", rounded(r.retry_after_waited_s, 3)}}},
      {"sse", json::object{{"requested", r.sse_requested},
                           {"opened", r.sse_opened},
                           {"failed", r.sse_failed},
                           {"ended_early", r.sse_ended_early},
                           {"events", r.sse_events},
                           {"messages", r.sse_messages},
                           {"keepalives", r.sse_keepalives},
                           {"bytes", r.sse_bytes}}},
      {"cpu",
       json::object{
           {"user_s", rounded(r.cpu_user_s, 3)},
           {"system_s", rounded(r.cpu_system_s, 3)},
           {"load_user_s", rounded(r.load_cpu_user_s, 3)},
           {"load_system_s", rounded(r.load_cpu_system_s, 3)},
           {"us_per_request",
            r.load_ops > 0 ? rounded(load_cpu * 1e6 / static_cast<double>(r.load_ops), 2) : 0.0}}}};
  if (o.mode == Mode::kOpenLoop) {
    out["open_loop"] = json::object{{"asked_rate", o.rate},
                                    {"achieved_rate", per_second(requests)},
                                    {"intended", r.intended},
                                    {"unsent", r.unsent}};
  }
  json::array samples;
  for (const auto& e : r.error_samples) samples.emplace_back(e);
  out["error_samples"] = std::move(samples);
  if (!r.fatal.empty()) out["error"] = r.fatal;
  return out;
}

std::string summary_text(const BenchOptions& o, const RunResult& r) {
  std::string s;
  char line[256];
  const char* mode = o.mode == Mode::kHold       ? "hold"
                     : o.mode == Mode::kOpenLoop ? "open loop"
                                                 : "closed loop";
  std::string span = duration_text(o.duration);
  if (o.mode != Mode::kHold) span += " (+" + duration_text(o.warmup) + " warm-up)";
  std::snprintf(line, sizeof line,
                "mcpmesh-bench: %s, %s, %zu sessions over %zu connections, %zu thread(s), %zu "
                "process(es), %s\n",
                o.url.c_str(), mode, o.sessions, o.connections, o.threads, o.processes,
                span.c_str());
  s += line;
  std::snprintf(
      line, sizeof line, "  sessions: %llu of %llu opened in %.2f s (p50 %.3f ms), %llu deleted\n",
      static_cast<unsigned long long>(r.sessions_created),
      static_cast<unsigned long long>(r.sessions_requested), r.setup_s,
      ms(r.session_open.value_at(0.5)), static_cast<unsigned long long>(r.sessions_deleted));
  s += line;
  if (r.sessions_retried > 0) {
    std::snprintf(line, sizeof line,
                  "  sessions: %llu initialize(s) refused with Retry-After, sent again\n",
                  static_cast<unsigned long long>(r.sessions_retried));
    s += line;
  }
  if (o.mode != Mode::kHold && (r.measured_s > 0 || r.requests() > 0)) {
    std::snprintf(line, sizeof line, "  %-11s %10s %10s %9s %9s %9s %9s %9s %8s\n", "op", "count",
                  "rate/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "failed");
    s += line;
    const double window = r.measured_s > 0 ? r.measured_s : 1;
    for (std::size_t i = 0; i < kOpCount; ++i) {
      const OpResult& op = r.ops[i];
      if (o.mix.weights[i] == 0 && op.count == 0) continue;
      std::snprintf(
          line, sizeof line, "  %-11s %10llu %10.1f %9.3f %9.3f %9.3f %9.3f %9.3f %8llu\n",
          std::string(op_name(static_cast<Op>(i))).c_str(),
          static_cast<unsigned long long>(op.count), static_cast<double>(op.count) / window,
          ms(op.latency.value_at(0.5)), ms(op.latency.value_at(0.9)), ms(op.latency.value_at(0.99)),
          ms(op.latency.value_at(0.999)), ms(op.latency.max()),
          static_cast<unsigned long long>(op.count - op.outcome(Outcome::kOk)));
      s += line;
    }
    std::snprintf(
        line, sizeof line,
        "  total %llu operations, %.1f/s; HTTP 200 %llu, 202 %llu, 429 %llu, 503 %llu, other "
        "%llu\n",
        static_cast<unsigned long long>(r.requests()), static_cast<double>(r.requests()) / window,
        static_cast<unsigned long long>(r.status_200),
        static_cast<unsigned long long>(r.status_202),
        static_cast<unsigned long long>(r.status_429),
        static_cast<unsigned long long>(r.status_503),
        static_cast<unsigned long long>(r.status_other));
    s += line;
    std::snprintf(line, sizeof line,
                  "  errors: jsonrpc %llu, tool %llu, bad answer %llu, socket %llu, timeout %llu\n",
                  static_cast<unsigned long long>(r.outcome_total(Outcome::kJsonRpcError)),
                  static_cast<unsigned long long>(r.outcome_total(Outcome::kToolError)),
                  static_cast<unsigned long long>(r.outcome_total(Outcome::kBadAnswer)),
                  static_cast<unsigned long long>(r.outcome_total(Outcome::kSocketError)),
                  static_cast<unsigned long long>(r.outcome_total(Outcome::kTimeout)));
    s += line;
    if (o.mode == Mode::kOpenLoop) {
      std::snprintf(line, sizeof line, "  open loop: asked %.1f/s, achieved %.1f/s, %llu unsent\n",
                    o.rate, static_cast<double>(r.requests()) / window,
                    static_cast<unsigned long long>(r.unsent));
      s += line;
    }
  }
  if (r.sse_requested > 0) {
    std::snprintf(line, sizeof line,
                  "  sse: %llu of %llu streams opened, %llu events, %llu keep-alives, %llu ended "
                  "early\n",
                  static_cast<unsigned long long>(r.sse_opened),
                  static_cast<unsigned long long>(r.sse_requested),
                  static_cast<unsigned long long>(r.sse_events),
                  static_cast<unsigned long long>(r.sse_keepalives),
                  static_cast<unsigned long long>(r.sse_ended_early));
    s += line;
  }
  std::snprintf(line, sizeof line, "  bench cpu: %.2f s user, %.2f s system", r.cpu_user_s,
                r.cpu_system_s);
  s += line;
  if (r.load_ops > 0) {
    std::snprintf(
        line, sizeof line, " (%.2f us per operation under load)",
        (r.load_cpu_user_s + r.load_cpu_system_s) * 1e6 / static_cast<double>(r.load_ops));
    s += line;
  }
  s += "\n";
  for (const auto& e : r.error_samples) s += "  error: " + e + "\n";
  if (!r.fatal.empty()) s += "mcpmesh-bench: " + r.fatal + "\n";
  return s;
}

}  // namespace mcpmesh::bench
