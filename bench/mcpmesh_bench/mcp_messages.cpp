#include "bench/mcpmesh_bench/mcp_messages.hpp"

#include <boost/json.hpp>
#include <charconv>

#include "bench/mcpmesh_bench/sse_parser.hpp"

namespace mcpmesh::bench {
namespace {

namespace json = boost::json;

void append_int(std::string& out, std::int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

bool id_matches(const json::value* id, std::int64_t want) {
  if (id == nullptr) return false;
  if (id->is_int64()) return id->get_int64() == want;
  if (id->is_uint64()) return want >= 0 && id->get_uint64() == static_cast<std::uint64_t>(want);
  return false;
}

std::string truncated(std::string_view s, std::size_t max = 200) {
  if (s.size() <= max) return std::string(s);
  return std::string(s.substr(0, max)) + "...";
}

/// Looks for the response with `id` in one JSON-RPC message (or batch); true when found, with
/// `verdict` filled.
bool judge_message(const json::value& message, std::int64_t id, bool tool_call, bool want_version,
                   Verdict& verdict) {
  if (message.is_array()) {
    for (const auto& m : message.get_array()) {
      if (judge_message(m, id, tool_call, want_version, verdict)) return true;
    }
    return false;
  }
  const json::object* obj = message.if_object();
  if (obj == nullptr || !id_matches(obj->if_contains("id"), id)) return false;
  if (const json::value* err = obj->if_contains("error")) {
    verdict.outcome = Outcome::kJsonRpcError;
    verdict.detail = "JSON-RPC error " + truncated(json::serialize(*err));
    return true;
  }
  const json::value* result = obj->if_contains("result");
  if (result == nullptr || !result->is_object()) {
    verdict.outcome = Outcome::kBadAnswer;
    verdict.detail = "response without a result object";
    return true;
  }
  if (tool_call) {
    const json::value* is_error = result->get_object().if_contains("isError");
    if (is_error != nullptr && is_error->is_bool() && is_error->get_bool()) {
      verdict.outcome = Outcome::kToolError;
      verdict.detail = "tool error " + truncated(json::serialize(*result));
      return true;
    }
  }
  if (want_version) {
    const json::value* v = result->get_object().if_contains("protocolVersion");
    if (v == nullptr || !v->is_string()) {
      verdict.outcome = Outcome::kBadAnswer;
      verdict.detail = "initialize result without protocolVersion";
      return true;
    }
    verdict.protocol_version = std::string(v->get_string());
  }
  verdict.outcome = Outcome::kOk;
  return true;
}

bool judge_text(std::string_view text, std::int64_t id, bool tool_call, bool want_version,
                Verdict& verdict) {
  // Most answers are small: parse them in a stack buffer, without touching the heap.
  unsigned char scratch[4096];
  json::monotonic_resource mr(scratch, sizeof scratch);
  boost::system::error_code ec;
  json::value v = json::parse(text, ec, &mr);
  if (ec) return false;
  return judge_message(v, id, tool_call, want_version, verdict);
}

}  // namespace

void HttpAnswer::clear() {
  status = 0;
  event_stream = false;
  content_type.clear();
  session_id.clear();
  retry_after_s.reset();
  body.clear();
}

Verdict judge_response(const HttpAnswer& answer, std::int64_t id, bool tool_call,
                       bool want_version) {
  Verdict verdict;
  if (answer.status != 200) {
    verdict.outcome = Outcome::kHttpStatus;
    verdict.detail = "HTTP " + std::to_string(answer.status) + " " + truncated(answer.body);
    return verdict;
  }
  if (answer.event_stream) {
    auto events = parse_sse_body(answer.body);
    if (events) {
      for (const auto& ev : *events) {
        if (ev.type != "message" || ev.data.empty()) continue;
        if (judge_text(ev.data, id, tool_call, want_version, verdict)) return verdict;
      }
    }
  } else if (answer.content_type.starts_with("application/json")) {
    if (judge_text(answer.body, id, tool_call, want_version, verdict)) return verdict;
  }
  verdict.outcome = Outcome::kBadAnswer;
  verdict.detail = "no JSON-RPC response with id " + std::to_string(id) + " in a '" +
                   answer.content_type + "' body: " + truncated(answer.body);
  return verdict;
}

Verdict judge_accepted(const HttpAnswer& answer) {
  Verdict verdict;
  if (answer.status != 202) {
    verdict.outcome = Outcome::kHttpStatus;
    verdict.detail = "HTTP " + std::to_string(answer.status) +
                     " to a notification (202 expected) " + truncated(answer.body);
  }
  return verdict;
}

Verdict judge_deleted(const HttpAnswer& answer) {
  Verdict verdict;
  if (answer.status < 200 || answer.status > 299) {
    verdict.outcome = Outcome::kHttpStatus;
    verdict.detail =
        "HTTP " + std::to_string(answer.status) + " to DELETE " + truncated(answer.body);
  }
  return verdict;
}

McpRequests::McpRequests(const BenchOptions& o) {
  request_line_post_ = "POST " + o.endpoint.target + " HTTP/1.1\r\n";
  request_line_get_ = "GET " + o.endpoint.target + " HTTP/1.1\r\n";
  request_line_delete_ = "DELETE " + o.endpoint.target + " HTTP/1.1\r\n";
  common_headers_ = "Host: " + o.endpoint.host_header + "\r\n";
  for (const auto& h : o.headers) common_headers_ += h + "\r\n";
  json::object params{
      {"protocolVersion", o.protocol_version},
      {"capabilities", json::object{}},
      {"clientInfo", json::object{{"name", "mcpmesh-bench"}, {"version", "0.1.0"}}}};
  initialize_params_ = R"(,"method":"initialize","params":)" + json::serialize(params) + "}";
  tools_call_tail_ = R"(,"method":"tools/call","params":{"name":)" +
                     json::serialize(json::value(o.tool)) + R"(,"arguments":)" +
                     json::serialize(json::parse(o.tool_args)) + "}}";
  notify_body_ =
      R"({"jsonrpc":"2.0","method":)" + json::serialize(json::value(o.notify_method)) + "}";
}

void McpRequests::head(std::string& out, std::string_view request_line, std::string_view session,
                       std::string_view version) const {
  out.append(request_line);
  out.append(common_headers_);
  // A server may run without sessions (no Mcp-Session-Id in its initialize answer); the
  // negotiated version goes on every request after initialize all the same.
  if (!session.empty()) out.append("Mcp-Session-Id: ").append(session).append("\r\n");
  if (!version.empty()) out.append("MCP-Protocol-Version: ").append(version).append("\r\n");
}

void McpRequests::post(std::string& out, std::string_view session, std::string_view version,
                       std::string_view body_head, std::int64_t id,
                       std::string_view body_tail) const {
  head(out, request_line_post_, session, version);
  out.append(
      "Content-Type: application/json\r\n"
      "Accept: application/json, text/event-stream\r\n"
      "Content-Length: ");
  // The body is body_head, then the id (when there is one), then body_tail.
  char id_text[24];
  std::size_t id_len = 0;
  if (id >= 0) id_len = std::to_chars(id_text, id_text + sizeof id_text, id).ptr - id_text;
  append_int(out, static_cast<std::int64_t>(body_head.size() + id_len + body_tail.size()));
  out.append("\r\n\r\n");
  out.append(body_head);
  out.append(id_text, id_len);
  out.append(body_tail);
}

void McpRequests::initialize(std::string& out, std::int64_t id) const {
  post(out, {}, {}, R"({"jsonrpc":"2.0","id":)", id, initialize_params_);
}

void McpRequests::initialized(std::string& out, std::string_view session,
                              std::string_view version) const {
  post(out, session, version, R"({"jsonrpc":"2.0","method":"notifications/initialized"})", -1, {});
}

void McpRequests::tools_call(std::string& out, std::string_view session, std::string_view version,
                             std::int64_t id) const {
  post(out, session, version, R"({"jsonrpc":"2.0","id":)", id, tools_call_tail_);
}

void McpRequests::ping(std::string& out, std::string_view session, std::string_view version,
                       std::int64_t id) const {
  post(out, session, version, R"({"jsonrpc":"2.0","id":)", id, R"(,"method":"ping"})");
}

void McpRequests::notify(std::string& out, std::string_view session,
                         std::string_view version) const {
  post(out, session, version, notify_body_, -1, {});
}

void McpRequests::remove(std::string& out, std::string_view session,
                         std::string_view version) const {
  head(out, request_line_delete_, session, version);
  out.append("Content-Length: 0\r\n\r\n");
}

void McpRequests::open_stream(std::string& out, std::string_view session,
                              std::string_view version) const {
  head(out, request_line_get_, session, version);
  out.append("Accept: text/event-stream\r\n\r\n");
}

}  // namespace mcpmesh::bench
